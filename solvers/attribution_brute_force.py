"""Exhaustive search over k-subsets of an Attribution problem (the oracle for tiny models)."""

from __future__ import annotations

import itertools
from math import comb

import numpy as np
import torch

from sparsesel.attribution.integrated import check_finite_model
from sparsesel.problems.attribution import Attribution
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int


@register_solver(
    "brute_force",
    kinds=(Attribution,),
    description="every k-subset evaluated; the best model output G(S) (tiny models only; the test oracle)",
)
def brute_force_attribution(problem: Attribution, *, max_subsets: int = 200_000, batch_size: int = 4096) -> Result:
    """Return the ``k``-subset ``S`` maximising ``G(S) = f(b + m_S ⊙ (x − b))``.

    Parameters
    ----------
    max_subsets : int
        Refuse (``ValueError``) when ``C(n_features, k)`` exceeds this.
    batch_size : int
        Subsets evaluated per forward pass.

    Returns
    -------
    Result
        ``selected`` sorted ascending, status ``"optimal"``; ties go to the
        lexicographically first subset. ``info["n_subsets"]`` counts the subsets.
    """
    max_subsets = check_int(max_subsets, "max_subsets", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    n, k = problem.n_features, problem.k
    total = comb(n, k)
    if total > max_subsets:
        raise ValueError(f"brute force would evaluate C({n}, {k}) = {total} subsets > max_subsets={max_subsets}")
    best_value, best_subset = -np.inf, None
    subsets = itertools.combinations(range(n), k)
    while True:
        chunk = list(itertools.islice(subsets, batch_size))
        if not chunk:
            break
        weights = torch.zeros(len(chunk), n, dtype=problem.x.dtype)
        rows = np.repeat(np.arange(len(chunk)), k)
        weights[rows, np.asarray(chunk).reshape(-1)] = 1.0
        with torch.no_grad():
            values = problem.evaluate(problem.compose(weights))
        check_finite_model(values, where="at a k-subset input b + m_S ⊙ (x − b) (brute_force)")
        values = values.double().cpu().numpy()
        i = int(np.argmax(values))
        if values[i] > best_value:
            best_value, best_subset = float(values[i]), chunk[i]
    indicator = np.zeros(n)
    indicator[list(best_subset)] = 1.0
    return problem.result(
        tuple(int(i) for i in best_subset),
        objective=best_value,
        lower_bound=best_value,
        upper_bound=best_value,
        status="optimal",
        n_subsets=total,
        attribution=problem.to_map(indicator),
    )
