"""The base class of every problem kind and the contract every kind keeps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from sparsesel.result import Guarantee, Result

#: The two senses of an objective.
SENSES: tuple[str, ...] = ("minimize", "maximize")


@dataclass(frozen=True, eq=False)
class Problem:
    """A subset-selection problem: data only, validated when it is built.

    Subclasses are frozen dataclasses whose ``__post_init__`` checks every field
    and raises ``ValueError``/``TypeError`` naming the offending field. Solvers
    find problems through :func:`sparsesel.solve` by their class.

    The contract of a kind
    ----------------------
    * :attr:`sense` says whether :meth:`objective` is minimised or maximised;
    * :meth:`objective` takes exactly what a solver puts in ``Result.selected`` and
      returns the value every solver reports as ``Result.objective``;
    * :meth:`result` is the one way solvers build a :class:`~sparsesel.result.Result`
      of this kind (it evaluates :meth:`objective` unless the solver already has it).

    ``Result.lower_bound``/``upper_bound`` bound the optimum of :meth:`objective` (in
    its units); a factor on another quantity goes in ``Result.guarantee``.
    """

    #: ``"minimize"`` or ``"maximize"``: the direction of :meth:`objective`.
    sense: ClassVar[str] = "minimize"

    def objective(self, selected: Any) -> float:
        """The objective at ``selected`` (exactly a ``Result.selected`` of this kind)."""
        raise NotImplementedError(f"{type(self).__name__} does not define objective(selected)")

    def result(
        self,
        selected: Sequence[Any],
        *,
        status: str = "feasible",
        objective: float | None = None,
        lower_bound: float | None = None,
        upper_bound: float | None = None,
        guarantee: Guarantee | None = None,
        trace: Sequence[dict] = (),
        **info: Any,
    ) -> Result:
        """Build the :class:`~sparsesel.result.Result` of ``selected``.

        Parameters
        ----------
        selected : sequence
            The decision, as the kind documents it; empty for ``status="infeasible"`` or
            ``"error"``.
        status : str
            One of :data:`sparsesel.result.STATUSES`.
        objective : float, optional
            ``self.objective(selected)`` when the solver already computed it (e.g. in a
            batch with other evaluations); evaluated here otherwise (``nan`` for an
            infeasible or failed result).
        lower_bound, upper_bound : float, optional
            Proven bounds on the optimal objective.
        guarantee : Guarantee, optional
            A stated approximation factor.
        trace : sequence of dict
        **info
            Solver- and problem-specific extras.
        """
        selected = tuple(selected)
        if objective is None:
            objective = math.nan if status in ("infeasible", "error") else self.objective(selected)
        return Result(
            selected=selected, objective=objective, lower_bound=lower_bound, upper_bound=upper_bound,
            guarantee=guarantee, status=status, trace=tuple(trace), info=info,
        )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.sense not in SENSES:
            raise TypeError(f"{cls.__name__}.sense must be one of {SENSES}, got {cls.sense!r}")
