"""``uniform`` and ``energy``: the usual per-layer rules, as LayerAllocation solvers.

Both are one *threshold rule* on a per-option level of the problem
(:attr:`~sparsesel.problems.layer_allocation.LayerAllocation.levels`): at threshold ``t`` every
layer takes the option of the smallest level ``>= t`` (ties: the cheapest, unit by unit, then
the lowest index; options whose level is NaN are never taken), and the rule keeps the largest
``t`` whose choice fits every capacity. The thresholds that change a choice are the levels
themselves, so every one of them is tried (exact, no bisection; the total cost need not grow
with ``t``).

* ``uniform`` reads ``levels["rank_fraction"]``: the same fraction of every maximal rank;
* ``energy`` reads ``levels["kept_energy"]``: the same kept fraction of every unfolding's
  spectral energy.
"""

from __future__ import annotations

import numpy as np

from sparsesel.problems.layer_allocation import LayerAllocation
from sparsesel.registry import register_solver
from sparsesel.result import Result

#: The level each rule reads.
RULE_LEVELS = {"uniform": "rank_fraction", "energy": "kept_energy"}


def threshold_rule(problem: LayerAllocation, level: str, rule: str) -> Result:
    """The largest-threshold choice of the rule on ``problem.levels[level]`` (see the module docstring)."""
    orders, sorted_levels = [], []
    for layer, values in enumerate(problem.levels[level]):
        eligible = np.flatnonzero(~np.isnan(values))
        costs = problem.costs[layer][eligible]
        keys = [eligible] + [costs[:, u] for u in range(problem.n_units - 1, -1, -1)] + [values[eligible]]
        order = eligible[np.lexsort(keys)]
        orders.append(order)
        sorted_levels.append(values[order])
    thresholds = np.unique(np.concatenate(sorted_levels))
    total = np.zeros((len(thresholds), problem.n_units))
    possible = np.ones(len(thresholds), dtype=bool)
    picks = []
    for layer, (order, levels) in enumerate(zip(orders, sorted_levels)):
        position = np.searchsorted(levels, thresholds, side="left")
        possible &= position < len(order)
        option = order[np.minimum(position, len(order) - 1)]
        picks.append(option)
        total += problem.costs[layer][option]
    fits = possible & np.all(total <= problem.capacity, axis=1)
    if not fits.any():
        lowest = [int(order[0]) for order in orders]
        cost = problem.cost(lowest)
        return problem.result((), status="infeasible", threshold=float(thresholds[0]), level=level, message=(
            f"the {rule} rule's smallest setting ({level} {thresholds[0]:.6g}) costs "
            + ", ".join(f"{c:.17g} {u}" for c, u in zip(cost, problem.units))
            + " > capacity " + ", ".join(f"{c:.17g}" for c in problem.capacity)))
    best = int(np.flatnonzero(fits)[-1])
    selected = tuple(int(p[best]) for p in picks)
    return problem.result(selected, status="feasible", threshold=float(thresholds[best]), level=level)


@register_solver("uniform", kinds=(LayerAllocation,), description="the same fraction of every maximal rank (levels['rank_fraction']), largest that fits")
def uniform(problem: LayerAllocation) -> Result:
    """The threshold rule on ``levels["rank_fraction"]``; ``info["threshold"]`` is the fraction."""
    return threshold_rule(problem, RULE_LEVELS["uniform"], "uniform")


@register_solver("energy", kinds=(LayerAllocation,), description="the same kept fraction of spectral energy in every layer (levels['kept_energy']), largest that fits")
def energy(problem: LayerAllocation) -> Result:
    """The threshold rule on ``levels["kept_energy"]``; ``info["threshold"]`` is the kept fraction."""
    return threshold_rule(problem, RULE_LEVELS["energy"], "energy")
