"""greedy_forward against explicit least-squares refits and brute force."""

import itertools

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

import sparsesel as ss


def _regression(seed, n=50, d=12):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) @ (np.eye(d) + 0.3 * rng.standard_normal((d, d))) + rng.normal(0, 2, d)
    y = X[:, :4] @ rng.standard_normal(4) + rng.standard_normal(n)
    return X, y


def _lstsq_loss(X, y, subset, fit_intercept):
    design = X[:, list(subset)]
    if fit_intercept:
        design = np.column_stack([design, np.ones(len(y))])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(np.mean((y - design @ coef) ** 2))


def _naive_greedy(X, y, k, fit_intercept):
    """Forward selection by refitting every candidate with numpy's lstsq."""
    selected, losses = [], []
    for _ in range(k):
        candidates = [j for j in range(X.shape[1]) if j not in selected]
        values = [_lstsq_loss(X, y, [*selected, j], fit_intercept) for j in candidates]
        best = int(np.argmin(values))
        selected.append(candidates[best])
        losses.append(values[best])
    return selected, losses


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("seed", range(8))
def test_greedy_squared_equals_explicit_refits(seed, fit_intercept):
    X, y = _regression(seed)
    result = ss.solve(ss.FeatureSelection(X, y, k=6, fit_intercept=fit_intercept), solver="greedy_forward")
    expected, losses = _naive_greedy(X, y, 6, fit_intercept)
    assert list(result.selected) == expected
    assert [row["feature"] for row in result.trace] == expected
    np.testing.assert_allclose([row["objective"] for row in result.trace], losses, rtol=1e-9)
    assert result.objective == pytest.approx(losses[-1], rel=1e-9)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_greedy_bounded_by_brute_force(seed, fit_intercept):
    X, y = _regression(50 + seed, n=40, d=9)
    k = 3
    optimum = min(_lstsq_loss(X, y, s, fit_intercept) for s in itertools.combinations(range(9), k))
    best_single = int(np.argmin([_lstsq_loss(X, y, [j], fit_intercept) for j in range(9)]))
    result = ss.solve(ss.FeatureSelection(X, y, k=k, fit_intercept=fit_intercept), solver="greedy_forward")
    assert result.selected[0] == best_single
    assert optimum <= result.objective + 1e-12
    assert ss.solve(ss.FeatureSelection(X, y, k=k, fit_intercept=fit_intercept), solver="brute_force").objective == pytest.approx(optimum, rel=1e-10)


def test_greedy_ties_go_to_the_lowest_index():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 6))
    X[:, 4] = X[:, 1]  # duplicate of the best column
    y = 3 * X[:, 1] + 0.1 * rng.standard_normal(40)
    result = ss.solve(ss.FeatureSelection(X, y, k=2), solver="greedy_forward")
    assert result.selected[0] == 1
    assert result.selected[1] != 4  # the duplicate cannot lower the loss


def test_greedy_dependent_columns_complete_the_selection():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, 10))
    y = rng.standard_normal(6)
    problem = ss.FeatureSelection(X, y, k=8)  # only 5 independent centred columns
    result = ss.solve(problem, solver="greedy_forward")
    assert len(set(result.selected)) == 8
    assert result.objective == pytest.approx(0.0, abs=1e-20)


def _logistic_loss(X, y, subset, alpha):
    model = LogisticRegression(C=1.0 / (alpha * len(y)), max_iter=5000, tol=1e-10).fit(X[:, subset], y)
    return log_loss(y, model.predict_proba(X[:, subset]))


def test_greedy_logistic_first_pick_and_brute_force_bound():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((60, 5))
    y = (X[:, 2] - 0.7 * X[:, 0] + 0.8 * rng.standard_normal(60) > 0).astype(int)
    problem = ss.FeatureSelection(X, y, k=2, loss="logistic", alpha=1e-2)
    result = ss.solve(problem, solver="greedy_forward", progress=True)
    singles = [_logistic_loss(X, y, [j], 1e-2) for j in range(5)]
    assert result.selected[0] == int(np.argmin(singles))
    optimum = min(_logistic_loss(X, y, list(s), 1e-2) for s in itertools.combinations(range(5), 2))
    assert optimum <= result.objective + 1e-8
    assert result.trace[0]["objective"] == pytest.approx(min(singles), rel=1e-6)


def test_greedy_option_errors():
    X, y = _regression(0)
    problem = ss.FeatureSelection(X, y, k=2)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['seed'\]; valid options: progress=False"):
        ss.solve(problem, solver="greedy_forward", seed=1)
    with pytest.raises(TypeError, match="progress must be a bool"):
        ss.solve(problem, solver="greedy_forward", progress="yes")
