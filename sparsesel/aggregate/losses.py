"""The squared-loss objectives of aggregate learning, as plain numpy functions.

``predictions`` are individual predictions ``f(x_i)``; ``y_agg`` the bag means.
With ``k_a`` the bag sizes and ``n = Σ k_a``:

* :func:`bag_level_loss`      ``(1/n) Σ_a k_a (ȳ_a - f̄_a)²``
* :func:`instance_level_loss` ``(1/n) Σ_i (ȳ_{a(i)} - f(x_i))²``
* :func:`within_bag_spread`   ``(1/n) Σ_i (f(x_i) - f̄_{a(i)})²``  (the regulariser)

and ``instance_level_loss = bag_level_loss + within_bag_spread`` exactly
(Javanmard et al., ICLR 2024: the instance-level loss is a regularised bag-level loss).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsesel.aggregate.bags import as_bags, check_aggregates
from sparsesel.validation import as_finite_array


def _inputs(predictions: Any, y_agg: Any, bags: Any) -> tuple[np.ndarray, np.ndarray, Any]:
    f = as_finite_array(predictions, "predictions", ndim=1)
    b = as_bags(bags, f.shape[0])
    return f, check_aggregates(y_agg, b), b


def bag_level_loss(predictions: Any, y_agg: Any, bags: Any) -> float:
    """Size-weighted squared error between bag means and mean predictions."""
    f, y_bar, b = _inputs(predictions, y_agg, bags)
    return float(b.sizes @ (y_bar - b.mean(f)) ** 2 / f.shape[0])


def instance_level_loss(predictions: Any, y_agg: Any, bags: Any) -> float:
    """Mean squared error of every prediction against its bag's mean response."""
    f, y_bar, b = _inputs(predictions, y_agg, bags)
    return float(np.mean((b.broadcast(y_bar) - f) ** 2))


def within_bag_spread(predictions: Any, bags: Any) -> float:
    """Mean squared deviation of predictions from their bag's mean prediction."""
    f = as_finite_array(predictions, "predictions", ndim=1)
    b = as_bags(bags, f.shape[0])
    return float(np.mean((f - b.broadcast(b.mean(f))) ** 2))


def interpolating_loss(predictions: Any, y_agg: Any, bags: Any, rho: float) -> float:
    """``(1-ρ)·bag_level_loss + ρ·instance_level_loss``."""
    return (1.0 - rho) * bag_level_loss(predictions, y_agg, bags) + rho * instance_level_loss(predictions, y_agg, bags)
