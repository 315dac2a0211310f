"""How the compression pipeline calls a network: one input tensor in, one image out.

Networks of :mod:`sparsesel.nets` differ in their signatures: UHDformer and CSAttn map an image
to an image; TSHRNet returns a dict of its stages (``final_output = "diffuse_tc"``); the
Harmonizer takes the composite and its foreground mask and returns a dict
(``takes_mask = True``, ``final_output = "image"``). The pipeline (calibration, fine-tuning,
evaluation, latency) passes one tensor: the image, with the mask appended as a fourth channel
for networks that take one (:func:`network_input`), and reads one image back
(:func:`network_output`). Any other ``nn.Module`` that maps ``(B, 3, H, W)`` to an image works
as it is.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["example_input", "network_input", "network_output"]


def _takes_mask(model: nn.Module) -> bool:
    return bool(getattr(model, "takes_mask", False))


def network_input(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The tensor the pipeline feeds ``model`` for ``batch``: ``input`` (B, 3, H, W), with the
    batch's ``mask`` (B, 1, H, W) appended as a fourth channel if the model takes one.

    Raises
    ------
    ValueError
        If the model takes a mask and the batch has none.
    """
    x = batch["input"]
    if not _takes_mask(model):
        return x
    if batch.get("mask") is None:
        raise ValueError(f"{type(model).__name__} takes a foreground mask, but the data has none (use its task, e.g. 'harmonize')")
    return torch.cat([x, batch["mask"].to(x.dtype)], dim=1)


def network_output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The final image ``(B, 3, H, W)`` of ``model`` for the pipeline's input ``x``.

    Raises
    ------
    ValueError
        If a network that takes a mask gets no fourth channel, or a dict output has no
        ``final_output`` entry.
    """
    if _takes_mask(model):
        if x.shape[1] != 4:
            raise ValueError(f"{type(model).__name__} takes an image and a mask: expected 4 input channels, got {x.shape[1]}")
        out = model(x[:, :3], x[:, 3:4])
    else:
        out = model(x)
    if isinstance(out, dict):
        key = getattr(model, "final_output", None)
        if key not in out:
            raise ValueError(f"{type(model).__name__} returns a dict {sorted(out)}; set its final_output to one of them")
        out = out[key]
    return out


def example_input(model: nn.Module, height: int, width: int, *, seed: int = 0) -> torch.Tensor:
    """A random ``(1, C, height, width)`` pipeline input for ``model`` (C = 4 with a mask channel
    of zeros and ones, else 3), on the model's device and dtype."""
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(int(seed))
    x = torch.rand(1, 3, int(height), int(width), generator=generator)
    if _takes_mask(model):
        mask = torch.zeros(1, 1, int(height), int(width))
        mask[..., height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1.0
        x = torch.cat([x, mask], dim=1)
    return x.to(dtype=parameter.dtype, device=parameter.device)
