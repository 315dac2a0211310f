"""``brute_force``: every choice of a LayerAllocation enumerated (the test oracle; small instances)."""

from __future__ import annotations

import math

import numpy as np

from sparsesel.problems.layer_allocation import LayerAllocation
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int


@register_solver("brute_force", kinds=(LayerAllocation,), description="every choice enumerated (the test oracle; small instances only)")
def brute_force(problem: LayerAllocation, *, max_choices: int = 2_000_000, chunk: int = 65536) -> Result:
    """The optimum over every one-option-per-layer choice, no option pruned.

    Parameters
    ----------
    max_choices : int
        Refuse (``ValueError``) when ``Π_l n_options_l`` exceeds this.
    chunk : int
        Choices evaluated per numpy batch.

    Returns
    -------
    Result
        ``status="optimal"`` (``lower_bound = upper_bound = objective``; ties go to the first
        choice in ``itertools.product`` order), or ``"infeasible"`` when no choice meets every
        capacity (possible with several units). ``info["choices"]`` counts the choices.
    """
    max_choices = check_int(max_choices, "max_choices", low=1)
    chunk = check_int(chunk, "chunk", low=1)
    total = math.prod(problem.n_options)
    if total > max_choices:
        raise ValueError(f"brute_force would enumerate {total:,} choices (the product of the menu sizes "
                         f"{list(problem.n_options)}) > max_choices={max_choices:,}; use dp or cp_sat")
    best_value, best_choice = math.inf, None
    for start in range(0, total, chunk):
        index = np.unravel_index(np.arange(start, min(total, start + chunk)), problem.n_options)
        error = np.zeros(len(index[0]))
        cost = np.zeros((len(index[0]), problem.n_units))
        for layer, picks in enumerate(index):
            error = error + problem.errors[layer][picks]
            cost = cost + problem.costs[layer][picks]
        error[~np.all(cost <= problem.capacity, axis=1)] = np.inf
        i = int(np.argmin(error))
        if error[i] < best_value:
            best_value, best_choice = float(error[i]), tuple(int(p[i]) for p in index)
    if best_choice is None:
        return problem.result((), status="infeasible", choices=total,
                              message="no choice of options meets every unit's capacity together")
    objective = problem.objective(best_choice)
    return problem.result(best_choice, status="optimal", objective=objective, lower_bound=objective,
                          upper_bound=objective, choices=total)
