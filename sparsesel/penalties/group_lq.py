"""Group ℓq penalty, ``0 < q < 1``."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import brentq

from sparsesel.penalties.base import GroupPenalty, check_positive


class GroupLq(GroupPenalty):
    """``p(r) = λ·r^q`` with ``0 < q < 1`` (concave, subadditive, ``p(0) = 0``).

    No closed-form prox for general ``q``. On ``z > 0`` the stationarity equation
    is ``h(z) = z + sλq·z^{q−1} = r``; ``h`` is convex with its minimum at
    ``z* = (sλq(1 − q))^{1/(2−q)}``, so a positive stationary point exists iff
    ``r ≥ h(z*)`` and the relevant (local-minimum) one is the root in
    ``[z*, r]``, found by Brent's method to machine precision and then compared
    with ``z = 0``.

    Parameters
    ----------
    lam : float
        ``λ > 0``.
    q : float
        ``0 < q < 1``.
    """

    _fields = ("lam", "q")

    def __init__(self, lam: float = 1.0, q: float = 0.5) -> None:
        self.lam = check_positive(lam, "lam")
        q = check_positive(q, "q")
        if q >= 1:
            raise ValueError(f"q must be in (0, 1), got {q!r}")
        self.q = q

    def scalar(self, r: Any) -> Any:
        return self.lam * r**self.q

    def derivative(self, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=float)
        return self.lam * self.q * r ** (self.q - 1)

    def inverse_scalar(self, v: float) -> float:
        """``p⁻¹(v)``: the norm whose penalty is ``v``."""
        return (v / self.lam) ** (1.0 / self.q)

    def prox_norms(self, r: Any, step: float) -> np.ndarray:
        """Vectorised: bisection on ``[z*, r]`` (where ``h`` increases) to float precision, then ``z = 0`` compared."""
        r = np.asarray(r, dtype=np.float64)
        q, c = self.q, check_positive(step, "step") * self.lam
        z_star = (c * q * (1 - q)) ** (1.0 / (2 - q))
        active = (r > z_star) & (z_star + c * q * z_star ** (q - 1) <= r)
        lo = np.full(r.shape, z_star)
        hi = np.where(active, r, z_star)
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            above = mid + c * q * mid ** (q - 1) - r > 0
            hi = np.where(above, mid, hi)
            lo = np.where(above, lo, mid)
        z = 0.5 * (lo + hi)
        better = 0.5 * (z - r) ** 2 + c * z**q < 0.5 * r * r
        return np.where(active & better, z, 0.0)

    def prox_norm(self, r: float, step: float) -> float:
        q, c = self.q, step * self.lam
        z_star = (c * q * (1 - q)) ** (1.0 / (2 - q))

        def h(z: float) -> float:
            return z + c * q * z ** (q - 1) - r

        if r <= z_star or h(z_star) > 0:
            return 0.0
        z = z_star if h(z_star) == 0 else brentq(h, z_star, r, xtol=1e-15, rtol=4 * np.finfo(float).eps)
        obj_z = 0.5 * (z - r) ** 2 + c * z**q
        return z if obj_z < 0.5 * r * r else 0.0
