"""Exhaustive search over all k-subsets of features: the exact oracle for small problems.

Every ``k``-subset of the ``d`` columns is evaluated and the one with the lowest
objective (training loss of the refit model) is returned with
``status="optimal"``. Ties go to the lexicographically smallest subset.

For ``loss="squared"`` the subsets are scored in vectorised batches from the
centred Gram matrix: ``RSS(S) = ‖yᶜ‖² − bₛᵀ G_SS⁻¹ bₛ`` with ``b = Xᶜᵀyᶜ``
(batched Cholesky solves; singular ``G_SS`` fall back to a least-squares
refit), on the columns and response divided by powers of two near their
magnitudes (``problem.scaling``: exact, so any column scale works). Subsets whose score is within a relative ``1e-9`` of the best are then
re-scored with :meth:`FeatureSelection.objective` and the best of those wins,
so the answer does not hinge on rounding in the batched formula. For
``loss="logistic"`` every subset is refit with :meth:`FeatureSelection.objective`.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from sparsesel.problems.feature_selection import FeatureSelection
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_int

_BATCH = 4096
_NEAR_BEST = 1e-9
_MAX_RESCORED = 256


def _batched_rss(gram: np.ndarray, xty: np.ndarray, yy: float, subsets: np.ndarray, problem: FeatureSelection) -> np.ndarray:
    """Residual sums of squares of the least-squares fits on each row of ``subsets``."""
    G = gram[subsets[:, :, None], subsets[:, None, :]]  # (m, k, k)
    b = xty[subsets]  # (m, k)
    rss = np.empty(len(subsets))
    try:
        L = np.linalg.cholesky(G)
        w = np.linalg.solve(L, b[:, :, None])[:, :, 0]
        rss[:] = yy - np.einsum("ij,ij->i", w, w)
        diagonal = np.einsum("ijj->ij", L)
        scale = np.einsum("ijj->ij", G)
        singular = np.any(diagonal**2 <= 1e-10 * scale, axis=1)
    except np.linalg.LinAlgError:
        singular = np.ones(len(subsets), dtype=bool)
    for i in np.flatnonzero(singular):  # the refit's loss, in the scaled units of the batch
        loss = problem.objective(subsets[i].tolist())
        rss[i] = math.ldexp(loss, -2 * problem.scaling.y_exponent) * problem.n_samples
    return rss


@register_solver(
    "brute_force",
    kinds=(FeatureSelection,),
    description="exhaustive search over all k-subsets (exact; small d and k only)",
)
def brute_force_features(problem: FeatureSelection, *, max_subsets: int = 200_000, progress: bool = False) -> Result:
    """Return the best ``k``-subset of features by exhaustive search.

    Parameters
    ----------
    problem : FeatureSelection
    max_subsets : int
        Refuse (``ValueError``) when ``C(d, k)`` exceeds this; raise it to allow
        longer searches.
    progress : bool
        Show a tqdm bar over the subsets.

    Returns
    -------
    Result
        ``selected``: the optimal subset, ascending; ``objective``:
        ``problem.objective(selected)``; ``status="optimal"``;
        ``info``: ``n_subsets`` evaluated, the refit's ``coef`` and ``intercept``.

    Raises
    ------
    ValueError
        When the number of subsets exceeds ``max_subsets``.
    TypeError
        For a sparse ``X`` (the oracle is for small dense problems).
    """
    max_subsets = check_int(max_subsets, "max_subsets", low=1)
    problem.require_dense("brute_force")
    d, k = problem.n_features, problem.k
    count = math.comb(d, k)
    if count > max_subsets:
        raise ValueError(
            f"brute_force would evaluate C({d}, {k}) = {count:,} subsets, more than max_subsets={max_subsets:,}; "
            f"pass a larger max_subsets=... to run it anyway, or use another solver"
        )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=count, desc="brute_force subsets", unit="subset")
    try:
        subsets, scores = _score_all_subsets(problem, bar)
    finally:
        if bar is not None:
            bar.close()
    all_subsets = np.concatenate(subsets)
    all_scores = np.concatenate(scores)
    best_score = float(np.min(all_scores))
    near = np.flatnonzero(all_scores <= best_score + _NEAR_BEST * max(abs(best_score), np.finfo(float).tiny))
    near = near[:_MAX_RESCORED]
    if problem.loss == "squared":
        exact = [problem.objective(all_subsets[i].tolist()) for i in near]
        winner = near[int(np.argmin(exact))]  # first minimum: lexicographically smallest among ties
    else:
        winner = near[0]
    selected = [int(j) for j in all_subsets[winner]]
    fit = problem.refit(selected)
    optimum = float(fit["loss"])
    return problem.result(
        tuple(selected), objective=optimum, lower_bound=optimum, upper_bound=optimum, status="optimal",
        n_subsets=count, coef=fit["coef"], intercept=fit["intercept"],
    )


def _score_all_subsets(problem: FeatureSelection, bar) -> tuple[list[np.ndarray], list[np.ndarray]]:  # noqa: ANN001
    """Every ``k``-subset in lexicographic order, in batches ``(m, k)``, with its loss ``(m,)``.

    Squared loss: the residual sum of squares from the Gram matrix of the scaled columns, in
    batches of :data:`_BATCH` subsets; logistic: ``problem.objective`` of each subset.
    ``bar`` (a tqdm bar or ``None``) advances by the subsets scored.
    """
    d, k = problem.n_features, problem.k
    combos = itertools.combinations(range(d), k)
    scores: list[np.ndarray] = []
    subsets: list[np.ndarray] = []
    if problem.loss == "squared":
        # scaled columns and response (powers of two, exact): no overflow at any scale
        scaling = problem.scaling
        Xc = scaling.scaled_columns(problem.X, np.arange(d))
        yc = scaling.scaled_response(problem.y)
        gram, xty, yy = Xc.T @ Xc, Xc.T @ yc, float(yc @ yc)
        while True:
            batch = np.array(list(itertools.islice(combos, _BATCH)), dtype=np.intp).reshape(-1, k)
            if batch.size == 0:
                break
            subsets.append(batch)
            scores.append(_batched_rss(gram, xty, yy, batch, problem) / problem.n_samples)
            if bar is not None:
                bar.update(len(batch))
    else:
        batch = np.array(list(combos), dtype=np.intp).reshape(-1, k)
        values = np.empty(len(batch))
        for i, subset in enumerate(batch):
            values[i] = problem.objective(subset.tolist())
            if bar is not None:
                bar.update(1)
        subsets.append(batch)
        scores.append(values)
    return subsets, scores
