"""Losses and the training recipe value objects (each network's recipe comes from its adapter).

A :class:`TrainingRecipe` (each network's adapter gives its own,
:meth:`sparsesel.nets.adapter.NetworkAdapter.training_recipe`; :func:`training_recipe` looks it
up by name) is a value object: its
:class:`TrainingStep` list (each step owns a set of parameters, with one optimizer and one
learning-rate schedule each, and computes a loss on a batch; plain restoration networks have one
step, the GAN a generator and a discriminator step), the :class:`OptimizerRecipe` every step
uses, the weights of the loss terms and where it all comes from. The trainer
(:mod:`sparsesel.training.trainer`) reads it.

========== ====================================================================================
network    recipe
========== ====================================================================================
uhdformer  AdamW lr 5e-4, betas (0.9, 0.99), weight decay 1e-3, cosine to 1e-7; L1 + 0.1·FFT-L1
csattn     UHDformer's optimizer; L1 + 0.1·FFT-L1 at every output scale
tshrnet    the official one: Adam lr 1e-4, betas (0.5, 0.999), no weight decay, constant rate;
           five MSEs of weight 1 in the official value space (:func:`~sparsesel.nets.tshrnet.tshrnet_loss`)
harmonizer UHDformer's optimizer for both steps; the generator and discriminator losses
========== ====================================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from sparsesel.nets.adapter import NetworkAdapter

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimizerRecipe",
    "TrainingRecipe",
    "TrainingStep",
    "fft_l1_loss",
    "l1_fft_loss",
    "multiscale_loss",
    "multiscale_recipe",
    "predict",
    "recipe",
    "restoration_recipe",
    "training_recipe",
]

OPTIMIZERS = ("adamw", "adam")
SCHEDULES = ("cosine", "constant")


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


def multiscale_loss(model: nn.Module, batch: dict, cache: dict) -> dict:
    """CSAttn's loss: ``L1 + 0.1·FFT-L1`` at every output scale of ``model.forward_multiscale`` (the target
    resized bilinearly to each)."""
    outputs = model.forward_multiscale(batch["input"])
    target = batch["target"]
    total = l1_fft_loss(outputs[0], target)
    for out in outputs[1:]:
        scaled = F.interpolate(target, size=out.shape[-2:], mode="bilinear", align_corners=False)
        total = total + l1_fft_loss(out, scaled)
    return {"loss": total}


@dataclass(frozen=True)
class OptimizerRecipe:
    """The optimizer and learning-rate schedule of every step of a recipe.

    Attributes
    ----------
    optimizer : {"adamw", "adam"}
        ``torch.optim.AdamW`` or ``torch.optim.Adam``.
    lr : float
        Learning rate (the schedule's starting value).
    betas : tuple of float
        Adam's ``(beta1, beta2)``.
    weight_decay : float
        Decoupled (AdamW) or L2 (Adam) weight decay.
    schedule : {"cosine", "constant"}
        ``CosineAnnealingLR`` over the run down to ``eta_min``, or a constant rate.
    eta_min : float
        Final rate of the cosine schedule (unused by ``"constant"``).
    """

    optimizer: str
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    schedule: str
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")


@dataclass(frozen=True)
class TrainingRecipe:
    """How one network is trained (read by :func:`sparsesel.training.train`).

    Attributes
    ----------
    steps : tuple of TrainingStep
        Optimised in this order on every batch, each with its own optimizer and schedule.
    optimizer : OptimizerRecipe
        Settings of every step's optimizer (a :class:`~sparsesel.training.TrainConfig` may
        override them).
    loss_weights : mapping
        ``{term: weight}`` of the main (or generator) loss, as documentation and for tests.
    source : str
        Where the recipe comes from.
    """

    steps: tuple[TrainingStep, ...]
    optimizer: OptimizerRecipe
    loss_weights: Mapping[str, float] = field(default_factory=dict)
    source: str = ""


#: UHDformer's official optimizer (``options/*.yml``), also used for CSAttn and the harmonizer
UHDFORMER_OPTIMIZER = OptimizerRecipe("adamw", lr=5e-4, betas=(0.9, 0.99), weight_decay=1e-3, schedule="cosine", eta_min=1e-7)
#: the official ``train_4_networks.py``: ``Adam(lr=1e-4, betas=(0.5, 0.999))``; its ``lr /= 10``
#: every 10 epochs never reaches the optimizer, so the rate stays constant
TSHRNET_OPTIMIZER = OptimizerRecipe("adam", lr=1e-4, betas=(0.5, 0.999), weight_decay=0.0, schedule="constant")


def _everything(model: nn.Module) -> Iterable[nn.Parameter]:
    return model.parameters()


def restoration_recipe(adapter: NetworkAdapter, *, source: str) -> TrainingRecipe:
    """One step on every parameter: ``L1 + 0.1·FFT-L1`` of the adapter's output image against the target,
    with UHDformer's optimizer (the recipe of UHDformer and of any network without its own)."""

    def loss(model: nn.Module, batch: dict, cache: dict) -> dict:
        out = adapter.output_image(model, adapter.network_input(batch))
        return {"loss": l1_fft_loss(out, batch["target"])}

    return TrainingRecipe((TrainingStep("main", _everything, loss),), UHDFORMER_OPTIMIZER,
                          MappingProxyType({"l1": 1.0, "fft_l1": 0.1}), source)


def multiscale_recipe(*, source: str) -> TrainingRecipe:
    """One step on every parameter: :func:`multiscale_loss` with UHDformer's optimizer (CSAttn's recipe)."""
    return TrainingRecipe((TrainingStep("main", _everything, multiscale_loss),), UHDFORMER_OPTIMIZER,
                          MappingProxyType({"l1": 1.0, "fft_l1": 0.1}), source)


def training_recipe(net: str) -> TrainingRecipe:
    """The :class:`TrainingRecipe` of network ``net`` (a built-in name or a factory), from its adapter
    (:meth:`sparsesel.nets.adapter.NetworkAdapter.training_recipe`)."""
    from sparsesel.nets.adapter import get_adapter

    return get_adapter(net).training_recipe()


def recipe(net: str) -> list[TrainingStep]:
    """The training steps of network ``net`` (``training_recipe(net).steps`` as a list)."""
    return list(training_recipe(net).steps)


@torch.no_grad()
def predict(net: str, model: nn.Module, batch: dict) -> torch.Tensor:
    """The network's final image for ``batch["input"]`` (B, 3, H, W), any size (its adapter's
    :meth:`~sparsesel.nets.adapter.NetworkAdapter.restore`, without gradients)."""
    from sparsesel.nets.adapter import get_adapter

    return get_adapter(net).restore(model, batch)
