"""Choose the Tucker core shape of a bundled image tensor at several budgets.

Run: ``python examples/tucker_core_shape.py``
"""

import sparsesel as ss
from sparsesel.tensors.datasets import load_tensor

X = load_tensor("china_small")
for budget in (0.02, 0.05, 0.2):
    problem = ss.CoreShape.from_tensor(X, budget=budget)
    exact = ss.solve(problem, solver="ilp")
    uniform = ss.solve(problem, solver="uniform")
    print(
        f"budget {budget:>4}: ilp ranks {exact.selected} discarded energy {exact.objective:.4g} "
        f"({exact.status}); uniform ranks {uniform.selected} discarded {uniform.objective:.4g}"
    )
