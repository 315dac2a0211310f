"""Group minimax concave penalty (MCP)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsesel.penalties.base import GroupPenalty, array_module, check_positive


class GroupMCP(GroupPenalty):
    """``p(r) = λr − r²/(2γ)`` for ``r ≤ γλ``, ``γλ²/2`` beyond (Zhang 2010).

    The prox is firm thresholding (closed form, valid for ``step < γ``)::

        r ≤ sλ        -> 0
        sλ < r ≤ γλ   -> (r − sλ) / (1 − s/γ)
        r > γλ        -> r

    Parameters
    ----------
    lam : float
        ``λ > 0``.
    gamma : float
        ``γ > 1`` (concavity; ``γ → ∞`` gives the group lasso).
    """

    _fields = ("lam", "gamma")

    def __init__(self, lam: float = 1.0, gamma: float = 3.0) -> None:
        self.lam = check_positive(lam, "lam")
        self.gamma = check_positive(gamma, "gamma", low=1.0)

    def scalar(self, r: Any) -> Any:
        lib = array_module(r)
        lam, gamma = self.lam, self.gamma
        inner = lam * r - r * r / (2 * gamma)
        flat = 0.5 * gamma * lam * lam + 0 * r
        return lib.where(r <= gamma * lam, inner, flat)

    def derivative(self, r: np.ndarray) -> np.ndarray:
        r = np.asarray(r, dtype=float)
        return np.maximum(self.lam - r / self.gamma, 0.0)

    def prox_norms(self, r: Any, step: float) -> np.ndarray:
        step = check_positive(step, "step")
        if step >= self.gamma:
            raise ValueError(f"GroupMCP.prox needs step < gamma ({self.gamma}), got step={step}")
        r = np.asarray(r, dtype=np.float64)
        lam, gamma = self.lam, self.gamma
        firm = (r - step * lam) / (1.0 - step / gamma)
        return np.where(r <= step * lam, 0.0, np.where(r <= gamma * lam, firm, r))

    def prox_norm(self, r: float, step: float) -> float:
        if step >= self.gamma:
            raise ValueError(f"GroupMCP.prox needs step < gamma ({self.gamma}), got step={step}")
        lam, gamma = self.lam, self.gamma
        if r <= step * lam:
            return 0.0
        if r <= gamma * lam:
            return (r - step * lam) / (1.0 - step / gamma)
        return r
