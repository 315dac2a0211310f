"""Select features of scikit-learn's diabetes data with three solvers and compare them.

Run: ``python examples/feature_selection.py``
"""

from sklearn.datasets import load_diabetes

import sparsesel as ss

X, y = load_diabetes(return_X_y=True)
names = load_diabetes().feature_names
problem = ss.FeatureSelection(X, y, k=4)

for solver in ("omp", "greedy_forward", "brute_force"):
    result = ss.solve(problem, solver=solver)
    chosen = ", ".join(names[i] for i in result.selected)
    print(f"{solver:<15} {result.status:<9} mse={result.objective:9.2f}  [{chosen}]")
