"""One budget value: a fraction of a whole or an absolute count, in one unit, with one rounding rule.

Every command and API that takes a budget reads it through :class:`Budget` (``sparsesel
core-shape --budget``, ``sparsesel compress --budget`` and ``--curve``, ``sparsesel prune
--density``, ``sparsesel select --k``, the ``budget=`` of :class:`~sparsesel.CoreShape` and
:class:`~sparsesel.TreeNetworkRanks`, :func:`sparsesel.compress.plan` and the ``k`` of the
scikit-learn selectors). The rules, decided once:

* **The way a number is written decides what it means.** An integer (``5000``, ``np.int64(5)``, the
  text ``"5000"``) is a count of units; a number with a decimal point or an exponent (``0.5``,
  ``1.0``, ``np.float32(0.7)``, ``Fraction(1, 3)``, the text ``"0.5"``, ``"1e-2"`` or ``"1/3"``) is a
  fraction of the whole, in ``(0, 1]``. So ``1`` is one unit and ``1.0`` the whole; a float above 1
  (``2e6``) is refused with the count to write instead (``2000000``). This is scikit-learn's
  convention (``n_features_to_select=1`` is one feature, ``1.0`` all of them); ``type=float`` in
  argparse would lose the difference, so the commands pass the text to :meth:`Budget.parse`.
* **One rounding rule: down, exactly.** A fraction ``f`` of a whole of ``n`` units is
  ``floor(f · n)`` units, so a plan never exceeds its budget. The product is computed in exact
  rational arithmetic: a float is read as the shortest decimal that gives it back in its own
  precision (``repr``; ``0.29`` is exactly 29/100, ``np.float32(0.7)`` is 7/10), so ``0.29`` of
  100 is 29, not the 28 that ``int(0.29 * 100)`` gives. A fraction that rounds down to 0 units
  is refused.
* **Units** (:data:`UNITS`): ``params`` and ``macs`` (compress), ``entries`` (core-shape),
  ``blocks`` (prune), ``features`` (feature selection) and ``latency`` (milliseconds; reserved
  for latency budgets). Every message names the unit.
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

__all__ = ["UNITS", "Budget"]

#: The units a budget can count (``latency``: milliseconds).
UNITS = ("params", "macs", "entries", "blocks", "features", "latency")


def counted(unit: str) -> str:
    """What a whole count of ``unit`` counts, for messages (``latency`` is counted in milliseconds)."""
    return "milliseconds" if unit == "latency" else unit
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True)
class Budget:
    """A budget: a fraction in ``(0, 1]`` of a whole, or a count ``>= 1``, of ``unit``.

    Make one with :meth:`parse` (text or a number, at the edge) or :meth:`coerce` (a number or a
    Budget, in the Python API); turn it into units with :meth:`resolve`.

    Attributes
    ----------
    amount : int or fractions.Fraction
        The count (an ``int``) or the exact fraction (a ``Fraction``).
    unit : str
        One of :data:`UNITS`.
    text : str
        How it was written (for messages and file names), e.g. ``"0.29"`` or ``"5000"``.
    name : str
        The flag or argument it came from, named in messages (not compared).
    """

    amount: int | Fraction
    unit: str
    text: str
    name: str = field(default="budget", compare=False)

    @property
    def is_fraction(self) -> bool:
        """Whether this is a fraction of the whole (else a count)."""
        return isinstance(self.amount, Fraction)

    @property
    def value(self) -> int | float:
        """The plain number for JSON and reports: the count (``int``) or the fraction (``float``)."""
        return float(self.amount) if self.is_fraction else int(self.amount)

    def __str__(self) -> str:
        return f"{self.text} of the {self.unit}" if self.is_fraction else f"{self.text} {self.unit}"

    @classmethod
    def parse(cls, value: Any, unit: str, *, name: str = "budget") -> Budget:
        """The budget written as ``value``: text (from a command line) or a number.

        Parameters
        ----------
        value : str, int, float, fractions.Fraction, decimal.Decimal, numpy scalar or Budget
            Text is read exactly: digits only (``"5000"``) is a count; a decimal (``"0.29"``,
            ``"1.0"``, ``"1e-2"``) or a ratio (``"1/3"``) is a fraction. Numbers follow
            :meth:`coerce`.
        unit : str
            One of :data:`UNITS`.
        name : str
            The flag or argument named in messages (``"--budget"``, ``"k"``).

        Raises
        ------
        ValueError
            Text that is not a number; a fraction outside ``(0, 1]``; a count below 1; a float
            above 1 (a count must be written as a whole number); a budget in another unit.
        TypeError
            Neither text nor a number.
        """
        if isinstance(value, str):
            text = value.strip()
            if _INTEGER_TEXT.fullmatch(text):
                return cls._count(int(text), unit, name, text)
            try:
                fraction = Fraction(text)
            except (ValueError, ZeroDivisionError):
                raise ValueError(f"{name} must be a fraction in (0, 1] of the {unit} (e.g. 0.5) or a whole count of "
                                 f"{counted(unit)} (e.g. 5000), got {value!r}") from None
            return cls._fraction(fraction, unit, name, text)
        return cls.coerce(value, unit, name=name)

    @classmethod
    def coerce(cls, value: Any, unit: str, *, name: str = "budget") -> Budget:
        """The budget ``value`` given as a number (or a :class:`Budget`) in the Python API.

        An integer (``int``, numpy integer) is a count; a float (``float``, numpy floating),
        ``Fraction`` or ``Decimal`` is a fraction of the whole, read exactly as its shortest
        round-tripping decimal. Text is refused here (use :meth:`parse` on text).

        Raises
        ------
        TypeError
            A bool, text or another type.
        ValueError
            See :meth:`parse`.
        """
        _check_unit(unit)
        if isinstance(value, Budget):
            if value.unit != unit:
                raise ValueError(f"{name} is a budget of {value.unit}, but {unit} are counted here")
            return value
        if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
            hint = f" (read text with sparsesel.budget.Budget.parse({value!r}, {unit!r}))" if isinstance(value, str) else ""
            raise TypeError(f"{name} must be a fraction in (0, 1] of the {unit} (a float) or a whole count of {counted(unit)} "
                            f"(an int), got {type(value).__name__}{hint}")
        if isinstance(value, numbers.Integral):
            return cls._count(int(value), unit, name, str(int(value)))
        if isinstance(value, (Fraction, Decimal)):
            if isinstance(value, Decimal) and not value.is_finite():
                raise ValueError(f"{name} must be a fraction in (0, 1] of the {unit} or a whole count of {counted(unit)}, got {value}")
            return cls._fraction(Fraction(value), unit, name, str(value))
        text = str(value)  # the shortest decimal that round-trips in the value's own precision
        if not math.isfinite(float(value)):
            raise ValueError(f"{name} must be a fraction in (0, 1] of the {unit} or a whole count of {counted(unit)}, got {text}")
        try:
            fraction = Fraction(text)
        except ValueError:  # a Real whose str is not a decimal
            fraction = Fraction(float(value))
        return cls._fraction(fraction, unit, name, text)

    @classmethod
    def _count(cls, count: int, unit: str, name: str, text: str) -> Budget:
        _check_unit(unit)
        if count < 1:
            raise ValueError(f"{name} must be a fraction in (0, 1] of the {unit} or a whole count of {counted(unit)} >= 1, got {text}")
        return cls(count, unit, text, name)

    @classmethod
    def _fraction(cls, fraction: Fraction, unit: str, name: str, text: str) -> Budget:
        _check_unit(unit)
        if 0 < fraction <= 1:
            return cls(fraction, unit, text, name)
        hint = ""
        if fraction > 1 and fraction.denominator == 1:
            hint = f"; a number written with a decimal point or exponent is a fraction: write the count as {fraction.numerator}"
        raise ValueError(f"{name} must be a fraction in (0, 1] of the {unit} or a whole count of {counted(unit)} >= 1, got {text}{hint}")

    def resolve(self, total: int, *, name: str | None = None, at_least_one: bool = False) -> int:
        """The budget in units, for a whole of ``total`` units: the count, or ``floor(fraction · total)``.

        A count is returned as it is, even above ``total`` (what that means is the caller's:
        nothing to cut, or an error).

        Parameters
        ----------
        total : int
            The whole, in units (the network's parameters, the tensor's entries, ...), ``>= 0``.
        name : str, optional
            Named in the message (default: :attr:`name`).
        at_least_one : bool
            A fraction that rounds down to 0 gives 1 instead of an error (the scikit-learn
            selectors, which must fit data with a single feature).

        Raises
        ------
        ValueError
            A fraction that rounds down to 0 units (unless ``at_least_one``).
        """
        if isinstance(total, bool) or not isinstance(total, numbers.Integral) or total < 0:
            raise ValueError(f"the whole a budget is a fraction of must be a count >= 0, got {total!r}")
        if not self.is_fraction:
            return int(self.amount)
        units = math.floor(self.amount * int(total))
        if units < 1 and at_least_one and total >= 1:
            return 1
        if units < 1:
            raise ValueError(f"{name or self.name} {self.text} of {int(total)} {self.unit} rounds down to 0 {self.unit}")
        return units


def _check_unit(unit: str) -> None:
    if unit not in UNITS:
        raise ValueError(f"unknown budget unit {unit!r}; choose one of {UNITS}")
