"""Scores of selected columns (issue 8, "Metrics"): ``retrained_score`` against numpy's least squares and
logistic regression's known limits, ``masked_score`` against the closed form of a linear torch model, and
every malformed input refused with a message naming the problem."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression, LogisticRegression

from sparsesel.attribution.selection_scores import masked_score, retrained_score

torch.set_num_threads(1)


def regression_data(seed=0, n_train=80, n_test=60, d=7):
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=d)
    X_train, X_test = rng.normal(size=(n_train, d)), rng.normal(size=(n_test, d))
    y_train = X_train @ weights + 0.5 + rng.normal(scale=0.8, size=n_train)
    y_test = X_test @ weights + 0.5 + rng.normal(scale=0.8, size=n_test)
    return X_train, y_train, X_test, y_test


def lstsq_r2(X_train, y_train, X_test, y_test, columns):
    """Ordinary least squares with an intercept column, scored by 1 - SSE/SST on the test rows."""
    design = np.column_stack([np.ones(len(X_train)), X_train[:, columns]])
    coef, *_ = np.linalg.lstsq(design, y_train, rcond=None)
    prediction = np.column_stack([np.ones(len(X_test)), X_test[:, columns]]) @ coef
    return 1.0 - np.sum((y_test - prediction) ** 2) / np.sum((y_test - y_test.mean()) ** 2)


# ------------------------------------------------------------------ retrained_score
@pytest.mark.parametrize("columns", [[0], [2, 5, 1], list(range(7))])
def test_retrained_linear_regression_equals_lstsq_r2(columns):
    X_train, y_train, X_test, y_test = regression_data()
    expected = lstsq_r2(X_train, y_train, X_test, y_test, columns)
    score = retrained_score(X_train, y_train, X_test, y_test, columns, task="regression")
    assert score == pytest.approx(expected, abs=1e-10)


def test_retrained_accepts_torch_tensors_and_index_arrays():
    X_train, y_train, X_test, y_test = regression_data(seed=1)
    columns = [4, 0, 6]
    expected = lstsq_r2(X_train, y_train, X_test, y_test, columns)
    tensors = [torch.from_numpy(a) for a in (X_train, y_train, X_test, y_test)]
    assert retrained_score(*tensors, torch.tensor(columns), task="regression") == pytest.approx(expected, abs=1e-10)
    assert retrained_score(*tensors, np.array(columns), task="regression") == pytest.approx(expected, abs=1e-10)


def test_retrained_logistic_on_separable_column_is_perfect():
    rng = np.random.default_rng(2)
    n, d = 200, 5
    y = rng.integers(0, 2, size=2 * n)
    X = rng.normal(size=(2 * n, d))
    X[:, 3] = np.where(y == 1, 1.0, -1.0) * rng.uniform(1.0, 3.0, size=2 * n)  # margin 2 around 0
    score = retrained_score(X[:n], y[:n], X[n:], y[n:], [3])
    assert score == 1.0


def test_retrained_logistic_on_uninformative_column_is_near_majority_rate():
    rng = np.random.default_rng(3)
    n = 3000
    y = (rng.random(2 * n) < 0.3).astype(int)  # 70% class 0
    X = rng.normal(size=(2 * n, 4))  # independent of y
    majority_rate = float(np.mean(y[n:] == 0))
    score = retrained_score(X[:n], y[:n], X[n:], y[n:], [1])
    assert abs(score - majority_rate) <= 0.01


def test_retrained_fits_a_clone_and_leaves_the_estimator_unfitted():
    X_train, y_train, X_test, y_test = regression_data(seed=4)
    estimator = LinearRegression(fit_intercept=False)
    design_train, design_test = X_train[:, [1, 2]], X_test[:, [1, 2]]
    coef, *_ = np.linalg.lstsq(design_train, y_train, rcond=None)
    residual = y_test - design_test @ coef
    expected = 1.0 - np.sum(residual**2) / np.sum((y_test - y_test.mean()) ** 2)
    score = retrained_score(X_train, y_train, X_test, y_test, [1, 2], task="regression", estimator=estimator)
    assert score == pytest.approx(expected, abs=1e-10)
    assert not hasattr(estimator, "coef_")


def test_retrained_default_classifier_equals_a_logistic_regression_fit_by_hand():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 6))
    y = (X[:, 0] - 0.7 * X[:, 4] + rng.normal(scale=1.0, size=300) > 0).astype(int)
    reference = LogisticRegression(max_iter=2000).fit(X[:200][:, [0, 4]], y[:200]).score(X[200:][:, [0, 4]], y[200:])
    assert retrained_score(X[:200], y[:200], X[200:], y[200:], [0, 4]) == pytest.approx(reference, abs=1e-12)


# ------------------------------------------------------------------ masked_score
def linear_model(d, outputs, seed):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(d, outputs).double()
    return layer.eval(), layer.weight.detach().numpy().copy(), layer.bias.detach().numpy().copy()


def masked_inputs(X, columns, fill):
    """X with every column outside ``columns`` set to its ``fill`` value (a number or one per column)."""
    filled = np.broadcast_to(np.asarray(fill, dtype=float), (X.shape[1],))
    out = np.tile(filled, (X.shape[0], 1))
    out[:, columns] = X[:, columns]
    return out


@pytest.mark.parametrize("fill", [None, 0.0, 1.5, "per-column"])
def test_masked_accuracy_equals_closed_form_of_a_linear_model(fill):
    rng = np.random.default_rng(6)
    d, classes, n = 6, 3, 250
    model, W, b = linear_model(d, classes, seed=0)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, classes, size=n)
    if fill == "per-column":
        fill = rng.normal(size=d)
    columns = [5, 1, 2]
    logits = masked_inputs(X, columns, 0.0 if fill is None else fill) @ W.T + b
    expected = np.mean(np.argmax(logits, axis=1) == y)
    assert masked_score(model, X, y, columns, fill=fill) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("fill", [None, -0.5, "per-column"])
def test_masked_r2_equals_closed_form_of_a_linear_model(fill):
    rng = np.random.default_rng(7)
    d, n = 5, 120
    model, W, b = linear_model(d, 2, seed=1)  # two outputs: the first is the prediction
    X = rng.normal(size=(n, d))
    y = X @ W[0] + b[0] + rng.normal(scale=0.5, size=n)
    if fill == "per-column":
        fill = torch.from_numpy(rng.normal(size=d))
    columns = [0, 3]
    fill_values = 0.0 if fill is None else (fill.numpy() if isinstance(fill, torch.Tensor) else fill)
    prediction = masked_inputs(X, columns, fill_values) @ W[0] + b[0]
    expected = 1.0 - np.sum((prediction - y) ** 2) / np.sum((y - y.mean()) ** 2)
    score = masked_score(model, torch.from_numpy(X), torch.from_numpy(y), columns, task="regression", fill=fill)
    assert score == pytest.approx(expected, abs=1e-12)


def test_masked_float32_model_takes_float64_numpy_inputs_and_leaves_them_unchanged():
    rng = np.random.default_rng(8)
    model, W, b = linear_model(4, 2, seed=2)
    model = model.float()
    X = rng.normal(size=(50, 4))
    X_copy = X.copy()
    y = rng.integers(0, 2, size=50)
    logits = masked_inputs(X.astype(np.float32), [1], 0.0) @ model.weight.detach().numpy().T + model.bias.detach().numpy()
    expected = np.mean(np.argmax(logits, axis=1) == y)
    assert masked_score(model, X, y, [1]) == pytest.approx(expected, abs=1e-15)
    np.testing.assert_array_equal(X, X_copy)


# ------------------------------------------------------------------ bad inputs
def small_problem():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(20, 4))
    y = rng.integers(0, 2, size=20)
    return X, y, linear_model(4, 2, seed=3)[0]


def both_scores(X, y, selected, **options):
    """Call both functions (the retrained one on the same split twice), returning their errors."""
    X_train, y_train, model = small_problem()
    fill = options.pop("fill", None)
    errors = []
    for call in (lambda: retrained_score(X_train, y_train, X, y, selected, **options),
                 lambda: masked_score(model, X, y, selected, fill=fill, **options)):
        with pytest.raises((ValueError, TypeError)) as info:
            call()
        errors.append(info)
    return errors


@pytest.mark.parametrize(
    ("selected", "error", "message"),
    [
        ([], ValueError, "selected is empty"),
        ([1, 2, 1], ValueError, r"repeated indices \[1\]"),
        ([0, 4], ValueError, r"out-of-range indices \[4\]"),
        ([-1, 2], ValueError, r"out-of-range indices \[-1\]"),
        ([[0, 1]], ValueError, "1-D sequence"),
        ([0.0, 1.0], TypeError, "integer indices"),
        (np.array([True, False, True, False]), TypeError, "boolean mask"),
    ],
)
def test_bad_selected_is_refused(selected, error, message):
    X, y, _ = small_problem()
    for info in both_scores(X, y, selected):
        assert info.type is error
        assert info.match(message)


def test_mismatched_rows_are_refused():
    X, y, _ = small_problem()
    for info in both_scores(X, y[:-1], [0]):
        assert info.type is ValueError and info.match("X_test has 20 rows but y_test has 19")
    X_train, y_train, _ = small_problem()
    with pytest.raises(ValueError, match="X_train has 20 rows but y_train has 18"):
        retrained_score(X_train, y_train[:18], X, y, [0])


def test_mismatched_columns_between_splits_are_refused():
    X, y, _ = small_problem()
    with pytest.raises(ValueError, match="X_train has 4 columns but X_test has 3"):
        retrained_score(X, y, X[:, :3], y, [0])


@pytest.mark.parametrize("where", ["X", "y"])
def test_nan_is_refused(where):
    X, y, _ = small_problem()
    X, y = X.copy(), y.astype(float)
    (X if where == "X" else y)[3] = np.nan
    for info in both_scores(X, y, [0]):
        assert info.type is ValueError and info.match(f"{where}_test contains .* NaN")
    X_train, y_train, _ = small_problem()
    X_train, y_train = (X, y_train) if where == "X" else (X_train, y)
    with pytest.raises(ValueError, match=f"{where}_train contains .* NaN"):
        retrained_score(X_train, y_train, *small_problem()[:2], [0])


def test_unknown_task_is_refused():
    X, y, _ = small_problem()
    for info in both_scores(X, y, [0], task="ranking"):
        assert info.type is ValueError and info.match("task must be one of .*'ranking'")


@pytest.mark.parametrize(("fill", "error", "message"), [
    (np.zeros(3), ValueError, r"fill must be a number or an array of shape \(4,\).*got shape \(3,\)"),
    (np.zeros((2, 4)), ValueError, r"shape \(4,\).*got shape \(2, 4\)"),
    (np.array([0.0, np.nan, 0.0, 0.0]), ValueError, "fill contains NaN"),
    (True, TypeError, "got a bool"),
    ("mean", TypeError, "fill must be a number or a numeric"),
])
def test_bad_fill_is_refused(fill, error, message):
    X, y, model = small_problem()
    with pytest.raises(error, match=message):
        masked_score(model, X, y, [0], fill=fill)


def test_other_masked_score_misuse_is_refused():
    X, y, model = small_problem()
    with pytest.raises(ValueError, match="integer class labels"):
        masked_score(model, X, y + 0.5, [0])
    with pytest.raises(ValueError, match="y_test is constant"):
        masked_score(model, X, np.ones(20), [0], task="regression")
    with pytest.raises(TypeError, match="model must be callable"):
        masked_score("model", X, y, [0])
    dropout_model = torch.nn.Sequential(torch.nn.Linear(4, 2), torch.nn.Dropout(0.5)).train()
    with pytest.raises(ValueError, match=r"training mode: submodule '1' \(Dropout\).*model.eval\(\)"):
        masked_score(dropout_model, X, y, [0])
    with pytest.raises(ValueError, match=r"shape \(n, classes\)"):
        masked_score(lambda z: z.sum(1), X, y, [0])
    with pytest.raises(ValueError, match="model returned outputs of shape"):
        masked_score(lambda z: z[:5], X, y, [0])


def test_estimator_without_fit_and_score_is_refused():
    X, y, _ = small_problem()
    with pytest.raises(TypeError, match="estimator must have fit and score"):
        retrained_score(X, y, X, y, [0], estimator=object())
