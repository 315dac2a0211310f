"""Helpers shared by the LayerAllocation solvers (dominated options, messages). Registers nothing."""

from __future__ import annotations

import math

import numpy as np

from sparsesel.problems.layer_allocation import LayerAllocation


def undominated(costs: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Indices of the options of one layer that no other option dominates, cheapest first.

    Parameters
    ----------
    costs : ndarray, shape (n_options,) or (n_options, n_units)
    errors : ndarray, shape (n_options,)

    Returns
    -------
    ndarray of int64
        With one unit: the options sorted by cost (ties: lower error, then lower index), kept
        when their error is strictly below every cheaper-or-equal option's; an option of equal
        cost and error to a kept one is dropped (it never changes the optimum). With several
        units: every option that no other option matches or beats in every unit and in error
        (with one strict inequality, or equal everywhere and a lower index).
    """
    costs = np.asarray(costs)
    if costs.ndim == 1 or costs.shape[1] == 1:
        flat = costs.reshape(-1)
        order = np.lexsort((errors, flat))
        kept, best = [], math.inf
        for j in order:
            if errors[j] < best:
                kept.append(int(j))
                best = errors[j]
        return np.asarray(kept, dtype=np.int64)
    rows = np.column_stack([costs, errors])
    kept = []
    for j in range(len(rows)):
        no_worse = np.all(rows <= rows[j], axis=1)
        better = np.any(rows < rows[j], axis=1)
        dominated = (no_worse & better) | (no_worse & ~better & (np.arange(len(rows)) < j))
        if not dominated.any():
            kept.append(j)
    order = np.lexsort((errors[kept], costs[kept, 0])) if kept else []
    return np.asarray(kept, dtype=np.int64)[order]

