"""Channel selectors: which channels of each group a structured plan keeps.

The latency knapsack (:func:`~sparsesel.compress.latency_plan.plan_latency`) decides *how many*
channels each :class:`~sparsesel.compress.channel_pruning.ChannelGroup` keeps; a selector
``selector(model, group) -> order`` (every channel index, most important first) decides *which*
(:func:`~sparsesel.compress.structured.kept_channels`).  Registered names (:data:`SELECTORS`):

``magnitude``
    The group's L2 importance (Torch-Pruning's ``MagnitudeImportance(p=2)``, mean over the
    group's layers; :func:`~sparsesel.compress.structured.magnitude_selector`).
``taylor``
    First-order Taylor importance, Torch-Pruning's ``TaylorImportance``: per channel
    ``Σ |w · ∂L/∂w|`` over the weights of each of the group's layers that touch it (the same
    weights magnitude counts), averaged over the layers and divided by the mean; ``L`` the
    distillation loss (L1 + 0.1 FFT-L1 to the original's output and to the target) on calibration
    patches, one backward pass per network, in training mode.
``random``
    A seeded random order per group (the order depends on the seed and the group's name only).
``sa++``
    SequentialAttention++ (:mod:`sparsesel.compress.sapp_channels`): attention on every group to
    shrink, trained *during* distillation with the ACDC phases and the gradual schedule, needing
    the planned counts and a short distillation phase; its weights are the distilled ones.

:func:`select_channels` is the one entry: given a network, the planned counts and the
distillation settings, it returns the network to shrink and its selector (:class:`Selection`).
"""

from __future__ import annotations

import copy
import weakref
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsesel.compress.channel_pruning import ChannelGroup, channel_groups
from sparsesel.compress.network_io import network_input, network_output
from sparsesel.compress.structured import Selector, magnitude_selector

__all__ = ["DEFAULT_SELECTOR", "SELECTORS", "Selection", "apply_with_selector", "check_selector", "order_selector", "random_selector",
           "select_channels", "taylor_selector"]

#: Selector names and what each needs (see the module docstring).
SELECTORS = {
    "sa++": "SequentialAttention++ attention trained during distillation (ACDC phases, gradual schedule)",
    "magnitude": "L2 magnitude of the group's weights (Torch-Pruning MagnitudeImportance)",
    "taylor": "first-order Taylor |w * dL/dw| per group on calibration patches (Torch-Pruning TaylorImportance)",
    "random": "seeded random order (a baseline)",
}
#: The selector of ``sparsesel compress`` unless told: the best mean PSNR at both plans of
#: ``benchmarks/compress_selectors.py`` (50 % latency: sa++ 24.54, taylor 24.42, magnitude 24.22,
#: random 23.48 dB; the fastest plan: 23.54 / 21.47 / 21.53 / 19.86 dB; 3 seeds, 60 steps).  The library
#: functions default to ``magnitude`` (one pass, no data).
DEFAULT_SELECTOR = "sa++"


def check_selector(name: Any) -> str:
    """``name`` if it is a registered selector, else ``ValueError`` listing the valid names."""
    if not isinstance(name, str) or name not in SELECTORS:
        raise ValueError(f"unknown selector {name!r}; choose one of {', '.join(SELECTORS)}")
    return name


def random_selector(seed: int = 0) -> Selector:
    """A selector ordering each group's channels at random (seeded by ``seed`` and the group's name)."""

    def select(model: nn.Module, group: ChannelGroup) -> np.ndarray:
        rng = np.random.default_rng([int(seed), zlib.crc32(group.name.encode())])
        return rng.permutation(group.channels)

    return select


def order_selector(orders: dict[tuple[str, str], np.ndarray], fallback: Selector = magnitude_selector) -> Selector:
    """A selector reading fixed ``orders`` ``{(module, kind): order}``; other groups (or a group whose
    width changed) are ordered by ``fallback``."""

    def select(model: nn.Module, group: ChannelGroup) -> np.ndarray:
        order = orders.get((group.module, group.kind))
        if order is None or len(order) != group.channels:
            return fallback(model, group)
        return np.asarray(order)

    return select


