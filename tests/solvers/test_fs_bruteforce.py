"""brute_force for FeatureSelection against an explicit enumeration with numpy / scikit-learn."""

import itertools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import sparsesel as ss


def _lstsq_loss(X, y, subset, fit_intercept):
    design = X[:, list(subset)]
    if fit_intercept:
        design = np.column_stack([design, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.mean((y - design @ coef) ** 2))


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("seed", range(8))
def test_brute_force_squared_equals_enumeration(seed, fit_intercept):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((30, 8)) + rng.normal(0, 2, 8)
    y = X[:, [1, 5, 6]] @ rng.standard_normal(3) + rng.standard_normal(30)
    losses = {s: _lstsq_loss(X, y, s, fit_intercept) for s in itertools.combinations(range(8), 3)}
    best = min(losses, key=losses.get)
    result = ss.solve(ss.FeatureSelection(X, y, k=3, fit_intercept=fit_intercept), solver="brute_force")
    assert result.selected == best
    assert result.status == "optimal"
    assert result.objective == pytest.approx(losses[best], rel=1e-10)
    assert result.info["n_subsets"] == 56


def test_brute_force_with_dependent_columns():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((20, 6))
    X[:, 3] = X[:, 0] - 2 * X[:, 1]
    y = X[:, 3] + 0.5 * X[:, 4] + 0.1 * rng.standard_normal(20)
    losses = {s: _lstsq_loss(X, y, s, True) for s in itertools.combinations(range(6), 2)}
    result = ss.solve(ss.FeatureSelection(X, y, k=2), solver="brute_force")
    assert result.objective == pytest.approx(min(losses.values()), rel=1e-10)
    assert result.selected == min(losses, key=losses.get)


def test_brute_force_logistic_equals_enumeration():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((50, 4))
    y = (X[:, 1] + X[:, 3] + rng.standard_normal(50) > 0).astype(int)
    alpha = 1e-2

    def loss(subset):
        model = LogisticRegression(C=1 / (alpha * 50), max_iter=5000, tol=1e-10).fit(X[:, subset], y)
        return log_loss(y, model.predict_proba(X[:, subset]))

    losses = {s: loss(list(s)) for s in itertools.combinations(range(4), 2)}
    result = ss.solve(ss.FeatureSelection(X, y, k=2, loss="logistic", alpha=alpha), solver="brute_force")
    assert result.selected == min(losses, key=losses.get)
    assert result.objective == pytest.approx(min(losses.values()), rel=1e-6)


def test_brute_force_refuses_large_searches_politely():
    rng = np.random.default_rng(0)
    problem = ss.FeatureSelection(rng.standard_normal((40, 30)), rng.standard_normal(40), k=10)
    with pytest.raises(ValueError, match=r"C\(30, 10\) = 30,045,015 subsets, more than max_subsets=200,000.*max_subsets="):
        ss.solve(problem, solver="brute_force")
    small = ss.FeatureSelection(rng.standard_normal((40, 12)), rng.standard_normal(40), k=2)
    with pytest.raises(ValueError, match=r"C\(12, 2\) = 66 subsets, more than max_subsets=10"):
        ss.solve(small, solver="brute_force", max_subsets=10)
    assert ss.solve(small, solver="brute_force", max_subsets=66, progress=True).info["n_subsets"] == 66


def test_brute_force_option_errors():
    rng = np.random.default_rng(0)
    problem = ss.FeatureSelection(rng.standard_normal((20, 5)), rng.standard_normal(20), k=2)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['limit'\]; valid options: max_subsets=200000, progress=False"):
        ss.solve(problem, solver="brute_force", limit=5)
    with pytest.raises(ValueError, match="max_subsets must be >= 1"):
        ss.solve(problem, solver="brute_force", max_subsets=0)
