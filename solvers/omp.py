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
is never copied. Every quantity is that of the columns and the response divided
by powers of two near their magnitudes (``problem.scaling``): exact scalings, so
ordinary data round as without them, while columns of magnitude ``1e±200``
(alone or mixed with ordinary ones) neither overflow nor underflow. A scipy
sparse ``X`` stays sparse: its columns are scaled as ``X·diag(1/scale)`` (same
sparsity pattern), its Gram columns are sparse products ``Xₛᵀ Xₛ[:, F] − n·μₛ μₛ_Fᵀ``
with the scaled means ``μₛ`` (see :mod:`sparsesel.design_matrix`), and only the
``k`` selected columns are made dense, for the final residual.

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

from sparsesel.design_matrix import centred_transpose_product, is_sparse, sparse_centred_gram_columns
from sparsesel.problems.column_scaling import ColumnScaling, strongest_scaled
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

_ROW_BLOCK = 4096


class _GramColumns:
    """Columns of the Gram matrix ``Xₛᵀ Xₛ`` of the scaled design, computed in blocks on demand.

    ``Xₛ = (X − mean) / scale`` (see :mod:`sparsesel.problems.column_scaling`; ``scale``
    holds powers of two, so ``Xₛᵀ Xₛ = D⁻¹ Xᶜᵀ Xᶜ D⁻¹`` exactly, without overflow).

    Parameters
    ----------
    X : ndarray or scipy sparse array, shape (n, d)
        A sparse ``X`` is scaled once (``X·diag(1/scale)``, same sparsity pattern) and
        centred implicitly with the scaled means.
    scaling : ColumnScaling
        The problem's centring (``x_mean``, zeros without intercept) and scales (``x_scale``).
    full : bool
        Compute the whole Gram matrix at once (row blocks of ``Xₛ``) instead.
    """

    def __init__(self, X: np.ndarray, scaling: ColumnScaling, full: bool) -> None:
        self.X = X
        self.mean = scaling.x_mean
        self.inverse_scale = 1.0 / scaling.x_scale
        self.centred = bool(np.any(self.mean))
        self.sparse = scaling.scaled_sparse(X) if is_sparse(X) else None
        d = X.shape[1]
        self.slot = np.full(d, -1, dtype=np.intp)
        self.n_passes = 0
        if full:
            self.store = self._full_gram()
            self.slot[:] = np.arange(d)
            self.size = d
            self.n_passes = 1
        else:
            self.store = np.empty((d, 0))
            self.size = 0

    def _full_gram(self) -> np.ndarray:
        X, d = self.X, self.X.shape[1]
        if self.sparse is not None:
            return sparse_centred_gram_columns(*self.sparse, np.arange(d))
        gram = np.zeros((d, d))
        for start in range(0, X.shape[0], _ROW_BLOCK):
            block = (X[start : start + _ROW_BLOCK] - self.mean) * self.inverse_scale
            gram += block.T @ block
        return gram

    def has(self, j: int) -> bool:
        return bool(self.slot[j] >= 0)

    def column(self, j: int) -> np.ndarray:
        return self.store[:, self.slot[j]]

    def compute(self, features: np.ndarray) -> None:
        """Compute and cache the Gram columns of ``features`` (one pass over ``X``)."""
        features = np.asarray(features, dtype=np.intp)
        if self.sparse is not None:
            self._store(features, sparse_centred_gram_columns(*self.sparse, features))
            return
        block = self.X[:, features]
        if self.centred:
            block -= self.mean[features]
        block *= self.inverse_scale[features]
        if self.centred:
            # Xᶜᵀ bᶜ = Xᵀ bᶜ − μ (1ᵀ bᶜ); 1ᵀ bᶜ is ~0 but removing it keeps rounding low.
            columns = self.X.T @ block - np.outer(self.mean, block.sum(axis=0))
        else:
            columns = self.X.T @ block
        columns *= self.inverse_scale[:, None]
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

    X, k = problem.X, problem.k
    n, d = X.shape
    scaling = problem.scaling
    gram = _GramColumns(X, scaling, full=_use_full_gram(n, d, k, strategy))
    pursuit = _Pursuit(problem, gram)
    pursuit.run(block_size)
    selected, trace = pursuit.selected, pursuit.trace
    n_pursued = len(selected)
    if n_pursued < k:  # no remaining column lowers the loss: complete the selection
        rss = max(pursuit.yy - float(pursuit.z[:n_pursued] @ pursuit.z[:n_pursued]), 0.0)
        _pad(selected, trace, d, k, scaling.unscale_squared(rss / n))
    coef_scaled = np.zeros(k)
    if n_pursued:
        coef_scaled[:n_pursued] = solve_triangular(
            pursuit.chol[:n_pursued, :n_pursued], pursuit.z[:n_pursued], lower=True, trans="T", check_finite=False
        )
    residual = pursuit.yc - scaling.scaled_columns(X, selected) @ coef_scaled
    objective = scaling.unscale_squared(float(residual @ residual) / n)
    coef = scaling.unscale_coef(coef_scaled, selected)
    intercept = float(scaling.y_mean - scaling.x_mean[selected] @ coef) if problem.fit_intercept else 0.0
    return problem.result(selected, objective=objective, trace=trace, coef=coef, intercept=intercept,
                          n_pursued=n_pursued, n_passes=gram.n_passes, n_gram_columns=gram.size)


