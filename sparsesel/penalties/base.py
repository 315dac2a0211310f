"""The interface shared by the group penalties (see :mod:`sparsesel.penalties`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def array_module(x: Any) -> Any:
    """The array module of ``x``: ``torch`` for tensors, else ``numpy``."""
    if _is_torch(x):
        import torch

        return torch
    return np


def check_positive(value: Any, name: str, low: float = 0.0, strict: bool = True) -> float:
    """``value`` as a finite float ``> low`` (or ``>= low`` when not strict)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or (value <= low if strict else value < low):
        raise ValueError(f"{name} must be finite and {'>' if strict else '>='} {low}, got {value!r}")
    return value


class GroupPenalty:
    """A penalty ``Σ_g p(‖w_g‖₂)`` on groups of coefficients.

    Subclasses implement :meth:`scalar` (``p`` on norms, numpy or torch),
    :meth:`derivative` (``p'(r)`` for ``r > 0``, numpy) and :meth:`prox_norm`
    (the prox of ``step·p`` on the half line ``r >= 0``).
    """

    #: Parameters shown by ``repr``.
    _fields: tuple[str, ...] = ()

    def scalar(self, r: Any) -> Any:
        raise NotImplementedError

    def derivative(self, r: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def prox_norm(self, r: float, step: float) -> float:
        raise NotImplementedError

    def prox_norms(self, r: Any, step: float) -> np.ndarray:
        """:meth:`prox_norm` applied to every entry of an array of norms ``r >= 0`` (vectorised).

        Subclasses with a closed form override this; the default loops over the entries.
        """
        step = check_positive(step, "step")
        r = np.asarray(r, dtype=np.float64)
        return np.vectorize(lambda v: self.prox_norm(float(v), step), otypes=[np.float64])(r)

    def value(self, norms: Any) -> Any:
        """``Σ_g p(r_g)`` for group norms ``norms`` (numpy array or torch tensor, any shape)."""
        return self.scalar(norms).sum()

    def prox(self, x: np.ndarray, step: float = 1.0) -> np.ndarray:
        """``argmin_z ½‖z − x‖² + step·p(‖z‖₂)`` for one group ``x`` of shape ``(g,)``.

        Because ``p`` depends on the norm only, the prox keeps the direction of
        ``x`` and shrinks its norm: ``z = x/‖x‖ · prox_norm(‖x‖, step)``.
        """
        x = np.asarray(x, dtype=np.float64)
        step = check_positive(step, "step")
        r = float(np.linalg.norm(x))
        if r == 0.0:
            return np.zeros_like(x)
        return x * (self.prox_norm(r, step) / r)

    def subgradient(self, x: np.ndarray) -> np.ndarray:
        """An element of the subdifferential of ``p(‖·‖₂)`` at ``x`` (shape ``(g,)``).

        ``p'(‖x‖)·x/‖x‖`` for ``x ≠ 0``; the zero vector (the minimum-norm
        element, a valid subgradient for every penalty here) at ``x = 0``.
        """
        x = np.asarray(x, dtype=np.float64)
        r = float(np.linalg.norm(x))
        if r == 0.0:
            return np.zeros_like(x)
        return x * (float(self.derivative(np.array(r))) / r)

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._fields)
        return f"{type(self).__name__}({args})"
