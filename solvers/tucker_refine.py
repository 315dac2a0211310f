"""``ilp_refine``: exact surrogate optimum, then a short search on the true Tucker error.

The true error of a shape is the squared relative error of HOOI (tensorly ``tucker``) at that
shape under the benchmark's settings (:data:`sparsesel.tensors.tucker.TUCKER_DEFAULTS`: SVD
start, at most ``n_iter_max`` sweeps, tolerance ``tol``). With ``n_fits=0`` (default):

1. **Exact surrogate optimum** (``ilp``'s engine) and the **HOSVD error table**
   (:class:`sparsesel.tensors.tucker.HosvdErrorTable`: the exact HOSVD truncation error of every
   shape in O(1)).
2. **Cheap candidates** on that table: the ``shortlist`` feasible shapes of lowest HOSVD error
   (a scan of the whole table when it has at most ``global_table_limit`` cells, else hill climbs
   from the optimum and the next-best surrogate shapes, moves: lower one rank by ``d ∈ {1, 2, 4,
   ...}`` and raise another as far as the budget allows), and the end of a **greedy on the HOSVD
   error** (from all ones, +1 to the mode whose HOSVD error falls most while the budget holds:
   ``greedy_tucker``'s path with table look-ups in place of HOOI fits).
3. **HOOI-informed re-ranking** (``rotated_pad >= 0``): one HOOI run of ``sweeps`` sweeps at the
   shape ``R`` = (largest ranks of those candidates) + ``rotated_pad``; in its bases every shape
   ``r <= R`` again has an O(1) error (keep each mode's ``r_n`` strongest directions), a proxy much
   closer to HOOI's ranking than the HOSVD error. The ``shortlist`` best feasible shapes by it,
   plus the greedy end, form the pool.
4. **Race**: every pool shape (and the surrogate optimum, unless its lower bound below rules it
   out) gets ``sweeps`` HOOI sweeps from its HOSVD truncation; the best ``n_final`` go on to
   ``race_sweeps`` sweeps and the lowest extrapolated converged error (geometric tail of the last
   two decreases) wins. Runs advance one tensorly sweep at a time, with tensorly's own iterates and
   stopping rule, so a finished run's error is the benchmark's true error (to rounding). Modes
   with ``I_n > Π_{m≠n} I_m`` are first reduced exactly (QR of the unfolding).
5. **Never worse than the surrogate optimum** on the true error: HOOI never raises the error and
   tensorly runs at least 3 sweeps, so the winner's error after ``<= 3`` sweeps bounds its true
   error from above; any Tucker decomposition at the optimum's shape has error at least its
   largest single-mode tail ``max_n Σ_{i>r_n} σ²_{n,i} / ‖X‖²``. Only when these do not settle
   it are the optimum (and then the winner) run to convergence and compared.

With ``n_fits >= 1`` (legacy): HOOI (tensorly, the same settings as ``greedy_tucker``) is fitted at
the surrogate optimum and the best ``n_fits − 1`` other shapes by HOSVD error; the lowest wins.
``sweeps=0``: the shape of lowest HOSVD error, no HOOI at all. The budget is kept throughout.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass

import numpy as np
import tensorly as tl
from tensorly.decomposition import tucker

from solvers.tucker_common import infeasible_result, ranks_result, useful_max_ranks
from solvers.tucker_greedy import TuckerErrorOracle, check_hooi_settings, needs_tensor
from solvers.tucker_ilp import solve_surrogate, top_surrogate_shapes
from sparsesel.problems.core_shape import CoreShape
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.tensors.tucker import TUCKER_DEFAULTS, HosvdErrorTable
from sparsesel.validation import check_int


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
    if count < len(errors):
        keep = np.argpartition(errors, count - 1)[:count]
        grid, errors = grid[keep], errors[keep]
    order = np.lexsort((*grid.T[::-1], errors))[:count]
    return [tuple(int(v) for v in grid[i]) for i in order]


def _greedy_hosvd(problem: CoreShape, table: HosvdErrorTable) -> tuple[int, ...]:
    """From all ones, +1 to the mode of lowest HOSVD error while the budget holds (ties: lowest mode)."""
    ranks = [1] * len(table.max_ranks)
    while True:
        moves = []
        for n, k in enumerate(table.max_ranks):
            if ranks[n] < k:
                ranks[n] += 1
                if problem.size_model.size(ranks) <= problem.budget:
                    moves.append(tuple(ranks))
                ranks[n] -= 1
        if not moves:
            return tuple(ranks)
        errors = table.relative_errors(np.asarray(moves))
        ranks = list(moves[int(np.argmin(errors))])


def _hill_climb(problem, start, max_ranks, score, hosvd) -> tuple[int, ...]:
    current = start
    while True:
        nbrs = _neighbours(problem, current, max_ranks)
        hosvd(nbrs)
        best = min(nbrs, key=lambda t: (score[t], t), default=None)
        if best is None or score[best] >= score[current]:
            return current
        current = best


def _reduce_tall_modes(X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """An exact smaller stand-in for HOOI: every mode with ``I_n > Π_{m≠n} I_m`` is replaced by its
    coordinates in an orthonormal basis ``Q_n`` of the unfolding's column space (QR). HOOI on the
    reduced tensor has the same errors and its factors are ``Q_nᵀ U_n``, since ``X = X ×_n Q_n Q_nᵀ``."""
    bases: list[np.ndarray | None] = []
    for n, size in enumerate(X.shape):
        if size > X.size // size:
            Q, R = np.linalg.qr(tl.unfold(X, n))
            shape = list(X.shape)
            shape[n] = R.shape[0]
            X = tl.fold(R, n, shape)
            bases.append(Q)
        else:
            bases.append(None)
    return X, bases


class _RotatedErrorTable:
    """Like :class:`HosvdErrorTable`, but in the bases of a HOOI iterate at a larger shape ``R``:
    the error of every shape ``r <= R`` when each mode keeps its ``r_n`` strongest HOOI directions
    (ordered by captured energy). Exact errors of actual Tucker decompositions of ``X``, usually
    closer to HOOI's than the HOSVD truncation's, for all shapes at once."""

    def __init__(self, run: _HooiRun):
        table = run.table
        rotated = tl.tenalg.multi_mode_dot(run.X, run.factors, transpose=True) ** 2
        for n in range(rotated.ndim):
            energy = tl.unfold(rotated, n).sum(axis=1)
            rotated = np.take(rotated, np.argsort(-energy, kind="stable"), axis=n)
        for axis in range(rotated.ndim):
            rotated = np.cumsum(rotated, axis=axis)
        self.captured, self.norm2, self.max_ranks = rotated, table.norm2, tuple(run.ranks)

    def relative_errors(self, ranks: np.ndarray) -> np.ndarray:
        ranks = np.asarray(ranks, dtype=np.int64).reshape(-1, len(self.max_ranks))
        if self.norm2 == 0.0:
            return np.zeros(len(ranks))
        return np.maximum(self.norm2 - self.captured[tuple((ranks - 1).T)], 0.0) / self.norm2


def _tail_lower_bound(problem: CoreShape, ranks: tuple[int, ...], norm2: float) -> float:
    """``max_n tail_n(r_n) / ‖X‖²``: no Tucker decomposition of shape ``ranks`` has a smaller
    squared relative error (projecting one mode alone onto ``r_n`` directions keeps at most the
    leading ``r_n`` squared singular values of that unfolding)."""
    if norm2 <= 0.0:
        return 0.0
    tails = [norm2 - math.fsum(problem.energies[n][:r]) for n, r in enumerate(ranks)]
    # minus a rounding allowance for the computed σ² (Gram eigenvalues), to stay a lower bound
    return max(max(tails) / norm2 - 1e-12, 0.0)


class _HooiRun:
    """HOOI (tensorly ``tucker``) from the HOSVD truncation at ``ranks``, advanced one sweep at a
    time: the iterates, errors and stopping rule of one ``tucker(..., init="svd", n_iter_max, tol)``
    call (tensorly stops when, from the third sweep on, its ``sqrt`` relative error changes by
    less than ``tol``), so racing several shapes costs no extra sweep."""

    def __init__(self, table: HosvdErrorTable, ranks: tuple[int, ...], n_iter_max: int, tol: float, seed: int, reduced=None):
        self.table, self.ranks, self.n_iter_max, self.tol, self.seed = table, ranks, int(n_iter_max), float(tol), int(seed)
        self.X, bases = reduced if reduced is not None else (table.X, [None] * table.X.ndim)
        self.factors = [f[:, :r] if Q is None else Q.T @ f[:, :r] for f, r, Q in zip(table.factors, ranks, bases)]
        self.errors: list[float] = []  # tensorly's rec_errors: sqrt of the squared relative error
        self.sq_errors: list[float] = []  # squared relative errors after each sweep
        self.error = table.relative_error(ranks)  # squared relative error of the current iterate
        self.done = self.n_iter_max <= 0

    def step(self) -> None:
        if self.done:
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs", category=UserWarning)
            (core, self.factors), rec = tucker(
                self.X, rank=list(self.ranks), init=(None, self.factors), n_iter_max=1, tol=0.0, return_errors=True, random_state=self.seed
            )
        self.errors.append(float(rec[-1]))
        norm2 = self.table.norm2
        self.error = max(norm2 - float(np.vdot(core, core)), 0.0) / norm2 if norm2 > 0 else 0.0
        self.sq_errors.append(self.error)
        k = len(self.errors)
        if k >= self.n_iter_max or (k >= 3 and self.tol and abs(self.errors[-2] - self.errors[-1]) < self.tol):
            self.done = True

    def extrapolated(self) -> float:
        """The current error minus a geometric tail fitted to the last two decreases (a guess
        of the converged error; the error itself once converged)."""
        e = [self.table.relative_error(self.ranks)] + self.sq_errors
        if self.done or len(e) < 3:
            return self.error
        d1, d2 = e[-3] - e[-2], e[-2] - e[-1]
        rho = min(max(d2 / d1, 0.0), 0.95) if d1 > 0 else 0.0
        return e[-1] - d2 * rho / (1.0 - rho)

    def finish(self) -> float:
        while not self.done:
            self.step()
        return self.error


@register_solver("ilp_refine", kinds=(CoreShape,), description="exact surrogate optimum, HOSVD-table + greedy candidates re-ranked by one HOOI run, raced by HOOI sweeps; never worse than the optimum")
def ilp_refine(problem: CoreShape, *, n_candidates: int = 3, n_fits: int = 0, shortlist: int = 3, sweeps: int = 1,
               n_final: int = 2, race_sweeps: int = 3, rotated_pad: int = 2, greedy_start: bool = True,
               global_table_limit: int = 5_000_000, n_iter_max: int = TUCKER_DEFAULTS["n_iter_max"],
               init: str = TUCKER_DEFAULTS["init"], tol: float = TUCKER_DEFAULTS["tol"], seed: int = 0,
               fit_cache: MutableMapping | None = None, time_limit: float = 60.0) -> Result:
    """Refine the surrogate optimum on the true Tucker error (see the module docstring).

    Parameters
    ----------
    n_candidates : int
        Surrogate shapes to start from (the optimum first).
    n_fits : int
        Full HOOI fits: 0 chooses by the sweep/HOSVD errors below; else the surrogate optimum plus the
        ``n_fits − 1`` best other shapes by HOSVD error, chosen by HOOI error.
    shortlist, sweeps : int
        With ``n_fits=0``: pool size (the greedy end comes on top) and HOOI sweeps per pool shape
        and for the re-ranking run (``sweeps=0``: choose by HOSVD error alone, no HOOI).
    n_final, race_sweeps : int
        How many best-by-sweep shapes race on, and to how many sweeps (``n_final=0``: the best
        by sweep error wins, without the guarantee against the surrogate optimum).
    rotated_pad : int
        Margin of the re-ranking shape ``R`` over the candidates' ranks (``< 0``: no re-ranking,
        the pool is the best by HOSVD error).
    greedy_start : bool
        Add the greedy-on-HOSVD-error shape to the pool.
    global_table_limit : int
        Also scan every feasible shape of the HOSVD table when it has at most this many cells.
    n_iter_max, init, tol, seed, fit_cache
        HOOI settings and shared cache, as for ``greedy_tucker``.
    time_limit : float
        Seconds for each CP-SAT solve.

    Returns
    -------
    Result
        ``info["true_relative_error"]`` (converged HOOI of the chosen shape; ``None`` when it
        was not run to convergence), ``info["true_error_upper_bound"]`` (an error reached by HOOI
        at that shape, >= the converged one), ``info["surrogate_optimum"]`` and
        ``info["surrogate_optimum_true_error"]`` (when run to convergence),
        ``info["sweep_relative_error"]`` (after ``sweeps`` HOOI sweeps), ``info["hosvd_relative_error"]``,
        ``info["greedy_hosvd_shape"]``, ``info["hooi_sweeps"]`` (all HOOI sweeps run; ``fits``
        counts full tensorly fits, legacy mode only).
    """
    X = needs_tensor(problem, "ilp_refine")
    o = _RefineOptions(n_candidates, n_fits, shortlist, sweeps, n_final, race_sweeps, rotated_pad, greedy_start,
                       global_table_limit, n_iter_max, tol, seed, time_limit)
    o.check()
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    start = time.perf_counter()
    optimum, status, _, _ = solve_surrogate(problem, time_limit=time_limit, workers=1, seed=seed, max_candidates=10000)
    if float(np.vdot(X, X)) == 0.0:
        # The zero tensor: every shape is exact, and HOOI would divide by its zero norm.
        return ranks_result(
            problem, optimum, status="feasible", true_relative_error=0.0, true_error_upper_bound=0.0, surrogate_optimum=optimum,
            surrogate_status=status, message="zero tensor: every shape has zero error; returning the surrogate optimum",
        )
    max_ranks = useful_max_ranks(problem)
    # With the whole HOSVD table scanned, climbs from the next-best surrogate shapes add nothing.
    global_scan = math.prod(max_ranks) <= global_table_limit
    starts = _surrogate_starts(problem, optimum, 1 if global_scan else n_candidates, time_limit, seed)
    surrogate_seconds = time.perf_counter() - start
    scores = _HosvdScores(HosvdErrorTable(X, max_ranks))
    starts = [tuple(min(r, k) for r, k in zip(s, scores.table.max_ranks)) for s in starts]
    greedy_end = _explore_hosvd(problem, scores, starts, o, global_scan)
    oracle = TuckerErrorOracle(X, n_iter_max=n_iter_max, init=init, tol=tol, seed=seed, cache=fit_cache)
    best, sweep_scores, fitted, hooi_sweeps, upper = _choose(problem, X, scores, starts, greedy_end, o, oracle)
    return ranks_result(
        problem, best, status="feasible", true_relative_error=fitted.get(best), true_error_upper_bound=upper[best],
        hosvd_relative_error=scores.score[best], sweep_relative_error=sweep_scores.get(best),
        surrogate_optimum=starts[0], surrogate_optimum_true_error=fitted.get(starts[0]), greedy_hosvd_shape=greedy_end,
        hooi_sweeps=hooi_sweeps, surrogate_status=status, surrogate_seconds=surrogate_seconds,
        shapes_scored=len(scores.score), **oracle.info(),
    )


def _choose(problem: CoreShape, X: np.ndarray, scores: _HosvdScores, starts: list[tuple[int, ...]],
            greedy_end: tuple[int, ...] | None, o: _RefineOptions, oracle: TuckerErrorOracle):
    """The chosen shape among the candidates scored: ``(best, sweep errors, converged errors, HOOI sweeps,
    error upper bounds)``, by the sweep race (``n_fits=0``), the HOSVD error (``sweeps=0``) or full fits."""
    ranked = sorted(scores.score, key=lambda t: (scores.score[t], t))
    upper: dict[tuple[int, ...], float] = dict(scores.score)
    if o.n_fits == 0 and o.sweeps > 0:
        best, sweep_scores, fitted, hooi_sweeps = _sweep_race(problem, X, scores, ranked, starts[0], greedy_end, o)
        upper.update(sweep_scores)
        for s, e in fitted.items():
            upper[s] = min(upper.get(s, e), e)
    elif o.n_fits == 0:
        best, sweep_scores, fitted, hooi_sweeps = ranked[0], {}, {}, 0
    else:
        to_fit = [starts[0]] + [s for s in ranked if s != starts[0]][: o.n_fits - 1]
        fitted, sweep_scores, hooi_sweeps = {s: oracle(s) for s in to_fit}, {}, 0
        best = min(fitted, key=lambda t: (fitted[t], t))
        upper.update(fitted)
    return best, sweep_scores, fitted, hooi_sweeps, upper


def _surrogate_starts(problem: CoreShape, optimum: tuple[int, ...], n_candidates: int, time_limit: float,
                      seed: int) -> list[tuple[int, ...]]:
    """The surrogate optimum, then up to ``n_candidates − 1`` next-best surrogate shapes."""
    others = [] if n_candidates == 1 else top_surrogate_shapes(problem, n_candidates, time_limit=time_limit, seed=seed)
    return [optimum] + [s for s in others if s != optimum][: n_candidates - 1]


@dataclass(frozen=True)
class _RefineOptions:
    """:func:`ilp_refine`'s search options (documented there)."""

    n_candidates: int
    n_fits: int
    shortlist: int
    sweeps: int
    n_final: int
    race_sweeps: int
    rotated_pad: int
    greedy_start: bool
    global_table_limit: int
    n_iter_max: int
    tol: float
    seed: int
    time_limit: float

    def check(self) -> None:
        """Refuse a bad option, naming it."""
        check_int(self.n_candidates, "n_candidates", low=1)
        check_int(self.n_fits, "n_fits", low=0)
        check_int(self.shortlist, "shortlist", low=1)
        check_int(self.sweeps, "sweeps", low=0)
        check_int(self.n_final, "n_final", low=0)
        check_int(self.race_sweeps, "race_sweeps", low=0)
        check_int(self.rotated_pad, "rotated_pad")
        check_int(self.global_table_limit, "global_table_limit", low=0)
        if not isinstance(self.greedy_start, (bool, np.bool_)):
            raise TypeError(f"greedy_start must be a bool, got {self.greedy_start!r}")
        check_hooi_settings(self.n_iter_max, self.tol, self.seed, self.time_limit)


