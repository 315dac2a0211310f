"""``brute_force`` for rank selection: every rank tuple, vectorized (the test oracle)."""

from __future__ import annotations

import math

import numpy as np

from solvers.tucker_common import RANK_KINDS, infeasible_result, ranks_result
from sparsesel.problems.core_shape import SpectralRankProblem
from sparsesel.registry import register_solver
from sparsesel.result import Result


@register_solver("brute_force", kinds=RANK_KINDS, description="enumerate every rank tuple (oracle; small problems only)")
def brute_force(problem: SpectralRankProblem, *, max_shapes: int = 2_000_000) -> Result:
    """Exhaustive search over ``Π_g max_ranks[g]`` shapes.

    Sizes are computed in int64 and objectives as sums of the precomputed tails; ties go
    to the first shape in lexicographic order.

    Parameters
    ----------
    max_shapes : int
        Refuse (``ValueError``) when more shapes than this would be enumerated.
    """
    count = math.prod(problem.max_ranks)
    if count > max_shapes:
        raise ValueError(
            f"brute_force would enumerate {count} shapes (max_ranks {problem.max_ranks}), more than "
            f"max_shapes={max_shapes}; use solver='ilp' or raise max_shapes"
        )
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    first, rest = problem.max_ranks[0], problem.max_ranks[1:]
    grid = np.stack(np.meshgrid(*[np.arange(1, k + 1) for k in rest], indexing="ij"), axis=-1).reshape(-1, len(rest))
    rest_obj = sum(np.asarray(problem.tails[g + 1])[grid[:, g] - 1] for g in range(len(rest)))
    best, best_obj = None, math.inf
    for r0 in range(1, first + 1):
        shapes = np.concatenate([np.full((len(grid), 1), r0), grid], axis=1)
        feasible = problem.size_model.sizes(shapes) <= problem.budget
        if not feasible.any():
            continue
        obj = np.where(feasible, rest_obj + problem.tails[0][r0 - 1], np.inf)
        i = int(np.argmin(obj))
        if obj[i] < best_obj:
            best, best_obj = tuple(int(v) for v in shapes[i]), float(obj[i])
    optimum = problem.objective(best)
    return ranks_result(problem, best, status="optimal", lower_bound=optimum, upper_bound=optimum, shapes_enumerated=count)
