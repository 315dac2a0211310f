"""``cp_sat``: the exact multiple-choice knapsack of a LayerAllocation on OR-tools CP-SAT.

One Boolean per undominated option, exactly one per layer, one linear constraint per cost
unit (integer costs, exact). The errors are scaled to integers ``w = round(S · e)`` with ``S``
the power of two that puts the largest possible total near ``2^40``; CP-SAT minimises
``Σ w``. **Rounding**: each option's scaled error is off by at most 1/2, so the answer is
optimal for the rounded errors and within ``L / S`` (``L`` layers) of the true optimum; the
result's ``lower_bound`` is CP-SAT's proven bound less that allowance, ``(bound − L/2) / S``,
and ``upper_bound`` the answer's true summed error. Stopped by ``time_limit``: status
``"time_limit"``, the best answer found, and ``info["gap"] = upper_bound − lower_bound``.
Use it for large capacities (MACs) or several cost units; ``dp`` is exact without rounding
for one unit and moderate capacities.
"""

from __future__ import annotations

import math

import numpy as np
from ortools.sat.python import cp_model

from solvers.allocation_common import undominated
from sparsesel.problems.layer_allocation import LayerAllocation
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int, check_real

#: The scaled errors' largest possible total is about ``2**WEIGHT_BITS``.
WEIGHT_BITS = 40


@register_solver("cp_sat", kinds=(LayerAllocation,), description="exact on OR-tools CP-SAT (integer costs, any number of units; errors scaled to 2^-40 of the total)")
def cp_sat(problem: LayerAllocation, *, time_limit: float = 60.0, workers: int = 1, seed: int = 0) -> Result:
    """The optimum on CP-SAT (see the module docstring for the rounding of the errors).

    Parameters
    ----------
    time_limit : float
        Seconds; on time-out the best answer found (``status="time_limit"``).
    workers : int
        CP-SAT worker threads (1: deterministic).
    seed : int
        CP-SAT's random seed.

    Returns
    -------
    Result
        ``status`` ``"optimal"`` (for the rounded errors), ``"time_limit"`` or ``"infeasible"``
        (several units that no choice meets together); ``lower_bound``/``upper_bound`` as in
        the module docstring; ``info``: ``cost``, ``capacity``, ``scale`` (``"2^k"``),
        ``gap``, ``options``, ``cp_sat_status``.
    """
    time_limit = check_real(time_limit, "time_limit", low=0.0, low_open=True)
    workers = check_int(workers, "workers", low=1)
    seed = check_int(seed, "seed", low=0)
    costs = problem.integer_cost_tables()
    capacity = [int(math.floor(c)) for c in problem.capacity]
    fronts = [undominated(c, e) for c, e in zip(costs, problem.errors)]
    worst = float(sum(float(e[f].max()) for e, f in zip(problem.errors, fronts)))
    scale_exp = WEIGHT_BITS - (math.frexp(worst)[1] if worst > 0 else 0)
    scale = 2.0**scale_exp
    model = cp_model.CpModel()
    variables = []
    spent = [[] for _ in capacity]
    weighted = []
    for l, front in enumerate(fronts):
        xs = [model.NewBoolVar(f"x{l}_{j}") for j in front]
        model.AddExactlyOne(xs)
        variables.append(xs)
        for u in range(len(capacity)):
            spent[u] += [int(costs[l][j, u]) * x for j, x in zip(front, xs)]
        weighted += [int(round(float(problem.errors[l][j]) * scale)) * x for j, x in zip(front, xs)]
        cheapest = int(np.argmin(costs[l][front, 0]))
        for k, x in enumerate(xs):
            model.AddHint(x, k == cheapest)
    for u, cap in enumerate(capacity):
        model.Add(sum(spent[u]) <= cap)
    model.Minimize(sum(weighted))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = float(time_limit)
    solver.parameters.num_workers = int(workers)
    solver.parameters.random_seed = int(seed)
    code = solver.Solve(model)
    info = {"scale": f"2^{scale_exp}", "options": int(sum(len(f) for f in fronts)), "cp_sat_status": solver.StatusName(code)}
    if code == cp_model.INFEASIBLE:
        return problem.result((), status="infeasible", message="no choice of options meets every unit's capacity together", **info)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return problem.result((), status="time_limit", objective=math.nan,
                              message=f"CP-SAT found no allocation within time_limit={time_limit} s", **info)
    selected = tuple(int(front[next(k for k, x in enumerate(xs) if solver.Value(x))]) for front, xs in zip(fronts, variables))
    objective = problem.objective(selected)
    lower = min(objective, max(0.0, (float(solver.BestObjectiveBound()) - 0.5 * problem.n_layers) / scale))
    info["gap"] = objective - lower
    return problem.result(selected, status="optimal" if code == cp_model.OPTIMAL else "time_limit",
                          objective=objective, lower_bound=lower, upper_bound=objective, **info)
