"""Random bags: bag-level ERM regularised to minimise a Rademacher risk bound.

Chen, Fu, Karbasi, Mirrokni (2023) bound the risk of learning from random bags
through the Rademacher complexity of the hypothesis class, regularise the ERM to
reach the smallest bound, and find a trade-off between bag size and error (the
abstract; the exact bound is not available to us). The bound below is **our own
derivation** for the squared loss and linear predictors ``‖θ‖ ≤ W``:

1. For i.i.d. rows and random bags of size ``k``, the residual ``r = y - xᵀθ`` is
   i.i.d. within a bag, so ``R_bag(θ) = E(ȳ - x̄ᵀθ)² = Var(r)/k + (Er)² ≥ R(θ)/k``,
   i.e. the individual risk ``R(θ) ≤ k·R_bag(θ)``.
2. The ``m`` bags are i.i.d. samples of ``(x̄, ȳ)``; with ``|ȳ| ≤ Y``, ``‖x̄‖ ≤ X`` the
   squared loss is bounded by ``B = (Y + WX)²`` and ``2(Y + WX)``-Lipschitz, so with
   probability ``1 - δ`` for every ``‖θ‖ ≤ W`` (standard Rademacher bound)

       R_bag(θ) ≤ R̂_bag(θ) + 4(Y + WX)·W·√(Σ_a ‖x̄_a‖²)/m + 3B·√(ln(2/δ)/(2m)).

3. Hence ``R(θ) ≤ k·[...]``: with ``m = n/k`` the complexity terms grow like
   ``k^{3/2}/√n`` — larger bags cost accuracy.

Regularised ERM: for each ridge strength on a grid, the bag-level ridge fit is
the constrained ERM at ``W = ‖θ_α‖``; the grid point with the smallest bound is
kept (union bound: ``δ`` is split over the grid). ``Y`` and ``X`` are plug-in
(observed maxima), so the bound is indicative, not a certificate.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from sparsesel.aggregate.bags import as_bags, check_aggregates
from sparsesel.aggregate.estimators import interpolating_linear_fit
from sparsesel.validation import as_finite_array


def random_bag_risk_bound(
    empirical_bag_risk: float,
    bag_size: float,
    n_bags: int,
    radius: float,
    feature_radius: float,
    response_bound: float,
    feature_norm_sum: float,
    delta: float = 0.05,
) -> float:
    """Upper bound on the individual squared-error risk (see the module docstring).

    Parameters
    ----------
    empirical_bag_risk : float
        ``R̂_bag(θ) = (1/m) Σ_a (ȳ_a - x̄_aᵀθ)²``.
    bag_size : float
        ``k`` (mean bag size).
    n_bags : int
        ``m``.
    radius : float
        ``W ≥ ‖θ‖``.
    feature_radius, response_bound : float
        ``X ≥ max ‖x̄_a‖`` and ``Y ≥ max |ȳ_a|``.
    feature_norm_sum : float
        ``Σ_a ‖x̄_a‖²``.
    delta : float
        Failure probability.
    """
    scale = response_bound + radius * feature_radius
    rademacher = radius * math.sqrt(feature_norm_sum) / n_bags
    concentration = 3.0 * scale**2 * math.sqrt(math.log(2.0 / delta) / (2.0 * n_bags))
    return bag_size * (empirical_bag_risk + 4.0 * scale * rademacher + concentration)


class RandomBagERM(RegressorMixin, BaseEstimator):
    """Bag-level least squares with the ridge strength that minimises the risk bound.

    Parameters
    ----------
    alphas : array_like, optional
        Ridge strengths to try (default ``logspace(-6, 2, 33)``).
    delta : float
        Failure probability of the bound (split over the grid).
    fit_intercept : bool
        Centre features and aggregates (size-weighted) before fitting.

    Attributes
    ----------
    coef_, intercept_ : ndarray (d,), float
    alpha_ : float
        The chosen ridge strength.
    bound_ : float
        The bound at the chosen fit.
    bounds_ : dict
        Bound per ridge strength.
    """

    def __init__(self, alphas: Any = None, *, delta: float = 0.05, fit_intercept: bool = True) -> None:
        self.alphas = alphas
        self.delta = delta
        self.fit_intercept = fit_intercept

    def fit(self, X: Any, y_agg: Any, bags: Any) -> RandomBagERM:
        """Fit from bag means ``y_agg`` (shape (n_bags,)) of the rows ``X`` grouped by ``bags``."""
        X = as_finite_array(X, "X", ndim=2)
        b = as_bags(bags, X.shape[0])
        y_bar = check_aggregates(y_agg, b)
        alphas = np.logspace(-6, 2, 33) if self.alphas is None else np.asarray(self.alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or np.any(~np.isfinite(alphas)) or np.any(alphas < 0):
            raise ValueError(f"alphas must be finite and >= 0, got {self.alphas!r}")
        if not 0 < float(self.delta) < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta!r}")
        n = X.shape[0]
        m = b.n_bags
        k = n / m
        X_bar = b.mean(X)
        x_c = b.sizes @ X_bar / n if self.fit_intercept else np.zeros(X.shape[1])
        y_c = float(b.sizes @ y_bar / n) if self.fit_intercept else 0.0
        Xb, yb = X_bar - x_c, y_bar - y_c
        norms = np.sum(Xb**2, axis=1)
        delta_each = float(self.delta) / alphas.size
        self.bounds_ = {}
        best = None
        for alpha in alphas:
            coef, intercept = interpolating_linear_fit(X, y_bar, b, 0.0, float(alpha), self.fit_intercept)
            emp = float(np.mean((yb - Xb @ coef) ** 2))
            bound = random_bag_risk_bound(
                emp, k, m, float(np.linalg.norm(coef)), float(np.sqrt(norms.max())), float(np.abs(yb).max()),
                float(norms.sum()), delta_each,
            )
            self.bounds_[float(alpha)] = bound
            if best is None or bound < best[0]:
                best = (bound, float(alpha), coef, intercept)
        self.bound_, self.alpha_, self.coef_, self.intercept_ = best
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predicted individual responses, shape (n,)."""
        check_is_fitted(self, "coef_")
        X = as_finite_array(X, "X", ndim=2)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the model was fit with {self.n_features_in_}")
        return X @ self.coef_ + self.intercept_
