"""Exhaustive search over block subsets of a linear least-squares model (the test oracle)."""

from __future__ import annotations

import itertools
import math

from sparsesel.problems.block_sparsification import BlockSparsification
from sparsesel.registry import register_solver
from sparsesel.result import Result


@register_solver("brute_force", kinds=(BlockSparsification,),
                 description="exact: every block subset of a single nn.Linear with mse loss, each refit by least squares")
def brute_force(problem: BlockSparsification, *, max_subsets: int = 200_000) -> Result:
    """The best block subset of a linear model, by enumeration.

    Applies when the model is one ``nn.Linear`` (alone or as the only layer of
    an ``nn.Sequential``), the loss is ``"mse"`` and the data are ``(X, y)``.
    For every subset of ``k`` blocks (the budget) the weights are refit by least
    squares on the kept entries of each output row (the bias, when present, is
    fit freely) and the one with the smallest mean squared error wins (ties: the
    first in lexicographic order). Status ``"optimal"``.

    Raises
    ------
    ValueError
        Another model, loss or data, or more than ``max_subsets`` subsets.
    """
    import torch

    from sparsesel.blocks import block_mask_from_indices, resolve

    module, X, Y = _linear_least_squares(problem)
    name = problem.params[0]
    out_features = module.out_features
    rows, cols = problem.grid(name)
    k = problem.budget()
    k = k[name] if isinstance(k, dict) else k
    count = math.comb(rows * cols, k)
    if count > max_subsets:
        raise ValueError(f"brute_force would try C({rows * cols}, {k}) = {count} subsets > max_subsets={max_subsets}")
    fit_bias = module.bias is not None
    fits = _RowFits(X, Y, fit_bias, problem.block_shape, cols)
    best, best_sse = None, math.inf
    for subset in itertools.combinations(range(rows * cols), k):
        sse = 0.0
        for r in range(rows):
            sse = fits.add_sse(sse, r, subset)
        if best is None or sse < best_sse - 1e-12 * max(1.0, abs(best_sse)):
            best, best_sse = subset, sse
    assert best is not None
    weight, bias = fits.weights(best, rows, out_features)
    model = __import__("copy").deepcopy(problem.model)
    target, _ = resolve(model, name)
    with torch.no_grad():
        target.weight.copy_(torch.as_tensor(weight, dtype=target.weight.dtype))
        if fit_bias:
            target.bias.copy_(torch.as_tensor(bias, dtype=target.bias.dtype))
    masks = {name: block_mask_from_indices(best, (rows, cols))}
    return problem.make_result(masks, model, status="optimal",
                               info={"subsets_tried": count, "mse": best_sse / (X.shape[0] * out_features)})


def _linear_least_squares(problem: BlockSparsification):
    """The problem's single ``nn.Linear``, ``X`` ``(n, in)`` and ``Y`` ``(n, out)`` as float64 arrays; refuse
    any other model, loss or data."""
    from torch import nn

    from sparsesel.blocks import resolve

    if len(problem.params) != 1:
        raise ValueError(f"brute_force needs exactly one prunable weight, got {list(problem.params)}")
    name = problem.params[0]
    module, attr = resolve(problem.model, name)
    linears = [m for m in problem.model.modules() if isinstance(m, nn.Linear)]
    others = [m for m in problem.model.modules() if not isinstance(m, (nn.Linear, nn.Sequential))]
    if not isinstance(module, nn.Linear) or attr != "weight" or len(linears) != 1 or others:
        found = sorted({type(m).__name__ for m in problem.model.modules() if not isinstance(m, nn.Sequential)})
        raise ValueError(
            "brute_force is an exact oracle for linear least squares only: the model must be a single nn.Linear "
            f"(optionally inside nn.Sequential) and the pruned weight its 'weight', but this model has {found} "
            f"and prunes {name!r}; use a training solver (sequential_attention_pp, acdc, magnitude, ...) instead"
        )
    if problem.loss != "mse" or not isinstance(problem.data, tuple):
        raise ValueError(
            f"brute_force is an exact oracle for linear least squares only: it needs loss='mse' and data=(X, y), "
            f"got loss={problem.loss!r} and data of type {type(problem.data).__name__}"
        )
    X = problem.data[0].double().numpy()
    Y = problem.data[1].double().numpy().reshape(X.shape[0], -1)
    if Y.shape[1] != module.out_features:
        raise ValueError(f"y has {Y.shape[1]} columns but the linear layer has {module.out_features} outputs")
    return module, X, Y


class _RowFits:
    """Least-squares refits of each output row on the input columns its kept blocks cover, cached.

    A row's fit depends only on which block columns of its block row are kept, so the enumeration
    refits each (row, kept block columns) pair once.
    """

    def __init__(self, X, Y, fit_bias: bool, block_shape: tuple[int, int], cols: int) -> None:  # noqa: ANN001
        import numpy as np

        self.X, self.Y, self.fit_bias = X, Y, fit_bias
        self.b1, self.b2 = block_shape
        self.cols = cols
        self.ones = np.ones((X.shape[0], 1))
        self.cache: dict[tuple[int, tuple[int, ...]], tuple] = {}

    def fit_row(self, i: int, columns: list[int]) -> tuple:
        """Coefficients on ``columns``, bias and residual sum of squares of output ``i``."""
        import numpy as np

        X, Y = self.X, self.Y
        design = X[:, columns]
        if self.fit_bias:
            design = np.hstack([design, self.ones])
        if design.shape[1] == 0:
            return np.zeros(0), 0.0, float(Y[:, i] @ Y[:, i])
        coef, *_ = np.linalg.lstsq(design, Y[:, i], rcond=None)
        resid = Y[:, i] - design @ coef
        bias = float(coef[-1]) if self.fit_bias else 0.0
        return (coef[:-1] if self.fit_bias else coef), bias, float(resid @ resid)

    def kept(self, r: int, subset: tuple[int, ...]) -> tuple[tuple[int, ...], list[int]]:
        """The kept block columns of block row ``r`` and the input columns they cover."""
        kept_cols = tuple(idx % self.cols for idx in subset if idx // self.cols == r)
        return kept_cols, [c * self.b2 + j for c in kept_cols for j in range(self.b2)]

    def add_sse(self, sse: float, r: int, subset: tuple[int, ...]) -> float:
        """``sse`` plus the residual sums of squares of the outputs of block row ``r``, one output at a time,
        with the blocks of ``subset`` kept."""
        kept_cols, columns = self.kept(r, subset)
        for i in range(r * self.b1, (r + 1) * self.b1):
            key = (i, kept_cols)
            if key not in self.cache:
                self.cache[key] = self.fit_row(i, columns)
            sse += self.cache[key][2]
        return sse

    def weights(self, subset: tuple[int, ...], rows: int, out_features: int):
        """The refit weight ``(out, in)`` and bias ``(out,)`` with the blocks of ``subset`` kept."""
        import numpy as np

        weight = np.zeros((out_features, self.X.shape[1]))
        bias = np.zeros(out_features)
        for r in range(rows):
            kept_cols, columns = self.kept(r, subset)
            for i in range(r * self.b1, (r + 1) * self.b1):
                coef, b, _ = self.cache[(i, kept_cols)]
                weight[i, columns] = coef
                bias[i] = b
        return weight, bias
