"""Batched gradients of an :class:`~sparsesel.problems.attribution.Attribution` problem's output.

These are the building blocks of the attribution solvers: the gradient at a
batch of points, and path-integrated gradients from any start point to ``x``.
"""

from __future__ import annotations

import numpy as np
import torch

from sparsesel.attribution.paths.quadrature import quadrature


def gradients(problem, points: torch.Tensor, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the target output at each point of a batch.

    Parameters
    ----------
    problem : Attribution
    points : Tensor, shape (B, *x.shape)
    batch_size : int, optional
        Evaluate at most this many points per forward/backward pass (default: all).

    Returns
    -------
    grads : Tensor, shape (B, *x.shape)
    values : Tensor, shape (B,)
        The target outputs at the points (detached).
    """
    size = points.shape[0] if batch_size is None else int(batch_size)
    grads, values = [], []
    for start in range(0, points.shape[0], size):
        chunk = points[start : start + size].detach().requires_grad_(True)
        with torch.enable_grad():
            out = problem.evaluate(chunk)
            (grad,) = torch.autograd.grad(out.sum(), chunk)
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
) -> torch.Tensor:
    """Integrated gradients of ``problem`` along the straight path from ``start`` to ``x``.

    ``IG_e = (x_e − start_e) · Σ_i w_i ∂f/∂x_e (start + α_i (x − start))`` for every
    element ``e``, with the nodes and weights of :func:`~sparsesel.attribution.paths.quadrature`.

    Parameters
    ----------
    problem : Attribution
    start : Tensor, shape x.shape
        Path start (the baseline, or the baseline with some features fixed at x).
    steps, method :
        Quadrature rule; ``steps`` gradient evaluations.
    batch_size : int, optional
        Points per forward/backward pass (default: all ``steps`` at once).

    Returns
    -------
    Tensor, shape x.shape
        Element-wise attributions (sum them per feature with ``problem.to_features``).
    """
    alphas, weights = quadrature(method, steps)
    x = problem.x
    delta = x - start
    shape = (-1,) + (1,) * x.ndim
    alpha_t = torch.as_tensor(alphas, dtype=x.dtype, device=x.device).reshape(shape)
    points = start.unsqueeze(0) + alpha_t * delta.unsqueeze(0)
    grads, _ = gradients(problem, points, batch_size)
    weight_t = torch.as_tensor(np.asarray(weights), dtype=grads.dtype, device=grads.device)
    total = torch.tensordot(weight_t, grads, dims=1)
    return total * delta
