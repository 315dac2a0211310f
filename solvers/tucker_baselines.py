"""Surrogate baselines for rank selection: ``greedy_surrogate``, ``bang_for_buck``, ``uniform``,
``energy_threshold`` (for CoreShape and TreeNetworkRanks)."""

from __future__ import annotations

import math

import numpy as np

from solvers.tucker_common import RANK_KINDS, greedy_increments, infeasible_result, ranks_result
from sparsesel.problems.core_shape import SpectralRankProblem
from sparsesel.registry import register_solver
from sparsesel.result import Result


@register_solver("greedy_surrogate", kinds=RANK_KINDS, description="from all ones, +1 to the rank with the largest next σ² that fits")
def greedy_surrogate(problem: SpectralRankProblem) -> Result:
    """The authors' ``hosvd-greedy``: repeatedly raise the rank whose next ``σ²`` is largest
    among the moves that fit; stop when none fits (or none adds energy)."""
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    ranks, trace = greedy_increments(problem, lambda g, r, d: float(problem.energies[g][r[g]]))
    return ranks_result(problem, ranks, trace=trace)


@register_solver("bang_for_buck", kinds=RANK_KINDS, description="from all ones, +1 to the rank with the most σ² per added entry")
def bang_for_buck(problem: SpectralRankProblem) -> Result:
    """The authors' ``hosvd-bang-for-buck``: like ``greedy_surrogate`` but ranks moves by
    ``σ²`` gained per entry added to the size."""
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    ranks, trace = greedy_increments(problem, lambda g, r, d: float(problem.energies[g][r[g]]) / max(d, 1))
    return ranks_result(problem, ranks, trace=trace)


def _largest_feasible(problem: SpectralRankProblem, candidates: list[tuple[int, ...]]) -> int:
    """Index of the last shape of a componentwise non-decreasing list that fits (binary search)."""
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if problem.size_model.size(candidates[mid]) <= problem.budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


@register_solver("uniform", kinds=RANK_KINDS, description="the same fraction t of every maximal rank, largest t that fits")
def uniform(problem: SpectralRankProblem) -> Result:
    """``r_g = max(1, ⌊t · max_ranks[g]⌋)`` for the largest ``t ∈ [0, 1]`` whose shape fits the budget
    (exact: ``t`` runs over every breakpoint ``j / max_ranks[g]``)."""
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    ts = sorted({0.0} | {j / k for k in problem.max_ranks for j in range(1, k + 1)})
    shapes = [tuple(max(1, int(math.floor(t * k + 1e-9))) for k in problem.max_ranks) for t in ts]
    index = _largest_feasible(problem, shapes)
    return ranks_result(problem, shapes[index], fraction=float(ts[index]))


@register_solver("energy_threshold", kinds=RANK_KINDS, description="per-mode energy cut: smallest ranks keeping a fraction τ, largest τ that fits")
def energy_threshold(problem: SpectralRankProblem) -> Result:
    """The usual practice: in every group keep the fewest ranks holding a fraction ``τ`` of its
    energy, for the largest ``τ`` whose shape fits (exact: ``τ`` runs over every breakpoint,
    i.e. every prefix-energy fraction of every group)."""
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    fractions = []
    for e, base in zip(problem.energies, problem._group_base):
        fractions.append(np.cumsum(e) / base if base > 0 else np.ones(len(e)))
    taus = np.unique(np.concatenate([[0.0], *fractions]))
    shapes = []
    for tau in taus:
        shape = []
        for g, frac in enumerate(fractions):
            r = int(np.searchsorted(frac, tau, side="left")) + 1
            shape.append(min(max(r, 1), problem.max_ranks[g]))
        shapes.append(tuple(shape))
    index = _largest_feasible(problem, shapes)
    return ranks_result(problem, shapes[index], energy_fraction=float(taus[index]))
