"""OMP against scikit-learn's OrthogonalMatchingPursuit (support, order, coefficients)."""

import numpy as np
import pytest
from sklearn.linear_model import OrthogonalMatchingPursuit

import sparsesel as ss

SEEDS = range(24)


def _instance(seed: int, n: int, d: int, k: int, scaled: bool = True):
    """A well-posed sparse regression problem; columns of uneven scale and offset."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if scaled:
        X = X * 10 ** rng.uniform(-1, 1, d) + rng.normal(0, 3, d)
    support = rng.choice(d, k, replace=False)
    beta = np.zeros(d)
    beta[support] = rng.choice([-1, 1], k) * rng.uniform(1, 3, k) / np.std(X[:, support], axis=0)
    y = X @ beta + 0.05 * rng.standard_normal(n) + rng.normal(0, 2)
    return X, y


def _sklearn_order(X, y, k, fit_intercept):
    """Pick order from scikit-learn alone: support growth of fits with 1..k atoms."""
    order, previous = [], set()
    for t in range(1, k + 1):
        support = set(np.flatnonzero(OrthogonalMatchingPursuit(n_nonzero_coefs=t, fit_intercept=fit_intercept).fit(X, y).coef_))
        (new,) = support - previous
        order.append(int(new))
        previous = support
    return order


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("shape", [(80, 30, 6), (30, 60, 6)], ids=["n>d", "n<d"])
@pytest.mark.parametrize("seed", SEEDS)
def test_omp_equals_sklearn(seed, shape, fit_intercept):
    n, d, k = shape
    X, y = _instance(seed, n, d, k)
    reference = OrthogonalMatchingPursuit(n_nonzero_coefs=k, fit_intercept=fit_intercept).fit(X, y)
    result = ss.solve(ss.FeatureSelection(X, y, k=k, fit_intercept=fit_intercept), solver="omp")
    assert list(result.selected) == _sklearn_order(X, y, k, fit_intercept)
    selected = list(result.selected)
    coef = reference.coef_[selected]
    np.testing.assert_allclose(result.info["coef"], coef, rtol=1e-8, atol=1e-8 * np.max(np.abs(coef)))
    np.testing.assert_allclose(result.info["intercept"], reference.intercept_, rtol=1e-8, atol=1e-8 * np.max(np.abs(y)))
    residual = y - reference.predict(X)
    assert result.objective == pytest.approx(np.mean(residual**2), rel=1e-8)
    assert result.status == "feasible"


@pytest.mark.parametrize("options", [{"block_size": 1}, {"block_size": 3}, {"strategy": "gram"}, {"strategy": "columns"}])
@pytest.mark.parametrize("seed", range(4))
def test_omp_strategies_equal_sklearn(seed, options):
    X, y = _instance(100 + seed, 120, 40, 10)
    reference = OrthogonalMatchingPursuit(n_nonzero_coefs=10).fit(X, y)
    result = ss.solve(ss.FeatureSelection(X, y, k=10), solver="omp", **options)
    assert set(result.selected) == set(np.flatnonzero(reference.coef_))
    np.testing.assert_allclose(result.info["coef"], reference.coef_[list(result.selected)], rtol=1e-8)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_omp_trace_equals_lstsq_refits(fit_intercept):
    X, y = _instance(7, 60, 25, 8)
    problem = ss.FeatureSelection(X, y, k=8, fit_intercept=fit_intercept)
    result = ss.solve(problem, solver="omp")
    assert [row["step"] for row in result.trace] == list(range(1, 9))
    assert [row["feature"] for row in result.trace] == list(result.selected)
    for row in result.trace:
        subset = list(result.selected[: row["step"]])
        design = X[:, subset]
        if fit_intercept:
            design = np.column_stack([design, np.ones(len(y))])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        assert row["objective"] == pytest.approx(np.mean((y - design @ coef) ** 2), rel=1e-7)


def test_omp_rank_deficient_completes_selection():
    # n=10 rows: with the intercept at most 9 columns are independent; k=12 still returns 12
    rng = np.random.default_rng(3)
    X = rng.standard_normal((10, 20))
    X[:, 5] = 2 * X[:, 2]  # an exactly dependent pair
    y = rng.standard_normal(10)
    problem = ss.FeatureSelection(X, y, k=12)
    result = ss.solve(problem, solver="omp")
    assert len(result.selected) == 12 and len(set(result.selected)) == 12
    assert result.objective == pytest.approx(problem.objective(result.selected), abs=1e-12)
    assert result.objective < 1e-20
    assert any(row.get("padded") for row in result.trace)
    assert result.info["n_pursued"] <= 9


def test_omp_rejects_logistic_loss():
    X = np.random.default_rng(0).standard_normal((30, 5))
    problem = ss.FeatureSelection(X, (X[:, 0] > 0).astype(int), k=2, loss="logistic")
    with pytest.raises(ValueError, match="loss='squared' only.*greedy_forward.*sequential_attention"):
        ss.solve(problem, solver="omp")


def test_omp_option_errors():
    X, y = _instance(0, 30, 10, 3)
    problem = ss.FeatureSelection(X, y, k=3)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['n_nonzero_coefs'\]; valid options: block_size=32, strategy='auto'"):
        ss.solve(problem, solver="omp", n_nonzero_coefs=3)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        ss.solve(problem, solver="omp", block_size=0)
    with pytest.raises(ValueError, match="strategy must be one of"):
        ss.solve(problem, solver="omp", strategy="qr")
