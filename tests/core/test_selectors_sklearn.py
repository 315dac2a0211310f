"""The scikit-learn selectors: estimator checks, budgets, pipelines, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, OrthogonalMatchingPursuit, orthogonal_mp
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from sparsesel.selectors import OMPSelector, SequentialAttentionSelector, resolve_budget

# Small epochs keep the ~50 fits of the estimator checks fast.
_FAST_SA = dict(epochs=30)


@parametrize_with_checks([OMPSelector(), SequentialAttentionSelector(**_FAST_SA), SequentialAttentionSelector(k=2, model="mlp", hidden=8, **_FAST_SA)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _regression(seed: int, n: int = 120, d: int = 12):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X = (X - X.mean(0)) / X.std(0)
    beta = np.zeros(d)
    beta[[7, 2, 9]] = [3.0, -2.0, 1.0]
    return X, X @ beta + 0.3 * rng.standard_normal(n)


def _omp_order(X, y, k):
    """Pick order of scikit-learn's OMP (from its coefficient path, intercept by centring)."""
    path = orthogonal_mp(X - X.mean(0), y - y.mean(), n_nonzero_coefs=k, return_path=True)
    order: list[int] = []
    for step in range(path.shape[1]):
        for i in np.flatnonzero(path[:, step]):
            if i not in order:
                order.append(int(i))
    return order


def test_omp_selector_matches_sklearn_omp():
    X, y = _regression(0)
    selector = OMPSelector(k=3).fit(X, y)
    reference = OrthogonalMatchingPursuit(n_nonzero_coefs=3).fit(X, y)
    assert selector.selected_features_.tolist() == _omp_order(X, y, 3)
    np.testing.assert_array_equal(selector.get_support(), reference.coef_ != 0)
    np.testing.assert_allclose(selector.transform(X), X[:, selector.get_support()])


def test_sequential_attention_selector_matches_omp_and_works_in_pipeline():
    X, y = _regression(1)
    selector = SequentialAttentionSelector(k=3)
    assert selector.fit(X, y).selected_features_.tolist() == _omp_order(X, y, 3)
    pipe = make_pipeline(SequentialAttentionSelector(k=3), LinearRegression()).fit(X, y)
    assert pipe.score(X, y) > 0.95


def test_fraction_budget_and_string_labels():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((60, 10))
    labels = np.where(X[:, 4] + 0.1 * rng.standard_normal(60) > 0, "yes", "no")
    selector = SequentialAttentionSelector(k=0.25, epochs=60).fit(X, labels)
    assert selector.loss_ == "logistic"
    assert selector.n_features_to_select_ == 2  # floor(0.25 * 10)
    assert 4 in selector.selected_features_.tolist()
    assert selector.classes_.tolist() == ["no", "yes"]
    assert resolve_budget(0.01, 10) == 1 and resolve_budget(0.5, 7) == 3 and resolve_budget(4, 10) == 4
    assert resolve_budget(0.29, 100) == 29 and resolve_budget(1.0, 7) == 7  # exact: not int(0.29 * 100) == 28


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        (dict(k=0), ValueError, "The 'k' parameter"),
        (dict(k=1.5), ValueError, "The 'k' parameter"),
        (dict(k=20), ValueError, r"k=20 must be <= the number of features \(n_features=12\)"),
        (dict(model="tree"), ValueError, "The 'model' parameter"),
        (dict(loss="hinge"), ValueError, "The 'loss' parameter"),
        (dict(epochs=0), ValueError, "The 'epochs' parameter"),
        (dict(lr=-1.0), ValueError, "The 'lr' parameter"),
        (dict(model="logistic"), ValueError, "model='logistic' needs loss='logistic'"),
    ],
)
def test_bad_parameters_raise_clear_errors(params, error, match):
    X, y = _regression(3)
    with pytest.raises(error, match=match):
        SequentialAttentionSelector(**params).fit(X, y)


def test_squared_loss_needs_numeric_target():
    X, _ = _regression(4)
    y = np.array(["a", "b", "c"] * 40)
    with pytest.raises(ValueError, match="needs a numeric y"):
        SequentialAttentionSelector(loss="squared").fit(X, y)
