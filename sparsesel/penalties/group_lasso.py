"""Group lasso: ``p(r) = λ·r``."""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsesel.penalties.base import GroupPenalty, check_positive


class GroupLasso(GroupPenalty):
    """``p(r) = λ·r``; its prox is block soft thresholding ``max(0, r − step·λ)``.

    Parameters
    ----------
    lam : float
        ``λ > 0``.
    """

    _fields = ("lam",)

    def __init__(self, lam: float = 1.0) -> None:
        self.lam = check_positive(lam, "lam")

    def scalar(self, r: Any) -> Any:
        return self.lam * r

    def derivative(self, r: np.ndarray) -> np.ndarray:
        return np.full_like(np.asarray(r, dtype=float), self.lam)

    def prox_norms(self, r: Any, step: float) -> np.ndarray:
        return np.maximum(0.0, np.asarray(r, dtype=np.float64) - check_positive(step, "step") * self.lam)

    def prox_norm(self, r: float, step: float) -> float:
        return max(0.0, r - step * self.lam)
