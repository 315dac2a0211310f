"""Greedy forward selection by the true decrease of the training loss.

At each step the candidate whose addition lowers the problem's objective (the
training loss of the refit model) the most joins the selection; ties go to the
lowest column index.

* ``loss="squared"`` — exact and fast ("orthogonal least squares"). With ``r``
  the current least-squares residual and ``q_j`` the part of the centred column
  ``xᶜ_j`` orthogonal to the selected columns, adding ``j`` lowers the residual
  sum of squares by exactly ``(rᵀ xᶜ_j)² / ‖q_j‖²``. The solver keeps, for every
  candidate at once, the correlations ``Xᶜᵀ r`` and the squared norms ``‖q_j‖²``
  and updates both with one rank-one step per pick: the new orthonormal
  direction ``u`` (the picked column, re-orthogonalised twice against the
  previous ones) gives ``p = Xᶜᵀ u`` (one pass over ``X``), then
  ``‖q‖² −= p²``, ``Xᶜᵀ r −= p·(uᵀ r)`` and ``r −= u·(uᵀ r)``. Cost per step
  ``O(n·d + n·|S|)``; no refit. All of it runs on the columns and the response
  divided by powers of two near their magnitudes (``problem.scaling``): exact,
  so columns of magnitude ``1e±200`` (mixed with ordinary ones) pick as in exact
  arithmetic.
* ``loss="logistic"`` — every candidate is refit with
  :meth:`FeatureSelection.refit` (``k·d`` logistic fits in all; slow for wide
  data, ``progress=True`` shows a bar). No warm start: the refit is the
  problem's own, so the reported losses are exactly its objective. The
  candidates of a step are independent: ``n_jobs`` refits them in parallel
  (joblib threads; the fits spend their time in LAPACK, which releases the GIL).
  The squared-loss path is a few BLAS products per step and gains nothing from
  ``n_jobs`` (BLAS already uses the cores).

A scipy sparse ``X`` stays sparse: its columns are divided by their powers of
two as ``X·diag(1/scale)`` (same sparsity pattern), the correlations and the
update ``Xₛᵀu`` are sparse products with implicit centring by the scaled means,
the centred column norms are summed over the stored entries
(:mod:`sparsesel.design_matrix`), and only the picked columns are made dense.
"""

from __future__ import annotations

import numpy as np

from sparsesel.design_matrix import dense_columns, is_sparse, sparse_centred_sq_norms
from sparsesel.problems.feature_selection import FeatureSelection
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int

#: Candidates whose orthogonal part has squared norm below this fraction of
#: their own squared norm are treated as linearly dependent (zero gain).
DEPENDENCE_TOL = 1e-10

#: Gains within this relative distance of the best count as ties (lowest index wins).
TIE_TOL = 1e-12

_ROW_BLOCK = 4096


