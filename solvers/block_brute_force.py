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
    import numpy as np
    import torch
    from torch import nn

    from sparsesel.blocks import block_mask_from_indices, resolve

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
    out_features = module.out_features
    if Y.shape[1] != out_features:
        raise ValueError(f"y has {Y.shape[1]} columns but the linear layer has {out_features} outputs")
    rows, cols = problem.grid(name)
    b1, b2 = problem.block_shape
    k = problem.budget()
    k = k[name] if isinstance(k, dict) else k
    count = math.comb(rows * cols, k)
    if count > max_subsets:
        raise ValueError(f"brute_force would try C({rows * cols}, {k}) = {count} subsets > max_subsets={max_subsets}")
    fit_bias = module.bias is not None
    n = X.shape[0]
    ones = np.ones((n, 1))

    def fit_row(i: int, columns: list[int]) -> tuple[np.ndarray, float, float]:
        design = X[:, columns]
        if fit_bias:
            design = np.hstack([design, ones])
        if design.shape[1] == 0:
            return np.zeros(0), 0.0, float(Y[:, i] @ Y[:, i])
        coef, *_ = np.linalg.lstsq(design, Y[:, i], rcond=None)
        resid = Y[:, i] - design @ coef
        bias = float(coef[-1]) if fit_bias else 0.0
        return (coef[:-1] if fit_bias else coef), bias, float(resid @ resid)

    cache: dict[tuple[int, tuple[int, ...]], tuple[np.ndarray, float, float]] = {}
    best, best_sse = None, math.inf
    for subset in itertools.combinations(range(rows * cols), k):
        sse = 0.0
        for r in range(rows):
            kept_cols = tuple(idx % cols for idx in subset if idx // cols == r)
            for i in range(r * b1, (r + 1) * b1):
                key = (i, kept_cols)
                if key not in cache:
                    columns = [c * b2 + j for c in kept_cols for j in range(b2)]
                    cache[key] = fit_row(i, columns)
                sse += cache[key][2]
        if best is None or sse < best_sse - 1e-12 * max(1.0, abs(best_sse)):
            best, best_sse = subset, sse
    assert best is not None
    weight = np.zeros((out_features, X.shape[1]))
    bias = np.zeros(out_features)
    for r in range(rows):
        kept_cols = tuple(idx % cols for idx in best if idx // cols == r)
        columns = [c * b2 + j for c in kept_cols for j in range(b2)]
        for i in range(r * b1, (r + 1) * b1):
            coef, b, _ = cache[(i, kept_cols)]
            weight[i, columns] = coef
            bias[i] = b
    model = __import__("copy").deepcopy(problem.model)
    target, _ = resolve(model, name)
    with torch.no_grad():
        target.weight.copy_(torch.as_tensor(weight, dtype=target.weight.dtype))
        if fit_bias:
            target.bias.copy_(torch.as_tensor(bias, dtype=target.bias.dtype))
    masks = {name: block_mask_from_indices(best, (rows, cols))}
    return problem.make_result(masks, model, status="optimal",
                               info={"subsets_tried": count, "mse": best_sse / (n * out_features)})
