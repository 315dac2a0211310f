"""FeatureSelection: validation on construction and the refit objective."""

import numpy as np
import pytest
from scipy.optimize import minimize
from sklearn.linear_model import LinearRegression

import sparsesel as ss


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    y = X[:, 1] - 2 * X[:, 4] + 0.1 * rng.standard_normal(40)
    return X, y


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"X": np.ones(5)}, ValueError, r"X must have 2 dimension\(s\), got shape \(5,\)"),
        ({"X": [["a", "b"]] * 40}, TypeError, "X must be numeric"),
        ({"X": "nan"}, ValueError, "X must have 2 dimension"),
        ({"k": 0}, ValueError, "k must be >= 1, got 0"),
        ({"k": -3}, ValueError, "k must be >= 1"),
        ({"k": 7}, ValueError, "k must be <= 6, got 7"),
        ({"k": 2.0}, TypeError, "k must be an integer"),
        ({"k": True}, TypeError, "k must be an integer"),
        ({"y": np.ones(39)}, ValueError, "y has 39 entries but X has 40 rows"),
        ({"y": np.ones((40, 2))}, ValueError, r"y must be one-dimensional"),
        ({"loss": "hinge"}, ValueError, r"loss must be one of \('squared', 'logistic'\)"),
        ({"loss": "logistic", "y": np.ones(40)}, ValueError, "at least two classes"),
        ({"loss": "logistic"}, ValueError, "needs class labels"),
        ({"loss": "logistic", "alpha": 0.0}, ValueError, "alpha must be finite and > 0"),
        ({"fit_intercept": "yes"}, TypeError, "fit_intercept must be a bool"),
    ],
)
def test_bad_input_names_the_field(data, change, error, message):
    X, y = data
    kwargs = {"X": X, "y": y, "k": 2, **change}
    with pytest.raises(error, match=message):
        ss.FeatureSelection(**kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(data, bad):
    X, y = data
    X = X.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite value\(s\)"):
        ss.FeatureSelection(X, y, k=2)
    y = y.copy()
    y[0] = bad
    with pytest.raises(ValueError, match="y contains 1 NaN or infinite"):
        ss.FeatureSelection(data[0], y, k=2)


def test_inputs_are_copied_not_mutated(data):
    X, y = data
    X_before = X.copy()
    problem = ss.FeatureSelection(X, y, k=2)
    X[0, 0] = 1e6
    assert problem.X[0, 0] == X_before[0, 0]
    assert not problem.X.flags.writeable


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_squared_objective_equals_sklearn_linear_regression(data, fit_intercept):
    X, y = data
    y = y + 3.0
    problem = ss.FeatureSelection(X, y, k=3, fit_intercept=fit_intercept)
    subset = [4, 0, 2]
    reference = LinearRegression(fit_intercept=fit_intercept).fit(X[:, subset], y)
    mse = np.mean((y - reference.predict(X[:, subset])) ** 2)
    fit = problem.refit(subset)
    assert problem.objective(subset) == pytest.approx(mse, rel=1e-10)
    np.testing.assert_allclose(fit["coef"], reference.coef_, rtol=1e-9)
    assert fit["intercept"] == pytest.approx(reference.intercept_, abs=1e-9)


def test_empty_subset_objective_is_variance_or_mean_square(data):
    X, y = data
    assert ss.FeatureSelection(X, y, k=1).objective([]) == pytest.approx(np.var(y))
    assert ss.FeatureSelection(X, y, k=1, fit_intercept=False).objective([]) == pytest.approx(np.mean(y**2))


def test_logistic_objective_matches_direct_minimisation(data):
    X, y = data
    labels = (y > 0).astype(float)
    alpha = 1e-2
    problem = ss.FeatureSelection(X, labels, k=2, loss="logistic", alpha=alpha)
    subset = [1, 4]
    Z = X[:, subset]

    def penalised(params):
        w, b = params[:-1], params[-1]
        margin = Z @ w + b
        loss = np.mean(np.logaddexp(0.0, margin) - labels * margin)
        return loss + 0.5 * alpha * w @ w

    best = minimize(penalised, np.zeros(3), method="BFGS", options={"gtol": 1e-10})
    w, b = best.x[:-1], best.x[-1]
    margin = Z @ w + b
    expected = np.mean(np.logaddexp(0.0, margin) - labels * margin)
    assert problem.objective(subset) == pytest.approx(expected, rel=1e-5)


def test_check_subset_rejects_bad_indices(data):
    problem = ss.FeatureSelection(*data, k=2)
    with pytest.raises(ValueError, match="repeated"):
        problem.check_subset([1, 1])
    with pytest.raises(ValueError, match=r"out-of-range indices \[6\]; valid indices are 0..5"):
        problem.check_subset([6])
    with pytest.raises(TypeError, match="integer indices"):
        problem.check_subset([True])
    with pytest.raises(TypeError, match="integer indices"):
        problem.check_subset([1.5])
    assert problem.check_subset([]) == []
    assert problem.check_subset(np.array([3, 0])) == [3, 0]