def _centred_sq_norms(X: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Column sums of ``((X − mean)/scale)²``, by row blocks (no full centred copy)."""
    out = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], _ROW_BLOCK):
        block = (X[start : start + _ROW_BLOCK] - mean) / scale
        out += np.einsum("ij,ij->j", block, block)
    return out


def _lowest_best(gain: np.ndarray) -> int:
    """Index of the largest gain; near-ties (``TIE_TOL``) go to the lowest index."""
    best = float(np.max(gain))
    return int(np.flatnonzero(gain >= best - TIE_TOL * abs(best))[0])


def _greedy_squared(problem: FeatureSelection) -> tuple[list[int], list[dict]]:
    X, y, k = problem.X, problem.y, problem.k
    n, d = X.shape
    # on the columns and response divided by powers of two (problem.scaling): the gains
    # (rᵀxᶜⱼ)²/‖qⱼ‖² do not depend on column scales, and nothing overflows or underflows
    scaling = problem.scaling
    residual = scaling.scaled_response(y)
    if is_sparse(X):
        # X·diag(1/scale) keeps X's sparsity pattern; centring stays implicit with the scaled means
        X, mean = scaling.scaled_sparse(X)
        scale = np.ones(d)
        norms0 = sparse_centred_sq_norms(X, mean)  # ‖xₛ_j‖², over the stored entries
    else:
        mean, scale = scaling.x_mean, scaling.x_scale
        norms0 = _centred_sq_norms(X, mean, scale)  # ‖xₛ_j‖²
    # constant columns centre to exactly 0; the rounding of Xᵀr − μ·Σr (1e184 for a column of 1e200) is dropped
    constant = scaling.x_spread == 0
    corr = (X.T @ residual - mean * residual.sum()) / scale  # Xₛᵀ r
    corr[constant] = 0.0
    norms = norms0.copy()  # ‖q_j‖²: part orthogonal to the selected columns
    basis = np.empty((n, k), order="F")  # orthonormal directions u_1..u_t
    available = norms0 > 0.0
    selected: list[int] = []
    trace: list[dict] = []
    for t in range(k):
        usable = available & (norms > DEPENDENCE_TOL * norms0)
        gain = np.zeros(d)
        gain[usable] = corr[usable] ** 2 / norms[usable]
        if not np.any(usable):
            # every remaining column is constant or dependent: it cannot lower the loss
            pick = int(np.flatnonzero(available)[0]) if np.any(available) else _first_unselected(selected, d)
        else:
            gain[~usable] = -1.0
            pick = _lowest_best(gain)
        selected.append(pick)
        available[pick] = False
        if usable[pick]:
            u = (dense_columns(X, [pick])[:, 0] - mean[pick]) / scale[pick]
            for _ in range(2):  # classical Gram-Schmidt, twice ("twice is enough")
                if t:
                    u -= basis[:, :t] @ (basis[:, :t].T @ u)
            u /= np.linalg.norm(u)
            basis[:, t] = u
            p = (X.T @ u - mean * u.sum()) / scale  # Xₛᵀ u
            p[constant] = 0.0
            step = float(u @ residual)
            residual -= step * u
            corr -= step * p
            norms -= p * p
        else:
            basis[:, t] = 0.0
        loss = scaling.unscale_squared(float(residual @ residual) / n)
        trace.append({"step": t + 1, "feature": pick, "objective": loss})
    return selected, trace


def _first_unselected(selected: list[int], d: int) -> int:
    chosen = set(selected)
    return next(j for j in range(d) if j not in chosen)


def _greedy_refit(problem: FeatureSelection, progress: bool, n_jobs: int | None) -> tuple[list[int], list[dict]]:
    d, k = problem.n_features, problem.k
    selected: list[int] = []
    trace: list[dict] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(d - t for t in range(k)), desc="greedy_forward refits", unit="fit")
    parallel = None
    if n_jobs not in (None, 1):
        from joblib import Parallel

        parallel = Parallel(n_jobs=n_jobs, prefer="threads")
    try:
        for t in range(k):
            chosen = set(selected)
            candidates = [j for j in range(d) if j not in chosen]
            losses = _candidate_losses(problem, selected, candidates, parallel, bar)
            best = _lowest_best(-losses)
            selected.append(candidates[best])
            trace.append({"step": t + 1, "feature": candidates[best], "objective": float(losses[best])})
    finally:
        if bar is not None:
            bar.close()
    return selected, trace


def _candidate_losses(problem: FeatureSelection, selected: list[int], candidates: list[int], parallel, bar) -> np.ndarray:
    """The objective of ``selected + [j]`` for every candidate ``j``, in order (optionally in parallel)."""
    if parallel is None:
        losses = np.empty(len(candidates))
        for i, j in enumerate(candidates):
            losses[i] = problem.objective([*selected, j])
            if bar is not None:
                bar.update(1)
        return losses
    from joblib import delayed

    losses = np.asarray(parallel(delayed(problem.objective)([*selected, j]) for j in candidates), dtype=np.float64)
    if bar is not None:
        bar.update(len(candidates))
    return losses


@register_solver(
    "greedy_forward",
    kinds=(FeatureSelection,),
    description="forward selection by the exact loss decrease (rank-one updates for squared loss, refits for logistic)",
)
def greedy_forward(problem: FeatureSelection, *, progress: bool = False, n_jobs: int | None = None) -> Result:
    """Select ``problem.k`` features greedily by the true decrease of the loss.

    Parameters
    ----------
    problem : FeatureSelection
        Squared or logistic loss, with or without intercept.
    progress : bool
        Show a tqdm bar over the candidate refits (logistic loss only; the
        squared-loss path takes ``k`` vectorised steps).
    n_jobs : int, optional
        Logistic loss only: refit a step's candidates in parallel on this many
        joblib threads (``-1``: all cores; ``None`` or 1: one at a time). The
        result does not depend on it. Ignored for the squared loss, whose
        steps are single BLAS products.

    Returns
    -------
    Result
        ``selected``: indices in pick order; ``objective``:
        ``problem.objective(selected)``; ``status``: ``"feasible"``; ``trace``:
        one dict per step with ``step``, ``feature`` and ``objective`` (the
        training loss after that pick); ``info``: ``coef`` and ``intercept`` of
        the final refit.
    """
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be a bool, got {progress!r}")
    if n_jobs is not None:
        n_jobs = check_int(n_jobs, "n_jobs")
        if n_jobs == 0:
            raise ValueError("n_jobs must be a positive number of threads or negative (-1: all cores), got 0")
    if problem.loss == "squared":
        selected, trace = _greedy_squared(problem)
    else:
        selected, trace = _greedy_refit(problem, bool(progress), n_jobs)
    fit = problem.refit(selected)
    return problem.result(selected, objective=float(fit["loss"]), trace=trace, coef=fit["coef"],
                          intercept=fit["intercept"])
