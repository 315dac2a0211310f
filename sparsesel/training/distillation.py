"""Distillation as a training recipe: a student learns a frozen teacher's outputs and the targets.

Loss per batch: ``teacher_weight · (L1 + 0.1·FFT-L1)(student, teacher output) + target_weight ·
(L1 + 0.1·FFT-L1)(student, target)`` (:func:`~sparsesel.training.losses.l1_fft_loss`); AdamW with
betas (0.9, 0.99) and a cosine schedule. :func:`sparsesel.compress.finetune.finetune` runs it in
:func:`sparsesel.training.loop.run_loop` to recover a compressed network's quality.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

import torch
from torch import nn

from sparsesel.training.losses import OptimizerRecipe, TrainingRecipe, TrainingStep, l1_fft_loss

__all__ = ["DISTILLATION_BETAS", "distillation_recipe"]

#: Adam's betas of the distillation recipe.
DISTILLATION_BETAS = (0.9, 0.99)


def _image_input(model: nn.Module, batch: dict) -> torch.Tensor:
    return batch["input"]


def _call(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


def _everything(model: nn.Module):
    return model.parameters()


def distillation_recipe(
    teacher: nn.Module,
    *,
    lr: float,
    weight_decay: float = 0.0,
    eta_min: float = 1e-6,
    teacher_weight: float = 1.0,
    target_weight: float = 1.0,
    input_of: Callable[[nn.Module, dict], torch.Tensor] = _image_input,
    output_of: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _call,
) -> TrainingRecipe:
    """The recipe that distils ``teacher`` (evaluated without gradients, never updated) into a student.

    Parameters
    ----------
    teacher : torch.nn.Module
        The original network; put it in eval mode for the run (the recipe does not change its mode).
    lr, weight_decay, eta_min : float
        AdamW's rate and weight decay, the cosine schedule's final rate.
    teacher_weight, target_weight : float
        Weights of the distillation and the ground-truth terms.
    input_of : callable, optional
        ``(network, batch) -> x``: the network's input for a batch (default ``batch["input"]``,
        shape (B, 3, H, W)); called with the student itself, never a data-parallel wrapper.
    output_of : callable, optional
        ``(network, x) -> image`` of shape (B, 3, H, W) (default ``network(x)``).

    Returns
    -------
    TrainingRecipe
        One step, ``"distillation"``, over every parameter of the student.
    """

    def loss(model: nn.Module, batch: dict, cache: dict) -> dict[str, torch.Tensor]:
        inputs = input_of(getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model, batch)
        with torch.no_grad():
            taught = output_of(teacher, inputs)
        out = output_of(model, inputs)
        return {"loss": teacher_weight * l1_fft_loss(out, taught) + target_weight * l1_fft_loss(out, batch["target"])}

    optimizer = OptimizerRecipe("adamw", lr=lr, betas=DISTILLATION_BETAS, weight_decay=weight_decay, schedule="cosine", eta_min=eta_min)
    return TrainingRecipe((TrainingStep("distillation", _everything, loss),), optimizer,
                          MappingProxyType({"teacher_l1": teacher_weight, "teacher_fft_l1": 0.1 * teacher_weight,
                                            "target_l1": target_weight, "target_fft_l1": 0.1 * target_weight}),
                          "sparsesel.training.distillation: L1 + 0.1 FFT-L1 to the teacher's output and to the target")
