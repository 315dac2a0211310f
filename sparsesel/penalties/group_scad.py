"""Group smoothly clipped absolute deviation (SCAD) penalty."""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsesel.penalties.base import GroupPenalty, array_module, check_positive


class GroupSCAD(GroupPenalty):
    """SCAD (Fan & Li 2001) on group norms::

        p(r) = λr                                 r ≤ λ
             = (2aλr − r² − λ²) / (2(a − 1))      λ < r ≤ aλ
             = λ²(a + 1)/2                        r > aλ

    Prox on the norm (closed form, valid for ``step < a − 1``)::

        r ≤ λ(1 + s)       -> max(0, r − sλ)
        λ(1 + s) < r ≤ aλ  -> ((a − 1)r − saλ) / (a − 1 − s)
        r > aλ             -> r

    Parameters
    ----------
    lam : float
        ``λ > 0``.
    a : float
        ``a > 2``.
    """

    _fields = ("lam", "a")

    def __init__(self, lam: float = 1.0, a: float = 3.7) -> None:
        self.lam = check_positive(lam, "lam")
        self.a = check_positive(a, "a", low=2.0)

    def scalar(self, r: Any) -> Any:
        lib = array_module(r)
        lam, a = self.lam, self.a
        middle = (2 * a * lam * r - r * r - lam * lam) / (2 * (a - 1))
        flat = 0.5 * lam * lam * (a + 1) + 0 * r
        return lib.where(r <= lam, lam * r, lib.where(r <= a * lam, middle, flat))

    def derivative(self, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=float)
        lam, a = self.lam, self.a
        return np.where(r <= lam, lam, np.maximum(a * lam - r, 0.0) / (a - 1))

    def prox_norms(self, r: Any, step: float) -> np.ndarray:
        step = check_positive(step, "step")
        lam, a = self.lam, self.a
        if step >= a - 1:
            raise ValueError(f"GroupSCAD.prox needs step < a - 1 ({a - 1}), got step={step}")
        r = np.asarray(r, dtype=np.float64)
        middle = ((a - 1) * r - step * a * lam) / (a - 1 - step)
        return np.where(r <= lam * (1 + step), np.maximum(0.0, r - step * lam), np.where(r <= a * lam, middle, r))

    def prox_norm(self, r: float, step: float) -> float:
        lam, a = self.lam, self.a
        if step >= a - 1:
            raise ValueError(f"GroupSCAD.prox needs step < a - 1 ({a - 1}), got step={step}")
        if r <= lam * (1 + step):
            return max(0.0, r - step * lam)
        if r <= a * lam:
            return ((a - 1) * r - step * a * lam) / (a - 1 - step)
        return r
