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
    "approximate",  # carries a stated approximation guarantee (see ``guarantee``)
    "time_limit",  # stopped by the time limit; best answer found so far
    "infeasible",  # no answer satisfies the constraints (``selected`` is empty)
    "error",  # the solver failed; ``info["message"]`` says why
)


#: The relations a :class:`Guarantee` may state between the answer and the optimum.
RELATIONS: tuple[str, ...] = (">=", "<=")


@dataclass(frozen=True)
class Guarantee:
    """A stated approximation factor and the quantity it multiplies.

    The guarantee reads ``of(selected) <relation> factor × (optimum of ``of``)``, e.g.
    ``Guarantee(0.5, "kept_energy")`` for the PTAS of :class:`~sparsesel.problems.core_shape.CoreShape`:
    the kept energy of the answer is at least half the largest kept energy within the budget.

    Parameters
    ----------
    factor : float
        The approximation factor (finite, > 0).
    of : str
        The quantity the factor multiplies, named as the problem's method that computes it when
        there is one (``"kept_energy"``, ``"objective"``).
    relation : {">=", "<="}
        ``">="`` for a quantity that is maximised (the answer keeps at least ``factor`` of the
        optimum), ``"<="`` for one that is minimised (at most ``factor`` times the optimum).
    """

    factor: float
    of: str
    relation: str = ">="

    def __post_init__(self) -> None:
        factor = float(self.factor)
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"Guarantee.factor must be finite and > 0, got {self.factor!r}")
        if not isinstance(self.of, str) or not self.of:
            raise TypeError(f"Guarantee.of must name a quantity (a non-empty str), got {self.of!r}")
        if self.relation not in RELATIONS:
            raise ValueError(f"Guarantee.relation must be one of {RELATIONS}, got {self.relation!r}")
        object.__setattr__(self, "factor", factor)

    def __str__(self) -> str:
        return f"{self.of}(selected) {self.relation} {self.factor:.6g} x optimal {self.of}"

    def to_dict(self) -> dict[str, Any]:
        """``{"factor", "of", "relation", "statement"}`` (JSON-ready)."""
        return {"factor": self.factor, "of": self.of, "relation": self.relation, "statement": str(self)}


@dataclass(frozen=True)
class Result:
    """What a solver returns, whatever the problem kind.

    Parameters
    ----------
    selected : tuple
        The decision: chosen feature indices in the order they were chosen, one
        rank per mode, kept blocks per parameter, ... (the problem kind documents it).
    objective : float
        The problem's objective evaluated at ``selected``, ``problem.objective(selected)``
        (``nan`` when infeasible); the problem's ``sense`` says whether it is minimised or
        maximised.
    lower_bound, upper_bound : float or None
        Proven bounds on the *optimal* objective, in the objective's units, where the solver
        proves them (an exact solver gives both equal to ``objective``; a solver stopped by a
        time limit gives the bound of its search and ``objective`` on the other side). ``None``
        when the solver proves nothing.
    guarantee : Guarantee or None
        A stated approximation factor and the quantity it multiplies (e.g. kept energy
        ``>= (1 - ε) ×`` the optimal kept energy), else ``None``.
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
    lower_bound: float | None = None
    upper_bound: float | None = None
    guarantee: Guarantee | None = None
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
        for name in ("lower_bound", "upper_bound"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))
        if self.lower_bound is not None and self.upper_bound is not None and self.lower_bound > self.upper_bound:
            raise ValueError(f"Result.lower_bound ({self.lower_bound!r}) exceeds upper_bound ({self.upper_bound!r})")
        if self.guarantee is not None and not isinstance(self.guarantee, Guarantee):
            raise TypeError(f"Result.guarantee must be a Guarantee or None, got {type(self.guarantee).__name__}")

    def replace(self, **changes: Any) -> Result:
        """Return a copy with the given fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dictionary (numpy scalars and arrays become Python values)."""
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def __repr__(self) -> str:
        shown = self.selected if len(self.selected) <= 12 else (*self.selected[:12], "...")
        extras = "".join(
            f", {name}={value:.6g}" for name, value in (("lower_bound", self.lower_bound), ("upper_bound", self.upper_bound))
            if value is not None
        )
        if self.guarantee is not None:
            extras += f", guarantee='{self.guarantee}'"
        return (
            f"Result(solver={self.solver!r}, status={self.status!r}, selected={shown}, "
            f"objective={self.objective:.6g}{extras}, wall_time={self.wall_time:.3g}s)"
        )


def jsonable(value: Any) -> Any:
    """Convert numpy and container values to plain JSON types."""
    if isinstance(value, Guarantee):
        return value.to_dict()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "tolist"):  # torch tensors
        return jsonable(value.tolist())
    return repr(value)
