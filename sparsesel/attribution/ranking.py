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
    objective: float | None = None,
) -> Result:
    """A Result selecting the first ``problem.k`` features of ``order``.

    ``info`` holds ``attribution`` (per-feature scores shaped like
    ``problem.feature_shape``), ``order`` (every feature, best first),
    ``rank_scores`` (``n − position``, shaped like ``attribution``) and
    ``gradient_evaluations``. ``objective`` is ``G(selected)``, computed here
    unless the caller already has it.
    """
    order = np.asarray(order, dtype=np.int64)
    selected = tuple(int(i) for i in order[: problem.k])
    info: dict[str, Any] = {
        "attribution": problem.to_map(np.asarray(attribution, dtype=np.float64)),
        "order": order,
        "rank_scores": problem.to_map(rank_scores(order)),
        "gradient_evaluations": int(gradient_evaluations),
    }
    if extra:
        info.update(extra)
    if objective is None:
        objective = problem.objective(list(selected))
    return Result(selected=selected, objective=objective, status=status, trace=trace, info=info)
