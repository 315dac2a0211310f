"""``ilp_refine``: exact surrogate optimum, then a short search on the true Tucker error.

1. The exact surrogate optimum and the next-best surrogate shapes (CP-SAT with no-good cuts).
2. From each, a hill climb on the *exact HOSVD truncation error*, which is available for
   every shape in O(1) from one table (:class:`sparsesel.tensors.tucker.HosvdErrorTable`):
   moves lower one rank by ``d ∈ {1, 2, 4, ...}`` and raise another as far as the budget
   allows. When the table is small enough, the HOSVD-optimal feasible shape is added too.
3. With ``n_fits=0`` (default) the ``shortlist`` shapes of lowest HOSVD error are re-scored by
   the error after ``sweeps`` HOOI sweeps (tensorly ``tucker`` started from the HOSVD factors,
   about 1/10 of a full fit each) and the lowest wins; both are errors of actual Tucker
   decompositions of that shape. With ``n_fits >= 1``, HOOI (tensorly, the same settings as
   ``greedy_tucker``) is fitted at the surrogate optimum and the best ``n_fits − 1`` other shapes
   by HOSVD error, and the lowest HOOI error wins. The budget is kept throughout.
"""

from __future__ import annotations

import math
import time
from collections.abc import MutableMapping

import numpy as np

from solvers.tucker_common import infeasible_result, ranks_result, useful_max_ranks
from solvers.tucker_greedy import TuckerErrorOracle, needs_tensor
from solvers.tucker_ilp import solve_surrogate, top_surrogate_shapes
from sparsesel.problems.core_shape import CoreShape
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.tensors.tucker import TUCKER_DEFAULTS, HosvdErrorTable


def _max_raise(problem: CoreShape, ranks: list[int], n: int, max_ranks: list[int]) -> int:
    """Largest rank of mode ``n`` (others fixed) that fits the budget (>= current if it fits)."""
    lo, hi = 1, max_ranks[n]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = list(ranks)
        trial[n] = mid
        if problem.size_model.size(trial) <= problem.budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _neighbours(problem: CoreShape, ranks: tuple[int, ...], max_ranks: list[int]) -> set[tuple[int, ...]]:
    out = set()
    N = len(ranks)
    for i in range(N):
        up = _max_raise(problem, list(ranks), i, max_ranks)
        if up > ranks[i]:
            out.add(tuple(up if k == i else r for k, r in enumerate(ranks)))
        for j in range(N):
            if j == i:
                continue
            d = 1
            while d < ranks[j]:
                trial = list(ranks)
                trial[j] -= d
                up = _max_raise(problem, trial, i, max_ranks)
                if up > ranks[i]:
                    trial[i] = up
                    out.add(tuple(trial))
                d *= 2
    return out


def _global_hosvd_best(problem: CoreShape, table: HosvdErrorTable, count: int) -> list[tuple[int, ...]]:
    grid = np.stack(np.meshgrid(*[np.arange(1, k + 1) for k in table.max_ranks], indexing="ij"), axis=-1).reshape(-1, len(table.max_ranks))
    feasible = problem.size_model.sizes(grid) <= problem.budget
    grid = grid[feasible]
    errors = table.relative_errors(grid)
    order = np.argsort(errors, kind="stable")[:count]
    return [tuple(int(v) for v in grid[i]) for i in order]