class _HosvdScores:
    """The HOSVD relative error of every shape scored so far, looked up in ``table`` on first use."""

    def __init__(self, table: HosvdErrorTable) -> None:
        self.table = table
        self.score: dict[tuple[int, ...], float] = {}

    def __call__(self, shapes) -> None:
        shapes = [s for s in shapes if s not in self.score]
        if shapes:
            for s, e in zip(shapes, self.table.relative_errors(np.asarray(shapes))):
                self.score[s] = float(e)


def _explore_hosvd(problem: CoreShape, scores: _HosvdScores, starts: list[tuple[int, ...]], o: _RefineOptions,
                   global_scan: bool) -> tuple[int, ...] | None:
    """Score the cheap candidates on the HOSVD table (steps 1–2 of the module docstring); the greedy end."""
    max_ranks = list(scores.table.max_ranks)
    scores(starts)
    greedy_end = _greedy_hosvd(problem, scores.table) if o.greedy_start else None
    if greedy_end is not None:
        scores([greedy_end])
    if global_scan:
        scores(_global_hosvd_best(problem, scores.table, max(o.n_fits, o.shortlist, 1)))
    else:
        for s in starts + ([greedy_end] if greedy_end is not None else []):
            _hill_climb(problem, s, max_ranks, scores.score, scores)
    return greedy_end


