"""Sequential Attention for feature selection, against independent oracles.

* The paper's identity (Yasuda et al. 2023, via Sequential LASSO): regularised
  linear Sequential Attention picks like Orthogonal Matching Pursuit. Oracle:
  scikit-learn's ``orthogonal_mp`` path (support and order).
* Its generalisation to convex losses (Yasuda's thesis, Thm 16.1.3): the first
  pick of the logistic model is the group-OMP pick, the feature whose gradient
  row ``‖X_iᵀ(Y − P₀)‖`` at the intercept-only fit is largest. Oracle: closed form.
* The MLP variant on digits picks features that classify well above random
  subsets of the same size (oracle: scikit-learn's LogisticRegression).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LinearRegression, LogisticRegression, orthogonal_mp
from sklearn.model_selection import train_test_split

import sparsesel as ss

N, D, K = 200, 20, 5
MIN_GAP = 1.05  # largest |X_iᵀ r| / second largest, at every OMP step


def _instance(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A well-conditioned regression: standardised Gaussian columns, 5 true features, noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((N, D))
    X = (X - X.mean(0)) / X.std(0)
    beta = np.zeros(D)
    support = rng.choice(D, K, replace=False)
    beta[support] = rng.choice([-1.0, 1.0], K) * np.linspace(3.0, 1.0, K)
    return X, X @ beta + 0.5 * rng.standard_normal(N) + 2.0


def _sklearn_omp_order(X: np.ndarray, y: np.ndarray, k: int) -> list[int]:
    """scikit-learn's OMP picks in order (intercept handled by centring, as its estimator does)."""
    path = orthogonal_mp(X - X.mean(0), y - y.mean(), n_nonzero_coefs=k, return_path=True)
    order: list[int] = []
    for step in range(path.shape[1]):
        for i in np.flatnonzero(path[:, step]):
            if i not in order:
                order.append(int(i))
    return order


def _smallest_gap(X: np.ndarray, y: np.ndarray, order: list[int]) -> float:
    """The smallest ratio between the best and second-best |X_iᵀ r| over the OMP steps."""
    Xc, yc = X - X.mean(0), y - y.mean()
    residual, gaps = yc, []
    for step in range(len(order)):
        scores = np.abs(Xc.T @ residual)
        scores[order[:step]] = -np.inf
        best, second = np.sort(scores)[::-1][:2]
        gaps.append(best / second)
        q, _ = np.linalg.qr(Xc[:, order[: step + 1]])
        residual = yc - q @ (q.T @ yc)
    return float(min(gaps))


def _clear_instances(count: int = 10) -> list[tuple[int, np.ndarray, np.ndarray, list[int]]]:
    found = []
    for seed in range(60):
        X, y = _instance(seed)
        order = _sklearn_omp_order(X, y, K)
        if _smallest_gap(X, y, order) >= MIN_GAP:
            found.append((seed, X, y, order))
        if len(found) == count:
            return found
    raise AssertionError(f"only {len(found)} instances with a clear gap among 60 seeds")


def test_linear_sequential_attention_selects_like_sklearn_omp():
    instances = _clear_instances(10)
    marginal_differs = 0
    for seed, X, y, order in instances:
        result = ss.solve(ss.FeatureSelection(X, y, K), solver="sequential_attention", model="linear")
        assert list(result.selected) == order, f"instance {seed}: SA {result.selected} vs OMP {order}"
        marginal = np.argsort(-np.abs((X - X.mean(0)).T @ (y - y.mean())))[:K].tolist()
        marginal_differs += marginal != order
    # The instances are not trivial: ranking by marginal correlation gives another order on some.
    assert marginal_differs >= 3


def test_logistic_first_pick_is_group_omp_pick():
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        X = rng.standard_normal((200, 15))
        X = (X - X.mean(0)) / X.std(0)
        W = np.zeros((15, 3))
        W[rng.choice(15, 3, replace=False)] = 2.0 * rng.standard_normal((3, 3))
        logits = X @ W
        proba = np.exp(logits - logits.max(1, keepdims=True))
        proba /= proba.sum(1, keepdims=True)
        y = np.array([rng.choice(3, p=p) for p in proba])
        Y = np.eye(3)[y]
        gradient_rows = np.linalg.norm(X.T @ (Y - Y.mean(0)), axis=1)
        best, second = np.sort(gradient_rows)[::-1][:2]
        assert best / second > MIN_GAP
        result = ss.solve(ss.FeatureSelection(X, y, 2, loss="logistic"), solver="sequential_attention")
        assert result.selected[0] == int(np.argmax(gradient_rows))


