"""``greedy``: the convex-hull greedy for the multiple-choice knapsack of a LayerAllocation.

The classical greedy of the LP relaxation (Sinha & Zoltners 1979): in every layer keep the
options on the lower convex hull of (cost, error) -- the ones the LP relaxation can use --
start every layer at its cheapest option and take the hull steps in order of decreasing
error decrease per unit of cost while they fit. The first step that does not fit is the one
the LP optimum takes fractionally, so the LP optimum (a proven lower bound on the integer
optimum) is known at that point:

    lp = (error so far) − (capacity left / step cost) × (step's error decrease),

and the greedy answer exceeds it by at most that one step's error decrease. The greedy then
goes on with the later steps of the other layers that still fit (never worse). One cost unit.
"""

from __future__ import annotations

import numpy as np

from solvers.allocation_common import undominated
from sparsesel.problems.layer_allocation import LayerAllocation
from sparsesel.registry import register_solver
from sparsesel.result import Result


def hull_steps(costs: np.ndarray, errors: np.ndarray) -> list[int]:
    """Option indices on the lower convex hull of ``(cost, error)``, cheapest first.

    Starts at the cheapest option (ties: the lowest error) and keeps the options where the
    error decrease per unit cost falls strictly (collinear middle points are dropped).
    """
    front = undominated(costs, errors)
    hull: list[int] = []
    for j in front:
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is above (or on) the segment a -> j: drop it
            if (errors[b] - errors[a]) * (costs[j] - costs[a]) >= (errors[j] - errors[a]) * (costs[b] - costs[a]):
                hull.pop()
            else:
                break
        hull.append(int(j))
    return hull


@register_solver("greedy", kinds=(LayerAllocation,), description="convex-hull greedy of the LP relaxation: best error decrease per unit cost first (one cost unit)")
def greedy(problem: LayerAllocation) -> Result:
    """The convex-hull greedy (see the module docstring).

    Returns
    -------
    Result
        ``status="optimal"`` when every hull step fits (every layer at its least error),
        else ``"feasible"``; ``lower_bound`` the LP relaxation's optimum, ``upper_bound`` the
        answer's error; ``info``: ``lp_bound``, ``fractional_layer`` (the layer the LP splits,
        or ``None``), ``steps`` taken, ``cost``, ``capacity``.
    """
    costs = [c[:, 0] for c in problem.costs]
    hulls = [hull_steps(c, e) for c, e in zip(costs, problem.errors)]
    chosen = [h[0] for h in hulls]
    left = float(problem.capacity[0]) - sum(float(c[h[0]]) for c, h in zip(costs, hulls))
    steps = []
    for layer, hull in enumerate(hulls):
        c, e = costs[layer], problem.errors[layer]
        for position in range(1, len(hull)):
            a, b = hull[position - 1], hull[position]
            steps.append(((e[a] - e[b]) / (c[b] - c[a]), layer, position, float(c[b] - c[a]), float(e[a] - e[b])))
    steps.sort(key=lambda s: (-s[0], s[1], s[2]))
    error = problem.objective(chosen)
    lp, fractional, blocked, taken = None, None, set(), 0
    for _, layer, position, step_cost, step_drop in steps:
        if layer in blocked:
            continue
        if step_cost <= left:
            chosen[layer] = hulls[layer][position]
            left -= step_cost
            taken += 1
            if lp is None:
                error -= step_drop
            continue
        if lp is None:
            lp, fractional = error - left / step_cost * step_drop, layer
        blocked.add(layer)
    selected = tuple(chosen)
    objective = problem.objective(selected)
    if lp is None:
        return problem.result(selected, status="optimal", objective=objective, lower_bound=objective,
                              upper_bound=objective, lp_bound=objective, fractional_layer=None, steps=taken)
    lower = max(0.0, min(lp, objective))
    return problem.result(selected, status="feasible", objective=objective, lower_bound=lower, upper_bound=objective,
                          lp_bound=lp, fractional_layer=fractional, steps=taken)
