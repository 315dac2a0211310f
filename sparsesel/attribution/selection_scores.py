"""Scores of a selected set of tabular columns (issue 8, "Metrics").

Two ways to judge which columns an attribution or feature-selection method picked:

* :func:`retrained_score` fits a fresh scikit-learn model on the selected columns
  of the training split and scores it on the same columns of the test split
  (accuracy for the default logistic regression, R² for the default linear
  regression);
* :func:`masked_score` keeps an already trained torch model and evaluates it on
  the test split with every unselected column replaced by a fill value (0 by
  default, the training mean of standardised data), giving accuracy or R².

Inputs may be numpy arrays or torch tensors: ``X`` of shape ``(n, d)``, ``y`` of
shape ``(n,)``, and ``selected`` a sequence of distinct column indices in
``[0, d)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch

from sparsesel.validation import check_index_set, check_inference_mode

TASKS: tuple[str, ...] = ("classification", "regression")


def retrained_score(
    X_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    X_test: np.ndarray | torch.Tensor,
    y_test: np.ndarray | torch.Tensor,
    selected: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    task: str = "classification",
    estimator: Any = None,
) -> float:
    """Test score of a model refitted on the selected columns only.

    A clone (:func:`sklearn.base.clone`, unfitted, same parameters) of
    ``estimator`` is fitted on ``X_train[:, selected]`` and ``y_train``, and its
    ``score`` on ``X_test[:, selected]`` and ``y_test`` is returned. The
    arrays keep their dtype (float32 tensors are fitted as float32) and are passed
    C-ordered, so a tensor and its numpy copy give the same score.

    Parameters
    ----------
    X_train : ndarray or Tensor, shape (n_train, d)
        Training inputs, finite.
    y_train : ndarray or Tensor, shape (n_train,)
        Training targets: class labels for classification, real values for regression.
    X_test : ndarray or Tensor, shape (n_test, d)
        Test inputs with the same ``d`` columns, finite.
    y_test : ndarray or Tensor, shape (n_test,)
        Test targets.
    selected : sequence of int, ndarray or Tensor, shape (k,)
        Distinct column indices in ``[0, d)``, ``k >= 1``; their order does not change the score.
    task : {"classification", "regression"}
        Chooses the default estimator.
    estimator : scikit-learn estimator, optional
        Any object with ``fit``/``score`` that :func:`sklearn.base.clone` accepts; it is
        cloned, never fitted itself. Default: ``LogisticRegression(max_iter=2000)``
        for classification, ``LinearRegression()`` for regression.

    Returns
    -------
    float
        ``estimator.score`` on the test split: mean accuracy for scikit-learn
        classifiers, the coefficient of determination R² for regressors.

    Raises
    ------
    ValueError
        Unknown ``task``; wrong shapes, row counts that differ between ``X`` and
        ``y``, different column counts between the splits, NaN or infinite values;
        an empty ``selected``, a repeated or out-of-range index.
    TypeError
        ``selected`` not integer indices; an ``estimator`` without ``fit``/``score``.
    """
    from sklearn.base import clone

    _check_task(task)
    X_train_np, y_train_np = _as_numpy_pair(X_train, y_train, "X_train", "y_train")
    X_test_np, y_test_np = _as_numpy_pair(X_test, y_test, "X_test", "y_test")
    if X_train_np.shape[1] != X_test_np.shape[1]:
        raise ValueError(
            f"X_train has {X_train_np.shape[1]} columns but X_test has {X_test_np.shape[1]}; both splits need the same columns"
        )
    columns = check_index_set(selected, "selected", X_train_np.shape[1])
    if estimator is None:
        from sklearn.linear_model import LinearRegression, LogisticRegression

        estimator = LogisticRegression(max_iter=2000) if task == "classification" else LinearRegression()
    elif not (callable(getattr(estimator, "fit", None)) and callable(getattr(estimator, "score", None))):
        raise TypeError(f"estimator must have fit and score methods (a scikit-learn estimator), got {type(estimator).__name__}")
    # numpy's column indexing returns Fortran-ordered arrays; the solvers' float32 rounding depends on the
    # layout, so the columns are passed C-ordered whatever the input's layout (as torch's indexing gives them)
    train_columns = np.ascontiguousarray(X_train_np[:, columns])
    test_columns = np.ascontiguousarray(X_test_np[:, columns])
    fitted = clone(estimator).fit(train_columns, y_train_np)
    return float(fitted.score(test_columns, y_test_np))


def masked_score(
    model: Callable[[torch.Tensor], torch.Tensor],
    X_test: np.ndarray | torch.Tensor,
    y_test: np.ndarray | torch.Tensor,
    selected: Sequence[int] | np.ndarray | torch.Tensor,
    *,
    task: str = "classification",
    fill: float | np.ndarray | torch.Tensor | None = None,
) -> float:
    """Score of a trained model re-evaluated with the unselected columns replaced by ``fill``.

    The model is called once, under :func:`torch.no_grad`, on a copy of
    ``X_test`` whose columns outside ``selected`` hold ``fill``; it is used as it
    is (call ``model.eval()`` first; a module whose dropout or batch-norm layers
    are in training mode is refused).

    Parameters
    ----------
    model : callable
        A torch module or function mapping a ``(n, d)`` tensor to outputs of shape
        ``(n, c)`` (class scores, for classification) or ``(n,)``/``(n, c)``
        (regression: the first output column is the prediction).
    X_test : ndarray or Tensor, shape (n, d)
        Test inputs, finite. Converted to the dtype and device of the model's first
        parameter (float32 for a parameter-free function given a numpy array).
    y_test : ndarray or Tensor, shape (n,)
        Integer class labels in ``[0, c)`` for classification, real values for regression.
    selected : sequence of int, ndarray or Tensor, shape (k,)
        Distinct column indices in ``[0, d)``, ``k >= 1``: the columns kept.
    task : {"classification", "regression"}
    fill : float, ndarray or Tensor of shape (d,), optional
        Value of the unselected columns: one number for all of them, or one per
        column (e.g. the training mean; entries at selected columns are ignored).
        Default 0.0, the training mean of standardised data.

    Returns
    -------
    float
        Classification: accuracy, the share of rows whose arg-max output equals
        the label (``correct / n``). Regression: ``R² = 1 - SSE / SST`` of the first
        output column, with ``SSE = sum((pred - y)**2)`` and
        ``SST = sum((y - mean(y))**2)``, computed in float64.

    Raises
    ------
    ValueError
        Unknown ``task``; wrong shapes, ``X``/``y`` row counts that differ, NaN or
        infinite values, non-integer class labels, a constant ``y_test`` (SST = 0)
        for regression; an empty ``selected``, a repeated or out-of-range index; a
        ``fill`` array whose length is not ``d`` or a non-finite ``fill``; outputs
        with the wrong number of rows; a model in training mode.
    TypeError
        ``model`` not callable, ``selected`` not integer indices, ``fill`` neither a
        number nor an array.
    """
    _check_task(task)
    if not callable(model):
        raise TypeError(f"model must be callable (a torch module or function), got {type(model).__name__}")
    check_inference_mode(model, "first")
    X_np, y_np = _as_numpy_pair(X_test, y_test, "X_test", "y_test")
    n, d = X_np.shape
    columns = check_index_set(selected, "selected", d)
    fill_values = _check_fill(fill, d)

    outputs = _masked_outputs(model, X_test, X_np, columns, fill_values)
    if task == "classification":
        if outputs.ndim != 2:
            raise ValueError(f"classification needs outputs of shape (n, classes), got {tuple(outputs.shape)}")
        labels = _integer_labels(y_np)
        predicted = outputs.argmax(1).numpy()
        return int(np.count_nonzero(predicted == labels)) / n
    return _r_squared(outputs, y_np)


def _masked_outputs(model: Callable[[torch.Tensor], torch.Tensor], X_test: np.ndarray | torch.Tensor,
                    X_np: np.ndarray, columns: Sequence[int], fill_values: np.ndarray) -> torch.Tensor:
    """``model`` on ``X_test`` ``(n, d)`` with the columns outside ``columns`` set to ``fill_values``, on the CPU.

    Called once under :func:`torch.no_grad`, in the dtype and on the device of the model's first parameter;
    outputs that are not a tensor with ``n`` rows are refused.
    """
    n, d = X_np.shape
    dtype, device = _model_dtype_device(model)
    x = X_test.detach() if isinstance(X_test, torch.Tensor) else torch.as_tensor(X_np)
    x = x.to(dtype=dtype, device=device)
    masked = torch.as_tensor(fill_values, dtype=dtype, device=device).expand(n, d).clone()
    index = torch.as_tensor(columns, dtype=torch.long, device=device)
    masked[:, index] = x[:, index]
    with torch.no_grad():
        outputs = model(masked)
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(f"model must return a tensor, got {type(outputs).__name__}")
    outputs = outputs.detach().cpu()
    if outputs.ndim == 0 or outputs.shape[0] != n:
        raise ValueError(f"model returned outputs of shape {tuple(outputs.shape)} for {n} rows; expected ({n}, ...)")
    return outputs


def _r_squared(outputs: torch.Tensor, y_np: np.ndarray) -> float:
    """``R² = 1 − SSE/SST`` of the first output column against ``y_np`` ``(n,)``, in float64."""
    n = y_np.shape[0]
    prediction = (outputs if outputs.ndim == 1 else outputs.reshape(n, -1)[:, 0]).double().numpy()
    target = y_np.astype(np.float64)
    total = float(np.sum((target - target.mean()) ** 2))
    if total == 0.0:
        raise ValueError("y_test is constant, so R² (1 - SSE/SST) is undefined: SST = 0")
    return 1.0 - float(np.sum((prediction - target) ** 2)) / total


# ------------------------------------------------------------------ input checks
def _check_task(task: Any) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def _to_numpy(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    try:
        array = np.asarray(values)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be a numpy array or torch tensor: {exc}") from exc
    if array.dtype == object:
        raise TypeError(f"{name} must be a numeric numpy array or torch tensor, got dtype object")
    return array


def _as_numpy_pair(X: Any, y: Any, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """``X`` as an ``(n, d)`` and ``y`` as an ``(n,)`` numeric array with matching ``n``, both finite."""
    X_np, y_np = _to_numpy(X, x_name), _to_numpy(y, y_name)
    if X_np.ndim != 2:
        raise ValueError(f"{x_name} must have shape (n, d), got shape {X_np.shape}")
    if y_np.ndim != 1:
        raise ValueError(f"{y_name} must have shape (n,), got shape {y_np.shape}")
    if X_np.shape[0] != y_np.shape[0]:
        raise ValueError(f"{x_name} has {X_np.shape[0]} rows but {y_name} has {y_np.shape[0]}; the row counts must match")
    if X_np.shape[0] == 0:
        raise ValueError(f"{x_name} has no rows")
    for array, name in ((X_np, x_name), (y_np, y_name)):
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
            raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
        if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
            bad = int(np.count_nonzero(~np.isfinite(array)))
            raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return X_np, y_np


def _check_fill(fill: Any, d: int) -> np.ndarray:
    """``fill`` as a finite float64 array of shape ``(d,)``."""
    if fill is None:
        return np.zeros(d)
    if isinstance(fill, Real) and not isinstance(fill, bool):
        values = np.full(d, float(fill))
    else:
        if isinstance(fill, bool):
            raise TypeError("fill must be a number or a (d,) array, got a bool")
        array = _to_numpy(fill, "fill")
        if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"fill must be a number or a numeric (d,) array, got dtype {array.dtype}")
        if array.ndim == 0:
            array = np.full(d, array.item())
        if array.shape != (d,):
            raise ValueError(f"fill must be a number or an array of shape ({d},) (one value per column), got shape {array.shape}")
        values = array.astype(np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError("fill contains NaN or infinite value(s)")
    return values


def _integer_labels(y: np.ndarray) -> np.ndarray:
    if np.issubdtype(y.dtype, np.integer):
        return y
    if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    raise ValueError(f"classification needs integer class labels in y_test, got non-integer values of dtype {y.dtype}")


def _model_dtype_device(model: Any) -> tuple[torch.dtype, torch.device]:
    """Dtype and device of the model's first floating parameter (float32 on the CPU without one)."""
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype, parameter.device
    return torch.float32, torch.device("cpu")
