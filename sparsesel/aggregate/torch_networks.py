"""Small torch helpers shared by the gradient-based aggregate estimators."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

DTYPE = torch.float64


def build_network(n_inputs: int, n_outputs: int, hidden: Sequence[int], bias: bool, seed: int) -> nn.Module:
    """A linear model (``hidden=()``) or a ReLU MLP, initialised from ``seed`` only.

    Initialisation: weights ``U(-1/√fan_in, 1/√fan_in)`` (PyTorch's default range),
    biases 0, drawn from a private ``torch.Generator`` (no global random state).
    """
    sizes = [n_inputs, *[int(h) for h in hidden], n_outputs]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(nn.Linear(sizes[i], sizes[i + 1], bias=bias or not last, dtype=DTYPE))
        if not last:
            layers.append(nn.ReLU())
    network = nn.Sequential(*layers)
    generator = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for layer in network:
            if isinstance(layer, nn.Linear):
                bound = 1.0 / math.sqrt(layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=generator, dtype=DTYPE) * 2 - 1) * bound)
                if layer.bias is not None:
                    layer.bias.zero_()
    return network


def weight_penalty(network: nn.Module) -> torch.Tensor:
    """``Σ ‖W‖²`` over the weight matrices (biases are not penalised)."""
    total = torch.zeros((), dtype=DTYPE)
    for layer in network:
        if isinstance(layer, nn.Linear):
            total = total + (layer.weight**2).sum()
    return total


def train(
    network: nn.Module,
    objective: Callable[[], torch.Tensor],
    *,
    optimizer: str,
    max_iter: int,
    learning_rate: float,
    tol: float = 1e-10,
) -> list[float]:
    """Minimise ``objective()`` over the network's parameters (full batch).

    ``optimizer="lbfgs"`` (convex linear models) or ``"adam"`` (MLPs). Returns the
    loss history.
    """
    history: list[float] = []
    params = [p for p in network.parameters() if p.requires_grad]
    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            params, lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=tol, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = objective()
            loss.backward()
            history.append(float(loss.detach()))
            return loss

        opt.step(closure)
        return history
    opt = torch.optim.Adam(params, lr=learning_rate)
    for _ in range(max_iter):
        opt.zero_grad()
        loss = objective()
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    return history


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(array), dtype=DTYPE)
