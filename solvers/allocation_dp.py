"""``dp``: the exact multiple-choice knapsack of a LayerAllocation by dynamic programming (numba).

Dominated options are removed first (that never changes the optimum). The table
``best[c]`` (least summed error of the layers so far with cost ``<= c``) runs over every
integer capacity ``0..C``: ``O(options × C)`` time and ``O(layers × C)`` back-pointers (2 bytes
each). Exact in floating point: the answer's summed error is the least over every feasible
choice (ties go to the first option, cheapest first, that reaches a strictly lower value).
The choice for parameter budgets (capacities up to a few million); for MAC budgets
(capacities ~1e10) use ``cp_sat``. The kernel is compiled once and cached on disk
(numba ``cache=True``), so a new process does not compile it again.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from solvers.allocation_common import undominated
from sparsesel.problems.layer_allocation import LayerAllocation
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int

#: Undominated options per layer the int16 back-pointers can index.
MAX_OPTIONS = int(np.iinfo(np.int16).max) - 1


@register_solver("dp", kinds=(LayerAllocation,), description="exact: dynamic programming over the integer capacity (one cost unit; numba)")
def dp(problem: LayerAllocation, *, max_cells: int = 1_000_000_000) -> Result:
    """The exact optimum by dynamic programming over ``0..capacity``.

    Parameters
    ----------
    max_cells : int
        Refuse (``ValueError``) when ``layers × (capacity + 1)`` back-pointers exceed this
        (2 bytes each; the default is 2 GB).

    Returns
    -------
    Result
        ``status="optimal"``, ``lower_bound = upper_bound = objective``; ``info``: ``cost``,
        ``capacity``, ``options`` (undominated options searched).
    """
    max_cells = check_int(max_cells, "max_cells", low=1)
    costs = [c[:, 0] for c in problem.integer_cost_tables()]
    capacity = int(math.floor(problem.capacity[0]))
    cells = problem.n_layers * (capacity + 1)
    if cells > max_cells:
        raise ValueError(f"dp would need {problem.n_layers} x {capacity + 1} = {cells:.3g} back-pointers "
                         f"(> max_cells={max_cells:.3g}, 2 bytes each); use solver 'cp_sat' or raise max_cells")
    fronts = [undominated(c, e) for c, e in zip(costs, problem.errors)]
    widest = max(len(f) for f in fronts)
    if widest > MAX_OPTIONS:
        raise ValueError(f"dp supports at most {MAX_OPTIONS} undominated options per layer, got {widest}; use 'cp_sat'")
    offsets = np.concatenate([[0], np.cumsum([len(f) for f in fronts])]).astype(np.int64)
    picks = knapsack_dp_kernel(
        np.concatenate([c[f] for c, f in zip(costs, fronts)]).astype(np.int64),
        np.concatenate([e[f] for e, f in zip(problem.errors, fronts)]).astype(np.float64),
        offsets, capacity)
    selected = tuple(int(front[j]) for front, j in zip(fronts, picks))
    objective = problem.objective(selected)
    return problem.result(selected, status="optimal", objective=objective, lower_bound=objective,
                          upper_bound=objective, options=int(offsets[-1]))


@numba.njit(cache=True)
def knapsack_dp_kernel(costs, errors, offsets, capacity):  # pragma: no cover - compiled
    """Back-tracked option index (within each layer's slice) of the least-error choice of cost ``<= capacity``.

    ``costs``/``errors``: the options of every layer concatenated; layer ``g`` owns
    ``offsets[g]:offsets[g+1]``.
    """
    groups = len(offsets) - 1
    best = np.zeros(capacity + 1)  # best[c]: least error of the groups so far with cost <= c
    picks = np.zeros((groups, capacity + 1), dtype=np.int16)
    for g in range(groups):
        new = np.full(capacity + 1, np.inf)
        for j in range(offsets[g], offsets[g + 1]):
            cost, error = costs[j], errors[j]
            for c in range(cost, capacity + 1):
                value = best[c - cost] + error
                if value < new[c]:
                    new[c] = value
                    picks[g, c] = np.int16(j - offsets[g])
        best = new
    choice = np.empty(groups, dtype=np.int64)
    c = capacity
    for g in range(groups - 1, -1, -1):
        j = picks[g, c]
        choice[g] = j
        c -= costs[offsets[g] + j]
    return choice
