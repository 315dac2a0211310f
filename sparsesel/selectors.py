"""scikit-learn feature selectors backed by sparsesel's solvers.

>>> from sklearn.pipeline import make_pipeline
>>> from sklearn.linear_model import LogisticRegression
>>> from sparsesel.selectors import SequentialAttentionSelector
>>> pipe = make_pipeline(SequentialAttentionSelector(k=20, model="mlp"), LogisticRegression())  # doctest: +SKIP

Both selectors are ``SelectorMixin`` + ``BaseEstimator`` estimators: ``fit(X, y)``
builds a :class:`~sparsesel.FeatureSelection` problem and calls
:func:`sparsesel.solve`; ``transform`` keeps the chosen columns, ``get_support``
gives the mask, and ``selected_features_`` the chosen columns in pick order.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data

from sparsesel.budget import Budget
from sparsesel.problems.feature_selection import FeatureSelection
from sparsesel.registry import solve
from sparsesel.result import Result

#: Allowed values of the budget ``k``: a count >= 1 or a fraction of the features in (0, 1].
_BUDGET = [Interval(Integral, 1, None, closed="left"), Interval(RealNotInt, 0, 1, closed="right")]


def resolve_budget(k: int | float, n_features: int) -> int:
    """The number of features a budget selects among ``n_features``.

    Parameters
    ----------
    k : int or float
        A count ``1 <= k <= n_features``, or a fraction in ``(0, 1]`` that selects
        ``floor(k * n_features)`` features, computed exactly (:class:`sparsesel.budget.Budget`,
        unit ``features``; ``0.29`` of 100 is 29), and at least one (scikit-learn's estimator
        checks fit data with a single feature). ``1.0`` selects every feature.
    n_features : int
        Number of columns of ``X``.

    Raises
    ------
    ValueError
        An integer ``k`` larger than ``n_features``.
    """
    budget = Budget.coerce(k, "features", name="k")
    if not budget.is_fraction and budget.amount > n_features:
        raise ValueError(f"k={k} must be <= the number of features (n_features={n_features})")
    return budget.resolve(n_features, name="k", at_least_one=True)


class _SolverSelector(SelectorMixin, BaseEstimator):
    """Common fit/support logic: subclasses name the solver, its options and the loss."""

    _parameter_constraints: dict = {"k": _BUDGET, "fit_intercept": ["boolean"]}

    #: Registered solver name used by :meth:`fit`.
    _solver: str = ""

    #: Sparse formats ``fit`` accepts as they are (scikit-learn's ``accept_sparse``); False: dense only.
    _accept_sparse: tuple[str, ...] | bool = False

    def _loss_for(self, y: np.ndarray) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def _solver_options(self) -> dict[str, Any]:
        return {}

    def fit(self, X: Any, y: Any) -> _SolverSelector:
        """Select features of ``X`` (shape ``(n, d)``) for the target ``y`` (shape ``(n,)``).

        Returns
        -------
        self
            With ``selected_features_`` (pick order), ``n_features_to_select_``,
            ``result_`` (the :class:`~sparsesel.Result`), ``loss_`` and
            ``n_features_in_``.
        """
        self._validate_params()
        X, y = validate_data(
            self, X, y, accept_sparse=self._accept_sparse, dtype=np.float64, ensure_min_samples=2, y_numeric=False
        )
        loss = self._loss_for(y)
        if loss == "logistic":
            self.classes_, y_fit = np.unique(y, return_inverse=True)
            y_fit = y_fit.astype(np.float64)
        else:
            try:
                y_fit = np.asarray(y, dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{type(self).__name__} with loss='squared' needs a numeric y; got dtype {np.asarray(y).dtype}"
                ) from None
        k = resolve_budget(self.k, X.shape[1])
        problem = FeatureSelection(X, y_fit, k, loss=loss, fit_intercept=self.fit_intercept)
        result: Result = solve(problem, solver=self._solver, **self._solver_options())
        self.result_ = result
        self.loss_ = loss
        self.n_features_to_select_ = k
        self.selected_features_ = np.asarray(result.selected, dtype=np.intp)
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "selected_features_")
        mask = np.zeros(self.n_features_in_, dtype=bool)
        mask[self.selected_features_] = True
        return mask

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        tags.input_tags.sparse = bool(self._accept_sparse)
        return tags


class OMPSelector(_SolverSelector):
    """Select ``k`` features by Orthogonal Matching Pursuit (sparsesel solver ``"omp"``).

    ``X`` may be a scipy sparse matrix or array (CSR, CSC or COO): it is not
    densified (the centring for the intercept is implicit).

    Parameters
    ----------
    k : int or float, default=0.5
        Number of features to select, or a fraction in ``(0, 1]`` of the features
        (``floor(k·d)`` computed exactly, at least 1; see :func:`resolve_budget`).
    fit_intercept : bool, default=True
        Centre ``X`` and ``y`` (an unpenalised intercept) before selecting.

    Attributes
    ----------
    selected_features_ : ndarray of shape (k,)
        Column indices in the order OMP picked them.
    n_features_to_select_ : int
        The resolved budget.
    result_ : sparsesel.Result
        The solver's full result (objective, trace, coefficients in ``info``).
    loss_ : str
        Always ``"squared"``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    """

    _solver = "omp"
    _accept_sparse = ("csr", "csc", "coo")

    def __init__(self, k: int | float = 0.5, *, fit_intercept: bool = True) -> None:
        self.k = k
        self.fit_intercept = fit_intercept

    def _loss_for(self, y: np.ndarray) -> str:
        return "squared"


class SequentialAttentionSelector(_SolverSelector):
    """Select ``k`` features by Sequential Attention (sparsesel solver ``"sequential_attention"``).

    Parameters
    ----------
    k : int or float, default=0.5
        Number of features to select, or a fraction in ``(0, 1]`` of the features
        (``floor(k·d)`` computed exactly, at least 1; see :func:`resolve_budget`).
    loss : {"auto", "squared", "logistic"}, default="auto"
        ``"auto"`` uses the logistic (cross-entropy) loss when ``y`` holds class
        labels (binary or multiclass, at most ``max(2, n/2)`` classes) and the
        squared loss otherwise.
    model : {"linear", "logistic", "mlp"} or None, default=None
        The predictor; ``None`` means linear for the squared loss and logistic
        for the logistic loss.
    inner : {"exact", "adam"} or None, default=None
        ``"exact"`` (the linear model's default) solves the linear model's inner
        problem in closed form: its picks are OMP's on the standardised columns
        (with ``ridge=None``); ``"adam"`` trains the model with the attention
        logits. ``None``: the solver's default for the model.
    epochs, warmup, hidden, lr, batch_size, weight_decay, ridge, standardize, seed, num_threads, progress
        Forwarded to the ``sequential_attention`` solver (see its documentation;
        ``None`` means the solver's model-dependent default).
    fit_intercept : bool, default=True
        Whether the model (and the refit that scores the selection) has an intercept.

    Attributes
    ----------
    selected_features_ : ndarray of shape (k,)
        Column indices in pick order.
    n_features_to_select_ : int
    result_ : sparsesel.Result
        The solver's result; ``result_.info["attention"]`` holds the attention
        weights at each pick.
    loss_ : str
        The loss used.
    classes_ : ndarray
        The class labels, when the logistic loss was used.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` had string column names.
    """

    _solver = "sequential_attention"

    _parameter_constraints: dict = {
        **_SolverSelector._parameter_constraints,
        "loss": [StrOptions({"auto", "squared", "logistic"})],
        "model": [StrOptions({"linear", "logistic", "mlp"}), None],
        "inner": [StrOptions({"exact", "adam"}), None],
        "epochs": [Interval(Integral, 1, None, closed="left"), None],
        "warmup": [Interval(Real, 0, 1, closed="left"), None],
        "hidden": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "ridge": [Interval(Real, 0, None, closed="left"), None],
        "standardize": ["boolean"],
        "seed": [Interval(Integral, 0, None, closed="left")],
        "num_threads": [Interval(Integral, 1, None, closed="left"), None],
        "progress": ["boolean"],
    }

    def __init__(
        self,
        k: int | float = 0.5,
        *,
        loss: str = "auto",
        model: str | None = None,
        inner: str | None = None,
        epochs: int | None = None,
        warmup: float | None = None,
        hidden: int = 64,
        lr: float | None = None,
        batch_size: int | None = None,
        weight_decay: float = 0.0,
        ridge: float | None = None,
        standardize: bool = True,
        fit_intercept: bool = True,
        seed: int = 0,
        num_threads: int | None = 1,
        progress: bool = False,
    ) -> None:
        self.k = k
        self.loss = loss
        self.model = model
        self.inner = inner
        self.epochs = epochs
        self.warmup = warmup
        self.hidden = hidden
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.ridge = ridge
        self.standardize = standardize
        self.fit_intercept = fit_intercept
        self.seed = seed
        self.num_threads = num_threads
        self.progress = progress

    def _loss_for(self, y: np.ndarray) -> str:
        if self.loss != "auto":
            return self.loss
        if type_of_target(y) in ("binary", "multiclass"):
            n_classes = np.unique(y).size
            if 2 <= n_classes <= max(2, y.shape[0] // 2):
                return "logistic"
        return "squared"

    def _solver_options(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "inner": self.inner,
            "epochs": self.epochs,
            "warmup": self.warmup,
            "hidden": self.hidden,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "ridge": self.ridge,
            "standardize": self.standardize,
            "seed": self.seed,
            "num_threads": self.num_threads,
            "progress": self.progress,
        }
