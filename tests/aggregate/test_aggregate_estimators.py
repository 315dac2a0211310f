"""Losses and estimators: the paper's identity, closed forms vs lstsq, sklearn references, the API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from sparsesel.aggregate import (
    BagLevelClassifier,
    BagLevelRegressor,
    InstanceLevelClassifier,
    InstanceLevelRegressor,
    InterpolatingClassifier,
    InterpolatingRegressor,
    MeanMapClassifier,
    aggregate_responses,
    bag_level_loss,
    instance_level_loss,
    interpolating_loss,
    label_proportions,
    random_bags,
    within_bag_spread,
)

torch.set_num_threads(1)


def _unequal_bags(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    ids = np.concatenate([np.arange(m), rng.integers(0, m, n - m)])
    return rng.permutation(ids)


@pytest.mark.parametrize("seed", range(5))
def test_instance_loss_is_bag_loss_plus_within_bag_regulariser(seed):
    # Paper (a): L_ins = L_bag + (1/n) Σ_a Σ_{i∈a} (f_i - f̄_a)²; checked against explicit loops.
    rng = np.random.default_rng(seed)
    n, m = 37, 8
    bags = _unequal_bags(rng, n, m)
    f = rng.normal(size=n) * 3
    y_bar = rng.normal(size=m)
    members = [np.flatnonzero(bags == a) for a in range(m)]
    loop_bag = sum(len(r) * (y_bar[a] - f[r].mean()) ** 2 for a, r in enumerate(members)) / n
    loop_ins = sum(((y_bar[a] - f[r]) ** 2).sum() for a, r in enumerate(members)) / n
    loop_reg = sum(((f[r] - f[r].mean()) ** 2).sum() for r in members) / n
    assert bag_level_loss(f, y_bar, bags) == pytest.approx(loop_bag, rel=1e-12)
    assert instance_level_loss(f, y_bar, bags) == pytest.approx(loop_ins, rel=1e-12)
    assert within_bag_spread(f, bags) == pytest.approx(loop_reg, rel=1e-12)
    assert loop_ins == pytest.approx(loop_bag + loop_reg, rel=1e-12)  # the identity itself
    rho = rng.uniform()
    assert interpolating_loss(f, y_bar, bags, rho) == pytest.approx(loop_bag + rho * loop_reg, rel=1e-12)


def _stacked_lstsq(X, y_bar, bags, rho, alpha, fit_intercept):
    """Minimise (1-ρ)L_bag + ρL_ins + alpha‖w‖² written row by row, solved by numpy.linalg.lstsq."""
    n, d = X.shape
    m = y_bar.size
    design, target = [], []
    one = [1.0] if fit_intercept else []
    for a in range(m):
        rows = np.flatnonzero(bags == a)
        k = rows.size
        weight = np.sqrt((1 - rho) * k / n)
        design.append(weight * np.concatenate([X[rows].mean(axis=0), one]))
        target.append(weight * y_bar[a])
        for i in rows:
            design.append(np.sqrt(rho / n) * np.concatenate([X[i], one]))
            target.append(np.sqrt(rho / n) * y_bar[a])
    for j in range(d):
        row = np.zeros(d + len(one))
        row[j] = np.sqrt(alpha)
        design.append(row)
        target.append(0.0)
    solution = np.linalg.lstsq(np.array(design), np.array(target), rcond=None)[0]
    return solution[:d], (solution[d] if fit_intercept else 0.0)


@pytest.mark.parametrize("rho", [0.0, 0.35, 1.0])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_closed_form_equals_lstsq_of_the_objective(rho, alpha, fit_intercept):
    rng = np.random.default_rng(3)
    n, d, m = 60, 4, 12
    X = rng.normal(size=(n, d)) + 0.5
    bags = _unequal_bags(rng, n, m)
    y_bar = rng.normal(size=m) + 2.0
    if rho == 0.0:
        model = BagLevelRegressor(alpha=alpha, fit_intercept=fit_intercept)
    elif rho == 1.0:
        model = InstanceLevelRegressor(alpha=alpha, fit_intercept=fit_intercept)
    else:
        model = InterpolatingRegressor(rho=rho, alpha=alpha, fit_intercept=fit_intercept)
    model.fit(X, y_bar, bags)
    coef, intercept = _stacked_lstsq(X, y_bar, bags, rho, alpha, fit_intercept)
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-7, atol=1e-9)
    assert model.intercept_ == pytest.approx(intercept, rel=1e-7, abs=1e-9)


def test_bag_level_with_fewer_bags_than_features_returns_min_norm_lstsq():
    rng = np.random.default_rng(4)
    n, d, m = 40, 10, 5
    X = rng.normal(size=(n, d))
    bags = random_bags(n, n // m, 1)
    y_bar = rng.normal(size=m)
    model = BagLevelRegressor(fit_intercept=False).fit(X, y_bar, bags)
    coef, _ = _stacked_lstsq(X, y_bar, bags, 0.0, 0.0, False)
    np.testing.assert_allclose(model.coef_, coef, rtol=1e-7, atol=1e-9)


def test_aggregate_sum_equals_mean_input():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 3))
    y = X @ [1.0, -2.0, 0.5] + rng.normal(size=50)
    bags = random_bags(50, 7, 0)
    mean_fit = InterpolatingRegressor(rho=0.4).fit(X, aggregate_responses(y, bags), bags)
    sum_fit = InterpolatingRegressor(rho=0.4, aggregate="sum").fit(X, aggregate_responses(y, bags, "sum"), bags)
    np.testing.assert_allclose(mean_fit.coef_, sum_fit.coef_, rtol=1e-10)


def _binary_data(seed: int, n: int = 160):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0]
    logits = X @ [1.5, -0.7, 1.0] + 0.3
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, y


def _sklearn_logistic_on_standardised(X, y, alpha):
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    # ours: (1/n)Σ CE + alpha(‖w₀‖² + ‖w₁‖²) with two softmax rows; at the optimum w₁ = -w₀ = w/2,
    # so the penalty is (alpha/2)‖w‖², i.e. scikit-learn's C = 1/(alpha·n).
    ref = LogisticRegression(C=1.0 / (alpha * len(y)), tol=1e-12, max_iter=10_000).fit(Z, y)
    return ref.predict_proba(Z)


@pytest.mark.parametrize("cls", [BagLevelClassifier, InstanceLevelClassifier, MeanMapClassifier])
def test_singleton_bags_reduce_to_sklearn_logistic_regression(cls):
    # with bags of size 1 the proportions are the labels: every estimator is plain logistic regression
    X, y = _binary_data(0)
    bags = np.arange(len(y))
    alpha = 1e-2
    model = cls(alpha=alpha, max_iter=500).fit(X, label_proportions(y, bags), bags)
    np.testing.assert_allclose(model.predict_proba(X), _sklearn_logistic_on_standardised(X, y, alpha), atol=2e-5)


def test_mean_map_class_means_exact_on_pure_bags():
    # bags holding one class each: the estimated class-conditional means are the true ones
    X, y = _binary_data(1)
    bags = np.empty(len(y), dtype=int)
    zeros, ones = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    bags[zeros] = np.arange(zeros.size) // 10
    bags[ones] = bags[zeros].max() + 1 + np.arange(ones.size) // 10
    pure = all(len(set(y[bags == a])) == 1 for a in range(bags.max() + 1))
    assert pure
    model = MeanMapClassifier().fit(X, label_proportions(y, bags), bags)
    np.testing.assert_allclose(model.class_means_, [X[y == 0].mean(axis=0), X[y == 1].mean(axis=0)], atol=1e-10)


def test_interpolating_classifier_learns_from_proportions():
    X, y = _binary_data(2, n=400)
    bags = random_bags(len(y), 4, 0)
    model = InterpolatingClassifier(rho=0.5).fit(X, label_proportions(y, bags), bags)
    baseline = max(y.mean(), 1 - y.mean())
    assert np.mean(model.predict(X) == y) > baseline + 0.05
    assert model.predict_proba(X).shape == (len(y), 2)


def test_mlp_regressor_fits_a_nonlinear_target_from_aggregates():
    rng = np.random.default_rng(6)
    X = rng.uniform(-2, 2, size=(300, 2))
    y = np.abs(X[:, 0]) + 0.5 * X[:, 1]
    bags = random_bags(300, 2, 0)
    y_bar = aggregate_responses(y, bags)
    mlp = BagLevelRegressor(model="mlp", hidden_layer_sizes=(16,), max_iter=400, learning_rate=2e-2).fit(X, y_bar, bags)
    linear = BagLevelRegressor().fit(X, y_bar, bags)
    mse = lambda model: np.mean((model.predict(X) - y) ** 2)  # noqa: E731
    assert mlp.loss_curve_[-1] < mlp.loss_curve_[0]
    assert mse(mlp) < 0.5 * mse(linear)


def test_rho_cv_and_auto_pick_a_grid_value_and_beat_the_worse_end():
    rng = np.random.default_rng(7)
    n, d, k = 600, 40, 5
    X = rng.normal(size=(n, d))
    theta = rng.normal(size=d) / np.sqrt(d)
    y = X @ theta + np.sqrt(2.0) * rng.normal(size=n)
    bags = random_bags(n, k, 1)
    y_bar = aggregate_responses(y, bags)
    risks = {}
    for rho in ("cv", "auto", 0.0, 1.0):
        model = InterpolatingRegressor(rho=rho, fit_intercept=False).fit(X, y_bar, bags)
        risks[rho] = float(np.sum((model.coef_ - theta) ** 2))
    cv_model = InterpolatingRegressor(rho="cv", fit_intercept=False).fit(X, y_bar, bags)
    assert cv_model.rho_ in set(np.linspace(0, 1, 11).tolist())
    assert max(risks["cv"], risks["auto"]) < max(risks[0.0], risks[1.0])


ESTIMATORS = [
    InterpolatingRegressor(rho=0.2, alpha=0.1),
    BagLevelRegressor(alpha=0.3),
    InstanceLevelRegressor(fit_intercept=False),
    InterpolatingClassifier(rho="cv", model="mlp"),
    BagLevelClassifier(alpha=0.01),
    InstanceLevelClassifier(),
    MeanMapClassifier(),
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_sklearn_api_get_set_params_and_clone(estimator):
    params = estimator.get_params()
    twin = clone(estimator)
    assert type(twin) is type(estimator) and twin is not estimator
    assert twin.get_params() == params
    twin.set_params(alpha=0.5, seed=3)
    assert twin.get_params()["alpha"] == 0.5 and twin.get_params()["seed"] == 3
    assert estimator.get_params() == params  # the original is untouched
    with pytest.raises(ValueError, match="Invalid parameter"):
        twin.set_params(no_such_parameter=1)


def test_clone_of_fitted_estimator_is_unfitted():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(30, 2))
    bags = random_bags(30, 3, 0)
    fitted = InterpolatingRegressor(rho=0.5).fit(X, rng.normal(size=10), bags)
    assert hasattr(fitted, "coef_") and not hasattr(clone(fitted), "coef_")
