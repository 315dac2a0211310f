"""Group log penalty: ``p(r) = λ·log(1 + r/τ)``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sparsesel.penalties.base import GroupPenalty, array_module, check_positive


class GroupLog(GroupPenalty):
    """``p(r) = λ·log(1 + r/τ)`` (group log-sum; concave, subadditive, ``p(0) = 0``).

    The prox on the norm solves ``min_{z≥0} ½(z − r)² + sλ·log(1 + z/τ)``; its
    positive stationary points are the roots of ``z² + (τ − r)z + sλ − rτ = 0``,
    so the prox is the larger root when it is real and positive and beats
    ``z = 0``, else ``0`` (closed form).

    Parameters
    ----------
    lam : float
        ``λ > 0``.
    tau : float
        ``τ > 0``; small ``τ`` makes the penalty closer to a group-ℓ0 count.
    """

    _fields = ("lam", "tau")

    def __init__(self, lam: float = 1.0, tau: float = 1.0) -> None:
        self.lam = check_positive(lam, "lam")
        self.tau = check_positive(tau, "tau")

    def scalar(self, r: Any) -> Any:
        return self.lam * array_module(r).log1p(r / self.tau)

    def derivative(self, r: np.ndarray) -> np.ndarray:
        return self.lam / (self.tau + np.asarray(r, dtype=float))

    def inverse_scalar(self, v: float) -> float:
        """``p⁻¹(v)``: the norm whose penalty is ``v``."""
        return self.tau * math.expm1(v / self.lam)

    def prox_norms(self, r: Any, step: float) -> np.ndarray:
        r = np.asarray(r, dtype=np.float64)
        tau, sl = self.tau, check_positive(step, "step") * self.lam
        disc = (r + tau) ** 2 - 4.0 * sl
        z = 0.5 * ((r - tau) + np.sqrt(np.maximum(disc, 0.0)))
        better = 0.5 * (z - r) ** 2 + sl * np.log1p(np.maximum(z, 0.0) / tau) < 0.5 * r * r
        return np.where((disc >= 0) & (z > 0) & better, z, 0.0)

    def prox_norm(self, r: float, step: float) -> float:
        tau, sl = self.tau, step * self.lam
        disc = (r + tau) ** 2 - 4.0 * sl
        if disc < 0:
            return 0.0
        z = 0.5 * ((r - tau) + math.sqrt(disc))
        if z <= 0:
            return 0.0
        obj_z = 0.5 * (z - r) ** 2 + sl * math.log1p(z / tau)
        return z if obj_z < 0.5 * r * r else 0.0