@register_solver("ilp_refine", kinds=(CoreShape,), description="exact surrogate optimum + next-best shapes, local search on the exact HOSVD error (optional HOOI fits)")
def ilp_refine(
    problem: CoreShape,
    *,
    n_candidates: int = 3,
    n_fits: int = 0,
    shortlist: int = 4,
    sweeps: int = 1,
    global_table_limit: int = 5_000_000,
    n_iter_max: int = TUCKER_DEFAULTS["n_iter_max"],
    init: str = TUCKER_DEFAULTS["init"],
    tol: float = TUCKER_DEFAULTS["tol"],
    seed: int = 0,
    fit_cache: MutableMapping | None = None,
    time_limit: float = 60.0,
) -> Result:
    """Refine the surrogate optimum on the true Tucker error (see the module docstring).

    Parameters
    ----------
    n_candidates : int
        Surrogate shapes to start from (the optimum first).
    n_fits : int
        Full HOOI fits: 0 chooses by the sweep/HOSVD errors below; else the surrogate optimum plus the
        ``n_fits − 1`` best other shapes by HOSVD error, chosen by HOOI error.
    shortlist, sweeps : int
        With ``n_fits=0``: how many best-by-HOSVD shapes to re-score, and with how many HOOI
        sweeps (``sweeps=0`` or ``shortlist=1``: choose by HOSVD error alone).
    global_table_limit : int
        Also scan every feasible shape of the HOSVD table when it has at most this many cells.
    n_iter_max, init, tol, seed, fit_cache
        HOOI settings and shared cache, as for ``greedy_tucker``.
    time_limit : float
        Seconds for each CP-SAT solve.

    Returns
    -------
    Result
        ``info["true_relative_error"]`` (converged HOOI; ``None`` when ``n_fits=0``),
        ``info["sweep_relative_error"]`` (after ``sweeps`` HOOI sweeps; ``n_fits=0``),
        ``info["hosvd_relative_error"]``, ``info["surrogate_optimum"]``.
    """
    X = needs_tensor(problem, "ilp_refine")
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    if n_fits < 0 or n_candidates < 1:
        raise ValueError(f"n_fits must be >= 0 and n_candidates >= 1, got {n_fits}, {n_candidates}")
    start = time.perf_counter()
    optimum, status, _, _ = solve_surrogate(problem, time_limit=time_limit, workers=1, seed=seed, max_candidates=10000)
    starts = [optimum] + [s for s in top_surrogate_shapes(problem, n_candidates, time_limit=time_limit, seed=seed) if s != optimum][: n_candidates - 1]
    surrogate_seconds = time.perf_counter() - start
    max_ranks = useful_max_ranks(problem)
    table = HosvdErrorTable(X, max_ranks)
    max_ranks = list(table.max_ranks)
    starts = [tuple(min(r, k) for r, k in zip(s, max_ranks)) for s in starts]
    score: dict[tuple[int, ...], float] = {}

    def hosvd(shapes):
        shapes = [s for s in shapes if s not in score]
        if shapes:
            for s, e in zip(shapes, table.relative_errors(np.asarray(shapes))):
                score[s] = float(e)

    hosvd(starts)
    for s in starts:
        current = s
        while True:
            nbrs = _neighbours(problem, current, max_ranks)
            hosvd(nbrs)
            best = min(nbrs, key=lambda t: (score[t], t), default=None)
            if best is None or score[best] >= score[current]:
                break
            current = best
    if math.prod(max_ranks) <= global_table_limit:
        hosvd(_global_hosvd_best(problem, table, max(n_fits, shortlist, 1)))
    ranked = sorted(score, key=lambda t: (score[t], t))
    oracle = TuckerErrorOracle(X, n_iter_max=n_iter_max, init=init, tol=tol, seed=seed, cache=fit_cache)
    sweep_scores: dict[tuple[int, ...], float] = {}
    if n_fits == 0:
        if sweeps > 0 and shortlist > 1:
            sweep_scores = {s: table.hooi_sweep_error(s, sweeps) for s in ranked[:shortlist]}
            best = min(sweep_scores, key=lambda t: (sweep_scores[t], t))
        else:
            best = ranked[0]
        fitted = {best: None, starts[0]: None}
    else:
        to_fit = [starts[0]] + [s for s in ranked if s != starts[0]][: n_fits - 1]
        fitted = {s: oracle(s) for s in to_fit}
        best = min(fitted, key=lambda t: (fitted[t], t))
    return ranks_result(
        problem,
        best,
        status="feasible",
        true_relative_error=fitted[best],
        hosvd_relative_error=score[best],
        sweep_relative_error=sweep_scores.get(best),
        surrogate_optimum=starts[0],
        surrogate_optimum_true_error=fitted[starts[0]],
        surrogate_status=status,
        surrogate_seconds=surrogate_seconds,
        shapes_scored=len(score),
        **oracle.info(),
    )