def _rotated_pool(problem: CoreShape, scores: _HosvdScores, pool: list[tuple[int, ...]],
                  greedy: list[tuple[int, ...]], o: _RefineOptions, reduced) -> tuple[list[tuple[int, ...]], int]:
    """Re-rank every shape below R = (largest ranks of the pool) + pad by the error table in the bases of
    ``sweeps`` HOOI sweeps at R (step 3; one run instead of one per shape); the pool and the sweeps run."""
    max_ranks = list(scores.table.max_ranks)
    cover = pool + greedy
    big = tuple(min(k, max(r[n] for r in cover) + max(o.rotated_pad, 0)) for n, k in enumerate(max_ranks))
    if o.rotated_pad < 0 or math.prod(big) > o.global_table_limit:
        return pool, 0
    wide = _HooiRun(scores.table, big, o.n_iter_max, o.tol, o.seed, reduced)
    for _ in range(o.sweeps):
        wide.step()
    pool = _global_hosvd_best(problem, _RotatedErrorTable(wide), o.shortlist)
    scores(pool)
    return pool, len(wide.errors)


def _sweep_race(problem: CoreShape, X: np.ndarray, scores: _HosvdScores, ranked: list[tuple[int, ...]],
                optimum: tuple[int, ...], greedy_end: tuple[int, ...] | None, o: _RefineOptions):
    """Steps 3–5 of the module docstring: ``(best, sweep errors, converged errors, HOOI sweeps run)``."""
    table = scores.table
    reduced = _reduce_tall_modes(X)
    greedy = [greedy_end] if greedy_end is not None else []
    pool, hooi_sweeps = _rotated_pool(problem, scores, ranked[:o.shortlist], greedy, o, reduced)
    pool = list(dict.fromkeys(pool + greedy))
    runs = {s: _HooiRun(table, s, o.n_iter_max, o.tol, o.seed, reduced) for s in pool}
    for _ in range(o.sweeps):
        for run in runs.values():
            run.step()
    lower = _tail_lower_bound(problem, optimum, table.norm2)
    others = sorted(run.error for s, run in runs.items() if s != optimum)
    if optimum not in runs:
        runs[optimum] = _HooiRun(table, optimum, o.n_iter_max, o.tol, o.seed, reduced)
        # its sweep error is >= its lower bound: skip it when that cannot make the race
        if o.n_final < 1 or len(others) < o.n_final or lower < others[o.n_final - 1]:
            for _ in range(o.sweeps):
                runs[optimum].step()
    sweep_scores = {s: run.error for s, run in runs.items() if run.errors}
    by_sweep = sorted(sweep_scores, key=lambda t: (sweep_scores[t], t))
    fitted: dict[tuple[int, ...], float | None] = {}
    if o.n_final > 0:
        best = _race(runs, by_sweep[:o.n_final], optimum, lower, fitted, o)
        for s, run in runs.items():
            if run.done:
                fitted[s] = run.error
    else:
        best = by_sweep[0]
    hooi_sweeps += sum(len(run.errors) for run in runs.values())
    return best, sweep_scores, fitted, hooi_sweeps


