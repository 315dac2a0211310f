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

A scipy sparse ``X`` is not densified. Squared loss: the same LARS path is run
from the centred Gram matrix ``XᵀX − n·μμᵀ`` and ``Xᶜᵀyᶜ`` (sparse products;
``lars_path_gram``), which needs ``d × d`` floats (``max_gram_bytes``) but never
``n × d``. Logistic loss: the columns are scaled by their standard deviation
but not centred (centring would fill the zeros; the intercept absorbs the
shift), ``liblinear`` and ``saga`` taking the sparse matrix as it is.

When no penalty gives exactly ``k`` features (the path stops early, e.g.
``n < d``, or the count jumps over ``k``), the ``k`` earliest entries are taken,
completed if needed by the largest absolute correlation with the last
residual; ``info["exact_k"]`` is then ``False``.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from sparsesel.design_matrix import (
    centred_transpose_product,
    column_means,
    is_sparse,
    sparse_centred_gram_columns,
    sparse_centred_sq_norms,
    sparse_description,
)
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


def _lars_lasso_path(problem: FeatureSelection, max_iter: int, max_gram_bytes: int):
    """scikit-learn's LARS-lasso path ``(alphas, coefs)`` of the centred problem (dense or sparse ``X``)."""
    from sklearn.linear_model import lars_path, lars_path_gram

    X, y = problem.X, problem.y
    n, d = X.shape
    yc = y - y.mean() if problem.fit_intercept else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate-path warnings: handled by the caller
        if not is_sparse(X):
            Xc = X - X.mean(axis=0) if problem.fit_intercept else X
            alphas, _, coefs = lars_path(Xc, yc, method="lasso", max_iter=max_iter)
            return alphas, coefs
        if 8 * d * d > max_gram_bytes:
            raise ValueError(
                f"lasso on a sparse X ({sparse_description(X)}) runs LARS on the {d}×{d} Gram matrix, "
                f"{8 * d * d / 2**20:.0f} MiB > max_gram_bytes={max_gram_bytes:,}; raise max_gram_bytes, or use "
                "omp or greedy_forward, which need no Gram matrix"
            )
        mean = column_means(X) if problem.fit_intercept else np.zeros(d)
        gram = sparse_centred_gram_columns(X, mean, np.arange(d))
        xty = centred_transpose_product(X, mean, yc)
        alphas, _, coefs = lars_path_gram(xty, gram, n_samples=n, method="lasso", max_iter=max_iter, copy_Gram=False)
        return alphas, coefs


def _lasso_squared(problem: FeatureSelection, max_gram_bytes: int) -> tuple[list[int], dict]:
    X, y, k = problem.X, problem.y, problem.k
    n, d = X.shape
    max_iter = 4 * k + 20
    while True:
        alphas, coefs = _lars_lasso_path(problem, max_iter, max_gram_bytes)
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
        alpha = float((alphas[i] + alphas[i + 1]) / 2)
        info = {
            "alpha": alpha,
            "alpha_range": (float(alphas[i + 1]), float(alphas[i])),
            "lasso_coef": middle[selected],
            "exact_k": True,
        }
        return selected, info
    # no segment with exactly k features: earliest entries, then correlation with the last residual
    last = coefs[:, -1]
    mean = column_means(X) if problem.fit_intercept else np.zeros(d)
    yc = y - y.mean() if problem.fit_intercept else y
    residual = yc - (X @ last - mean @ last)
    corr = np.abs(centred_transpose_product(X, mean, residual))
    score = np.where(entry < len(supports), np.inf, corr)
    order = np.lexsort((np.arange(d), -score, entry))
    selected = [int(j) for j in order[:k]]
    return selected, {"alpha": None, "alpha_range": None, "lasso_coef": last[selected], "exact_k": False}


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
    if is_sparse(X):  # scaled, not centred: centring would fill the zeros (the intercept absorbs the shift)
        scale = np.sqrt(sparse_centred_sq_norms(X, column_means(X)) / X.shape[0])
        scale[scale == 0] = 1.0
        Xs = X @ sp.diags_array(1.0 / scale)
    else:
        scale = X.std(axis=0)
        scale[scale == 0] = 1.0
        Xs = (X - X.mean(axis=0)) / scale if problem.fit_intercept else X / scale
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
    return Result(selected=tuple(selected), objective=float(fit["loss"]), status="feasible", info=info)
