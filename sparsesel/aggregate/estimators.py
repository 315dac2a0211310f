"""Estimators that learn individual-level models from bag aggregates.

All estimators follow scikit-learn conventions (``get_params``/``set_params``/
``clone``, learned state with a trailing underscore) except that ``fit`` takes
``fit(X, y_agg, bags)``: ``X`` holds every row's features, ``bags`` gives every
row's bag (see :func:`sparsesel.aggregate.bags.as_bags`) and ``y_agg`` one
aggregate per bag, ordered by bag id.

Losses (Javanmard et al., ICLR 2024), with ``k_a`` the size of bag ``a``,
``f̄_a = (1/k_a) Σ_{i∈a} f(x_i)``, ``n = Σ k_a``:

* bag-level       ``L_bag = (1/n) Σ_a k_a · ℓ(ȳ_a, f̄_a)``   (``= (1/m) Σ_a ℓ(ȳ_a, f̄_a)`` for equal bags)
* instance-level  ``L_ins = (1/n) Σ_a Σ_{i∈a} ℓ(ȳ_a, f(x_i))``
* interpolating   ``L_int = (1-ρ)·L_bag + ρ·L_ins``, plus ``alpha·‖W‖²`` on the weights.

For the squared loss ``L_ins = L_bag + (1/n) Σ_a Σ_{i∈a} (f(x_i) - f̄_a)²`` exactly,
so ``L_int = L_bag + ρ·(within-bag spread of the predictions)``. Classifiers use
the cross-entropy ``ℓ(p, q) = -Σ_c p_c log q_c`` between bag label proportions
``p`` and predicted class probabilities ``q``.

Linear regression (``model="linear"``) is solved in closed form; logistic
regression (``model="linear"`` for classifiers) and MLPs (``model="mlp"``) are
trained with torch (L-BFGS and Adam respectively, full batch, float64).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted

from sparsesel.aggregate.bags import Bags, as_bags, check_aggregates
from sparsesel.validation import as_finite_array

MODELS = ("linear", "mlp")


# --------------------------------------------------------------------------- checks
def _check_X(X: Any) -> np.ndarray:
    return as_finite_array(X, "X", ndim=2)


def _check_common(est: Any) -> None:
    if est.model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {est.model!r}")
    alpha = est.alpha
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating, np.integer)) or not (
        math.isfinite(alpha) and alpha >= 0
    ):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if not isinstance(est.max_iter, (int, np.integer)) or est.max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {est.max_iter!r}")


def _check_rho(rho: Any) -> float | str:
    if isinstance(rho, str):
        if rho not in ("cv", "auto"):
            raise ValueError(f"rho must be a number in [0, 1], 'cv' or 'auto', got {rho!r}")
        return rho
    if isinstance(rho, bool) or not isinstance(rho, (int, float, np.floating, np.integer)):
        raise TypeError(f"rho must be a number in [0, 1], 'cv' or 'auto', got {rho!r}")
    rho = float(rho)
    if not (0.0 <= rho <= 1.0):
        raise ValueError(f"rho must be in [0, 1], got {rho!r}")
    return rho


def _default_grid(grid: Any) -> np.ndarray:
    values = np.linspace(0.0, 1.0, 11) if grid is None else np.asarray(grid, dtype=np.float64).ravel()
    if values.size == 0 or np.any(~np.isfinite(values)) or np.any((values < 0) | (values > 1)):
        raise ValueError(f"rho_grid must hold values in [0, 1], got {grid!r}")
    return values


def _subset_bags(bags: Bags, keep: np.ndarray) -> tuple[np.ndarray, Bags]:
    """Rows of the bags ``keep`` (sorted bag ids) and their relabelled :class:`Bags`."""
    rows = np.flatnonzero(np.isin(bags.ids, keep))
    relabel = np.full(bags.n_bags, -1)
    relabel[keep] = np.arange(keep.size)
    return rows, as_bags(relabel[bags.ids[rows]], rows.size)


# --------------------------------------------------------------------------- regression
def _linear_pieces(X: np.ndarray, y_bar: np.ndarray, bags: Bags, fit_intercept: bool) -> dict[str, Any]:
    """The ρ-independent parts of the normal equations (see :func:`interpolating_linear_fit`)."""
    n, d = X.shape
    k = bags.sizes.astype(np.float64)
    X_bar = bags.mean(X)
    if fit_intercept:
        x_c = k @ X_bar / n
        y_c = float(k @ y_bar / n)
    else:
        x_c, y_c = np.zeros(d), 0.0
    Xb = X_bar - x_c
    within = X - X_bar[bags.ids]
    return {
        "bag_gram": Xb.T @ (k[:, None] * Xb),
        "within_gram": within.T @ within,
        "rhs": Xb.T @ (k * (y_bar - y_c)),
        "x_c": x_c,
        "y_c": y_c,
        "n": n,
        "n_bags": bags.n_bags,
        "fit_intercept": fit_intercept,
    }


def _solve_pieces(pieces: dict[str, Any], rho: float, alpha: float) -> tuple[np.ndarray, float]:
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    n = pieces["n"]
    d = pieces["rhs"].shape[0]
    gram = pieces["bag_gram"] + rho * pieces["within_gram"] + n * alpha * np.eye(d)
    rhs = pieces["rhs"]
    coef = None
    if alpha > 0 or (rho > 0 and n > d) or pieces["n_bags"] > d + int(pieces["fit_intercept"]):
        try:
            factor = cho_factor(gram, lower=True)
            if np.min(np.abs(np.diag(factor[0]))) > 1e-10 * math.sqrt(max(np.max(np.diag(gram)), 1e-300)):
                coef = cho_solve(factor, rhs)
        except LinAlgError:
            coef = None
    if coef is None:
        coef = np.linalg.lstsq(gram, rhs, rcond=None)[0]
    return coef, pieces["y_c"] - float(pieces["x_c"] @ coef)


def interpolating_linear_fit(
    X: np.ndarray, y_bar: np.ndarray, bags: Bags, rho: float, alpha: float, fit_intercept: bool
) -> tuple[np.ndarray, float]:
    """Closed-form minimiser of ``(1-ρ)L_bag + ρL_ins + alpha‖w‖²`` for ``f(x) = xᵀw + b``.

    Normal equations: with ``X̄`` the bag means (centred by ``Σ k_a x̄_a / n`` when
    ``fit_intercept``), ``K = diag(k_a)`` and ``S_w = Σ_i (x_i - x̄_{a(i)})(x_i - x̄_{a(i)})ᵀ``,

        (X̄ᵀKX̄ + ρ·S_w + n·alpha·I) w = X̄ᵀK ȳ.

    When the matrix is singular (e.g. bag-level with fewer bags than features) the
    minimum-norm minimiser is returned.

    Returns
    -------
    coef : ndarray, shape (d,)
    intercept : float
    """
    return _solve_pieces(_linear_pieces(X, y_bar, bags, fit_intercept), rho, alpha)


class _RegressorBase(RegressorMixin, BaseEstimator):
    """Shared fit/predict of the three aggregate regressors."""

    _fixed_rho: float | None = None

    def _rho_param(self) -> float | str:
        return self._fixed_rho if self._fixed_rho is not None else _check_rho(self.rho)

    def fit(self, X: Any, y_agg: Any, bags: Any) -> _RegressorBase:
        """Fit from per-bag aggregates.

        Parameters
        ----------
        X : array_like, shape (n, d)
            Features of every row.
        y_agg : array_like, shape (n_bags,)
            One aggregate per bag (means, or sums with ``aggregate="sum"``), by bag id.
        bags : bag assignment, see :func:`sparsesel.aggregate.bags.as_bags`
        """
        _check_common(self)
        if self.aggregate not in ("mean", "sum"):
            raise ValueError(f"aggregate must be 'mean' or 'sum', got {self.aggregate!r}")
        X = _check_X(X)
        b = as_bags(bags, X.shape[0])
        y_agg = check_aggregates(y_agg, b)
        y_bar = y_agg / b.sizes if self.aggregate == "sum" else y_agg
        rho = self._rho_param()
        self.n_features_in_ = X.shape[1]
        if rho == "cv":
            rho = self._select_rho_cv(X, y_bar, b)
        elif rho == "auto":
            rho = self._select_rho_formula(X, y_bar, b)
        self.rho_ = float(rho)
        self._fit_rho(X, y_bar, b, self.rho_)
        return self

    def _fit_rho(self, X: np.ndarray, y_bar: np.ndarray, b: Bags, rho: float) -> None:
        if self.model == "linear":
            self.coef_, self.intercept_ = interpolating_linear_fit(X, y_bar, b, rho, float(self.alpha), self.fit_intercept)
            self.network_ = None
            return
        import torch

        from sparsesel.aggregate import torch_networks as T

        x_mean, x_std = X.mean(axis=0), X.std(axis=0)
        x_std = np.where(x_std > 0, x_std, 1.0)
        y_rows = y_bar[b.ids]
        y_mean, y_std = float(y_rows.mean()), float(y_rows.std()) or 1.0
        self._x_scale_ = (x_mean, x_std)
        self._y_scale_ = (y_mean, y_std)
        Xt = T.as_tensor((X - x_mean) / x_std)
        yt = T.as_tensor((y_bar - y_mean) / y_std)
        ids = torch.as_tensor(np.array(b.ids))
        sizes = T.as_tensor(b.sizes.astype(np.float64))
        n = X.shape[0]
        net = T.build_network(X.shape[1], 1, self.hidden_layer_sizes, self.fit_intercept, self.seed)

        def objective() -> torch.Tensor:
            f = net(Xt)[:, 0]
            f_bar = torch.zeros(b.n_bags, dtype=T.DTYPE).index_add(0, ids, f) / sizes
            bag = (sizes * (yt - f_bar) ** 2).sum() / n
            ins = ((yt[ids] - f) ** 2).sum() / n
            return (1 - rho) * bag + rho * ins + self.alpha * T.weight_penalty(net)

        self.loss_curve_ = T.train(net, objective, optimizer="adam", max_iter=self.max_iter, learning_rate=self.learning_rate)
        self.network_ = net

    def predict(self, X: Any) -> np.ndarray:
        """Predicted individual responses, shape (n,)."""
        check_is_fitted(self, "rho_")
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the model was fit with {self.n_features_in_}")
        return self._raw_predict(X)

    def _raw_predict(self, X: np.ndarray) -> np.ndarray:
        if self.network_ is None:
            return X @ self.coef_ + self.intercept_
        import torch

        from sparsesel.aggregate import torch_networks as T

        x_mean, x_std = self._x_scale_
        with torch.no_grad():
            f = self.network_(T.as_tensor((X - x_mean) / x_std))[:, 0].numpy()
        return f * self._y_scale_[1] + self._y_scale_[0]

    def _bag_score(self, X: np.ndarray, y_bar: np.ndarray, b: Bags) -> float:
        """Size-weighted bag-level squared error of the predictions (lower is better)."""
        f_bar = b.mean(self._raw_predict(X))
        return float(b.sizes @ (y_bar - f_bar) ** 2 / b.sizes.sum())

    def _select_rho_cv(self, X: np.ndarray, y_bar: np.ndarray, b: Bags) -> float:
        grid = _default_grid(self.rho_grid)
        folds = min(int(self.cv), b.n_bags)
        if folds < 2:
            raise ValueError(f"rho='cv' needs at least 2 bags and cv >= 2, got {b.n_bags} bag(s), cv={self.cv!r}")
        splitter = KFold(n_splits=folds, shuffle=True, random_state=self.seed)
        scores = np.zeros(grid.size)
        for train_bags, test_bags in splitter.split(np.arange(b.n_bags)):
            rows_tr, b_tr = _subset_bags(b, train_bags)
            rows_te, b_te = _subset_bags(b, test_bags)
            pieces = _linear_pieces(X[rows_tr], y_bar[train_bags], b_tr, self.fit_intercept) if self.model == "linear" else None
            for j, rho in enumerate(grid):
                if pieces is not None:  # closed form: reuse the ρ-independent Gram matrices
                    self.coef_, self.intercept_ = _solve_pieces(pieces, float(rho), float(self.alpha))
                    self.network_ = None
                else:
                    self._fit_rho(X[rows_tr], y_bar[train_bags], b_tr, float(rho))
                scores[j] += self._bag_score(X[rows_te], y_bar[test_bags], b_te) / folds
        self.cv_scores_ = dict(zip(grid.tolist(), scores.tolist()))
        return float(grid[int(np.argmin(scores))])

    def _select_rho_formula(self, X: np.ndarray, y_bar: np.ndarray, b: Bags) -> float:
        """Plug-in version of the paper's optimal mixing (isotropic-Gaussian theory).

        σ² and ‖θ₀‖² are estimated from the bag-level least-squares fit (unbiased
        under the model); the features are assumed isotropic, so standardise them.
        """
        from sparsesel.aggregate.risk import optimal_rho

        n, d = X.shape
        dof = b.n_bags - d - int(self.fit_intercept)
        if dof < 2:
            raise ValueError(
                f"rho='auto' estimates the noise from the bag-level fit and needs more bags than features + 1 "
                f"(got {b.n_bags} bags, {d} features); use rho='cv'"
            )
        coef, intercept = interpolating_linear_fit(X, y_bar, b, 0.0, 0.0, self.fit_intercept)
        resid = y_bar - (b.mean(X) @ coef + intercept)
        noise = float(b.sizes @ resid**2 / dof)
        Xc = X - X.mean(axis=0) if self.fit_intercept else X
        cov = Xc.T @ Xc / n
        X_bar = b.mean(X)
        Xb = X_bar - (b.sizes @ X_bar / n if self.fit_intercept else 0.0)
        inv = np.linalg.pinv(Xb.T @ (b.sizes[:, None] * Xb))
        signal = max(float(coef @ cov @ coef) - noise * float(np.trace(cov @ inv)), 0.0)
        self.noise_estimate_, self.signal_estimate_ = noise, signal
        k = n / b.n_bags
        return optimal_rho(d / n, k, signal, noise, float(self.alpha)).rho


class InterpolatingRegressor(_RegressorBase):
    """The interpolating estimator: minimise ``(1-ρ)L_bag + ρL_ins + alpha‖W‖²``.

    Parameters
    ----------
    rho : float in [0, 1], "cv" or "auto"
        Mixing weight (0: bag-level, 1: instance-level). ``"cv"`` picks it from
        ``rho_grid`` by ``cv``-fold cross-validation over bags (score: size-weighted
        bag-level squared error on held-out bags, the only observable error);
        ``"auto"`` uses the risk formula of :mod:`sparsesel.aggregate.risk` with
        plug-in estimates of σ² and ‖θ₀‖² (linear model, isotropic-feature theory).
    alpha : float
        Ridge penalty on the weights (``alpha·‖W‖²``, losses averaged over rows).
    fit_intercept : bool
    model : {"linear", "mlp"}
        Closed form for ``"linear"``; torch Adam for ``"mlp"`` (inputs and responses
        standardised internally).
    hidden_layer_sizes : tuple of int
        MLP hidden widths.
    max_iter : int
        Adam steps (full batch) for the MLP.
    learning_rate : float
    aggregate : {"mean", "sum"}
        What ``y_agg`` holds.
    cv : int
    rho_grid : array_like, optional
        Candidates for ``rho="cv"`` (default 0, 0.1, ..., 1).
    seed : int

    Attributes
    ----------
    rho_ : float
        The mixing weight used.
    coef_, intercept_ : ndarray (d,), float
        Linear model only.
    network_ : torch.nn.Module or None
    cv_scores_ : dict
        With ``rho="cv"``: mean held-out score per candidate.
    """

    def __init__(
        self,
        rho: float | str = 0.5,
        *,
        alpha: float = 0.0,
        fit_intercept: bool = True,
        model: str = "linear",
        hidden_layer_sizes: tuple[int, ...] = (32,),
        max_iter: int = 500,
        learning_rate: float = 1e-2,
        aggregate: str = "mean",
        cv: int = 5,
        rho_grid: Any = None,
        seed: int = 0,
    ) -> None:
        self.rho = rho
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.model = model
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.aggregate = aggregate
        self.cv = cv
        self.rho_grid = rho_grid
        self.seed = seed


class _FixedRhoRegressor(_RegressorBase):
    def __init__(
        self,
        *,
        alpha: float = 0.0,
        fit_intercept: bool = True,
        model: str = "linear",
        hidden_layer_sizes: tuple[int, ...] = (32,),
        max_iter: int = 500,
        learning_rate: float = 1e-2,
        aggregate: str = "mean",
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.model = model
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.aggregate = aggregate
        self.seed = seed


class BagLevelRegressor(_FixedRhoRegressor):
    """Minimise the bag-level loss ``L_bag`` (aggregate predictions vs aggregates); unbiased.

    Parameters as :class:`InterpolatingRegressor` without ``rho`` (fixed at 0).
    With fewer bags than features and ``alpha=0`` the minimiser is not unique; the
    minimum-norm one is returned.
    """

    _fixed_rho = 0.0


class InstanceLevelRegressor(_FixedRhoRegressor):
    """Minimise the instance-level loss ``L_ins`` (every row fit to its bag's aggregate).

    Equals the bag-level loss plus the within-bag spread of the predictions, so it
    is a regularised (lower-variance, biased) bag-level fit. ``rho`` fixed at 1.
    """

    _fixed_rho = 1.0


# --------------------------------------------------------------------------- classification
def _check_proportions(y_agg: Any, b: Bags, aggregate: str) -> np.ndarray:
    """One row of class proportions per bag, shape (n_bags, n_classes)."""
    y_agg = check_aggregates(y_agg, b, ndim=(1, 2))
    if y_agg.ndim == 1:
        if aggregate == "sum":
            y_agg = y_agg / b.sizes
        if np.any((y_agg < 0) | (y_agg > 1)):
            raise ValueError("y_agg (positive-class proportions) must lie in [0, 1]")
        return np.column_stack([1.0 - y_agg, y_agg])
    if y_agg.shape[1] < 2:
        raise ValueError(f"y_agg must have one column per class (>= 2), got shape {y_agg.shape}")
    if np.any(y_agg < 0):
        raise ValueError("y_agg (class proportions or counts) must be >= 0")
    totals = y_agg.sum(axis=1)
    if np.any(totals <= 0):
        raise ValueError("every row of y_agg needs a positive total")
    return y_agg / totals[:, None]


class _ClassifierBase(ClassifierMixin, BaseEstimator):
    _fixed_rho: float | None = None

    def _rho_param(self) -> float | str:
        if self._fixed_rho is not None:
            return self._fixed_rho
        rho = _check_rho(self.rho)
        if rho == "auto":
            raise ValueError("rho='auto' uses the linear-regression risk formula; use rho='cv' for classifiers")
        return rho

    def fit(self, X: Any, y_agg: Any, bags: Any) -> _ClassifierBase:
        """Fit from label proportions.

        Parameters
        ----------
        X : array_like, shape (n, d)
        y_agg : array_like, shape (n_bags,) or (n_bags, n_classes)
            Positive-class proportion per bag (binary), or class proportions/counts.
        bags : bag assignment
        """
        _check_common(self)
        if self.aggregate not in ("mean", "sum"):
            raise ValueError(f"aggregate must be 'mean' or 'sum', got {self.aggregate!r}")
        X = _check_X(X)
        b = as_bags(bags, X.shape[0])
        props = _check_proportions(y_agg, b, self.aggregate)
        self.classes_ = np.arange(props.shape[1])
        self.n_features_in_ = X.shape[1]
        rho = self._rho_param()
        if rho == "cv":
            rho = self._select_rho_cv(X, props, b)
        self.rho_ = float(rho)
        self._fit_rho(X, props, b, self.rho_)
        return self

    def _fit_rho(self, X: np.ndarray, props: np.ndarray, b: Bags, rho: float) -> None:
        import torch

        from sparsesel.aggregate import torch_networks as T

        x_mean, x_std = X.mean(axis=0), X.std(axis=0)
        x_std = np.where(x_std > 0, x_std, 1.0)
        self._x_scale_ = (x_mean, x_std)
        Xt = T.as_tensor((X - x_mean) / x_std)
        P = T.as_tensor(props)
        ids = torch.as_tensor(np.array(b.ids))
        sizes = T.as_tensor(b.sizes.astype(np.float64))
        n = X.shape[0]
        hidden = () if self.model == "linear" else self.hidden_layer_sizes
        net = T.build_network(X.shape[1], props.shape[1], hidden, self.fit_intercept, self.seed)

        def objective() -> torch.Tensor:
            logq = torch.log_softmax(net(Xt), dim=1)
            q_bar = torch.zeros(b.n_bags, P.shape[1], dtype=T.DTYPE).index_add(0, ids, logq.exp()) / sizes[:, None]
            bag = -(sizes * (P * torch.log(q_bar.clamp_min(1e-300))).sum(dim=1)).sum() / n
            ins = -(P[ids] * logq).sum() / n
            return (1 - rho) * bag + rho * ins + self.alpha * T.weight_penalty(net)

        optimizer = "lbfgs" if self.model == "linear" else "adam"
        self.loss_curve_ = T.train(net, objective, optimizer=optimizer, max_iter=self.max_iter, learning_rate=self.learning_rate)
        self.network_ = net

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of every row, shape (n, n_classes)."""
        check_is_fitted(self, "rho_")
        X = _check_X(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features but the model was fit with {self.n_features_in_}")
        return self._raw_proba(X)

    def _raw_proba(self, X: np.ndarray) -> np.ndarray:
        import torch

        from sparsesel.aggregate import torch_networks as T

        x_mean, x_std = self._x_scale_
        with torch.no_grad():
            return torch.softmax(self.network_(T.as_tensor((X - x_mean) / x_std)), dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class index (``0 .. n_classes-1``) per row."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _select_rho_cv(self, X: np.ndarray, props: np.ndarray, b: Bags) -> float:
        grid = _default_grid(self.rho_grid)
        folds = min(int(self.cv), b.n_bags)
        if folds < 2:
            raise ValueError(f"rho='cv' needs at least 2 bags and cv >= 2, got {b.n_bags} bag(s), cv={self.cv!r}")
        splitter = KFold(n_splits=folds, shuffle=True, random_state=self.seed)
        scores = np.zeros(grid.size)
        for train_bags, test_bags in splitter.split(np.arange(b.n_bags)):
            rows_tr, b_tr = _subset_bags(b, train_bags)
            rows_te, b_te = _subset_bags(b, test_bags)
            for j, rho in enumerate(grid):
                self._fit_rho(X[rows_tr], props[train_bags], b_tr, float(rho))
                q_bar = b_te.mean(self._raw_proba(X[rows_te]))
                ce = -(props[test_bags] * np.log(np.clip(q_bar, 1e-300, None))).sum(axis=1)
                scores[j] += float(b_te.sizes @ ce / b_te.sizes.sum()) / folds
        self.cv_scores_ = dict(zip(grid.tolist(), scores.tolist()))
        return float(grid[int(np.argmin(scores))])


class InterpolatingClassifier(_ClassifierBase):
    """Interpolating estimator for label proportions: ``(1-ρ)L_bag + ρL_ins`` with cross-entropy.

    ``model="linear"``: (multinomial) logistic regression trained with L-BFGS;
    ``model="mlp"``: a ReLU MLP trained with Adam. Inputs are standardised
    internally. Parameters as :class:`InterpolatingRegressor` (``rho="auto"`` is
    not available; use a number or ``"cv"``). ``max_iter`` counts L-BFGS
    iterations or Adam steps.

    The penalty ``alpha·‖W‖²`` acts on the weights of the *standardised*
    features (``(x - mean)/std`` of the training rows) and, for the linear
    model, on the full ``(n_classes, d)`` softmax weight matrix. With two
    classes and bags of size 1 the fit therefore equals scikit-learn's
    ``LogisticRegression(C=1/(alpha·n))`` on standardised features (the
    binary weight ``w = w₁ - w₀`` carries ``(alpha/2)·‖w‖²`` at the optimum),
    not the penalty on the raw features that :class:`InterpolatingRegressor`
    (``model="linear"``) uses.

    Attributes
    ----------
    classes_ : ndarray
        ``0 .. n_classes-1`` (the column order of ``y_agg``; for 1-D ``y_agg``, class 1
        is the positive class).
    rho_ : float
    network_ : torch.nn.Module
    """

    def __init__(
        self,
        rho: float | str = 0.5,
        *,
        alpha: float = 1e-4,
        fit_intercept: bool = True,
        model: str = "linear",
        hidden_layer_sizes: tuple[int, ...] = (32,),
        max_iter: int = 200,
        learning_rate: float = 1e-2,
        aggregate: str = "mean",
        cv: int = 5,
        rho_grid: Any = None,
        seed: int = 0,
    ) -> None:
        self.rho = rho
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.model = model
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.aggregate = aggregate
        self.cv = cv
        self.rho_grid = rho_grid
        self.seed = seed


class _FixedRhoClassifier(_ClassifierBase):
    def __init__(
        self,
        *,
        alpha: float = 1e-4,
        fit_intercept: bool = True,
        model: str = "linear",
        hidden_layer_sizes: tuple[int, ...] = (32,),
        max_iter: int = 200,
        learning_rate: float = 1e-2,
        aggregate: str = "mean",
        seed: int = 0,
    ) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.model = model
        self.hidden_layer_sizes = hidden_layer_sizes
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.aggregate = aggregate
        self.seed = seed


class BagLevelClassifier(_FixedRhoClassifier):
    """Bag-level cross-entropy between bag proportions and mean predicted probabilities (DLLP-style); ρ = 0."""

    _fixed_rho = 0.0


class InstanceLevelClassifier(_FixedRhoClassifier):
    """Instance-level cross-entropy: every row's probabilities fit to its bag's proportions; ρ = 1."""

    _fixed_rho = 1.0


class MeanMapClassifier(_FixedRhoClassifier):
    """The mean-matching (Mean Map) label-proportion baseline (Quadrianto et al., 2009).

    Class-conditional feature means ``μ_c`` are estimated by least squares from
    ``x̄_a ≈ Σ_c p_ac μ_c`` (bags weighted by size); the label-dependent term of the
    (multinomial) logistic log-likelihood, ``Σ_i Σ_c y_ic (w_cᵀx_i + b_c)``, is replaced by
    its estimate ``Σ_c N_c (w_cᵀμ̂_c + b_c)`` with ``N_c = Σ_a k_a p_ac``; the rest
    needs no labels. ``model`` must be ``"linear"``.
    """

    _fixed_rho = 0.0  # unused by the fit; keeps the shared ``fit`` path

    def _fit_rho(self, X: np.ndarray, props: np.ndarray, b: Bags, rho: float) -> None:
        if self.model != "linear":
            raise ValueError("MeanMapClassifier supports model='linear' only")
        import torch

        from sparsesel.aggregate import torch_networks as T

        x_mean, x_std = X.mean(axis=0), X.std(axis=0)
        x_std = np.where(x_std > 0, x_std, 1.0)
        self._x_scale_ = (x_mean, x_std)
        Z = (X - x_mean) / x_std
        w = np.sqrt(b.sizes.astype(np.float64))[:, None]
        means = np.linalg.lstsq(w * props, w * b.mean(Z), rcond=None)[0]  # (C, d)
        counts = b.sizes @ props  # (C,)
        self.class_means_ = means * x_std + x_mean
        Zt, Mt, Nt = T.as_tensor(Z), T.as_tensor(means), T.as_tensor(counts)
        n = X.shape[0]
        net = T.build_network(X.shape[1], props.shape[1], (), self.fit_intercept, self.seed)
        linear = net[0]

        def objective() -> torch.Tensor:
            partition = torch.logsumexp(net(Zt), dim=1).sum()
            fitted = (Nt * ((linear.weight * Mt).sum(dim=1) + (linear.bias if linear.bias is not None else 0.0))).sum()
            return (partition - fitted) / n + self.alpha * T.weight_penalty(net)

        self.loss_curve_ = T.train(net, objective, optimizer="lbfgs", max_iter=self.max_iter, learning_rate=self.learning_rate)
        self.network_ = net
