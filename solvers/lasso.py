"""ℓ1 (lasso) path baseline for feature selection, through scikit-learn.

The selection is the support of the ℓ1-penalised model at the strongest
penalty whose support has exactly ``k`` features, i.e. the first point where
``k`` features are active as the penalty decreases along the path. Selected
features are ordered by their entry into the path; the reported objective is
the problem's own refit loss on them (not the penalised fit).

* ``loss="squared"`` — the exact lasso path of scikit-learn's ``lars_path``
  (``method="lasso"``, so variables may also leave). The support is constant
  between two knots; the first segment with exactly ``k`` active features is
  taken and ``info["alpha"]`` is its midpoint, so that
  ``sklearn.linear_model.Lasso(alpha=info["alpha"])`` — objective
  ``(1/2n)·‖y − Xw − b‖² + alpha·‖w‖₁`` — has that same support (a segment's
  end points are where a coefficient is exactly 0, hence ambiguous).
  ``info["alpha_range"]`` gives the segment.
* ``loss="logistic"`` — ``LogisticRegression(l1_ratio=1, C=C)`` (``liblinear``
  for two classes, ``saga`` for more; support = features with a non-zero
  coefficient for any class) on a log grid of ``C`` upwards from
  ``sklearn.svm.l1_min_c``, then bisection in ``log C`` until exactly ``k``
  features are active. The columns are standardised first (unit variance,
  what these solvers need), so the penalty is ``Σ_j std_j·|w_j|`` in the
  original units. ``info["C"]`` is the ``C`` found.

Both losses first divide the columns by powers of two (``problem.scaling``;
exact), so that columns of magnitude ``1e±200`` neither overflow nor underflow.

A scipy sparse ``X`` is not densified: it is scaled as ``X·diag(1/s)`` (same
sparsity pattern). Squared loss: the same LARS path is run from the centred
Gram matrix ``XₛᵀXₛ − n·μₛμₛᵀ`` and ``Xₛᶜᵀyₛ`` (sparse products, scaled means
``μₛ``; ``lars_path_gram``), which needs ``d × d`` floats (``max_gram_bytes``)
but never ``n × d``. Logistic loss: the columns are scaled by their standard
deviation but not centred (centring would fill the zeros; the intercept absorbs
the shift), ``liblinear`` and ``saga`` taking the sparse matrix as it is.

When no penalty gives exactly ``k`` features (the path stops early, e.g.
``n < d``, or the count jumps over ``k``), the ``k`` earliest entries are taken,
completed if needed by the largest absolute correlation with the last
residual; ``info["exact_k"]`` is then ``False``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from sparsesel.design_matrix import (
    centred_transpose_product,
    column_means,
    is_sparse,
    scale_sparse_columns,
    sparse_centred_gram_columns,
    sparse_centred_sq_norms,
    sparse_description,
)
from sparsesel.problems.column_scaling import column_scaling
from sparsesel.problems.feature_selection import FeatureSelection
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int


def _entry_order(supports: list[np.ndarray], d: int) -> np.ndarray:
    """Index of the first support (along the path) containing each feature; ``len`` if never."""
    entry = np.full(d, len(supports), dtype=np.intp)
    for position, support in enumerate(supports):
        new = support & (entry == len(supports))
        entry[new] = position
    return entry


def _order_by_entry(features: np.ndarray, entry: np.ndarray, tiebreak: np.ndarray) -> list[int]:
    """Sort ``features`` by path entry, then by larger ``tiebreak``, then index."""
    keys = np.lexsort((features, -tiebreak[features], entry[features]))
    return [int(j) for j in features[keys]]


def _scaled_centred_design(problem: FeatureSelection, x_common: float, max_gram_bytes: int) -> tuple[Any, np.ndarray]:
    """``(D, m)`` with ``(X − x_mean)/x_common = D − 1·mᵀ``: dense ``D`` already centred (``m = 0``), or sparse.

    A sparse ``X`` is divided by ``x_common`` as ``X·diag(1/x_common)`` (same sparsity pattern;
    constant columns emptied, see :meth:`~sparsesel.problems.column_scaling.ColumnScaling.scaled_sparse`)
    and stays uncentred: ``m`` holds the scaled means.
    """
    X, d = problem.X, problem.n_features
    scaling = problem.scaling
    if not is_sparse(X):
        return (X - scaling.x_mean) / x_common, np.zeros(d)
    if 8 * d * d > max_gram_bytes:
        raise ValueError(
            f"lasso on a sparse X ({sparse_description(X)}) runs LARS on the {d}×{d} Gram matrix, "
            f"{8 * d * d / 2**20:.0f} MiB > max_gram_bytes={max_gram_bytes:,}; raise max_gram_bytes, or use "
            "omp or greedy_forward, which need no Gram matrix"
        )
    return scaling.scaled_sparse(X, np.full(d, x_common))


def _lars_lasso_path(design: Any, mean: np.ndarray, yc: np.ndarray, max_iter: int):
    """scikit-learn's LARS-lasso path ``(alphas, coefs)`` of ``D − 1·mᵀ`` and ``yc``.

    Dense ``D`` (``m = 0``): ``lars_path`` on it. Sparse ``D``: ``lars_path_gram`` on the
    centred Gram matrix ``DᵀD − n·m mᵀ`` (sparse products; LARS overwrites it, so it is
    made afresh for every call) and ``(D − 1mᵀ)ᵀ yc``.
    """
    from sklearn.linear_model import lars_path, lars_path_gram

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate-path warnings: handled by the caller
        if not is_sparse(design):
            alphas, _, coefs = lars_path(design, yc, method="lasso", max_iter=max_iter)
            return alphas, coefs
        n, d = design.shape
        gram = sparse_centred_gram_columns(design, mean, np.arange(d))
        xty = centred_transpose_product(design, mean, yc)
        alphas, _, coefs = lars_path_gram(xty, gram, n_samples=n, method="lasso", max_iter=max_iter, copy_Gram=False)
        return alphas, coefs


def _lasso_squared(problem: FeatureSelection, max_gram_bytes: int) -> tuple[list[int], dict]:
    y, k = problem.y, problem.k
    d = problem.n_features
    # The lasso path depends on the columns' relative scales, not on a common factor:
    # X and y are divided by powers of two (exact) so that nothing overflows, and the
    # penalties and coefficients are mapped back (alpha ∝ x_common·y_scale).
    scaling = problem.scaling
    x_common = float(np.max(scaling.x_scale))
    design, mean = _scaled_centred_design(problem, x_common, max_gram_bytes)
    yc = scaling.scaled_response(y)
    alpha_unit = x_common * scaling.y_scale
    coef_unit = scaling.y_scale / x_common
    max_iter = 4 * k + 20
    while True:
        alphas, coefs = _lars_lasso_path(design, mean, yc, max_iter)
        supports = [(coefs[:, i] + coefs[:, i + 1]) != 0 for i in range(len(alphas) - 1)]
        counts = [int(s.sum()) for s in supports]
        reached = any(c >= k for c in counts)
        if reached or len(alphas) - 1 < max_iter or max_iter >= 4 * d + 20:
            break
        max_iter *= 2
    entry = _entry_order(supports, d)
    exact = [i for i, c in enumerate(counts) if c == k]
    if exact:
        i = exact[0]
        features = np.flatnonzero(supports[i])
        middle = (coefs[:, i] + coefs[:, i + 1]) / 2
        selected = _order_by_entry(features, entry, np.abs(middle))
        alpha = float((alphas[i] + alphas[i + 1]) / 2) * alpha_unit
        info = {
            "alpha": alpha,
            "alpha_range": (float(alphas[i + 1]) * alpha_unit, float(alphas[i]) * alpha_unit),
            "lasso_coef": middle[selected] * coef_unit,
            "exact_k": True,
        }
        return selected, info
    # no segment with exactly k features: earliest entries, then correlation with the last residual
    last = coefs[:, -1]
    residual = yc - (design @ last - mean @ last)
    corr = np.abs(centred_transpose_product(design, mean, residual))
    score = np.where(entry < len(supports), np.inf, corr)
    order = np.lexsort((np.arange(d), -score, entry))
    selected = [int(j) for j in order[:k]]
    return selected, {"alpha": None, "alpha_range": None, "lasso_coef": last[selected] * coef_unit, "exact_k": False}


def _fit_l1_logistic(X: np.ndarray, y: np.ndarray, C: float, fit_intercept: bool, seed: int) -> np.ndarray:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    binary = np.unique(y).size == 2
    model = LogisticRegression(
        C=C,
        l1_ratio=1.0,
        solver="liblinear" if binary else "saga",
        fit_intercept=fit_intercept,
        intercept_scaling=1e3 if binary else 1.0,
        max_iter=5000,
        tol=1e-6,
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    return np.max(np.abs(np.atleast_2d(model.coef_)), axis=0)


def _lasso_logistic(problem: FeatureSelection, n_grid: int, seed: int) -> tuple[list[int], dict]:
    from sklearn.svm import l1_min_c

    X, y, k = problem.X, problem.y, problem.k
    d = X.shape[1]
    # the path is that of the standardised columns (unit variance; liblinear/saga need
    # it), i.e. penalty sum_j std_j·|w_j| in the original units
    # (X − mean)/std computed as ((X − mean)/2^e)/std(…): exact scaling first, so that the
    # variances of columns of magnitude 1e±200 neither overflow nor underflow
    centring = problem.scaling if problem.fit_intercept else column_scaling(X, None, fit_intercept=False)
    if is_sparse(X):  # scaled, not centred: centring would fill the zeros (the intercept absorbs the shift)
        Xs, _ = centring.scaled_sparse(X)  # X·diag(2^-e): same sparsity pattern
        scale = np.sqrt(sparse_centred_sq_norms(Xs, column_means(Xs)) / X.shape[0])
        scale[scale == 0] = 1.0
        Xs = scale_sparse_columns(Xs, 1.0 / scale)
    else:
        Xs = (X - centring.x_mean) / centring.x_scale
        scale = np.sqrt(np.mean((Xs - Xs.mean(axis=0)) ** 2, axis=0))
        scale[scale == 0] = 1.0
        Xs /= scale
    c_min = l1_min_c(Xs, y, loss="log", fit_intercept=problem.fit_intercept)
    path: list[tuple[float, np.ndarray]] = []

    def evaluate(log_c: float) -> np.ndarray:
        magnitude = _fit_l1_logistic(Xs, y, float(np.exp(log_c)), problem.fit_intercept, seed)
        path.append((log_c, magnitude))
        return magnitude

    grid = np.log(c_min) + np.linspace(0.0, np.log(1e4), n_grid)
    below, above = None, None
    for log_c in grid:
        count = int(np.count_nonzero(evaluate(log_c)))
        if count == k:
            below = above = log_c
            break
        if count < k:
            below = log_c
        else:
            above = log_c
            break
    if above is not None and below is not None and above != below:
        for _ in range(40):
            middle = (below + above) / 2
            count = int(np.count_nonzero(evaluate(middle)))
            if count == k:
                below = above = middle
                break
            if count < k:
                below = middle
            else:
                above = middle
    path.sort(key=lambda item: item[0])
    supports = [m != 0 for _, m in path]
    entry = _entry_order(supports, d)
    target = next((i for i, (log_c, _) in enumerate(path) if above is not None and log_c == above), len(path) - 1)
    magnitude = path[target][1]
    support = np.flatnonzero(magnitude)
    exact = support.size == k
    if exact:
        selected = _order_by_entry(support, entry, magnitude)
    else:
        order = np.lexsort((np.arange(d), -magnitude, entry))
        selected = [int(j) for j in order[:k]]
    info = {"C": float(np.exp(path[target][0])) if exact else None, "n_fits": len(path), "exact_k": exact}
    return selected, info


@register_solver(
    "lasso",
    kinds=(FeatureSelection,),
    description="baseline: support of the l1 path (scikit-learn lars_path / l1 logistic) with k features",
)
def lasso(problem: FeatureSelection, *, n_grid: int = 40, seed: int = 0, max_gram_bytes: int = 2**30) -> Result:
    """Select the ``k`` features of the ℓ1 path at the strongest penalty with ``k`` active.

    Parameters
    ----------
    problem : FeatureSelection
    n_grid : int
        Logistic loss only: number of ``C`` values on the log grid
        ``[c_min, 10⁴·c_min]`` scanned before bisection.
    seed : int
        Logistic loss only: ``random_state`` of the ``saga`` solver (multiclass).
    max_gram_bytes : int
        Squared loss with a sparse ``X`` only: the largest ``d × d`` Gram matrix
        (in bytes, 8 per entry) the LARS path may build; default 1 GiB (d ≈ 11585).

    Returns
    -------
    Result
        ``selected`` in order of entry into the path; ``objective`` =
        ``problem.objective(selected)`` (refit loss); ``status="feasible"``;
        ``info``: ``alpha`` / ``alpha_range`` / ``lasso_coef`` (squared) or
        ``C`` / ``n_fits`` (logistic), ``exact_k``, and the refit's ``coef``
        and ``intercept``.
    """
    n_grid = check_int(n_grid, "n_grid", low=2)
    seed = check_int(seed, "seed", low=0)
    max_gram_bytes = check_int(max_gram_bytes, "max_gram_bytes", low=1)
    if problem.loss == "squared":
        selected, info = _lasso_squared(problem, max_gram_bytes)
    else:
        selected, info = _lasso_logistic(problem, n_grid, seed)
    fit = problem.refit(selected)
    info.update(coef=fit["coef"], intercept=fit["intercept"])
    return problem.result(selected, objective=float(fit["loss"]), **info)