def _race(runs: dict, finalists: list[tuple[int, ...]], optimum: tuple[int, ...], lower: float, fitted: dict,
          o: _RefineOptions) -> tuple[int, ...]:
    """Race ``finalists`` to ``race_sweeps`` sweeps, pick the lowest extrapolated converged error (geometric
    tail of the last decreases), never worse than ``optimum`` (step 5); converged errors go to ``fitted``."""
    for s in finalists:
        for _ in range(o.race_sweeps - len(runs[s].errors)):
            runs[s].step()
    best = min(finalists, key=lambda t: (runs[t].extrapolated(), t))
    # Never worse than the surrogate optimum on the converged HOOI error (the
    # benchmark's settings): the leader's current error bounds its converged error
    # from above (tensorly runs >= 3 sweeps, HOOI never raises the error); every Tucker
    # decomposition at the optimum's shape has error >= its largest single-mode tail.
    if best != optimum:
        leader = runs[best]
        bound = leader.error if leader.done or len(leader.errors) <= min(3, o.n_iter_max) else leader.finish()
        if bound > lower * (1 - 1e-9):
            fitted[optimum] = runs[optimum].finish()
            if bound > fitted[optimum] * (1 - 1e-9):
                fitted[best] = leader.finish()
                if (fitted[optimum], optimum) < (fitted[best], best):
                    best = optimum
    return best
