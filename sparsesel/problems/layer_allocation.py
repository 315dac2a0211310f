"""Layer allocation: one option per layer (dense, a rank, kept blocks, ...) within a global budget.

Every layer ``l`` of a network offers a menu of options ``j``; option ``j`` costs
``c[l][j, u]`` in each cost unit ``u`` (parameters, MACs, ...) and does damage ``e[l][j]``
(a predicted error). Choosing one option per layer to minimise the summed error with the
summed cost of every unit within its capacity is the *multiple-choice knapsack problem*:

    minimise    Σ_l e[l][j_l]
    subject to  Σ_l c[l][j_l, u] <= capacity[u]   for every unit u.

It is what :func:`sparsesel.compress.plan` solves to split a network's budget across layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesel.problems.base import Problem

#: Costs are held as float64; integer-valued costs up to this size are exact (2**53).
MAX_EXACT_COST = 2**53


@dataclass(frozen=True, eq=False)
class LayerAllocation(Problem):
    """Choose one option per layer minimising the summed error within a capacity per cost unit.

    Parameters
    ----------
    costs : sequence of array_like, one per layer
        ``costs[l]`` of shape ``(n_options_l,)`` (one cost unit) or ``(n_options_l, n_units)``
        (several units, e.g. parameters and MACs): finite, ``>= 0``. Every layer has the same
        number of units. Integer-valued costs (e.g. parameter counts) are needed by the
        exact solvers ``dp`` and ``cp_sat``; ``greedy``, ``uniform``, ``energy`` and
        ``brute_force`` take any costs (e.g. measured latencies).
    errors : sequence of array_like, one per layer
        ``errors[l]`` of shape ``(n_options_l,)``: the damage of each option, finite, ``>= 0``.
    capacity : float or sequence of float
        The budget of each unit (a number for one unit), finite, ``>= 0``. A capacity below
        the smallest achievable cost of its unit (every layer at its cheapest option) is
        refused with that cost in the message.
    levels : mapping of str to sequence of array_like, optional
        Per-option metadata read by the *rule* solvers: ``levels[name][l]`` of shape
        ``(n_options_l,)`` places each option of layer ``l`` on a scale of how much of the
        layer it keeps, NaN for an option not on that scale. The rules ``uniform`` and
        ``energy`` pick, in every layer, the option of the smallest level ``>= t`` (ties: the
        cheapest) for the largest threshold ``t`` whose choice fits; ``uniform`` reads
        ``levels["rank_fraction"]`` (the smallest ``r / r_max`` over the option's ranks),
        ``energy`` reads ``levels["kept_energy"]`` (the smallest kept fraction of spectral
        energy over the option's unfoldings). :func:`sparsesel.compress.plan` fills both.
    names : sequence of str, optional
        Layer names, used in messages (default ``"layer 0"``, ``"layer 1"``, ...).
    units : sequence of str, optional
        Names of the cost units, used in messages (default ``"cost"``, or ``"cost[u]"``).

    Attributes
    ----------
    n_layers, n_units : int
    n_options : tuple of int
    min_cost : ndarray, shape (n_units,)
        The smallest achievable cost of each unit (every layer at its cheapest option for it).

    Notes
    -----
    ``Result.selected`` is the option index of every layer, ``(j_0, ..., j_{L-1})``;
    ``objective(selected)`` is the summed error (minimised).

    Raises
    ------
    TypeError
        Non-numeric costs, errors, capacity or levels; non-str names or units.
    ValueError
        No layer; an empty menu; mismatched shapes (options, units, layers); NaN, infinite or
        negative costs, errors or capacity; a capacity below the smallest achievable cost.
    """

    costs: Sequence[Any]
    errors: Sequence[Any]
    capacity: Any
    levels: Mapping[str, Sequence[Any]] | None = None
    names: Sequence[str] | None = None
    units: Sequence[str] | None = None

    def __post_init__(self) -> None:
        costs_in, errors_in = _layer_list(self.costs, "costs"), _layer_list(self.errors, "errors")
        if len(errors_in) != len(costs_in):
            raise ValueError(f"errors has {len(errors_in)} layers but costs has {len(costs_in)}; give one array per layer")
        names = _names(self.names, len(costs_in))
        costs = tuple(_cost_table(c, f"costs[{l}] ({names[l]})") for l, c in enumerate(costs_in))
        n_units = costs[0].shape[1]
        for l, c in enumerate(costs):
            if c.shape[1] != n_units:
                raise ValueError(f"costs[{l}] ({names[l]}) has {c.shape[1]} cost unit(s) but costs[0] has {n_units}; "
                                 "every layer needs the same units")
        errors = tuple(_option_values(e, f"errors[{l}] ({names[l]})", costs[l].shape[0], allow_nan=False)
                       for l, e in enumerate(errors_in))
        for l, e in enumerate(errors):
            if np.any(e < 0):
                raise ValueError(f"errors[{l}] ({names[l]}) has a negative error ({e.min():.6g}) at option "
                                 f"{int(np.argmin(e))}; errors are damages, >= 0")
        units = _units(self.units, n_units)
        capacity = _capacity(self.capacity, n_units, units)
        levels = _levels(self.levels, costs, names)
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "errors", errors)
        object.__setattr__(self, "capacity", capacity)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "units", units)
        minimum = np.array([math.fsum(float(c[:, u].min()) for c in costs) for u in range(n_units)])
        minimum.setflags(write=False)
        object.__setattr__(self, "min_cost", minimum)
        for u in range(n_units):
            if minimum[u] > capacity[u]:
                raise ValueError(
                    f"capacity {capacity[u]:.17g} {units[u]} is below the smallest achievable cost "
                    f"{minimum[u]:.17g} {units[u]} (every layer at its cheapest option); raise the capacity"
                )

    # ----- sizes --------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.costs)

    @property
    def n_units(self) -> int:
        return self.costs[0].shape[1]

    @property
    def n_options(self) -> tuple[int, ...]:
        return tuple(c.shape[0] for c in self.costs)

    @property
    def integer_costs(self) -> bool:
        """Whether every cost is an integer below ``2**53`` (exact in float64)."""
        return all(bool(np.all(c == np.round(c)) and np.all(c < MAX_EXACT_COST)) for c in self.costs)

    def integer_cost_tables(self) -> tuple[np.ndarray, ...]:
        """The costs as int64 arrays ``(n_options_l, n_units)``; ``ValueError`` when some cost is not an integer."""
        if not self.integer_costs:
            raise ValueError("costs must be integers (below 2**53) for this solver; scale them "
                             "(e.g. latencies to microseconds) and round")
        return tuple(c.astype(np.int64) for c in self.costs)

    # ----- evaluation ---------------------------------------------------------------------
    def check_selection(self, selected: Sequence[int]) -> tuple[int, ...]:
        """Validate one option index per layer and return them as a tuple of int."""
        if isinstance(selected, (str, bytes)) or not isinstance(selected, (Sequence, np.ndarray)):
            raise TypeError(f"selected must be a sequence of option indices, one per layer, got {type(selected).__name__}")
        chosen = []
        for l, j in enumerate(selected):
            if isinstance(j, (bool, np.bool_)) or not isinstance(j, (int, np.integer)):
                raise TypeError(f"selected[{l}] must be an option index (int), got {j!r}")
            chosen.append(int(j))
        if len(chosen) != self.n_layers:
            raise ValueError(f"selected must hold one option per layer ({self.n_layers}), got {len(chosen)}")
        for l, j in enumerate(chosen):
            if not 0 <= j < self.n_options[l]:
                raise ValueError(f"selected[{l}] = {j} is not an option of layer {self.names[l]!r} "
                                 f"(0..{self.n_options[l] - 1})")
        return tuple(chosen)

    def objective(self, selected: Sequence[int]) -> float:
        """The summed error ``Σ_l errors[l][selected[l]]`` (minimised), added in layer order."""
        chosen = self.check_selection(selected)
        return float(sum(float(self.errors[l][j]) for l, j in enumerate(chosen)))

    def cost(self, selected: Sequence[int]) -> np.ndarray:
        """The summed cost of each unit, shape ``(n_units,)``."""
        chosen = self.check_selection(selected)
        return np.array([math.fsum(float(self.costs[l][j, u]) for l, j in enumerate(chosen)) for u in range(self.n_units)])

    def is_feasible(self, selected: Sequence[int]) -> bool:
        """Whether the summed cost of every unit is within its capacity."""
        return bool(np.all(self.cost(selected) <= self.capacity))

    def describe(self, selected: Sequence[int]) -> dict[str, Any]:
        """``info`` entries every solver reports: the cost per unit and the capacity."""
        cost = self.cost(selected)
        return {"cost": {u: _plain(c) for u, c in zip(self.units, cost)},
                "capacity": {u: _plain(c) for u, c in zip(self.units, self.capacity)}}

    def result(self, selected: Sequence[int], **kwargs: Any) -> Any:
        """:meth:`Problem.result` with :meth:`describe`'s ``cost`` and ``capacity`` in ``info``."""
        if kwargs.get("status", "feasible") not in ("infeasible", "error") and len(selected):
            kwargs = {**self.describe(selected), **kwargs}
        return super().result(selected, **kwargs)


# ---------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------


def _layer_list(value: Any, name: str) -> list[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise TypeError(f"{name} must be a sequence with one array per layer, got {type(value).__name__}")
    layers = list(value)
    if not layers:
        raise ValueError(f"{name} is empty: give one array per layer (at least one layer)")
    return layers


def _numeric(value: Any, name: str) -> np.ndarray:
    if np.iscomplexobj(value):
        raise TypeError(f"{name} must be real numbers, got complex values")
    array = np.asarray(value)
    if array.dtype == bool or array.dtype == object and any(isinstance(v, (bool, np.bool_)) for v in array.ravel()):
        raise TypeError(f"{name} must be numbers, got booleans")
    try:
        return np.array(array, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric; could not convert it to floats ({exc})") from None


def _cost_table(value: Any, name: str) -> np.ndarray:
    """``(n_options, n_units)`` float64 costs, finite and >= 0, at least one option."""
    array = _numeric(value, name)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(f"{name} must be 1-D (options) or 2-D (options x units), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} is an empty menu: every layer needs at least one option")
    if array.shape[1] == 0:
        raise ValueError(f"{name} has no cost unit (shape {array.shape})")
    bad = ~np.isfinite(array)
    if bad.any():
        j = int(np.argwhere(bad)[0][0])
        raise ValueError(f"{name} has a NaN or infinite cost at option {j}")
    if np.any(array < 0):
        j = int(np.argwhere(array < 0)[0][0])
        raise ValueError(f"{name} has a negative cost ({array.min():.6g}) at option {j}; costs are >= 0")
    array.setflags(write=False)
    return array


def _option_values(value: Any, name: str, n_options: int, *, allow_nan: bool) -> np.ndarray:
    """One value per option, 1-D float64; NaN allowed only with ``allow_nan`` (infinities never)."""
    array = _numeric(value, name)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per option), got shape {array.shape}")
    if array.shape[0] != n_options:
        raise ValueError(f"{name} has {array.shape[0]} values but the layer has {n_options} options (costs)")
    bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        what = "an infinite" if allow_nan else "a NaN or infinite"
        raise ValueError(f"{name} has {what} value at option {j}")
    array.setflags(write=False)
    return array


def _names(value: Any, n_layers: int) -> tuple[str, ...]:
    if value is None:
        return tuple(f"layer {l}" for l in range(n_layers))
    names = tuple(value) if not isinstance(value, str) else (value,)
    if len(names) != n_layers or not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be {n_layers} strings (one per layer), got {value!r}")
    return names


def _units(value: Any, n_units: int) -> tuple[str, ...]:
    if value is None:
        return ("cost",) if n_units == 1 else tuple(f"cost[{u}]" for u in range(n_units))
    units = (value,) if isinstance(value, str) else tuple(value)
    if len(units) != n_units or not all(isinstance(u, str) for u in units):
        raise TypeError(f"units must be {n_units} string(s) (one per cost unit), got {value!r}")
    return units


def _capacity(value: Any, n_units: int, units: tuple[str, ...]) -> np.ndarray:
    array = _numeric(value, "capacity")
    if array.ndim == 0:
        array = array.reshape(1)
    if array.shape != (n_units,):
        raise ValueError(f"capacity must hold one number per cost unit ({n_units}: {', '.join(units)}), "
                         f"got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"capacity must be finite and >= 0, got {array.tolist()}")
    array.setflags(write=False)
    return array


def _levels(value: Any, costs: tuple[np.ndarray, ...], names: tuple[str, ...]) -> dict[str, tuple[np.ndarray, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"levels must be a mapping of level name to one array per layer, got {type(value).__name__}")
    levels = {}
    for key, per_layer in value.items():
        if not isinstance(key, str):
            raise TypeError(f"levels keys must be str, got {key!r}")
        arrays = _layer_list(per_layer, f"levels[{key!r}]")
        if len(arrays) != len(costs):
            raise ValueError(f"levels[{key!r}] has {len(arrays)} layers but costs has {len(costs)}")
        levels[key] = tuple(_option_values(a, f"levels[{key!r}][{l}] ({names[l]})", costs[l].shape[0], allow_nan=True)
                            for l, a in enumerate(arrays))
    return levels


def _plain(value: float) -> int | float:
    """An integer-valued float as int (JSON shows parameter counts as integers)."""
    return int(value) if float(value).is_integer() and abs(value) < MAX_EXACT_COST else float(value)
