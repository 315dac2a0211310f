"""``ptas``: the paper's scheme for Tucker packing (Ghadiri et al., ICML 2023).

Tucker packing is a 2-dimensional knapsack with a partition-matroid constraint: item
``(n, j)`` (mode ``n`` at rank ``j``) has profit ``W_n(j) = Σ_{i<=j} σ²_{n,i}``, a *core* weight
``log j`` (``Π r_n <= b`` ⇔ ``Σ log r_n <= log b``) and a *factor* weight ``I_n·j``; exactly one
item per mode. The scheme, as in the authors' code:

1. guess the split of the budget ``B`` between core and factors on a ``(1+ε)`` grid:
   for ``k < K = ⌊log B / log(1+ε)⌋`` the splits ``((1+ε)^k, B − (1+ε)^k)`` and the swapped one;
2. per guess, solve the 2-constraint multiple-choice ILP (``scipy.optimize.milp``, HiGHS) with
   floating-point log weights;
3. enumerate every shape whose ranks are all ``<= ⌈1/ε⌉`` ("small ranks");
4. keep the best shape whose *exact* size is ``<= B``.

``result.guarantee`` is the stated guarantee, ``Guarantee(1 − ε, "kept_energy")``: kept energy
``>= (1 − ε) ×`` the optimal kept energy (``status="approximate"``; the objective is the
discarded energy, the factor multiplies the kept energy). ``time_limit`` is one deadline for the
whole scheme; when it cuts the scheme short the best shape found so far comes back with
``status="time_limit"`` and no guarantee. We did not reproduce the paper's proof (its body was
not available to us); the tests check the factor against brute force.
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from solvers.tucker_common import infeasible_result, ranks_result, useful_max_ranks
from sparsesel.problems.core_shape import CoreShape
from sparsesel.registry import register_solver
from sparsesel.result import Guarantee, Result
from sparsesel.validation import check_real


#: Above this many small-rank shapes the vectorised enumeration would need gigabytes
#: (``⌈1/ε⌉^N`` rows); the same best shape is then found by the exact surrogate solver.
SMALL_RANK_GRID_LIMIT = 2_000_000

#: HiGHS takes a finite time limit; "no limit" (``inf``) is passed as this many seconds.
MAX_HIGHS_TIME_LIMIT = 1e7


def _small_rank_best(
    problem: CoreShape, cap: int, max_ranks: list[int], time_limit: float = 60.0
) -> tuple[tuple[int, ...] | None, bool]:
    """The feasible shape of least discarded energy among those with every rank ``<= cap``.

    Up to :data:`SMALL_RANK_GRID_LIMIT` shapes are enumerated in one numpy grid, as in the
    authors' code. Beyond it, the same restricted problem -- the spectra cut to their first
    ``cap`` values, which shifts each mode's discarded energy by a constant and so keeps the
    minimiser -- is solved exactly by :func:`solvers.tucker_ilp.solve_surrogate` within
    ``time_limit`` seconds.

    Returns
    -------
    (shape or None, complete)
        ``None`` when no such shape fits the budget (or no time was left); ``complete`` is
        False when the time limit cut the search short (the shape is then only the best found).
    """
    caps = [min(cap, k) for k in max_ranks]
    if math.prod(caps) > SMALL_RANK_GRID_LIMIT:
        if problem.size_model.min_size > problem.budget:
            return None, True
        if time_limit <= 0:
            return None, False
        from solvers.tucker_ilp import solve_surrogate

        restricted = CoreShape(
            [problem.singular_values[n][:k] for n, k in enumerate(caps)], problem.shape, problem.budget, total_energy=problem.total_energy
        )
        ranks, status, _, _ = solve_surrogate(restricted, time_limit=time_limit)
        return tuple(int(r) for r in ranks), status != "time_limit"
    ranges = [np.arange(1, k + 1) for k in caps]
    grid = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1).reshape(-1, len(ranges))
    feasible = problem.size_model.sizes(grid) <= problem.budget
    if not feasible.any():
        return None, True
    obj = sum(np.asarray(problem.tails[g])[grid[:, g] - 1] for g in range(grid.shape[1]))
    obj = np.where(feasible, obj, np.inf)
    return tuple(int(v) for v in grid[int(np.argmin(obj))]), True


def _budget_splits(B: int, epsilon: float) -> list[tuple[float, float]]:
    """The guessed (core, factor) splits of the budget ``B``: ``(1+ε)^k`` for either part, both ``>= 1``."""
    K = int(math.floor(math.log(B) / math.log1p(epsilon)))
    return [
        (b_core, b_fac)
        for guess in ((1.0 + epsilon) ** k for k in range(K))
        for b_core, b_fac in ((guess, B - guess), (B - guess, guess))
        if b_core >= 1 and b_fac >= 1
    ]


class _RankItems:
    """The ILP of one budget split: items ``(n, j)`` (mode ``n`` at rank ``j = 1..K_n``), one per mode.

    An item's profit is the energy kept by rank ``j`` of mode ``n``; its weights are ``log j`` against
    the core budget (the core size is the product of the ranks) and ``I_n·j`` against the factor budget.
    """

    def __init__(self, problem: CoreShape, max_ranks: list[int]) -> None:
        N = problem.n_groups
        # Items, in order (n, j) for j = 1..K_n.
        self.n_groups = N
        self.mode_of = np.concatenate([np.full(k, n) for n, k in enumerate(max_ranks)])
        self.rank_of = np.concatenate([np.arange(1, k + 1) for k in max_ranks])
        self.profit = np.concatenate([np.cumsum(problem.energies[n][:k]) for n, k in enumerate(max_ranks)])
        log_w = np.log(self.rank_of.astype(float))
        fac_w = np.asarray([problem.shape[n] for n in self.mode_of], dtype=float) * self.rank_of
        choose_one = np.zeros((N, len(self.profit)))
        choose_one[self.mode_of, np.arange(len(self.profit))] = 1.0
        self.A = np.vstack([log_w, fac_w, choose_one])

    def best_shape(self, b_core: float, b_fac: float, remaining: float) -> tuple[tuple[int, ...] | None, bool]:
        """HiGHS's shape for core budget ``b_core`` and factor budget ``b_fac`` within ``remaining`` seconds
        (``None`` if it found none), and whether it finished (``False``: stopped at the time limit)."""
        N = self.n_groups
        upper = np.concatenate([[math.log(b_core) + 1e-12, b_fac], np.ones(N)])
        lower = np.concatenate([[-np.inf, -np.inf], np.ones(N)])
        res = milp(
            -self.profit,
            constraints=LinearConstraint(self.A, lower, upper),
            integrality=np.ones(len(self.profit)),
            bounds=Bounds(0, 1),
            options={"time_limit": float(min(remaining, MAX_HIGHS_TIME_LIMIT))},
        )
        finished = res.status != 1  # HiGHS stopped at the time limit: its answer (if any) need not be optimal
        if res.x is None:
            return None, finished
        shape = [1] * N
        for i in np.flatnonzero(res.x > 0.5):
            shape[self.mode_of[i]] = int(self.rank_of[i])
        return tuple(shape), finished


@register_solver("ptas", kinds=(CoreShape,), description="the paper's PTAS: (1+ε) grid over the core/factor split, one ILP per guess")
def ptas(problem: CoreShape, *, epsilon: float = 0.5, time_limit: float = 60.0) -> Result:
    """The paper's approximation scheme (see the module docstring).

    Parameters
    ----------
    epsilon : float
        Grid ratio and small-rank threshold ``⌈1/ε⌉``; ``0 < epsilon <= 1`` (the authors'
        default is 0.5).
    time_limit : float
        Seconds for the whole scheme (``inf``: none): one deadline shared by the small-rank
        search and every ILP (HiGHS), each of which gets the time left.

    Returns
    -------
    Result
        ``status="approximate"``, ``guarantee = Guarantee(1 − epsilon, "kept_energy")`` (guaranteed
        fraction of the optimal kept energy); ``info["ilps"]`` the number of ILPs solved. When the
        time limit cuts the scheme short (an ILP stopped early, or guesses left unsolved):
        ``status="time_limit"``, the best shape found so far (always within the budget; all ranks 1
        if nothing better was found) and no guarantee; ``info["ilps_skipped"]`` counts the guesses
        not solved.
    """
    epsilon = check_real(epsilon, "epsilon", 0.0, 1.0, low_open=True)
    time_limit = check_real(time_limit, "time_limit", low=0.0, low_open=True, allow_inf=True)
    deadline = time.monotonic() + time_limit

    def time_left() -> float:
        return deadline - time.monotonic()

    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    B = problem.budget
    max_ranks = useful_max_ranks(problem)
    N = problem.n_groups
    items = _RankItems(problem, max_ranks)
    candidates: set[tuple[int, ...]] = set()
    small, complete = _small_rank_best(problem, math.ceil(1.0 / epsilon), max_ranks, time_left())
    if small is not None:
        candidates.add(small)
    guesses = _budget_splits(B, epsilon)
    ilps = 0
    for b_core, b_fac in guesses:
        remaining = time_left()
        if remaining <= 0:
            complete = False
            break
        ilps += 1
        shape, finished = items.best_shape(b_core, b_fac, remaining)
        complete = complete and finished
        if shape is not None and problem.size_model.size(shape) <= B:
            candidates.add(shape)
    best = min(sorted(candidates), key=problem.objective) if candidates else tuple([1] * N)
    if not complete:
        return ranks_result(
            problem,
            best,
            status="time_limit",
            ilps=ilps,
            ilps_skipped=len(guesses) - ilps,
            epsilon=epsilon,
            guarantee=None,
            message=f"time limit of {time_limit:g} s reached: best shape found so far, no guarantee",
        )
    return ranks_result(
        problem,
        best,
        status="approximate",
        guarantee=Guarantee(1.0 - epsilon, "kept_energy"),
        ilps=ilps,
        epsilon=epsilon,
    )
