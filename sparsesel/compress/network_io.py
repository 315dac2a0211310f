"""How the compression pipeline calls a network: one input tensor in, one image out.

Networks differ in their signatures (the Harmonizer takes an image and a mask, TSHRNet returns a
dict of its stages); each network's adapter (:func:`sparsesel.nets.adapter.adapter_for`) says how
to call it. The pipeline (calibration, fine-tuning, evaluation, latency, export) passes one tensor:
the image, with the mask appended as a fourth channel for networks that take one
(:func:`network_input`), and reads one image back (:func:`network_output`). Any other ``nn.Module``
that maps ``(B, 3, H, W)`` to an image works as it is.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsesel.nets.adapter import adapter_for

__all__ = ["example_input", "network_input", "network_output", "size_multiple"]


def network_input(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The tensor the pipeline feeds ``model`` for ``batch``: ``input`` (B, 3, H, W), with the
    batch's ``mask`` (B, 1, H, W) appended as a fourth channel if the model takes one.

    Raises
    ------
    ValueError
        If the model takes a mask and the batch has none.
    """
    return adapter_for(model).network_input(batch)


def network_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The final image ``(B, 3, H, W)`` of ``model`` for the pipeline's input ``x``.

    Raises
    ------
    ValueError
        If a network that takes a mask gets no fourth channel, or a dict output has no image entry.
    """
    return adapter_for(model).output_image(model, x)


def size_multiple(model: nn.Module) -> int:
    """Input sides of ``model`` must be multiples of this (its adapter's; 1 if it states none)."""
    return adapter_for(model).size_multiple(model)


def example_input(model: nn.Module, height: int, width: int, *, seed: int = 0) -> torch.Tensor:
    """A random ``(1, C, height, width)`` pipeline input for ``model`` (C = 4 with a mask channel
    of zeros and ones, else 3), on the model's device and dtype."""
    return adapter_for(model).example_input(model, height, width, seed=seed)
