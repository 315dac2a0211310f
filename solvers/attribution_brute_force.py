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
        lexicographically first subset. ``info["n_subsets"]`` counts the subsets
        (per example). A batched problem is solved example by example (its objective
        is separable) and gives the batched form: ``selected`` one subset per example,
        ``objective``, ``lower_bound`` and ``upper_bound`` the sum of the per-example optima,
        ``info["objectives"]`` the optima.
    """
    max_subsets = check_int(max_subsets, "max_subsets", low=1)
    batch_size = check_int(batch_size, "batch_size", low=1)
    n, k = problem.n_features, problem.k
    total = comb(n, k)
    if total > max_subsets:
        raise ValueError(f"brute force would evaluate C({n}, {k}) = {total} subsets > max_subsets={max_subsets}")
    best = [_best_subset(problem, example, batch_size) for example in range(problem.n_examples)]
    indicator = np.zeros((problem.n_examples, n))
    for row, (_, subset) in enumerate(best):
        indicator[row, list(subset)] = 1.0
    values = np.asarray([value for value, _ in best])
    selected = tuple(tuple(int(i) for i in subset) for _, subset in best)
    info = {"n_subsets": total, "attribution": problem.to_map(indicator if problem.batched else indicator[0])}
    if problem.batched:
        info["objectives"] = values
        optimum = float(values.sum())
        return problem.result(selected, objective=optimum, lower_bound=optimum, upper_bound=optimum, status="optimal", **info)
    optimum = float(values[0])
    return problem.result(selected[0], objective=optimum, lower_bound=optimum, upper_bound=optimum, status="optimal", **info)


def _best_subset(problem: Attribution, example: int, batch_size: int) -> tuple[float, tuple[int, ...]]:
    """The best ``k``-subset of one example (index ``example`` of a batch; 0 for a single input) and its ``G``."""
    n, k = problem.n_features, problem.k
    best_value, best_subset = -np.inf, None
    subsets = itertools.combinations(range(n), k)
    while True:
        chunk = list(itertools.islice(subsets, batch_size))
        if not chunk:
            break
        weights = torch.zeros(len(chunk), n, dtype=problem.x.dtype)
        rows = np.repeat(np.arange(len(chunk)), k)
        weights[rows, np.asarray(chunk).reshape(-1)] = 1.0
        examples = torch.full((len(chunk),), example, dtype=torch.long) if problem.batched else None
        with torch.no_grad():
            values = problem.evaluate(problem.compose(weights, examples), examples)
        check_finite_model(values, where="at a k-subset input b + m_S ⊙ (x − b) (brute_force)")
        values = values.double().cpu().numpy()
        i = int(np.argmax(values))
        if values[i] > best_value:
            best_value, best_subset = float(values[i]), chunk[i]
    return best_value, tuple(best_subset)
