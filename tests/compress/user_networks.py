"""Small networks of "a user": modules sparsesel knows nothing about (imported by the tests by path).

``tiny_cnn`` is a factory ``user_networks:tiny_cnn``; ``TinyCNN`` is its class (rebuilt without
arguments when no factory is named); ``Widened`` needs an argument, so it cannot be rebuilt by its
class alone.
"""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """A residual three-convolution image-to-image network (any size)."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 3, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def tiny_cnn(width: int = 8) -> TinyCNN:
    """The factory ``user_networks:tiny_cnn``."""
    return TinyCNN(width)


class Widened(TinyCNN):
    """A network whose class needs an argument (no default)."""

    def __init__(self, width: int) -> None:
        super().__init__(width)