def test_result_fields_and_objective_is_refit_loss():
    X, y = _instance(0)
    result = ss.solve(ss.FeatureSelection(X, y, 4), solver="sequential_attention", epochs=200)
    sel = list(result.selected)
    assert len(sel) == 4 and len(set(sel)) == 4 and all(0 <= i < D for i in sel)
    fit = LinearRegression().fit(X[:, sel], y)
    assert result.objective == pytest.approx(np.mean((y - fit.predict(X[:, sel])) ** 2), rel=1e-9)
    assert [t["feature"] for t in result.trace] == sel
    attention = result.info["attention"]
    assert attention.shape == (4, D)
    for step, row in enumerate(attention):
        assert row[sel[:step]].tolist() == [0.0] * step  # already selected: no softmax weight
        assert row.sum() == pytest.approx(1.0)
        assert int(np.argmax(row)) == sel[step]
    assert result.status == "feasible" and result.solver == "sequential_attention"


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_deterministic_for_a_seed_and_no_global_random_state(model):
    X, y = _instance(1)
    problem = ss.FeatureSelection(X, y, 3)
    options = dict(model=model, epochs=60, batch_size=64, hidden=8)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    first = ss.solve(problem, solver="sequential_attention", seed=7, **options)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    torch.manual_seed(12345)  # global state must not matter
    second = ss.solve(problem, solver="sequential_attention", seed=7, **options)
    assert first.selected == second.selected
    np.testing.assert_array_equal(first.info["attention"], second.info["attention"])


def test_mlp_on_digits_beats_random_subsets():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)
    k = 8
    result = ss.solve(
        ss.FeatureSelection(X_train, y_train, k, loss="logistic"),
        solver="sequential_attention",
        model="mlp",
        epochs=60,
        hidden=32,
    )

    def accuracy(subset) -> float:
        subset = list(subset)
        clf = LogisticRegression(max_iter=300).fit(X_train[:, subset] / 16, y_train)
        return clf.score(X_test[:, subset] / 16, y_test)

    rng = np.random.default_rng(0)
    random_scores = [accuracy(rng.choice(64, k, replace=False)) for _ in range(10)]
    chosen = accuracy(result.selected)
    assert len(set(result.selected)) == k
    assert chosen > 0.1 + 0.5  # chance is 0.1
    assert chosen > max(random_scores)
    assert chosen > np.mean(random_scores) + 0.1


def test_minibatch_progress_and_mlp_with_squared_loss(capsys):
    X, y = _instance(2)
    result = ss.solve(
        ss.FeatureSelection(X, y, 2), solver="sequential_attention", model="mlp", epochs=20, batch_size=50, hidden=4,
        progress=True,
    )
    assert len(set(result.selected)) == 2
    assert result.info["steps_per_segment"] == pytest.approx((80 - 8) / 2)  # 4 batches per epoch, 10% warm-up


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (dict(model="tree"), ValueError, r"model must be one of \('linear', 'logistic', 'mlp'\)"),
        (dict(model="logistic"), ValueError, "model='logistic' needs loss='logistic'"),
        (dict(epochs=2), ValueError, "too few for k=3 segments"),
        (dict(epochs=2.5), TypeError, "epochs must be an integer"),
        (dict(warmup=1.0), ValueError, r"warmup must lie in \[0, 1\)"),
        (dict(lr=0.0), ValueError, r"lr must lie in \(0, inf\)"),
        (dict(ridge=-1.0), ValueError, r"ridge must lie in \[0, inf\)"),
        (dict(batch_size=0), ValueError, "batch_size must be >= 1"),
        (dict(hidden=0), ValueError, "hidden must be >= 1"),
        (dict(seed=-1), ValueError, "seed must be >= 0"),
        (dict(standardize="yes"), TypeError, "standardize must be a bool"),
        (dict(epoch=10), ValueError, r"unknown option\(s\) \['epoch'\]; valid options: model=None, epochs=None"),
    ],
)
def test_bad_options_raise_clear_errors(options, error, match):
    X, y = _instance(3)
    with pytest.raises(error, match=match):
        ss.solve(ss.FeatureSelection(X, y, 3), solver="sequential_attention", **options)


def test_linear_model_refuses_logistic_loss():
    X, y = _instance(4)
    problem = ss.FeatureSelection(X, (y > np.median(y)).astype(float), 2, loss="logistic")
    with pytest.raises(ValueError, match="model='linear' needs loss='squared'"):
        ss.solve(problem, solver="sequential_attention", model="linear")
