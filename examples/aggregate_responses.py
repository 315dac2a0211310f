"""Fit bag-level, instance-level and interpolating regressors to private bag means of diabetes.

Run: ``python examples/aggregate_responses.py``
"""

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from sparsesel.aggregate import (
    BagLevelRegressor,
    InstanceLevelRegressor,
    InterpolatingRegressor,
    private_aggregates,
    random_bags,
)

X, y = load_diabetes(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
bags = random_bags(len(y_train), size=10, seed=0)
release = private_aggregates(y_train, bags, epsilon=1.0, clip=(25, 346), seed=0)

for model in (BagLevelRegressor(), InstanceLevelRegressor(), InterpolatingRegressor(rho="cv")):
    model.fit(X_train, release.values, bags)
    mse = np.mean((model.predict(X_test) - y_test) ** 2)
    print(f"{type(model).__name__:<24} test MSE {mse:8.1f}")
