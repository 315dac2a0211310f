"""Greedy PIG (Axiotis et al. 2023, arXiv 2311.06192, Algorithm 1): adaptive path integrated gradients."""

from __future__ import annotations

import numpy as np
import torch

from sparsesel.attribution.integrated import path_integrated_gradients
from sparsesel.attribution.paths.quadrature import METHODS
from sparsesel.attribution.ranking import descending_order, ranking_result
from sparsesel.problems.attribution import Attribution
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_choice, check_int


SCHEDULES: tuple[str, ...] = ("uniform", "geometric")


def round_sizes(k: int, rounds: int, schedule: str = "uniform") -> list[int]:
    """Features chosen per round, ``rounds`` positive sizes summing to ``k``.

    ``"uniform"``: ``k // rounds``, the first ``k % rounds`` rounds one more.
    ``"geometric"``: the number fixed after round ``r`` grows like ``k^(r/rounds)``
    (at least one more each round), so the first rounds, which decide the most
    salient pixels, fix few features each and the last ones many.
    """
    if schedule == "uniform":
        return [k // rounds + (1 if r < k % rounds else 0) for r in range(rounds)]
    cumulative, previous = [], 0
    for r in range(1, rounds + 1):
        target = int(round(k ** (r / rounds)))
        previous = min(max(target, previous + 1), k - (rounds - r))
        cumulative.append(previous)
    return [int(size) for size in np.diff([0, *cumulative])]


@register_solver(
    "greedy_pig",
    kinds=(Attribution,),
    description="Greedy PIG: rounds of IG, each fixes its top-scoring features at x in the baseline",
)
def greedy_pig(
    problem: Attribution,
    *,
    rounds: int | None = None,
    steps: int = 10,
    method: str = "gausslegendre",
    batch_size: int | None = None,
    absolute: bool = False,
    ranked: int | float | None = None,
    schedule: str = "uniform",
) -> Result:
    """Greedy path integrated gradients.

    Start with ``S = ∅``. In each of ``rounds`` rounds, run integrated gradients
    from the current baseline ``b_S = b + m_S ⊙ (x − b)`` (features in ``S`` held at
    their input values) to ``x`` with ``steps`` gradient evaluations; add the
    top-``z`` unselected features to ``S``, where ``z = k / rounds`` (the first
    ``k % rounds`` rounds take one more). The total gradient budget is
    ``rounds × steps``: compare with IG at ``steps_IG = rounds × steps``.

    With ``ranked > k`` the rounds go on past ``k``: ``ranked`` features are
    fixed greedily, ``z = ranked / rounds`` per round, and ``selected`` is the
    first ``k`` of them. Rank-based metrics such as SIC reveal far more than
    ``k`` pixels (up to 75%), so ``ranked=0.75`` makes the whole revealed
    prefix a greedy order instead of one last-round IG ranking.

    Parameters
    ----------
    rounds : int, optional
        Number of IG rounds, ``1 <= rounds <= ranked`` (``k`` by default); default ``min(ranked, 5)``.
        ``rounds=1`` is IG's top-k.
    steps : int
        Gradient evaluations per round.
    method : str
        Quadrature rule of each round (Captum's names).
    batch_size : int, optional
        Points per forward/backward pass.
    absolute : bool
        Rank by ``|attribution|`` instead of the signed value.
    ranked : int or float, optional
        How many features the rounds fix in total: an int in ``[k, n_features]``
        or a fraction of ``n_features`` in ``(0, 1]`` (rounded up, at least ``k``).
        Default ``k``.
    schedule : {"uniform", "geometric"}
        How the ``ranked`` features are split over the rounds (:func:`round_sizes`).

    Returns
    -------
    Result
        ``selected`` in the order chosen; ``info["attribution"]`` holds, for a
        selected feature, its IG score in the round that selected it and, for the
        others, their score in the last round; ``info["order"]`` ranks the
        selected features first (in selection order), then the rest by their
        last-round score; ``info["rank_scores"]`` turns that order into a
        saliency map (``n − position``): use it, not ``info["attribution"]``, for
        rank-based metrics such as SIC, since a feature fixed in round ``t`` must
        be revealed before one fixed in round ``t + 1`` whatever their IG scores.
        ``info["round_of"]`` is the round that selected each feature (−1 if
        none). ``trace`` has one record per round, with ``G`` after it.
    """
    check_choice(method, "method", METHODS)
    check_choice(schedule, "schedule", SCHEDULES)
    n = problem.n_features
    total = _ranked_count(ranked, problem.k, n)
    rounds = min(total, 5) if rounds is None else check_int(rounds, "rounds", low=1)
    if rounds > total:
        which = "k" if ranked is None else "ranked"
        raise ValueError(f"rounds must be <= {which} ({total}), got {rounds}")
    steps = check_int(steps, "steps", low=1)
    batch_size = None if batch_size is None else check_int(batch_size, "batch_size", low=1)

    chosen = np.zeros(n, dtype=bool)
    selected: list[int] = []
    attribution = np.zeros(n)
    round_of = np.full(n, -1, dtype=np.int64)
    trace = []
    for r, size in enumerate(round_sizes(total, rounds, schedule)):
        weights = torch.from_numpy(chosen.astype(np.float64)).to(problem.x.dtype).unsqueeze(0)
        start = problem.compose(weights)[0]
        element_attr = path_integrated_gradients(problem, start, steps=steps, method=method, batch_size=batch_size)
        scores_round = problem.to_features(element_attr).double().cpu().numpy()
        attribution[~chosen] = scores_round[~chosen]
        ranking = np.abs(scores_round) if absolute else scores_round.copy()
        ranking[chosen] = -np.inf
        picks = descending_order(ranking)[:size]
        chosen[picks] = True
        round_of[picks] = r
        selected.extend(int(i) for i in picks)
        trace.append({"round": r, "picked": [int(i) for i in picks]})

    # G after each round, in one batched forward pass
    prefixes = np.cumsum([len(t["picked"]) for t in trace])
    values = problem.objectives([selected[:end] for end in prefixes])
    for record, value in zip(trace, values):
        record["objective"] = float(value)

    rest = np.flatnonzero(~chosen)
    rest_scores = np.abs(attribution[rest]) if absolute else attribution[rest]
    order = np.concatenate([np.asarray(selected, dtype=np.int64), rest[descending_order(rest_scores)]])
    return ranking_result(
        problem,
        attribution,
        order,
        gradient_evaluations=rounds * steps,
        trace=tuple(trace),
        objective=float(values[-1]) if total == problem.k else None,  # else G(first k) is computed there
        extra={"round_of": problem.to_map(round_of), "rounds": rounds, "steps_per_round": steps, "method": method,
               "ranked": total, "schedule": schedule},
    )


def _ranked_count(ranked: int | float | None, k: int, n: int) -> int:
    """The number of features the greedy rounds fix: ``k`` by default, else ``ranked`` (a count or a fraction of ``n``)."""
    if ranked is None:
        return k
    if isinstance(ranked, float):
        if not 0.0 < ranked <= 1.0:
            raise ValueError(f"ranked as a fraction must be in (0, 1], got {ranked}")
        return max(k, min(n, int(np.ceil(ranked * n))))
    total = check_int(ranked, "ranked", low=1)
    if not k <= total <= n:
        raise ValueError(f"ranked must be between k ({k}) and the number of features ({n}), got {total}")
    return total
