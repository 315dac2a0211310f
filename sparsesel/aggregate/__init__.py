"""Learning from aggregate responses: bags, estimators, privacy, risk and bag design.

Implements (and tests against their stated results) two papers:

* Javanmard, Chen, Mirrokni, Badanidiyuru, Fu, "Learning from Aggregate Responses:
  Instance Level versus Bag Level Loss Functions" (ICLR 2024): bag-level,
  instance-level and interpolating estimators, their risk in the proportional
  regime, a label-DP release of aggregates and the optimal bag size.
* Chen, Fu, Karbasi, Mirrokni, "Learning from Aggregated Data: Curated Bags versus
  Random Bags" (2023): exact gradients on curated bags, bound-regularised ERM on
  random bags.

>>> from sparsesel.aggregate import random_bags, aggregate_responses, InterpolatingRegressor
>>> bags = random_bags(len(y), size=10, seed=0)                       # doctest: +SKIP
>>> model = InterpolatingRegressor(rho="cv").fit(X, aggregate_responses(y, bags), bags)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from sparsesel.aggregate.bags import Bags, aggregate_responses, as_bags, curated_bags, label_proportions, random_bags
from sparsesel.aggregate.estimators import (
    BagLevelClassifier,
    BagLevelRegressor,
    InstanceLevelClassifier,
    InstanceLevelRegressor,
    InterpolatingClassifier,
    InterpolatingRegressor,
    MeanMapClassifier,
)
from sparsesel.aggregate.losses import bag_level_loss, instance_level_loss, interpolating_loss, within_bag_spread
from sparsesel.aggregate.privacy import PrivateRelease, private_aggregates, private_label_proportions
from sparsesel.aggregate.random_erm import RandomBagERM, random_bag_risk_bound
from sparsesel.aggregate.risk import (
    asymptotic_risk,
    optimal_bag_size,
    optimal_rho,
    predicted_risk,
    privacy_noise_variance,
    simulate_risk,
)

# torch-backed helpers are imported on first use
_LAZY = {
    "curated_gradient": "sparsesel.aggregate.curated",
    "instance_gradient": "sparsesel.aggregate.curated",
    "fit_curated": "sparsesel.aggregate.curated",
    "is_curated": "sparsesel.aggregate.curated",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sparsesel.aggregate' has no attribute {name!r}")


__all__ = [
    "Bags",
    "BagLevelClassifier",
    "BagLevelRegressor",
    "InstanceLevelClassifier",
    "InstanceLevelRegressor",
    "InterpolatingClassifier",
    "InterpolatingRegressor",
    "MeanMapClassifier",
    "PrivateRelease",
    "RandomBagERM",
    "aggregate_responses",
    "bag_level_loss",
    "instance_level_loss",
    "interpolating_loss",
    "within_bag_spread",
    "as_bags",
    "asymptotic_risk",
    "curated_bags",
    "label_proportions",
    "optimal_bag_size",
    "optimal_rho",
    "predicted_risk",
    "private_aggregates",
    "private_label_proportions",
    "privacy_noise_variance",
    "random_bag_risk_bound",
    "random_bags",
    "simulate_risk",
    *_LAZY,
]
