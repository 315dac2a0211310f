"""Losses and per-network training recipes.

A :class:`TrainingRecipe` (see :func:`training_recipe`) is a value object: its
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

import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.nets.layers import reflect_pad_to_multiple

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "OptimizerRecipe",
    "TrainingRecipe",
    "TrainingStep",
    "fft_l1_loss",
    "l1_fft_loss",
    "predict",
    "recipe",
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
    from sparsesel.nets.tshrnet import TSHRNET_LOSS_WEIGHTS, TSHRNET_MIX_LOSS_WEIGHTS, tshrnet_loss_terms

    config = model.config
    terms = tshrnet_loss_terms(model(batch["input"]), batch, value_space=config.value_space, stage_one=config.stage_one)
    weights = TSHRNET_MIX_LOSS_WEIGHTS if config.stage_one == "direct" else TSHRNET_LOSS_WEIGHTS
    total = sum(weights[name] * value for name, value in terms.items())
    return {"loss": total, **terms}


def _generator_step(model: nn.Module, batch: dict, cache: dict) -> dict:
    from sparsesel.nets.harmonization import generator_loss

    outputs = model(batch["input"], batch["mask"])
    cache["fake"] = outputs["image"]
    return generator_loss(model, outputs, batch)


def _discriminator_step(model: nn.Module, batch: dict, cache: dict) -> dict:
    from sparsesel.nets.harmonization import discriminator_loss

    return {"loss": discriminator_loss(model, cache["fake"], batch)}


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


def training_recipe(net: str) -> TrainingRecipe:
    """The :class:`TrainingRecipe` of network ``net`` (see :mod:`sparsesel.nets.zoo` and the module table)."""
    if net == "uhdformer":
        return TrainingRecipe((TrainingStep("main", _everything, _restoration_loss),), UHDFORMER_OPTIMIZER,
                              MappingProxyType({"l1": 1.0, "fft_l1": 0.1}), "UHDformer (AAAI 2024) official options")
    if net == "csattn":
        return TrainingRecipe((TrainingStep("main", _everything, _multiscale_loss),), UHDFORMER_OPTIMIZER,
                              MappingProxyType({"l1": 1.0, "fft_l1": 0.1}), "UHDformer's recipe at every output scale")
    if net == "tshrnet":
        from sparsesel.nets.tshrnet import TSHRNET_LOSS_WEIGHTS

        return TrainingRecipe(
            (TrainingStep("main", _everything, _tshrnet_loss),), TSHRNET_OPTIMIZER, MappingProxyType(dict(TSHRNET_LOSS_WEIGHTS)),
            "fu123456/TSHRNet train_4_networks.py (official: batch 16 of 256x256 for 100 epochs); "
            "stage_one='direct' networks use train_4_networks_mix.py's four MSEs (TSHRNET_MIX_LOSS_WEIGHTS)",
        )
    if net == "harmonizer":
        return TrainingRecipe(
            (
                TrainingStep("generator", lambda model: model.generator.parameters(), _generator_step),
                TrainingStep("discriminator", lambda model: model.discriminator.parameters(), _discriminator_step),
            ),
            UHDFORMER_OPTIMIZER,
            source="sparsesel.nets.harmonization generator_loss / discriminator_loss with UHDformer's optimizer",
        )
    raise ValueError(f"no training recipe for network {net!r}")


def recipe(net: str) -> list[TrainingStep]:
    """The training steps of network ``net`` (``training_recipe(net).steps`` as a list)."""
    return list(training_recipe(net).steps)


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
