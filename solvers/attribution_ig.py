"""Gradient-based attribution: integrated gradients, gradient, gradient × input, random."""

from __future__ import annotations

import numpy as np
import torch

from sparsesel.attribution.integrated import check_finite_model, gradients, path_integrated_gradients
from sparsesel.attribution.paths.quadrature import METHODS
from sparsesel.attribution.ranking import descending_order, ranking_result
from sparsesel.problems.attribution import Attribution
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.validation import check_choice, check_int


def _check_batch_size(batch_size: int | None) -> int | None:
    return None if batch_size is None else check_int(batch_size, "batch_size", low=1)


@register_solver(
    "integrated_gradients",
    kinds=(Attribution,),
    description="integrated gradients (Sundararajan et al. 2017) with Captum's quadrature rules; top-k features",
)
def integrated_gradients(
    problem: Attribution,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int | None = None,
    absolute: bool = False,
) -> Result:
    """Integrated gradients from the baseline to ``x``; select the ``k`` highest scores.

    Parameters
    ----------
    steps : int
        Gradient evaluations along the path (per example).
    method : str
        Quadrature rule: one of Captum's names (``riemann_left``, ``riemann_right``,
        ``riemann_middle``, ``riemann_trapezoid``, ``gausslegendre``; each equal to
        Captum's rule) or ``trapezoid`` (the exact trapezoid rule); see
        :mod:`sparsesel.attribution.paths.quadrature`.
    batch_size : int, optional
        Points per forward/backward pass, like Captum's ``internal_batch_size``
        (default: all ``steps`` at once for a single input; for a batched problem the
        points of all examples share passes of
        :func:`~sparsesel.attribution.integrated.points_per_pass` points).
    absolute : bool
        Rank by ``|attribution|`` instead of the signed value.

    Returns
    -------
    Result
        ``info["attribution"]`` the per-feature IG map; ``info["convergence_delta"]``
        is ``Σ IG − (f(x) − f(b))`` (completeness error of the quadrature);
        ``info["f_x"]``, ``info["f_baseline"]`` the model's target output at both ends.
        A batched problem gives the batched form (see :class:`~sparsesel.problems.attribution.Attribution`):
        these entries then hold one value (or map) per example.
    """
    check_choice(method, "method", METHODS)
    element_attr = path_integrated_gradients(
        problem, problem.baseline, steps=steps, method=method, batch_size=_check_batch_size(batch_size),
        where="along the path from the baseline to x (integrated_gradients)",
    )
    attribution = problem.to_features(element_attr).double().cpu().numpy()
    if problem.batched:
        return _batched_ig_result(problem, attribution, steps, method, absolute)
    order = descending_order(np.abs(attribution) if absolute else attribution)
    # f(x), f(b) and G(selected) in one forward pass
    weights = torch.zeros(3, problem.n_features, dtype=problem.x.dtype)
    weights[0] = 1.0
    weights[2, torch.from_numpy(order[: problem.k])] = 1.0
    with torch.no_grad():
        endpoint_values = problem.evaluate(problem.compose(weights))
    check_finite_model(endpoint_values, where="at the selected top-k subset (integrated_gradients)")
    f_x, f_b, objective = endpoint_values.double().cpu().tolist()
    delta = float(attribution.sum() - (f_x - f_b))
    return ranking_result(
        problem,
        attribution,
        order,
        gradient_evaluations=steps,
        objective=objective,
        extra={"convergence_delta": delta, "f_x": f_x, "f_baseline": f_b, "method": method},
    )


def _batched_ig_result(problem: Attribution, attribution: np.ndarray, steps: int, method: str, absolute: bool) -> Result:
    """The batched Result: per-example orders, and ``f(x)``, ``f(b)``, ``G(top-k)`` of every example in one pass."""
    order = np.stack([descending_order(np.abs(row) if absolute else row) for row in attribution])
    n_examples = problem.n_examples
    weights = torch.zeros(3, n_examples, problem.n_features, dtype=problem.x.dtype)
    weights[0] = 1.0
    weights[2].scatter_(1, torch.from_numpy(order[:, : problem.k]), 1.0)
    examples = torch.arange(n_examples).repeat(3)
    with torch.no_grad():
        endpoint_values = problem.evaluate(problem.compose(weights.reshape(3 * n_examples, -1), examples), examples)
    check_finite_model(endpoint_values, where="at the selected top-k subsets (integrated_gradients)")
    f_x, f_b, objectives = endpoint_values.double().cpu().numpy().reshape(3, n_examples)
    delta = attribution.reshape(n_examples, -1).sum(axis=1) - (f_x - f_b)
    return ranking_result(
        problem, attribution, order, gradient_evaluations=steps, objective=objectives,
        extra={"convergence_delta": delta, "f_x": f_x, "f_baseline": f_b, "method": method},
    )


def _gradient_attribution(problem: Attribution, times_input: bool, where: str) -> np.ndarray:
    """Per-feature ``∂f/∂x`` (or ``x ⊙ ∂f/∂x``) at the input(s): ``(n_features,)``, or ``(B, n_features)`` for a batch."""
    grad, _ = gradients(problem, problem.inputs, where=where)
    values = grad * problem.inputs if times_input else grad
    attribution = problem.to_features(values).double().cpu().numpy()
    return attribution if problem.batched else attribution[0]


def _orders(attribution: np.ndarray, absolute: bool) -> np.ndarray:
    """Descending orders of one score vector ``(n,)`` or of each row of ``(B, n)``."""
    scores = np.abs(attribution) if absolute else attribution
    if scores.ndim == 1:
        return descending_order(scores)
    return np.stack([descending_order(row) for row in scores])


@register_solver("gradient", kinds=(Attribution,), description="plain gradient at x (saliency map); top-k features")
def gradient(problem: Attribution, *, absolute: bool = False) -> Result:
    """Rank features by the gradient ``∂f/∂x`` at the input (summed over each feature's elements)."""
    attribution = _gradient_attribution(problem, False, where="at x (gradient)")
    return ranking_result(problem, attribution, _orders(attribution, absolute), gradient_evaluations=1)

@register_solver(
    "gradient_x_input", kinds=(Attribution,), description="gradient times input x·∂f/∂x (Captum's InputXGradient); top-k"
)
def gradient_x_input(problem: Attribution, *, absolute: bool = False) -> Result:
    """Rank features by ``x ⊙ ∂f/∂x`` at the input, summed over each feature's elements."""
    attribution = _gradient_attribution(problem, True, where="at x (gradient_x_input)")
    return ranking_result(problem, attribution, _orders(attribution, absolute), gradient_evaluations=1)

@register_solver("random", kinds=(Attribution,), description="uniformly random ranking (a floor for every metric)")
def random(problem: Attribution, *, seed: int = 0) -> Result:
    """A uniformly random ranking of the features (attribution = i.i.d. standard normal scores).

    A batch draws a ``(B, n_features)`` array from one generator: example 0 gets the single-input ranking.
    """
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    attribution = rng.standard_normal((problem.n_examples, problem.n_features) if problem.batched else problem.n_features)
    return ranking_result(problem, attribution, _orders(attribution, False), gradient_evaluations=0)
