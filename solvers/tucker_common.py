"""Helpers shared by the rank-selection solvers (CoreShape, TreeNetworkRanks). Registers nothing."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from sparsesel.problems.core_shape import CoreShape, SpectralRankProblem
from sparsesel.problems.tree_network_ranks import TreeNetworkRanks
from sparsesel.result import Guarantee, Result

RANK_KINDS = (CoreShape, TreeNetworkRanks)


def infeasible_result(problem: SpectralRankProblem) -> Result:
    """``status="infeasible"`` when even the all-ones decomposition exceeds the budget."""
    return problem.result((), status="infeasible", message=problem.infeasible_message(), budget=problem.budget, min_size=problem.min_size)


def ranks_result(problem: SpectralRankProblem, ranks: Sequence[int], status: str = "feasible", trace: Sequence[dict] = (),
                 lower_bound: float | None = None, upper_bound: float | None = None, guarantee: Guarantee | None = None,
                 **info: Any) -> Result:
    """A Result for ``ranks`` with the problem's standard ``info`` (size, relative error bound, kept energy)."""
    ranks = tuple(int(r) for r in ranks)
    details = problem.describe(ranks)
    details.update(info)
    return problem.result(ranks, status=status, trace=trace, lower_bound=lower_bound, upper_bound=upper_bound,
                          guarantee=guarantee, **details)


def group_size_slopes(problem: SpectralRankProblem) -> list[int]:
    """Size increase per unit of rank of group ``g`` when every other rank is 1."""
    slopes = [0] * problem.n_groups
    for coef, groups in problem.size_model.terms:
        for g in groups:
            slopes[g] += coef
    return slopes


def useful_max_ranks(problem: SpectralRankProblem) -> list[int]:
    """Per group, the largest rank worth considering.

    A rank is dropped when (a) the budget cannot hold it even with every other rank at 1,
    or (b) it adds exactly zero energy: every energy after it is 0, so lowering it to the
    last positive energy keeps the objective and strictly lowers the size.
    """
    slopes = group_size_slopes(problem)
    spare = problem.budget - problem.min_size
    out = []
    for g, e in enumerate(problem.energies):
        k = min(problem.max_ranks[g], 1 + spare // slopes[g]) if slopes[g] else problem.max_ranks[g]
        positive = np.flatnonzero(e[:k] > 0)
        last = int(positive[-1]) + 1 if positive.size else 1
        out.append(max(1, min(k, last)))
    return out


#: Largest size the vectorised (int64) and CP-SAT size computations handle.
MAX_EXACT_SIZE = 2**62


def effective_budget(problem: SpectralRankProblem, max_ranks: Sequence[int]) -> int:
    """The budget clipped to the size of the shape ``max_ranks`` (the largest shape searched).

    Sizes grow with every rank, so no shape with ranks ``<= max_ranks`` is larger: clipping
    changes no feasibility test, and keeps a budget such as ``10**30`` (or any budget above the
    full tensor) inside int64 for the vectorised and CP-SAT size constraints.

    Raises
    ------
    ValueError
        When even the clipped budget exceeds ``2**62`` entries (no tensor in memory is that big).
    """
    budget = min(int(problem.budget), problem.size_model.size([int(k) for k in max_ranks]))
    if budget > MAX_EXACT_SIZE:
        raise ValueError(
            f"the largest searched decomposition has {budget} entries, above the 2**62 supported by the exact "
            "integer size model; lower the budget or shorten the spectra"
        )
    return budget


def greedy_increments(
    problem: SpectralRankProblem,
    score: Callable[[int, tuple[int, ...], int], float],
    start: Sequence[int] | None = None,
) -> tuple[tuple[int, ...], list[dict]]:
    """From ``start`` (all ones), repeatedly add 1 to the group of best ``score`` that fits.

    ``score(g, ranks, size_increase)`` is larger for better moves; moves with score ``<= 0``
    or that exceed the budget are skipped. Returns the final ranks and a trace.
    """
    ranks = list(start) if start is not None else [1] * problem.n_groups
    size = problem.size(ranks)
    trace = []
    while True:
        best, best_score, best_size = None, 0.0, None
        for g in range(problem.n_groups):
            if ranks[g] >= problem.max_ranks[g]:
                continue
            ranks[g] += 1
            new_size = problem.size_model.size(ranks)
            ranks[g] -= 1
            if new_size > problem.budget:
                continue
            s = score(g, tuple(ranks), new_size - size)
            if s > best_score:
                best, best_score, best_size = g, s, new_size
        if best is None:
            return tuple(ranks), trace
        ranks[best] += 1
        size = best_size
        trace.append({"ranks": tuple(ranks), "size": size, "group": best})
