"""lasso baseline against scikit-learn's Lasso / lars_path / l1 LogisticRegression."""

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import Lasso, LogisticRegression, lars_path

import sparsesel as ss


def _regression(seed, n=60, d=15):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.5, 2, d) + rng.normal(0, 1, d)
    y = X[:, :5] @ rng.uniform(0.5, 2, 5) + rng.standard_normal(n) + 1.0
    return X, y


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("seed", range(10))
def test_lasso_support_equals_sklearn_lasso_at_reported_alpha(seed, fit_intercept):
    X, y = _regression(seed)
    problem = ss.FeatureSelection(X, y, k=4, fit_intercept=fit_intercept)
    result = ss.solve(problem, solver="lasso")
    alpha = result.info["alpha"]
    low, high = result.info["alpha_range"]
    assert result.info["exact_k"] and low < alpha < high
    model = Lasso(alpha=alpha, fit_intercept=fit_intercept, tol=1e-12, max_iter=200_000).fit(X, y)
    assert set(np.flatnonzero(model.coef_)) == set(result.selected)
    np.testing.assert_allclose(result.info["lasso_coef"], model.coef_[list(result.selected)], rtol=1e-6, atol=1e-9)
    # the strongest such penalty: just above the segment the lasso has fewer than k features
    above = Lasso(alpha=high * 1.001, fit_intercept=fit_intercept, tol=1e-12, max_iter=200_000).fit(X, y)
    assert np.count_nonzero(above.coef_) < 4
    assert result.objective == pytest.approx(problem.objective(result.selected), rel=1e-12)


def test_lasso_order_is_entry_into_the_path():
    checked = 0
    for seed in range(20, 28):
        X, y = _regression(seed)
        result = ss.solve(ss.FeatureSelection(X, y, k=4), solver="lasso")
        _, active, coefs = lars_path(X - X.mean(axis=0), y - y.mean(), method="lasso", max_iter=4)
        if np.array_equal(np.count_nonzero(coefs, axis=0), np.arange(coefs.shape[1])):  # nothing left the path
            assert list(result.selected) == [int(j) for j in active]
            checked += 1
    assert checked >= 4


def test_lasso_logistic_support_matches_l1_logistic_at_reported_c():
    X, y = load_breast_cancer(return_X_y=True)
    result = ss.solve(ss.FeatureSelection(X, y, k=5, loss="logistic"), solver="lasso")
    assert result.info["exact_k"] and len(set(result.selected)) == 5
    Xs = (X - X.mean(axis=0)) / X.std(axis=0)
    model = LogisticRegression(
        C=result.info["C"], l1_ratio=1.0, solver="liblinear", intercept_scaling=1e3, tol=1e-6, max_iter=5000
    ).fit(Xs, y)
    assert set(np.flatnonzero(model.coef_[0])) == set(result.selected)


def test_lasso_option_errors():
    X, y = _regression(0)
    problem = ss.FeatureSelection(X, y, k=3)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['alpha'\]; valid options: n_grid=40, seed=0"):
        ss.solve(problem, solver="lasso", alpha=0.1)
    with pytest.raises(ValueError, match="n_grid must be >= 2"):
        ss.solve(problem, solver="lasso", n_grid=1)
