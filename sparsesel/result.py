"""The one result type returned by every solver of every problem kind."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: The statuses a solver may report, from best to worst.
STATUSES: tuple[str, ...] = (
    "optimal",  # proven optimal for the problem's objective
    "feasible",  # satisfies every constraint, no optimality proof
    "approximate",  # carries a stated approximation guarantee (see ``bound``)
    "time_limit",  # stopped by the time limit; best answer found so far
    "infeasible",  # no answer satisfies the constraints (``selected`` is empty)
    "error",  # the solver failed; ``info["message"]`` says why
)


@dataclass(frozen=True)
class Result:
    """What a solver returns, whatever the problem kind.

    Parameters
    ----------
    selected : tuple
        The decision: chosen feature indices in the order they were chosen, one
        rank per mode, kept blocks per parameter, ... (the problem kind documents it).
    objective : float
        The problem's objective evaluated at ``selected`` (``nan`` when infeasible).
    bound : float or None
        A proven bound where the solver has one: a lower bound on the optimal
        objective for minimisation problems, or a stated approximation factor
        (documented by the solver). ``None`` when the solver proves nothing.
    status : str
        One of :data:`STATUSES`.
    wall_time : float
        Seconds spent in the solver, measured by :func:`sparsesel.solve`.
    trace : tuple of dict
        Per-step records (e.g. the objective after each greedy pick).
    solver : str
        Registered name of the solver that produced this result.
    info : dict
        Solver- and problem-specific extras (coefficients, masks, gaps, messages).
    """

    selected: tuple
    objective: float
    bound: float | None = None
    status: str = "feasible"
    wall_time: float = 0.0
    trace: tuple = ()
    solver: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Result.status must be one of {STATUSES}, got {self.status!r}")
        object.__setattr__(self, "selected", tuple(self.selected))
        object.__setattr__(self, "trace", tuple(self.trace))
        object.__setattr__(self, "objective", float(self.objective))
        if self.bound is not None:
            object.__setattr__(self, "bound", float(self.bound))

    def replace(self, **changes: Any) -> Result:
        """Return a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (numpy scalars and arrays become Python values)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def __repr__(self) -> str:
        shown = self.selected if len(self.selected) <= 12 else (*self.selected[:12], "...")
        bound = "None" if self.bound is None else f"{self.bound:.6g}"
        return (
            f"Result(solver={self.solver!r}, status={self.status!r}, selected={shown}, "
            f"objective={self.objective:.6g}, bound={bound}, wall_time={self.wall_time:.3g}s)"
        )


def _jsonable(value: Any) -> Any:
    """Convert numpy and container values to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # torch tensors
        return _jsonable(value.tolist())
    return repr(value)
