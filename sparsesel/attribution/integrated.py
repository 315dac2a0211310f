"""Batched gradients of an :class:`~sparsesel.problems.attribution.Attribution` problem's output.

These are the building blocks of the attribution solvers: the gradient at a
batch of points, and path-integrated gradients from any start point to ``x``.
"""

from __future__ import annotations

import numpy as np
import torch

from sparsesel.attribution.paths.quadrature import quadrature


class NonFiniteModelError(ValueError):
    """The model's output or its gradient is NaN or infinite at a point an attribution solver evaluates."""


def check_finite_model(values: torch.Tensor, grads: torch.Tensor | None = None, *, where: str = "along the path") -> None:
    """Raise :class:`NonFiniteModelError` unless the target outputs (and gradients) are all finite.

    ``Attribution`` checks the model at ``x`` and at the baseline only; a model can
    still overflow or produce NaN at the points between them (a division by a
    quantity that vanishes inside the box, a ``log`` of a value that reaches 0).
    A NaN there would turn every attribution into NaN or make a selection
    arbitrary, so every solver calls this on what it evaluates.

    Parameters
    ----------
    values : Tensor, shape (B,)
        Target outputs at ``B`` points.
    grads : Tensor, shape (B, ...), optional
        Their gradients with respect to the points (or to the feature weights).
    where : str
        Where the points come from, for the message (e.g. ``"along the path"``).
    """
    bad_values = ~torch.isfinite(values.detach().reshape(-1))
    if bool(bad_values.any()):
        first_bad = float(values.detach().reshape(-1)[bad_values][0])
        raise NonFiniteModelError(
            f"the model's output became non-finite {where}: {int(bad_values.sum())} of {bad_values.numel()} "
            f"evaluated points give NaN or inf (e.g. {first_bad}); the model is finite at x and at the baseline "
            "but not everywhere between them, so the attributions would be NaN or arbitrary"
        )
    if grads is not None:
        bad_grads = ~torch.isfinite(grads.detach()).reshape(grads.shape[0], -1).all(dim=1)
        if bool(bad_grads.any()):
            raise NonFiniteModelError(
                f"the model's gradient became non-finite {where}: {int(bad_grads.sum())} of {bad_grads.numel()} "
                "evaluated points have a NaN or inf gradient although the output there is finite, so the "
                "attributions would be NaN"
            )


#: Default input elements per forward/backward pass of a batched problem (see :func:`points_per_pass`).
ELEMENTS_PER_PASS = 2**18


def points_per_pass(problem, batch_size: int | None) -> int | None:
    """How many path points one forward/backward pass takes: ``batch_size``, else the default.

    The default is every point at once for a single input (as before batches
    existed) and, for a batched problem, ``max(1, ELEMENTS_PER_PASS // example size)``
    points (85 images of 3×32×32): passes of a few hundred thousand input
    elements keep a small CNN's activations in cache and were 1.6× faster than
    one pass over all 8 × 64 points of 8 such images on one CPU thread
    (``benchmarks/attribution_batch.py`` measures the effect against Captum).
    """
    if batch_size is not None or not getattr(problem, "batched", False):
        return batch_size
    return max(1, ELEMENTS_PER_PASS // int(np.prod(problem.example_shape)))


def gradients(
    problem, points: torch.Tensor, batch_size: int | None = None, *, examples: torch.Tensor | None = None,
    where: str = "along the path",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the target output at each point of a batch.

    Parameters
    ----------
    problem : Attribution
    points : Tensor, shape (N, *example_shape)
    batch_size : int, optional
        Evaluate at most this many points per forward/backward pass (default: all).
    examples : Tensor of long, shape (N,), optional
        Batched problems: the example (target) of each point; default ``0..B−1`` when ``N = B``.
    where : str
        Where the points lie, for the error message.

    Returns
    -------
    grads : Tensor, shape (N, *example_shape)
    values : Tensor, shape (N,)
        The target outputs at the points (detached).

    Raises
    ------
    NonFiniteModelError
        A ``ValueError``: an output or a gradient is NaN or infinite at some point.
    """
    size = points.shape[0] if batch_size is None else int(batch_size)
    if examples is None and getattr(problem, "batched", False):
        examples = torch.arange(points.shape[0])
    grads, values = [], []
    for start in range(0, points.shape[0], size):
        chunk = points[start : start + size].detach().requires_grad_(True)
        rows = None if examples is None else examples[start : start + size]
        with torch.enable_grad():
            out = problem.evaluate(chunk) if rows is None else problem.evaluate(chunk, rows)
            (grad,) = torch.autograd.grad(out.sum(), chunk)
        check_finite_model(out, grad, where=where)
        grads.append(grad)
        values.append(out.detach())
    if len(grads) == 1:
        return grads[0], values[0]
    return torch.cat(grads), torch.cat(values)


def path_integrated_gradients(
    problem,
    start: torch.Tensor,
    *,
    steps: int = 50,
    method: str = "gausslegendre",
    batch_size: int | None = None,
    where: str = "along the path",
) -> torch.Tensor:
    """Integrated gradients of ``problem`` along the straight path from ``start`` to ``x``.

    ``IG_e = (x_e − start_e) · Σ_i w_i ∂f/∂x_e (start + α_i (x − start))`` for every
    element ``e``, with the nodes and weights of :func:`~sparsesel.attribution.paths.quadrature`.
    For a batched problem the ``B × steps`` points of all examples go through the
    same passes (``batch_size`` points each; default :func:`points_per_pass`).

    Parameters
    ----------
    problem : Attribution
    start : Tensor, shape x.shape
        Path start (the baseline, or the baseline with some features fixed at x);
        ``(B, *example_shape)`` for a batched problem.
    steps, method :
        Quadrature rule; ``steps`` gradient evaluations (per example).
    batch_size : int, optional
        Points per forward/backward pass (default: :func:`points_per_pass`).
    where : str
        Which path this is (solver, round), for the error message.

    Returns
    -------
    Tensor, shape x.shape
        Element-wise attributions (sum them per feature with ``problem.to_features``).

    Raises
    ------
    NonFiniteModelError
        A ``ValueError``: the model's output or gradient is NaN or infinite at a quadrature node.
    """
    alphas, weights = quadrature(method, steps)
    batched = getattr(problem, "batched", False)
    x = problem.x if batched else problem.x.unsqueeze(0)
    starts = start if batched else start.unsqueeze(0)
    delta = x - starts
    n_examples, steps = x.shape[0], len(alphas)
    alpha_t = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).reshape((1, -1) + (1,) * (x.ndim - 1))
    points = (starts.unsqueeze(1) + alpha_t * delta.unsqueeze(1)).reshape(-1, *x.shape[1:])
    examples = torch.arange(n_examples).repeat_interleave(steps) if batched else None
    grads, _ = gradients(problem, points, points_per_pass(problem, batch_size), examples=examples, where=where)
    weight_t = torch.as_tensor(np.asarray(weights), dtype=grads.dtype, device=grads.device)
    # (S, B, D): node-major, so that one input reduces exactly as the single-input path always has
    per_node = grads.reshape(n_examples, steps, -1).transpose(0, 1).reshape(steps, n_examples, *x.shape[1:])
    total = torch.tensordot(weight_t, per_node, dims=1) * delta
    return total if batched else total[0]
