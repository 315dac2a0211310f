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

When no penalty gives exactly ``k`` features (the path stops early, e.g.
``n < d``, or the count jumps over ``k``), the ``k`` earliest entries are taken,
completed if needed by the largest absolute correlation with the last
residual; ``info["exact_k"]`` is then ``False``.
"""

from __future__ import annotations

import warnings

import numpy as np

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


def _lasso_squared(problem: FeatureSelection) -> tuple[list[int], dict]:
    from sklearn.linear_model import lars_path

    X, y, k = problem.X, problem.y, problem.k
    n, d = X.shape
    # The lasso path depends on the columns' relative scales, not on a common factor:
    # X and y are divided by powers of two (exact) so that nothing overflows, and the
    # penalties and coefficients are mapped back (alpha ∝ x_common·y_scale).
    scaling = problem.scaling
    x_common = float(np.max(scaling.x_scale))
    Xc = (X - scaling.x_mean) / x_common
    yc = scaling.scaled_response(y)
    alpha_unit = x_common * scaling.y_scale
    coef_unit = scaling.y_scale / x_common
    max_iter = 4 * k + 20
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate-path warnings: handled below
            alphas, _, coefs = lars_path(Xc, yc, method="lasso", max_iter=max_iter)
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
    residual = yc - Xc @ last
    corr = np.abs(Xc.T @ residual)
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
def lasso(problem: FeatureSelection, *, n_grid: int = 40, seed: int = 0) -> Result:
    """Select the ``k`` features of the ℓ1 path at the strongest penalty with ``k`` active.

    Parameters
    ----------
    problem : FeatureSelection
    n_grid : int
        Logistic loss only: number of ``C`` values on the log grid
        ``[c_min, 10⁴·c_min]`` scanned before bisection.
    seed : int
        Logistic loss only: ``random_state`` of the ``saga`` solver (multiclass).

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
    if problem.loss == "squared":
        selected, info = _lasso_squared(problem)
    else:
        selected, info = _lasso_logistic(problem, n_grid, seed)
    fit = problem.refit(selected)
    info.update(coef=fit["coef"], intercept=fit["intercept"])
    return Result(selected=tuple(selected), objective=float(fit["loss"]), status="feasible", info=info)
