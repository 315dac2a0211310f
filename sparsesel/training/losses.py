"""Losses and per-network training recipes.

A recipe is a list of :class:`TrainingStep`: each step owns a set of parameters (one
optimizer and one learning-rate schedule each) and computes a loss on a batch. Plain
restoration networks have one step; the GAN has a generator step and a discriminator step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.nets.layers import reflect_pad_to_multiple

__all__ = ["TrainingStep", "fft_l1_loss", "l1_fft_loss", "predict", "recipe"]


def fft_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """UHDformer's ``FFTLoss``: mean absolute difference of the stacked real and imaginary
    parts of ``torch.fft.rfft2`` over the last two axes."""
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    a = torch.fft.rfft2(pred, dim=(-2, -1))
    b = torch.fft.rfft2(target, dim=(-2, -1))
    return F.l1_loss(torch.view_as_real(a), torch.view_as_real(b))


def l1_fft_loss(pred: torch.Tensor, target: torch.Tensor, fft_weight: float = 0.1) -> torch.Tensor:
    """UHDformer's training loss: ``L1 + fft_weight · FFT-L1`` (official weight 0.1)."""
    return F.l1_loss(pred, target) + fft_weight * fft_l1_loss(pred, target)


@dataclass(frozen=True)
class TrainingStep:
    """One optimisation step of a recipe.

    Attributes
    ----------
    name : str
        ``"main"``, ``"generator"`` or ``"discriminator"``.
    parameters : callable
        ``model -> iterable of parameters`` this step updates.
    loss : callable
        ``(model, batch, cache) -> dict`` with a scalar ``"loss"`` to minimise and other
        scalars to log; ``cache`` is shared by the steps of one iteration.
    """

    name: str
    parameters: Callable[[nn.Module], Iterable[nn.Parameter]]
    loss: Callable[[nn.Module, dict, dict], dict]


def _restoration_loss(model: nn.Module, batch: dict, cache: dict) -> dict:
    out = model(batch["input"])
    return {"loss": l1_fft_loss(out, batch["target"])}


def _multiscale_loss(model: nn.Module, batch: dict, cache: dict) -> dict:
    outputs = model.forward_multiscale(batch["input"])
    target = batch["target"]
    total = l1_fft_loss(outputs[0], target)
    for out in outputs[1:]:
        scaled = F.interpolate(target, size=out.shape[-2:], mode="bilinear", align_corners=False)
        total = total + l1_fft_loss(out, scaled)
    return {"loss": total}


def _tshrnet_loss(model: nn.Module, batch: dict, cache: dict) -> dict:
    from sparsesel.nets.tshrnet import tshrnet_loss

    return {"loss": tshrnet_loss(model(batch["input"]), batch)}


def _generator_step(model: nn.Module, batch: dict, cache: dict) -> dict:
    from sparsesel.nets.harmonization import generator_loss

    outputs = model(batch["input"], batch["mask"])
    cache["fake"] = outputs["image"]
    return generator_loss(model, outputs, batch)


def _discriminator_step(model: nn.Module, batch: dict, cache: dict) -> dict:
    from sparsesel.nets.harmonization import discriminator_loss

    return {"loss": discriminator_loss(model, cache["fake"], batch)}


def recipe(net: str) -> list[TrainingStep]:
    """The training steps of network ``net`` (see :mod:`sparsesel.nets.zoo`)."""
    everything = lambda model: model.parameters()  # noqa: E731
    if net == "uhdformer":
        return [TrainingStep("main", everything, _restoration_loss)]
    if net == "csattn":
        return [TrainingStep("main", everything, _multiscale_loss)]
    if net == "tshrnet":
        return [TrainingStep("main", everything, _tshrnet_loss)]
    if net == "harmonizer":
        return [
            TrainingStep("generator", lambda model: model.generator.parameters(), _generator_step),
            TrainingStep("discriminator", lambda model: model.discriminator.parameters(), _discriminator_step),
        ]
    raise ValueError(f"no training recipe for network {net!r}")


@torch.no_grad()
def predict(net: str, model: nn.Module, batch: dict) -> torch.Tensor:
    """The network's final image for ``batch["input"]`` (B, 3, H, W), any size (reflect-padded)."""
    x = batch["input"]
    if net == "uhdformer":
        return model.restore(x)
    multiple = int(getattr(model, "multiple", 1))
    padded, (height, width) = reflect_pad_to_multiple(x, multiple)
    if net == "harmonizer":
        mask, _ = reflect_pad_to_multiple(batch["mask"], multiple)
        out = model(padded, mask)["image"]
    elif net == "tshrnet":
        out = model(padded)["diffuse_tc"]
    else:
        out = model(padded)
    return out[..., :height, :width]
