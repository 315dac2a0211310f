"""Orthogonal Matching Pursuit (OMP) for squared-loss feature selection.

OMP adds, at each step, the column with the largest absolute correlation with
the current least-squares residual, then refits on all selected columns. This
implementation never refits from scratch and never forms the residual:

* with ``G = Xᶜᵀ Xᶜ`` (``Xᶜ`` the centred design when ``fit_intercept``) and the
  Cholesky factor ``L`` of ``G[S, S]``, it keeps ``W = G[:, S] L⁻ᵀ`` (``d × |S|``;
  ``W = Xᶜᵀ Q`` with ``Q`` an orthonormal basis of the selected columns) and
  ``z = L⁻¹ Xᶜᵀyᶜ[S]``. Adding feature ``j``: the new row of ``L`` is
  ``W[j, :]`` (no triangular solve), the pivot ``G[j, j] − ‖W[j, :]‖²``, the new
  column of ``W`` is ``(G[:, j] − W w)/L_jj`` and the correlations with the
  residual drop by ``W[:, new]·z_new``. A step costs ``O(d·|S|)`` once the Gram
  column ``G[:, j]`` is known; the coefficients ``γ = L⁻ᵀ z`` are solved once at
  the end and the residual sum of squares is ``‖yᶜ‖² − ‖z‖²`` at every step;
* Gram columns ``G[:, j] = Xᶜᵀ xᶜ_j`` are computed on demand, in blocks: when
  the feature to add has no cached column, one pass over ``X`` (a thin matrix
  product) computes its column together with those of the next
  ``block_size − 1`` strongest candidates, which are likely picks later on.
  Reading ``X`` is what costs time (the product is memory-bound), so a block
  costs little more than one column and most later picks are then free.

Centring for the intercept is done implicitly (``Xᶜᵀv = Xᵀv − μ·(1ᵀv)``); ``X``
is never copied. A scipy sparse ``X`` stays sparse: its Gram columns are sparse
products ``Xᵀ X[:, F] − n·μ μ_Fᵀ`` (see :mod:`sparsesel.design_matrix`) and only
the ``k`` selected columns are made dense, for the final residual.

Selection, order and coefficients match scikit-learn's
``OrthogonalMatchingPursuit(n_nonzero_coefs=k, fit_intercept=...)``: like it,
columns are **not** normalised (the pick is ``argmax_j |xᶜ_jᵀ r|``, so a column's
scale matters). Where scikit-learn stops early (the residual is orthogonal to
every column, or the picked column is linearly dependent on the selected
ones), this solver instead skips dependent columns and, once no column can
lower the loss, completes the selection with the lowest-index unselected
columns at coefficient 0 (marked ``"padded"`` in the trace).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular

from sparsesel.design_matrix import column_means, is_sparse, sparse_centred_gram_columns
from sparsesel.problems.feature_selection import FeatureSelection
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_choice, check_int

#: A candidate whose new Cholesky pivot is below this fraction of its squared
#: norm (sin² of its angle to the span of the selected columns) is treated as
#: linearly dependent on them.
DEPENDENCE_TOL = 1e-10

#: Correlations below this fraction of the largest initial correlation count
#: as zero (the residual is orthogonal to every remaining column).
CORRELATION_TOL = 1e-12

STRATEGIES = ("auto", "columns", "gram")


class _GramColumns:
    """Columns of the centred Gram matrix ``Xᶜᵀ Xᶜ``, computed in blocks on demand.

    Parameters
    ----------
    X : ndarray or scipy sparse array, shape (n, d)
    mean : ndarray, shape (d,)
        Column means subtracted from ``X`` (zeros without intercept).
    full : bool
        Compute the whole Gram matrix at once (one symmetric product) instead.
    """

    def __init__(self, X: np.ndarray, mean: np.ndarray, full: bool) -> None:
        self.X = X
        self.mean = mean
        self.centred = bool(np.any(mean))
        d = X.shape[1]
        self.slot = np.full(d, -1, dtype=np.intp)
        self.n_passes = 0
        if full:
            gram = X.T @ X
            if is_sparse(gram):
                gram = gram.toarray()
            if self.centred:
                gram -= X.shape[0] * np.outer(mean, mean)
            self.store = gram
            self.slot[:] = np.arange(d)
            self.size = d
            self.n_passes = 1
        else:
            self.store = np.empty((d, 0))
            self.size = 0

    def has(self, j: int) -> bool:
        return bool(self.slot[j] >= 0)

    def column(self, j: int) -> np.ndarray:
        return self.store[:, self.slot[j]]

    def compute(self, features: np.ndarray) -> None:
        """Compute and cache the Gram columns of ``features`` (one pass over ``X``)."""
        features = np.asarray(features, dtype=np.intp)
        if is_sparse(self.X):
            columns = sparse_centred_gram_columns(self.X, self.mean, features)
            self._store(features, columns)
            return
        block = self.X[:, features]
        if self.centred:
            block -= self.mean[features]
            # Xᶜᵀ bᶜ = Xᵀ bᶜ − μ (1ᵀ bᶜ); 1ᵀ bᶜ is ~0 but removing it keeps rounding low.
            columns = self.X.T @ block - np.outer(self.mean, block.sum(axis=0))
        else:
            columns = self.X.T @ block
        self._store(features, columns)

    def _store(self, features: np.ndarray, columns: np.ndarray) -> None:
        self.n_passes += 1
        needed = self.size + features.size
        if needed > self.store.shape[1]:
            grown = np.empty((self.store.shape[0], max(needed, 2 * self.store.shape[1])))
            grown[:, : self.size] = self.store[:, : self.size]
            self.store = grown
        self.store[:, self.size : needed] = columns
        self.slot[features] = np.arange(self.size, needed)
        self.size = needed


def _use_full_gram(n: int, d: int, k: int, strategy: str) -> bool:
    if strategy != "auto":
        return strategy == "gram"
    # Measured (n=20000, d=2000): block passes fetch about 1.1·k columns in
    # k/25 sweeps of X; the full Gram (n·d²/2 multiply-adds) only pays off when
    # nearly every column will be needed anyway.
    return n > d and k >= 0.75 * d


@register_solver(
    "omp",
    kinds=(FeatureSelection,),
    description="Orthogonal Matching Pursuit (incremental Cholesky; equals scikit-learn's OMP) — squared loss",
)
def omp(problem: FeatureSelection, *, block_size: int = 32, strategy: str = "auto") -> Result:
    """Select ``problem.k`` features by Orthogonal Matching Pursuit.

    Parameters
    ----------
    problem : FeatureSelection
        With ``loss="squared"``; ``fit_intercept`` centres ``X`` and ``y``
        (implicitly) exactly as scikit-learn does. ``X`` may be scipy sparse (it
        is not densified).
    block_size : int
        Gram columns computed per pass over ``X`` when the next pick has none
        cached (the pick plus the strongest other candidates). ``1`` gives plain
        one-column-per-step OMP.
    strategy : {"auto", "columns", "gram"}
        ``"columns"``: Gram columns on demand, in blocks. ``"gram"``: the full
        ``d×d`` Gram matrix up front (pays off when ``k`` is a large fraction
        of ``d`` and ``n > d``). ``"auto"`` picks by a cost estimate.

    Returns
    -------
    Result
        ``selected``: column indices in pick order; ``objective``: mean squared
        residual of the refit (``problem.objective(selected)``); ``status``:
        ``"feasible"``; ``trace``: one dict per step with ``step``, ``feature``,
        ``objective`` (and ``padded`` when the step could not lower the loss);
        ``info``: ``coef`` (shape ``(k,)``, aligned with ``selected``),
        ``intercept``, ``n_passes`` (sweeps over ``X``), ``n_gram_columns``.

    Raises
    ------
    ValueError
        For ``loss="logistic"`` (use ``greedy_forward`` or
        ``sequential_attention``) or a bad option.
    """
    if problem.loss != "squared":
        raise ValueError(
            "solver 'omp' supports loss='squared' only; for loss='logistic' use "
            "solver='greedy_forward' (exact greedy refits) or solver='sequential_attention'"
        )
    block_size = check_int(block_size, "block_size", low=1)
    strategy = check_choice(strategy, "strategy", STRATEGIES)

    X, y, k = problem.X, problem.y, problem.k
    n, d = X.shape
    if problem.fit_intercept:
        mean = column_means(X)
        y_mean = float(y.mean())
    else:
        mean = np.zeros(d)
        y_mean = 0.0
    yc = y - y_mean
    xty = X.T @ yc - mean * yc.sum()  # Xᶜᵀ yᶜ
    yy = float(yc @ yc)

    gram = _GramColumns(X, mean, full=_use_full_gram(n, d, k, strategy))
    projections = np.empty((d, k), order="F")  # W = G[:, S] L⁻ᵀ
    chol = np.zeros((k, k))  # lower-triangular Cholesky factor of G[S, S]
    z = np.zeros(k)  # L⁻¹ Xᶜᵀyᶜ[S]; the residual sum of squares is ‖yᶜ‖² − ‖z‖²
    selected: list[int] = []
    trace: list[dict] = []
    blocked = np.zeros(d, dtype=bool)  # selected, or dependent on the selected
    corr = xty.copy()  # Xᶜᵀ r, r the current residual
    corr_floor = CORRELATION_TOL * float(np.max(np.abs(xty)))

    while len(selected) < k:
        t = len(selected)
        score = np.abs(corr)
        score[blocked] = -1.0
        pick = int(np.argmax(score))
        if score[pick] <= corr_floor or score[pick] <= 0.0:
            break  # the residual is orthogonal to every remaining column
        if not gram.has(pick):
            # the pick and the strongest other candidates without a cached column
            order = np.argsort(-score, kind="stable")[: 4 * block_size]
            others = [j for j in order if j != pick and not gram.has(j) and score[j] > corr_floor]
            gram.compute(np.array([pick, *others[: block_size - 1]]))
        column = gram.column(pick)
        diagonal = float(column[pick])
        row = projections[pick, :t]  # = L⁻¹ G[S, pick]
        pivot = diagonal - float(row @ row)
        if pivot <= DEPENDENCE_TOL * diagonal or pivot <= 0.0:
            blocked[pick] = True  # linearly dependent on the selected columns: skip it
            continue
        root = np.sqrt(pivot)
        chol[t, :t] = row
        chol[t, t] = root
        z[t] = (xty[pick] - row @ z[:t]) / root
        projections[:, t] = (column - projections[:, :t] @ row) / root
        corr -= projections[:, t] * z[t]
        selected.append(pick)
        blocked[pick] = True
        rss = max(yy - float(z[: t + 1] @ z[: t + 1]), 0.0)
        trace.append({"step": t + 1, "feature": pick, "objective": rss / n})

    n_pursued = len(selected)
    if n_pursued < k:  # no remaining column lowers the loss: complete the selection
        rss = max(yy - float(z[:n_pursued] @ z[:n_pursued]), 0.0)
        chosen = set(selected)
        for j in range(d):
            if len(selected) == k:
                break
            if j not in chosen:
                selected.append(j)
                trace.append({"step": len(selected), "feature": j, "objective": rss / n, "padded": True})

    coef = np.zeros(k)
    if n_pursued:
        coef[:n_pursued] = solve_triangular(
            chol[:n_pursued, :n_pursued], z[:n_pursued], lower=True, trans="T", check_finite=False
        )
    residual = yc - (problem.columns(selected) - mean[selected]) @ coef
    objective = float(residual @ residual) / n
    intercept = float(y_mean - mean[selected] @ coef) if problem.fit_intercept else 0.0
    return Result(
        selected=tuple(selected),
        objective=objective,
        status="feasible",
        trace=tuple(trace),
        info={
            "coef": coef,
            "intercept": intercept,
            "n_pursued": n_pursued,
            "n_passes": gram.n_passes,
            "n_gram_columns": gram.size,
        },
    )