def _taylor_shadow(model: nn.Module, teacher: nn.Module, batch: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose every parameter is ``sqrt(|w · ∂L/∂w|)`` (``L``: the distillation loss on ``batch``).

    Magnitude importance sums squared weights per channel, so on this copy it sums ``|w · ∂L/∂w|``:
    Taylor importance with the same layers, reduction and normalisation.
    """
    shadow = copy.deepcopy(model).train()
    from sparsesel.training.losses import l1_fft_loss

    x = network_input(shadow, batch)
    was_training = teacher.training
    with torch.no_grad():
        taught = network_output(teacher.eval(), x)
    teacher.train(was_training)
    out = network_output(shadow, x)
    loss = l1_fft_loss(out, taught) + l1_fft_loss(out, batch["target"])
    parameters = [p for p in shadow.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, parameters, allow_unused=True)
    with torch.no_grad():
        for p, g in zip(parameters, grads):
            p.copy_((p * g).abs().sqrt() if g is not None else torch.zeros_like(p))
    return shadow.eval()


def taylor_selector(teacher: nn.Module, calibration: dict[str, torch.Tensor]) -> Selector:
    """A selector ordering channels by first-order Taylor importance (see the module docstring).

    Parameters
    ----------
    teacher : nn.Module
        The original network (its output is the distillation target).
    calibration : dict
        A batch ``{"input": (B, 3, H, W), "target": (B, 3, H, W)}``.
    """
    if not isinstance(calibration, dict) or "input" not in calibration or "target" not in calibration:
        raise ValueError("the taylor selector needs calibration patches: a batch with 'input' and 'target'")
    cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def select(model: nn.Module, group: ChannelGroup) -> np.ndarray:
        if model not in cache:
            shadow = _taylor_shadow(model, teacher, calibration)
            cache[model] = {(g.module, g.kind): g.importance for g in channel_groups(shadow)}
        importance = cache[model][(group.module, group.kind)]
        return np.argsort(-np.asarray(importance), kind="stable")

    return select


@dataclass
class Selection:
    """A selector ready for a plan.

    Attributes
    ----------
    name : str
    network : nn.Module
        The network to shrink: the input itself, or for ``sa++`` its distilled copy.
    selector : Selector
    steps : int
        Distillation steps spent selecting (``sa++``), to be taken off the fine-tuning.
    info : dict
    """

    name: str
    network: nn.Module
    selector: Selector
    steps: int = 0
    info: dict[str, Any] = field(default_factory=dict)


def select_channels(name: str, model: nn.Module, counts: dict[tuple[str, str], int], *, teacher: nn.Module | None = None,
                    finetune=None, calibration: dict[str, torch.Tensor] | None = None, seed: int = 0,
                    sapp=None) -> Selection:
    """The network to shrink to ``counts`` and the selector choosing its channels.

    Parameters
    ----------
    name : str
        One of :data:`SELECTORS`.
    model : UHDformer
        Not modified.
    counts : dict
        ``{(module, kind): kept channels}`` (e.g. a latency plan's ``structured`` entries).
    teacher : nn.Module, optional
        The original network (default ``model``); ``taylor`` and ``sa++`` distil from it.
    finetune : FinetuneConfig, optional
        Distillation settings for ``sa++`` (default ``FinetuneConfig()``).
    calibration : dict, optional
        ``taylor``: the batch of patches (default: 4 training patches of the fine-tuning's task,
        patch size and seed).
    seed : int
        ``random``'s seed.
    sapp : SappChannelConfig, optional

    Returns
    -------
    Selection
    """
    check_selector(name)
    teacher = model if teacher is None else teacher
    if name == "magnitude":
        return Selection(name, model, magnitude_selector)
    if name == "random":
        return Selection(name, model, random_selector(seed), info={"seed": int(seed)})
    from sparsesel.compress.finetune import FinetuneConfig

    finetune = FinetuneConfig() if finetune is None else finetune
    if name == "taylor":
        if calibration is None:
            from sparsesel.data.datasets import PairedPatchDataset

            calibration = PairedPatchDataset(finetune.task, split="train", patch_size=finetune.patch_size, length=4,
                                             seed=finetune.seed + 1).batch(range(4))
        return Selection(name, model, taylor_selector(teacher, calibration))
    from sparsesel.compress.sapp_channels import sapp_channel_selection

    result = sapp_channel_selection(model, teacher, counts, finetune, sapp)
    return Selection(name, result.network, order_selector(result.orders), steps=int(result.info["config"]["steps"]),
                     info={**result.info, "attention": {f"{m or '<net>'}:{k}": a.tolist() for (m, k), a in result.attention.items()}})



def apply_with_selector(model: nn.Module, plan, name: str = "magnitude", *, teacher: nn.Module | None = None,
                        finetune=None, seed: int = 0, sapp=None) -> tuple[nn.Module, Selection]:
    """``plan`` (a latency plan: ``plan.structured`` counts, then factorizations) applied to ``model``
    with the channels chosen by selector ``name`` (:func:`select_channels`; ``sa++`` distils first).

    Returns
    -------
    network : nn.Module
        The planned network (:func:`~sparsesel.compress.latency_plan.apply_latency_plan`); for
        ``sa++`` shrunk from the distilled copy.
    selection : Selection
    """
    from sparsesel.compress.latency_plan import apply_latency_plan

    counts = {(entry["module"], entry["kind"]): int(entry["channels"]) for entry in plan.structured}
    selection = select_channels(name, model, counts, teacher=teacher, finetune=finetune, seed=seed, sapp=sapp)
    return apply_latency_plan(selection.network, plan, selector=selection.selector), selection
