"""Turn per-feature scores into a ranking, a selection and a :class:`~sparsesel.result.Result`."""

from __future__ import annotations

from typing import Any

import numpy as np

from sparsesel.result import Result


def descending_order(scores: np.ndarray) -> np.ndarray:
    """Feature indices by decreasing score; ties keep the lower index first."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def rank_scores(order: np.ndarray) -> np.ndarray:
    """Scores ``n, n−1, …, 1`` given to the features in ``order`` (for rank-based metrics like SIC)."""
    scores = np.empty(len(order), dtype=np.float64)
    scores[np.asarray(order)] = np.arange(len(order), 0, -1, dtype=np.float64)
    return scores


def ranking_result(
    problem,
    attribution: np.ndarray,
    order: np.ndarray,
    *,
    gradient_evaluations: int,
    status: str = "feasible",
    trace: tuple = (),
    extra: dict[str, Any] | None = None,
    objective: float | np.ndarray | None = None,
) -> Result:
    """A Result selecting the first ``problem.k`` features of ``order``.

    ``info`` holds ``attribution`` (per-feature scores shaped like
    ``problem.feature_shape``), ``order`` (every feature, best first),
    ``rank_scores`` (``n − position``, shaped like ``attribution``) and
    ``gradient_evaluations``. ``objective`` is ``G(selected)``, computed here
    unless the caller already has it.

    For a batched problem ``attribution`` and ``order`` are ``(B, n_features)``,
    ``objective`` (if given) holds the ``B`` values ``G_b(S_b)``, and the Result
    has the batched form documented in :class:`~sparsesel.problems.attribution.Attribution`:
    ``selected`` a tuple of ``B`` tuples, ``objective`` their sum, ``info["objectives"]``
    the ``B`` values, ``info`` maps with a leading axis ``B``.
    """
    order = np.asarray(order, dtype=np.int64)
    batched = getattr(problem, "batched", False)
    if batched:
        selected: tuple = tuple(tuple(int(i) for i in row[: problem.k]) for row in order)
        scores = np.stack([rank_scores(row) for row in order])
    else:
        selected = tuple(int(i) for i in order[: problem.k])
        scores = rank_scores(order)
    info: dict[str, Any] = {
        "attribution": problem.to_map(np.asarray(attribution, dtype=np.float64)),
        "order": order,
        "rank_scores": problem.to_map(scores),
        "gradient_evaluations": int(gradient_evaluations),
    }
    if extra:
        info.update(extra)
    if batched:
        values = problem.example_objectives(selected) if objective is None else np.asarray(objective, dtype=np.float64)
        info["objectives"] = values
        objective = float(values.sum())
    elif objective is None:
        objective = problem.objective(list(selected))
    return problem.result(selected, objective=objective, status=status, trace=trace, **info)
