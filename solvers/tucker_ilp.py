"""``ilp``: the exact solver of the rank-selection surrogate (OR-tools CP-SAT, or exact enumeration).

Both engines solve the same integer program, for :class:`CoreShape` and
:class:`TreeNetworkRanks` alike, and share one exactness argument.

**CP-SAT model** (``method="cp_sat"``):

* one Boolean ``x[g, j]`` per group ``g`` (mode or edge) and rank ``j``, exactly one per group
  (the partition matroid); ``r_g = Σ_j j·x[g, j]``;
* every product of ranks in the size model (the Tucker core ``Π r_n``, each tree node's
  ``Π_{e∋v} r_e``) is an integer variable defined by a chain of exact
  ``AddMultiplicationEquality`` constraints; the size ``Σ coef·product <= budget`` is
  exact integer arithmetic (no logarithms, no rounding);
* objective: maximise the kept energy ``Σ a[g, j]·x[g, j]`` with integer weights
  ``a[g, j] = ⌊S·W_g(j)⌋``, ``W_g(j) = Σ_{i<=j} σ²_{g,i}`` computed exactly, ``S = 2^s`` chosen so
  that the total weight stays below ``2^40`` (CP-SAT 9.15's presolve lost feasible solutions
  with weights near ``2^53`` in our tests).

**Exact enumeration** (``method="enumeration"``): the size is linear in any single rank, so
for each assignment of all groups but the widest one, the best rank of the widest group is
the largest that fits, ``min(K, ⌊(B − a)/b⌋)`` (prefix energies never decrease). The other
assignments are enumerated in vectorised int64 numpy. ``method="auto"`` uses it when at
most ``enumeration_limit`` assignments are needed, else CP-SAT.

**Exactness.** ``σ²`` values are float64, i.e. dyadic rationals, so every ``W_g(j)`` is held
exactly as a Python integer times ``2^e`` (common ``e``). CP-SAT: flooring loses less than 1
per group, so for any shape ``S·W(x) − G < A(x) <= S·W(x)``; if ``x*`` maximises ``A`` and ``x°``
is a true optimum, ``A(x°) > A(x*) − G``, so every true optimum lies in the window
``A(x) >= A(x*) − G + 1``. CP-SAT enumerates that window (usually one or two shapes) and the
winner is chosen by exact integer comparison. Enumeration: all assignments whose float
value is within a rigorous float-error bound of the best are compared exactly. Only if a
window holds more than ``max_candidates`` shapes does the solver return ``"feasible"`` with
a proven bound instead of ``"optimal"``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from solvers.tucker_common import RANK_KINDS, effective_budget, infeasible_result, ranks_result, useful_max_ranks
from sparsesel.problems.core_shape import SpectralRankProblem
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int, check_real

_WEIGHT_BITS = 40
METHODS = ("auto", "cp_sat", "enumeration")


class ExactEnergies:
    """Prefix energies ``W_g(j)`` of one problem as exact integers (times ``2^exponent``)."""

    def __init__(self, problem: SpectralRankProblem, max_ranks: list[int]):
        self.problem, self.max_ranks = problem, max_ranks
        values = [problem.energies[g][:k] for g, k in enumerate(max_ranks)]
        exps = [math.frexp(float(v))[1] - 53 for col in values for v in col if v > 0]
        self.exponent = min(exps) if exps else 0
        self.prefix: list[list[int]] = []
        for col in values:
            acc, out = 0, []
            for v in col:
                m, e = float(v).as_integer_ratio()  # v = m / e, e a power of two
                acc += (m * (2 ** -self.exponent)) // e if self.exponent <= 0 else m // (e * 2**self.exponent)
                out.append(acc)
            self.prefix.append(out)
        self.float_prefix = [np.cumsum(col) for col in values]

    def kept(self, ranks: tuple[int, ...]) -> int:
        """Exact kept energy in units of ``2^exponent``."""
        return sum(self.prefix[g][r - 1] for g, r in enumerate(ranks))

    def top(self) -> float:
        """Kept energy with every rank at its maximum (an upper bound on any shape's)."""
        return float(sum(float(col[-1]) for col in self.float_prefix))

    def best_of(self, shapes) -> tuple[int, ...]:
        return max(sorted(set(shapes)), key=self.kept)


# ----- CP-SAT ------------------------------------------------------------------------------
class _Model:
    """The CP-SAT model of one problem (see the module docstring)."""

    def __init__(self, problem: SpectralRankProblem, max_ranks: list[int], weights: list[list[int]]):
        m = cp_model.CpModel()
        self.model = m
        self.x = [[m.NewBoolVar(f"x_{g}_{j + 1}") for j in range(k)] for g, k in enumerate(max_ranks)]
        self.r = []
        for g, k in enumerate(max_ranks):
            m.AddExactlyOne(self.x[g])
            r = m.NewIntVar(1, k, f"r_{g}")
            m.Add(r == sum((j + 1) * v for j, v in enumerate(self.x[g])))
            self.r.append(r)
        budget = effective_budget(problem, max_ranks)  # clipped: stays within CP-SAT's int64
        size_terms = []
        for t, (coef, groups) in enumerate(problem.size_model.terms):
            if not groups:
                size_terms.append(coef)
                continue
            cap = max(1, budget // coef)
            prod_var, prod_ub = self.r[groups[0]], max_ranks[groups[0]]
            for step, g in enumerate(groups[1:]):
                prod_ub = min(prod_ub * max_ranks[g], cap)
                nxt = m.NewIntVar(1, prod_ub, f"p_{t}_{step}")
                m.AddMultiplicationEquality(nxt, [prod_var, self.r[g]])
                prod_var = nxt
            size_terms.append(coef * prod_var)
        m.Add(sum(size_terms) <= budget)
        self.kept = sum(w * v for g in range(len(max_ranks)) for w, v in zip(weights[g], self.x[g]))

    def ranks(self, solver: cp_model.CpSolver) -> tuple[int, ...]:
        return tuple(int(solver.Value(r)) for r in self.r)

    def hint(self, ranks: tuple[int, ...]) -> None:
        for g, rg in enumerate(ranks):
            for j, v in enumerate(self.x[g]):
                self.model.AddHint(v, int(j + 1 == rg))

    def forbid(self, ranks: tuple[int, ...]) -> None:
        """No-good cut: exclude exactly this shape."""
        self.model.Add(sum(self.x[g][rg - 1] for g, rg in enumerate(ranks)) <= len(ranks) - 1)


class _Collector(cp_model.CpSolverSolutionCallback):
    def __init__(self, model: _Model, cap: int):
        super().__init__()
        self._model, self._cap, self.found, self.truncated = model, cap, [], False

    def on_solution_callback(self) -> None:
        self.found.append(tuple(int(self.Value(r)) for r in self._model.r))
        if len(self.found) > self._cap:
            self.truncated = True
            self.StopSearch()


def _solver(time_limit: float, workers: int, seed: int) -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    return solver


def _hint_ranks(problem: SpectralRankProblem, max_ranks: list[int]) -> tuple[int, ...]:
    """A cheap feasible start: bang-for-buck greedy within ``max_ranks``."""
    ranks, size = [1] * problem.n_groups, problem.min_size
    while True:
        best, best_score, best_size = None, 0.0, 0
        for g in range(problem.n_groups):
            if ranks[g] >= max_ranks[g]:
                continue
            ranks[g] += 1
            new = problem.size_model.size(ranks)
            ranks[g] -= 1
            if new <= problem.budget:
                score = float(problem.energies[g][ranks[g]]) / max(new - size, 1)
                if score > best_score:
                    best, best_score, best_size = g, score, new
        if best is None:
            return tuple(ranks)
        ranks[best] += 1
        size = best_size


class SurrogateModel:
    """Scaled weights and the CP-SAT model builder for one problem."""

    def __init__(self, problem: SpectralRankProblem, exact: ExactEnergies | None = None):
        self.problem = problem
        self.exact = exact or ExactEnergies(problem, useful_max_ranks(problem))
        self.max_ranks = self.exact.max_ranks
        top = sum(col[-1] for col in self.exact.prefix)  # integer units of 2^exponent
        self.shift = _WEIGHT_BITS - top.bit_length() if top > 0 else 0  # weights = floor(W_int * 2^shift)
        self.weights = [[(w << self.shift) if self.shift >= 0 else (w >> -self.shift) for w in col] for col in self.exact.prefix]

    def build(self) -> _Model:
        return _Model(self.problem, self.max_ranks, self.weights)

    def weight(self, ranks: tuple[int, ...]) -> int:
        return sum(self.weights[g][r - 1] for g, r in enumerate(ranks))

    def kept_upper_bound(self, weight_bound: float | None) -> float:
        """Proven upper bound on the optimal kept energy from a bound on ``max A`` (or none)."""
        trivial = self.exact.top()
        if weight_bound is None or not math.isfinite(weight_bound):
            return trivial
        units = (math.floor(weight_bound) + self.problem.n_groups) * 2.0 ** (-self.shift)
        return min(trivial, math.ldexp(units, self.exact.exponent) * (1 + 1e-12))


def _solve_cp_sat(problem, exact, *, time_limit, workers, seed, max_candidates):
    sm = SurrogateModel(problem, exact)
    base = sum(problem._group_base)
    model = sm.build()
    hint = _hint_ranks(problem, sm.max_ranks)
    model.hint(hint)
    model.model.Maximize(model.kept)
    solver = _solver(time_limit, workers, seed)
    code = solver.Solve(model.model)
    info: dict[str, Any] = {"engine": "cp_sat", "weight_shift": sm.shift, "cp_sat_status": solver.StatusName(code), "cp_sat_seconds": solver.WallTime()}
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        if code == cp_model.INFEASIBLE:  # cannot happen when budget >= min_size
            raise RuntimeError(f"CP-SAT found the model infeasible although the all-ones shape fits: {info}")
        info["message"] = "no solution within the time limit; returning the bang-for-buck start"
        return hint, "time_limit", min(max(0.0, base - sm.kept_upper_bound(None)), problem.objective(hint)), info
    best = model.ranks(solver)
    if code == cp_model.FEASIBLE:
        lower = max(0.0, base - sm.kept_upper_bound(solver.BestObjectiveBound()))
        info["message"] = "time limit reached; bound is a proven lower bound on the optimal discarded energy"
        return best, "time_limit", min(lower, problem.objective(best)), info
    a_star = sm.weight(best)
    window = sm.build()
    window.model.Add(window.kept >= a_star - problem.n_groups + 1)
    enum = _solver(max(1.0, time_limit), 1, seed)
    enum.parameters.enumerate_all_solutions = True
    # CP-SAT 9.15's presolve in enumeration mode wrongly closed some windows as infeasible
    # (an int_prod reduction); the window model is tiny, so search it without presolve.
    enum.parameters.cp_model_presolve = False
    collector = _Collector(window, max_candidates)
    enum_code = enum.Solve(window.model, collector)
    candidates = set(collector.found) | {best}
    info.update(window_candidates=len(candidates), window_status=enum.StatusName(enum_code))
    info["cp_sat_seconds"] += enum.WallTime()
    winner = exact.best_of(candidates)
    if enum_code == cp_model.OPTIMAL and not collector.truncated:
        return winner, "optimal", problem.objective(winner), info
    lower = max(0.0, base - sm.kept_upper_bound(a_star))
    info["message"] = f"the rounding window could not be fully enumerated (> {max_candidates} shapes or time-out); bound proven"
    return winner, "feasible", min(lower, problem.objective(winner)), info


# ----- exact enumeration -------------------------------------------------------------------
def enumeration_count(max_ranks: list[int]) -> tuple[int, int]:
    """(widest group, number of assignments of the other groups)."""
    wide = int(np.argmax(max_ranks))
    return wide, math.prod(k for g, k in enumerate(max_ranks) if g != wide)


def _maximal_shapes(problem: SpectralRankProblem, exact: ExactEnergies, chunk: int = 1 << 17):
    """Yield ``(float kept energy, ranks)`` arrays of every assignment of the non-widest groups,
    the widest rank set to the largest that fits. All assignments form one vectorised chunk
    when there are at most ``chunk`` of them; otherwise one chunk per rank of the narrowest
    other group."""
    K = exact.max_ranks
    G = len(K)
    wide, count = enumeration_count(K)
    others = [g for g in range(G) if g != wide]
    prefix = [np.asarray(p, dtype=np.float64) for p in exact.float_prefix]
    B = effective_budget(problem, K)  # clipped: the int64 arithmetic below cannot overflow
    if count <= chunk:
        outer, inner = [], others
    else:
        narrow = min(others, key=lambda g: K[g])
        outer, inner = [narrow], [g for g in others if g != narrow]
    grid = (
        np.stack(np.meshgrid(*[np.arange(1, K[g] + 1) for g in inner], indexing="ij"), axis=-1).reshape(-1, len(inner))
        if inner
        else np.zeros((1, 0), dtype=np.int64)
    )
    inner_value = sum((prefix[g][grid[:, i] - 1] for i, g in enumerate(inner)), np.zeros(len(grid)))
    outer_values = [None] if not outer else range(1, K[outer[0]] + 1)
    for r_outer in outer_values:
        ranks = np.zeros((len(grid), G), dtype=np.int64)
        for i, g in enumerate(inner):
            ranks[:, g] = grid[:, i]
        value = inner_value
        if outer:
            ranks[:, outer[0]] = r_outer
            value = inner_value + prefix[outer[0]][r_outer - 1]
        a = np.zeros(len(ranks), dtype=np.int64)  # size of the terms without the wide group
        b = np.zeros(len(ranks), dtype=np.int64)  # size per unit of the wide rank
        for coef, groups in problem.size_model.terms:
            prod = np.full(len(ranks), coef, dtype=np.int64)
            for g in groups:
                if g != wide:
                    prod *= ranks[:, g]
            if wide in groups:
                b += prod
            else:
                a += prod
        r_wide = np.minimum(K[wide], (B - a) // np.maximum(b, 1))
        ok = r_wide >= 1
        if not ok.any():
            continue
        ranks[:, wide] = np.clip(r_wide, 1, None)
        yield (value + prefix[wide][ranks[:, wide] - 1])[ok], ranks[ok]


def _solve_enumeration(problem, exact, *, max_candidates):
    K = exact.max_ranks
    # float error of a sum of G prefix sums, each a cumsum of <= K non-negative terms
    tol = 4.0 * (max(K) + len(K)) * np.finfo(float).eps * exact.top() + 1e-300
    best_value, pool, assignments = -np.inf, [], 0
    for value, ranks in _maximal_shapes(problem, exact):
        assignments += len(value)
        top = float(value.max())
        if top < best_value - tol:
            continue
        best_value = max(best_value, top)
        keep = np.flatnonzero(value >= best_value - tol)
        pool.extend((float(value[i]), tuple(int(v) for v in ranks[i])) for i in keep)
        if len(pool) > 4 * max_candidates:
            pool = [p for p in pool if p[0] >= best_value - tol]
    candidates = [s for v, s in pool if v >= best_value - tol]
    info: dict[str, Any] = {"engine": "enumeration", "window_candidates": len(candidates), "assignments": assignments}
    if len(candidates) > max_candidates:
        winner = max(pool, key=lambda p: (p[0], p[1]))[1]
        info["message"] = f"more than {max_candidates} shapes tie within float accuracy; exact check skipped"
        lower = max(0.0, sum(problem._group_base) - (best_value + tol))
        return winner, "feasible", min(lower, problem.objective(winner)), info
    return exact.best_of(candidates), "optimal", None, info


def check_surrogate_options(time_limit: Any, workers: Any, seed: Any, max_candidates: Any, enumeration_limit: Any) -> float:
    """Validate the options of the exact surrogate solve; returns ``time_limit`` as a float.

    ``time_limit`` must be > 0 (``inf`` allowed), ``workers`` >= 0 (CP-SAT's 0: all cores),
    ``seed`` an integer, ``max_candidates`` >= 1 and ``enumeration_limit`` >= 0.
    """
    time_limit = check_real(time_limit, "time_limit", low=0.0, low_open=True, allow_inf=True)
    check_int(workers, "workers", low=0)
    check_int(seed, "seed")
    check_int(max_candidates, "max_candidates", low=1)
    check_int(enumeration_limit, "enumeration_limit", low=0)
    return time_limit


def solve_surrogate(
    problem: SpectralRankProblem,
    *,
    time_limit: float = 60.0,
    workers: int = 1,
    seed: int = 0,
    max_candidates: int = 10000,
    method: str = "auto",
    enumeration_limit: int = 2_000_000,
) -> tuple[tuple[int, ...], str, float | None, dict[str, Any]]:
    """Exact surrogate optimum: (ranks, status, lower bound on the objective, info)."""
    time_limit = check_surrogate_options(time_limit, workers, seed, max_candidates, enumeration_limit)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    exact = ExactEnergies(problem, useful_max_ranks(problem))
    _, count = enumeration_count(exact.max_ranks)
    if method == "enumeration" or (method == "auto" and count <= enumeration_limit):
        ranks, status, bound, info = _solve_enumeration(problem, exact, max_candidates=max_candidates)
    else:
        ranks, status, bound, info = _solve_cp_sat(problem, exact, time_limit=time_limit, workers=workers, seed=seed, max_candidates=max_candidates)
    if problem.size(ranks) > problem.budget:  # never expected: both engines use exact integer sizes
        raise RuntimeError(f"surrogate solver returned {ranks} of size {problem.size(ranks)} > budget {problem.budget}")
    if status == "optimal":
        bound = problem.objective(ranks)
        info["proof"] = "exact integer comparison of every shape in the rounding window"
    return ranks, status, bound, info


def top_surrogate_shapes(
    problem: SpectralRankProblem, count: int, *, time_limit: float = 10.0, workers: int = 1, seed: int = 0, enumeration_limit: int = 2_000_000
) -> list[tuple[int, ...]]:
    """The ``count`` best *maximal* shapes on the surrogate (no rank can grow within the budget
    in the widest group), best first (float order). By enumeration when small enough, else by
    repeated CP-SAT solves with no-good cuts (then any shapes, scaled-weight order)."""
    count = check_int(count, "count", low=1)
    time_limit = check_surrogate_options(time_limit, workers, seed, 1, enumeration_limit)
    exact = ExactEnergies(problem, useful_max_ranks(problem))
    _, n_assign = enumeration_count(exact.max_ranks)
    if n_assign <= enumeration_limit:
        best: list[tuple[float, tuple[int, ...]]] = []
        for value, ranks in _maximal_shapes(problem, exact):
            idx = np.argsort(-value, kind="stable")[:count]
            best.extend((float(value[i]), tuple(int(v) for v in ranks[i])) for i in idx)
            best = sorted(best, key=lambda p: (-p[0], p[1]))[:count]
        return [s for _, s in best]
    sm = SurrogateModel(problem, exact)
    model = sm.build()
    model.model.Maximize(model.kept)
    shapes: list[tuple[int, ...]] = []
    for _ in range(count):
        solver = _solver(time_limit, workers, seed)
        code = solver.Solve(model.model)
        if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            break
        shape = model.ranks(solver)
        shapes.append(shape)
        model.forbid(shape)
    return shapes


@register_solver("ilp", kinds=RANK_KINDS, description="exact surrogate optimum: CP-SAT (exact core products) or exact enumeration, exact integer tie check")
def ilp(
    problem: SpectralRankProblem,
    *,
    method: str = "auto",
    time_limit: float = 60.0,
    workers: int = 1,
    seed: int = 0,
    max_candidates: int = 10000,
    enumeration_limit: int = 2_000_000,
) -> Result:
    """Exact minimiser of the discarded energy within the budget (see the module docstring).

    Parameters
    ----------
    method : {"auto", "cp_sat", "enumeration"}
        Engine; ``auto`` enumerates when at most ``enumeration_limit`` assignments of the
        non-widest groups exist, else CP-SAT.
    time_limit : float
        Seconds for CP-SAT. On time-out: ``status="time_limit"``, the best shape found, and
        ``lower_bound`` a proven lower bound on the optimal discarded energy (``info["gap"]``).
    workers : int
        CP-SAT worker threads (1: deterministic).
    seed : int
    max_candidates : int
        Cap on the shapes compared exactly in the rounding window.
    enumeration_limit : int

    Returns
    -------
    Result
        ``selected``: one rank per mode/edge; ``objective``: discarded energy;
        ``lower_bound``: lower bound on the optimal objective, ``upper_bound`` the answer's
        objective (equal when optimal).
    """
    check_surrogate_options(time_limit, workers, seed, max_candidates, enumeration_limit)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if problem.budget < problem.min_size:
        return infeasible_result(problem)
    ranks, status, bound, info = solve_surrogate(
        problem, time_limit=time_limit, workers=workers, seed=seed, max_candidates=max_candidates, method=method, enumeration_limit=enumeration_limit
    )
    result = ranks_result(problem, ranks, status=status, lower_bound=bound, upper_bound=problem.objective(ranks), **info)
    if bound is not None:
        result.info["gap"] = result.objective - bound
    return result