def _pad(selected: list[int], trace: list[dict], d: int, k: int, objective: float) -> None:
    """Complete ``selected`` to ``k`` features with the lowest unselected indices (each at ``objective``)."""
    chosen = set(selected)
    for j in range(d):
        if len(selected) == k:
            break
        if j not in chosen:
            selected.append(j)
            trace.append({"step": len(selected), "feature": j, "objective": objective, "padded": True})


class _Pursuit:
    """OMP's state on the scaled columns: picks, incremental Cholesky factor and correlations.

    Everything runs on the scaled columns Xₛ = (X − mean)/scale and response yₛ = (y − ȳ)/y_scale
    (powers of two: exact, no overflow at any column scale). OMP's pick |xᶜⱼᵀ r| =
    scaleⱼ·y_scale·|xₛⱼᵀ rₛ| keeps its unscaled meaning.
    """

    def __init__(self, problem: FeatureSelection, gram: _GramColumns) -> None:
        X, k = problem.X, problem.k
        d = X.shape[1]
        scaling = self.scaling = problem.scaling
        self.n, self.k, self.gram = X.shape[0], k, gram
        mean, scale = scaling.x_mean, scaling.x_scale
        self.scale = scale
        self.relative_scale = scale / np.max(scale)  # powers of two <= 1: exact
        yc = self.yc = scaling.scaled_response(problem.y)
        if gram.sparse is not None:
            xty = centred_transpose_product(*gram.sparse, yc)  # Xₛᵀ yₛ (constant columns exactly 0)
        else:
            xty = (X.T @ yc - mean * yc.sum()) / scale  # Xₛᵀ yₛ
        # constant (or all-zero) columns centre to exactly zero: they never lower the loss, and the
        # rounding of Xᵀy − μ·Σy for a constant column of 1e200 (~1e184) must not count as a correlation
        constant = scaling.x_spread == 0
        xty[constant] = 0.0
        self.xty = xty
        self.yy = float(yc @ yc)
        self.projections = np.empty((d, k), order="F")  # W = G[:, S] L⁻ᵀ
        self.chol = np.zeros((k, k))  # lower-triangular Cholesky factor of G[S, S]
        self.z = np.zeros(k)  # L⁻¹ Xₛᵀyₛ[S]; the residual sum of squares is ‖yₛ‖² − ‖z‖²
        self.selected: list[int] = []
        self.trace: list[dict] = []
        self.blocked = constant.copy()  # selected, dependent on the selected, or constant
        self.corr = xty.copy()  # Xₛᵀ rₛ, rₛ the current (scaled) residual
        self.corr_floor = CORRELATION_TOL * float(np.max(np.abs(xty)))  # per column, in scaled units

    def run(self, block_size: int) -> None:
        """Pick until ``k`` features are selected or the residual is orthogonal to every remaining column."""
        gram, selected = self.gram, self.selected
        while len(selected) < self.k:
            magnitude = np.abs(self.corr)
            eligible = ~self.blocked & (magnitude > self.corr_floor)
            # OMP's pick: the largest |xᶜⱼᵀ r| = scaleⱼ·|xₛⱼᵀ rₛ| (common factors dropped)
            pick = strongest_scaled(magnitude, eligible, self.relative_scale, self.scale)
            if pick < 0:
                break  # the residual is orthogonal to every remaining column
            if not gram.has(pick):
                # the pick and the strongest other candidates without a cached column
                score = np.where(eligible, magnitude * self.relative_scale, -1.0)
                order = np.argsort(-score, kind="stable")[: 4 * block_size]
                others = [j for j in order if j != pick and not gram.has(j) and eligible[j]]
                gram.compute(np.array([pick, *others[: block_size - 1]]))
            self._add(pick, gram.column(pick))

    def _add(self, pick: int, column: np.ndarray) -> None:
        """Extend the Cholesky factor by column ``pick`` of the Gram matrix, or block it if dependent."""
        t = len(self.selected)
        diagonal = float(column[pick])
        row = self.projections[pick, :t]  # = L⁻¹ G[S, pick]
        pivot = diagonal - float(row @ row)
        if pivot <= DEPENDENCE_TOL * diagonal or pivot <= 0.0:
            self.blocked[pick] = True  # linearly dependent on the selected columns: skip it
            return
        root = np.sqrt(pivot)
        z = self.z
        self.chol[t, :t] = row
        self.chol[t, t] = root
        z[t] = (self.xty[pick] - row @ z[:t]) / root
        self.projections[:, t] = (column - self.projections[:, :t] @ row) / root
        self.corr -= self.projections[:, t] * z[t]
        self.selected.append(pick)
        self.blocked[pick] = True
        rss = max(self.yy - float(z[: t + 1] @ z[: t + 1]), 0.0)
        self.trace.append({"step": t + 1, "feature": pick, "objective": self.scaling.unscale_squared(rss / self.n)})
