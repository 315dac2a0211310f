"""``greedy_tucker``: the paper's baseline, greedy on the *true* Tucker error (HOOI per candidate)."""

from __future__ import annotations

import math
import time
from collections.abc import MutableMapping
from typing import Any

import numpy as np

from solvers.tucker_common import infeasible_result, ranks_result
from sparsesel.problems.core_shape import CoreShape
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.tensors.tucker import TUCKER_DEFAULTS, tucker_relative_error
from sparsesel.validation import check_int, check_real


def check_hooi_settings(n_iter_max: Any, tol: Any, seed: Any, time_limit: Any) -> None:
    """Validate the HOOI settings shared by ``greedy_tucker`` and ``ilp_refine``.

    ``n_iter_max >= 1``, ``tol >= 0`` (finite), ``seed`` an integer, ``time_limit > 0`` (``inf`` allowed).
    """
    check_int(n_iter_max, "n_iter_max", low=1)
    check_real(tol, "tol", low=0.0)
    check_int(seed, "seed")
    check_real(time_limit, "time_limit", low=0.0, low_open=True, allow_inf=True)


def needs_tensor(problem: CoreShape, solver: str) -> np.ndarray:
    if problem.tensor is None:
        raise ValueError(
            f"solver {solver!r} needs the tensor itself (true Tucker errors); build the problem with "
            "CoreShape.from_tensor(X, budget)"
        )
    return problem.tensor


class TuckerErrorOracle:
    """True squared relative errors (tensorly HOOI) of shapes, with an optional shared cache.

    ``cache`` maps ``(ranks, n_iter_max, init, tol, seed)`` to ``(error, seconds)``; the seconds
    of a cached fit are still charged to :attr:`fit_seconds` (the time the fit costs uncached),
    and :attr:`fresh_seconds` counts only the fits computed now.
    """

    def __init__(self, X: np.ndarray, *, n_iter_max: int, init: str, tol: float, seed: int, cache: MutableMapping | None):
        self.X, self.settings = X, (int(n_iter_max), str(init), float(tol), int(seed))
        self.cache = {} if cache is None else cache
        self.fits = self.cache_hits = 0
        self.fit_seconds = self.fresh_seconds = 0.0

    def __call__(self, ranks: tuple[int, ...]) -> float:
        key = (tuple(int(r) for r in ranks), *self.settings)
        if key in self.cache:
            error, seconds = self.cache[key]
            self.cache_hits += 1
        else:
            start = time.perf_counter()
            n_iter_max, init, tol, seed = self.settings
            error = tucker_relative_error(self.X, key[0], n_iter_max=n_iter_max, init=init, tol=tol, seed=seed)
            seconds = time.perf_counter() - start
            self.cache[key] = (error, seconds)
            self.fresh_seconds += seconds
        self.fits += 1
        self.fit_seconds += seconds
        return error

    def info(self) -> dict[str, Any]:
        return {"fits": self.fits, "cache_hits": self.cache_hits, "fit_seconds": self.fit_seconds, "fresh_fit_seconds": self.fresh_seconds}


@register_solver("greedy_tucker", kinds=(CoreShape,), description="paper's baseline: from all ones, +1 to the mode whose HOOI error falls most")
def greedy_tucker(
    problem: CoreShape,
    *,
    n_iter_max: int = TUCKER_DEFAULTS["n_iter_max"],
    init: str = TUCKER_DEFAULTS["init"],
    tol: float = TUCKER_DEFAULTS["tol"],
    seed: int = 0,
    fit_cache: MutableMapping | None = None,
    time_limit: float = math.inf,
) -> Result:
    """Greedy on the true loss (the authors' ``rre-greedy``).

    From ranks ``(1, ..., 1)``, fit HOOI (tensorly ``tucker``) at every shape one +1 step away
    that fits the budget and move to the one of lowest squared relative error. Stops when no
    move fits, when the best error rises by more than 1e-9, or when the error is below 1e-15.

    Parameters
    ----------
    n_iter_max, init, tol, seed
        HOOI settings (see :data:`sparsesel.tensors.tucker.TUCKER_DEFAULTS`).
    fit_cache : dict, optional
        Shared cache of fits across calls on the *same tensor* (see :class:`TuckerErrorOracle`).
    time_limit : float
        Seconds; on time-out the current shape is returned with ``status="time_limit"``.

    Returns
    -------
    Result
        ``info["true_relative_error"]`` is the HOOI error of the returned shape;
        ``info["fit_seconds"]`` the time of all fits used (cached ones at their stored cost).
    """
    X = needs_tensor(problem, "greedy_tucker")
    check_hooi_settings(n_iter_max, tol, seed, time_limit)
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    oracle = TuckerErrorOracle(X, n_iter_max=n_iter_max, init=init, tol=tol, seed=seed, cache=fit_cache)
    start = time.perf_counter()
    ranks = [1] * problem.n_groups
    error = oracle(tuple(ranks))
    trace = [{"ranks": tuple(ranks), "error": error}]
    status = "feasible"
    while error >= 1e-15:
        if time.perf_counter() - start > time_limit:
            status = "time_limit"
            break
        moves = []
        for n in range(problem.n_groups):
            if ranks[n] >= problem.max_ranks[n]:
                continue
            cand = list(ranks)
            cand[n] += 1
            if problem.size_model.size(cand) <= problem.budget:
                moves.append((oracle(tuple(cand)), n))
        if not moves:
            break
        best_error, best_mode = min(moves)
        if best_error > error + 1e-9:
            break
        ranks[best_mode] += 1
        error = best_error
        trace.append({"ranks": tuple(ranks), "error": error})
    return ranks_result(problem, ranks, status=status, trace=trace, true_relative_error=error, **oracle.info())
