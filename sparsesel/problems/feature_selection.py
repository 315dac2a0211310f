"""Feature selection: choose k columns of X that best predict y."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from sparsesel.design_matrix import column_extremes, dense_columns, is_sparse, sparse_description
from sparsesel.problems.base import Problem
from sparsesel.problems.column_scaling import ColumnScaling, column_scaling
from sparsesel.validation import as_finite_array, as_finite_sparse, check_choice, check_index_set, check_int

#: Solvers that take a scipy sparse ``X`` without densifying it (``FeatureSelection.require_dense`` names them).
SPARSE_SOLVERS = ("omp", "greedy_forward", "lasso")

LOSSES = ("squared", "logistic")

#: Entries of ``X`` (and ``y``) beyond this magnitude are refused: column means and the
#: products of a column with a unit vector (what the solvers compute) must stay finite.
MAX_ABS_VALUE = 1e250

#: ``loss="logistic"``: largest accepted spread ``max |x − mean|`` of a column. The ridge
#: refit (scikit-learn's Newton–Cholesky) meets a Hessian whose conditioning grows with the
#: square of the spread; measured: right up to 1e7, wrong from 1e8 on (it falls back to an
#: lbfgs run that stops early), on n = 40 … 3000.
LOGISTIC_MAX_COLUMN_SPREAD = 1e6


@dataclass(frozen=True, eq=False)
class FeatureSelection(Problem):
    """Choose ``k`` of the ``d`` columns of ``X`` to predict ``y``.

    The objective of a subset ``S`` is the training loss of the model refit on
    the columns ``S`` alone:

    * ``loss="squared"``: the mean squared residual ``(1/n)·‖y − X_S β − b‖²`` of
      the least-squares fit (``b`` is the intercept when ``fit_intercept``).
    * ``loss="logistic"``: the mean (multinomial) log-loss of the logistic
      regression fit with ridge strength ``alpha`` (the penalty
      ``(alpha/2)·‖β‖²`` is used to fit, not counted in the reported loss). With
      more than two classes in ``y`` the model is multinomial.

    Column scales: the squared loss and its optimal subsets do not depend on how
    the columns are scaled, and the refit works on columns rescaled by powers of
    two (:attr:`scaling`), so columns of magnitude ``1e-200`` or ``1e200``, mixed
    with ordinary ones, give the right loss; the same holds for a sparse ``X``,
    whose columns are scaled without densifying it. Refused with a ``ValueError``:
    entries beyond :data:`MAX_ABS_VALUE`; for ``squared``, a ``y`` whose loss
    overflows or underflows float64; for ``logistic`` (whose ridge penalty
    does depend on the scales), columns spread wider than
    :data:`LOGISTIC_MAX_COLUMN_SPREAD`.

    Parameters
    ----------
    X : array_like or scipy.sparse matrix/array, shape (n, d)
        Finite numeric design matrix. Copied as float64 (a sparse ``X`` as a
        read-only CSC array, never densified); the caller's array is never
        modified. ``omp``, ``greedy_forward`` and ``lasso`` take a sparse ``X``
        as it is (centring for the intercept is implicit); the other solvers
        need a dense one and say so.
    y : array_like, shape (n,)
        Finite responses (``squared``) or class labels (``logistic``; numeric,
        at least two classes).
    k : int
        Number of features to select, ``1 <= k <= d``.
    loss : {"squared", "logistic"}
    fit_intercept : bool
        Whether every refit model has an (unpenalised) intercept.
    alpha : float
        Ridge strength of the logistic refit (ignored for ``squared``). Must be > 0
        for ``logistic`` so that separable data still have a finite fit.

    Raises
    ------
    TypeError
        Non-numeric ``X``/``y`` or a non-integer ``k``.
    ValueError
        Wrong dimensions, NaN/inf, mismatched lengths, ``k`` outside ``[1, d]``,
        unknown ``loss``, fewer than two classes for ``logistic``, extreme
        magnitudes (see "Column scales").
    """

    X: np.ndarray
    y: np.ndarray
    k: int
    loss: str = "squared"
    fit_intercept: bool = True
    alpha: float = 1e-4

    def __post_init__(self) -> None:
        X = as_finite_sparse(self.X, "X") if is_sparse(self.X) else as_finite_array(self.X, "X", ndim=2)
        y = as_finite_array(self.y, "y", ndim=(1, 2))
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(f"y must be one-dimensional (n,), got shape {y.shape}")
            y = y[:, 0]
        n, d = X.shape
        if y.shape[0] != n:
            raise ValueError(f"y has {y.shape[0]} entries but X has {n} rows; they must match")
        if isinstance(self.k, (int, np.integer)) and not isinstance(self.k, bool) and self.k > d:
            raise ValueError(f"k must be <= {d}, got {self.k}: X has only {d} feature(s) (columns) to choose from")
        k = check_int(self.k, "k", low=1, high=d)
        loss = check_choice(self.loss, "loss", LOSSES)
        if not isinstance(self.fit_intercept, (bool, np.bool_)):
            raise TypeError(f"fit_intercept must be a bool, got {self.fit_intercept!r}")
        try:
            if isinstance(self.alpha, (bool, str, bytes)):
                raise TypeError
            alpha = float(self.alpha)
        except (TypeError, ValueError):
            raise TypeError(f"alpha must be a number, got {type(self.alpha).__name__} {self.alpha!r}") from None
        if not np.isfinite(alpha) or alpha < 0 or (loss == "logistic" and alpha == 0):
            raise ValueError(f"alpha must be finite and > 0 for the logistic loss, got {self.alpha!r}")
        if loss == "logistic":
            classes = np.unique(y)
            if classes.size < 2:
                raise ValueError(f"y must hold at least two classes for loss='logistic', got {classes.tolist()}")
            if classes.size > max(2, n // 2):
                raise ValueError(
                    f"y has {classes.size} distinct values for {n} rows: loss='logistic' needs class labels"
                )
        _check_magnitude(X, "X")
        _check_magnitude(y, "y")
        if not is_sparse(X):
            X.setflags(write=False)
        y.setflags(write=False)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "fit_intercept", bool(self.fit_intercept))
        object.__setattr__(self, "alpha", alpha)
        if loss == "squared":
            _check_squared_loss_range(self.scaling, y, self.fit_intercept)
        else:
            _check_logistic_spread(self.scaling)

    @cached_property
    def scaling(self) -> ColumnScaling:
        """Centring (with an intercept) and power-of-two scales of the columns of ``X`` and of ``y``.

        Solvers compute on ``(X − x_mean)/x_scale`` and ``(y − y_mean)/y_scale``, whose
        entries lie in ``(-1, 1)``; see :mod:`sparsesel.problems.column_scaling`.
        """
        return column_scaling(self.X, self.y if self.loss == "squared" else None, self.fit_intercept)

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    @property
    def is_sparse(self) -> bool:
        """Whether ``X`` is stored sparse (a scipy CSC array)."""
        return is_sparse(self.X)

    def columns(self, subset: Sequence[int]) -> np.ndarray:
        """The columns ``X[:, subset]`` as a dense float64 array of shape ``(n, len(subset))``."""
        return dense_columns(self.X, subset)

    def require_dense(self, solver: str) -> np.ndarray:
        """``X`` as a dense array, or a clear ``TypeError`` when it is sparse.

        Parameters
        ----------
        solver : str
            The solver's name, for the message.
        """
        if self.is_sparse:
            raise TypeError(
                f"solver {solver!r} needs a dense X, got a scipy sparse matrix ({sparse_description(self.X)}); "
                f"use one of {', '.join(SPARSE_SOLVERS)}, which take sparse X without densifying it, or pass "
                "X.toarray() if the dense array fits in memory"
            )
        return self.X

    def check_subset(self, subset: Sequence[int]) -> list[int]:
        """Validate a subset of column indices (distinct, in range) and return it as a list."""
        return check_index_set(list(subset), "subset", self.n_features, allow_empty=True).tolist()

    def refit(self, subset: Sequence[int]) -> dict[str, Any]:
        """Fit the problem's model on the columns ``subset``.

        Returns
        -------
        dict
            ``coef`` (shape ``(len(subset),)``, or ``(n_classes, len(subset))`` for
            multinomial), ``intercept`` and ``loss`` (the objective value).
        """
        subset = self.check_subset(subset)
        if self.loss == "squared":
            return self._refit_squared(subset)
        return self._refit_logistic(subset)

    def objective(self, subset: Sequence[int]) -> float:
        """The training loss of the model refit on ``subset`` (see the class docstring)."""
        return float(self.refit(subset)["loss"])

    def _refit_squared(self, subset: list[int]) -> dict[str, Any]:
        # on the rescaled columns and response: least squares does not depend on the
        # columns' scales, and the SVD's rank cut-off then sees every column at its own scale
        scaling = self.scaling
        Xs = scaling.scaled_columns(self.X, subset)
        ys = scaling.scaled_response(self.y)
        if subset:
            coef_scaled, *_ = np.linalg.lstsq(Xs, ys, rcond=None)
        else:
            coef_scaled = np.zeros(0)
        residual = ys - Xs @ coef_scaled
        loss = scaling.unscale_squared(residual @ residual / self.X.shape[0])
        coef = scaling.unscale_coef(coef_scaled, subset)
        with np.errstate(over="ignore", invalid="ignore"):
            intercept = float(scaling.y_mean - scaling.x_mean[subset] @ coef) if self.fit_intercept else 0.0
        if not (np.all(np.isfinite(coef)) and np.isfinite(intercept)):
            raise ValueError(
                f"the least-squares coefficients of columns {subset} overflow float64 (y spreads over "
                f"{scaling.y_spread:.1e}, the narrowest of these columns over "
                f"{float(np.min(scaling.x_spread[subset])):.1e}); rescale X or y"
            )
        return {"coef": coef, "intercept": intercept, "loss": loss}

    def _refit_logistic(self, subset: list[int]) -> dict[str, Any]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        y = self.y
        n = self.n_samples
        classes = np.unique(y)
        if not subset:
            if self.fit_intercept:
                freq = np.array([(y == c).mean() for c in classes])
                proba = np.tile(freq, (n, 1))
            else:
                proba = np.full((n, classes.size), 1.0 / classes.size)
            coef = np.zeros((1 if classes.size == 2 else classes.size, 0))
            return {"coef": coef, "intercept": np.log(proba[0]), "loss": float(log_loss(y, proba, labels=classes))}
        model = LogisticRegression(
            C=1.0 / (self.alpha * n), fit_intercept=self.fit_intercept, solver="newton-cholesky", max_iter=500, tol=1e-10
        )
        Xs = self.columns(subset)
        model.fit(Xs, y)
        proba = model.predict_proba(Xs)
        coef = model.coef_[0] if classes.size == 2 else model.coef_
        return {"coef": coef, "intercept": model.intercept_, "loss": float(log_loss(y, proba, labels=model.classes_))}


def _check_magnitude(values: Any, name: str) -> None:
    """Refuse entries beyond :data:`MAX_ABS_VALUE`, naming the first offending column (dense or sparse)."""
    if is_sparse(values):
        x_max, x_min = column_extremes(values)
        largest = np.maximum(x_max, -x_min)
    else:
        largest = np.max(np.abs(values), axis=0)
    if np.any(largest > MAX_ABS_VALUE):
        where = f" (column {int(np.argmax(largest))})" if values.ndim == 2 else ""
        raise ValueError(
            f"{name} has entries of magnitude {float(np.max(largest)):.3e}{where}; values beyond "
            f"{MAX_ABS_VALUE:.0e} are refused (float64 sums of them overflow): rescale {name}"
        )


def _check_squared_loss_range(scaling: ColumnScaling, y: np.ndarray, fit_intercept: bool) -> None:
    """Refuse a ``y`` whose squared loss (that of the empty model) overflows or underflows float64."""
    scaled = scaling.scaled_response(y)
    mean_square = float(scaled @ scaled) / y.shape[0]
    what = "variance" if fit_intercept else "mean square"
    try:
        loss = scaling.unscale_squared(mean_square)
    except OverflowError:
        loss = np.inf
    if not np.isfinite(loss):
        raise ValueError(
            f"y spreads over {scaling.y_spread:.1e}: its {what} (the squared loss of the empty model) "
            f"overflows float64; rescale y (the selection does not depend on y's units)"
        )
    if mean_square > 0.0 and loss < np.finfo(np.float64).tiny:
        raise ValueError(
            f"y spreads over only {scaling.y_spread:.1e}: its {what} ({loss:.1e}) underflows float64, so "
            f"squared losses cannot be compared; rescale y (the selection does not depend on y's units)"
        )


def _check_logistic_spread(scaling: ColumnScaling) -> None:
    """Refuse columns spread too wide for a reliable ridge-logistic refit."""
    spread = scaling.x_spread
    wide = np.flatnonzero(spread > LOGISTIC_MAX_COLUMN_SPREAD)
    if wide.size:
        shown = ", ".join(str(int(j)) for j in wide[:5]) + (", ..." if wide.size > 5 else "")
        raise ValueError(
            f"loss='logistic': column(s) {shown} of X spread over up to {float(np.max(spread)):.1e}; the "
            f"ridge-logistic refit is unreliable beyond {LOGISTIC_MAX_COLUMN_SPREAD:.0e} (its Hessian is "
            f"too ill-conditioned): standardise or rescale those columns"
        )
