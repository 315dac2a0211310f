"""Bag design: choose the bag size for a privacy–utility target.

Rows are grouped uniformly at random into bags of size ``k``; only the bag means
of the clipped responses are released, through a label-DP mechanism with budget
ε (noise calibrated to the bag's sensitivity ``(hi - lo)/k``). Larger bags need
less noise per bag but aggregate away information. The objective of a bag size
is the predicted excess risk ``‖θ̂ - θ₀‖²`` of the chosen estimator in the
proportional regime (:mod:`sparsesel.aggregate.risk`, Gaussian linear model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparsesel.problems.base import Problem
from sparsesel.validation import check_choice, check_int

ESTIMATORS = ("interpolating", "bag", "instance")


def _nonneg(value: Any, name: str, positive: bool = False) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be finite and {'> 0' if positive else '>= 0'}, got {value!r}")
    return value


@dataclass(frozen=True, eq=False)
class BagDesign(Problem):
    """Choose the bag size ``k`` (one of ``bag_sizes``) for aggregate learning under label DP.

    Parameters
    ----------
    n_samples : int
        Rows ``n`` (>= 2).
    n_features : int
        Features ``d`` (>= 1); the theory uses ``γ = d/n``.
    signal : float
        ``‖θ₀‖²`` (variance of ``xᵀθ₀`` for standardised features), >= 0.
    noise : float
        Response noise variance σ², >= 0.
    epsilon : float or None
        Privacy budget (> 0); ``None`` releases exact bag means (no DP).
    clip : float or (lo, hi), optional
        Responses are clipped to ``[lo, hi]`` (``C`` means ``[-C, C]``); required with ``epsilon``.
    delta : float
        0 for the Laplace mechanism; in (0, 1) for the Gaussian one.
    mechanism : {"laplace", "gaussian"}
    estimator : {"interpolating", "bag", "instance"}
        ``"interpolating"`` uses the optimal mixing weight at each bag size.
    ridge : float
        Ridge penalty λ of the estimator.
    bag_sizes : tuple of int, optional
        Candidates, each in ``[1, n_samples]`` (default ``1 .. min(n_samples // 2, 100)``).
    risk_target : float or None
        ``None``: minimise the predicted risk. Otherwise choose the *largest* bag
        size whose risk is ``<= risk_target`` (the most aggregation that still meets
        the utility target); infeasible when none does.

    The decision ``selected`` is ``(k,)``; ``objective(k)`` is the predicted excess risk.
    """

    n_samples: int
    n_features: int
    signal: float
    noise: float
    epsilon: float | None = None
    clip: Any = None
    delta: float = 0.0
    mechanism: str = "laplace"
    estimator: str = "interpolating"
    ridge: float = 0.0
    bag_sizes: tuple[int, ...] | None = None
    risk_target: float | None = None

    def __post_init__(self) -> None:
        from sparsesel.aggregate.privacy import check_clip, check_privacy

        n = check_int(self.n_samples, "n_samples", low=2)
        d = check_int(self.n_features, "n_features", low=1)
        object.__setattr__(self, "n_samples", n)
        object.__setattr__(self, "n_features", d)
        object.__setattr__(self, "signal", _nonneg(self.signal, "signal"))
        object.__setattr__(self, "noise", _nonneg(self.noise, "noise"))
        object.__setattr__(self, "ridge", _nonneg(self.ridge, "ridge"))
        check_choice(self.estimator, "estimator", ESTIMATORS)
        if self.epsilon is None:
            if self.clip is not None:
                raise ValueError("clip is only used with epsilon (no DP mechanism without epsilon)")
        else:
            eps, delta, mech = check_privacy(self.epsilon, self.delta, self.mechanism)
            object.__setattr__(self, "epsilon", eps)
            object.__setattr__(self, "delta", delta)
            object.__setattr__(self, "mechanism", mech)
            object.__setattr__(self, "clip", check_clip(self.clip))
        if self.bag_sizes is None:
            sizes = tuple(range(1, max(1, min(n // 2, 100)) + 1))
        else:
            try:
                sizes = tuple(sorted({check_int(k, "bag_sizes entry", 1, n) for k in self.bag_sizes}))
            except TypeError as exc:
                raise TypeError(f"bag_sizes must be integers: {exc}") from None
            if not sizes:
                raise ValueError("bag_sizes is empty")
        object.__setattr__(self, "bag_sizes", sizes)
        if self.risk_target is not None:
            object.__setattr__(self, "risk_target", _nonneg(self.risk_target, "risk_target", positive=True))

    @property
    def gamma(self) -> float:
        """``d / n``."""
        return self.n_features / self.n_samples

    def predict(self, bag_size: int):
        """The :class:`~sparsesel.aggregate.risk.RiskPrediction` at ``bag_size``."""
        from sparsesel.aggregate.risk import predicted_risk

        k = check_int(bag_size, "bag_size", 1, self.n_samples)
        return predicted_risk(
            self.estimator, self.gamma, k, self.signal, self.noise, ridge=self.ridge,
            epsilon=self.epsilon, clip=self.clip, delta=self.delta, mechanism=self.mechanism,
        )

    def objective(self, selected: Sequence[int] | int) -> float:
        """Predicted excess risk ``‖θ̂ - θ₀‖²`` at the bag size ``selected = (k,)`` (a bare ``k`` is accepted).

        The risk is minimised (:attr:`sense`); with ``risk_target`` the rule of :meth:`choose`
        picks the largest bag meeting the target instead, and the objective reports its risk.
        """
        if isinstance(selected, Sequence):
            if len(selected) != 1:
                raise ValueError(f"selected must hold one bag size, (k,), got {tuple(selected)!r}")
            (selected,) = selected
        return float(self.predict(selected).excess_risk)

    def choose(self, risks: Mapping[int, float]) -> int | None:
        """Apply the problem's rule to risks per bag size: the minimiser (ties: larger
        bag), or with ``risk_target`` the largest bag meeting it (``None`` if none)."""
        if self.risk_target is not None:
            feasible = [k for k, r in risks.items() if r <= self.risk_target]
            return max(feasible) if feasible else None
        best = min(risks.values())
        return max(k for k, r in risks.items() if r <= best * (1 + 1e-12))
