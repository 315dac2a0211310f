"""A small, resumable trainer for the restoration networks of :mod:`sparsesel.nets.zoo`.

It runs the network's recipe in the one training loop, :func:`sparsesel.training.loop.run_loop`
(which the distillation fine-tuning of :mod:`sparsesel.compress.finetune` runs in too):

* The network's :func:`~sparsesel.training.losses.training_recipe`: its steps (one optimizer
  for plain networks, generator and discriminator optimizers for the GAN), their losses and
  the optimizer settings — UHDformer's (AdamW lr 5e-4, weight decay 1e-3, betas (0.9, 0.99),
  cosine down to ``eta_min`` 1e-7) for UHDformer, CSAttn and the harmonizer, the official
  one for TSHRNet (Adam lr 1e-4, betas (0.5, 0.999), constant rate). Any optimizer setting of
  :class:`TrainConfig` left ``None`` comes from the recipe.
* Data: :class:`sparsesel.data.datasets.PairedPatchDataset`; batch ``t`` holds samples
  ``t·B … t·B + B − 1``, each a pure function of ``(seed, index)``, so a resumed run sees the
  same batches as an uninterrupted one.
* Files (all written atomically, temp file + rename):
  ``OUT`` — the final network (:func:`sparsesel.nets.zoo.save_net` format);
  ``OUT.state`` — the full training state (model, optimizers, schedules, step, loss
  history), rewritten every ``checkpoint_every`` steps and after the last step, and removed
  once ``OUT`` and its JSON are written; ``OUT`` with suffix ``.json`` — how the network was made
  and its held-out scores. ``train(..., resume=True)`` continues from ``OUT.state`` (after the
  last step: no step is redone, only the evaluation and the writing).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsesel.atomic import write_text_atomic
from sparsesel.data import metrics
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.nets import zoo
from sparsesel.nets.adapter import BuiltinAdapter, get_adapter
from sparsesel.training import loop
from sparsesel.training.loop import StateFile, Trainable
from sparsesel.training.losses import OPTIMIZERS, SCHEDULES, OptimizerRecipe, predict, training_recipe
from sparsesel.validation import max_threads

__all__ = ["TrainConfig", "evaluate", "make_optimizers", "optimizer_recipe", "state_path", "train"]

# fields whose change makes a saved state unusable for resuming
_RESUME_KEYS = (
    "net", "task", "preset", "net_options", "steps", "batch_size", "patch_size",
    "optimizer", "lr", "weight_decay", "betas", "schedule", "eta_min", "seed",
)
_OPTIMIZER_FIELDS = ("optimizer", "lr", "betas", "weight_decay", "schedule", "eta_min")


@dataclass(frozen=True)
class TrainConfig:
    """What to train and how.

    Attributes
    ----------
    net : str
        A name of :func:`sparsesel.nets.zoo.net_names`, or a factory ``"package.module:function"``
        (its module is imported: naming it is the opt-in to run its code).
    task : str
        One of the network's tasks (``lowlight``, ``haze``, ``blur``, ``specular``, ``harmonize``).
    preset : {"small", "paper"}
        Configuration preset of the network.
    net_options : dict
        Config fields overriding the preset.
    steps : int
        Optimisation steps (iterations).
    batch_size, patch_size : int
        Patches per step and their side in pixels.
    optimizer : {"adamw", "adam"} or None
        Optimizer class of every step.
    lr, weight_decay, betas, eta_min : float or None
        Optimizer and cosine-schedule settings.
    schedule : {"cosine", "constant"} or None
        Learning-rate schedule.

    The six optimizer settings default to ``None``: the network's recipe
    (:func:`sparsesel.training.losses.training_recipe`), resolved when the config is made
    (``config.lr`` etc. then hold the values used).
    seed : int
        Fixes the initial weights and every sample.
    checkpoint_every : int
        Steps between two saves of the training state.
    eval_count, eval_size : int
        Held-out evaluation: ``eval_count`` patches of ``eval_size`` pixels from the test images.
    threads : int or None
        ``torch.set_num_threads`` during the run (None leaves it).
    """

    net: str
    task: str
    preset: str = "small"
    net_options: dict = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 4
    patch_size: int = 128
    optimizer: str | None = None
    lr: float | None = None
    weight_decay: float | None = None
    betas: tuple[float, float] | None = None
    schedule: str | None = None
    eta_min: float | None = None
    seed: int = 0
    checkpoint_every: int = 50
    eval_count: int = 8
    eval_size: int = 256
    threads: int | None = None

    def __post_init__(self) -> None:
        adapter = get_adapter(self.net)
        if self.task not in adapter.tasks:
            raise ValueError(f"task {self.task!r} is not one of {self.net}'s tasks {adapter.tasks}")
        defaults = adapter.training_recipe().optimizer
        for name in _OPTIMIZER_FIELDS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(defaults, name))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.preset not in zoo.PRESETS:
            raise ValueError(f"preset must be one of {zoo.PRESETS}, got {self.preset!r}")
        if not isinstance(self.net_options, dict):
            raise TypeError(f"net_options must be a dict, got {type(self.net_options).__name__}")
        if isinstance(adapter, BuiltinAdapter):
            config_fields = set(adapter.config_fields())
            unknown = sorted(set(self.net_options) - config_fields)
            if unknown:
                raise ValueError(f"net_options {unknown} are not options of {self.net}; valid: {sorted(config_fields)}")
        for name, low in (("steps", 1), ("batch_size", 1), ("patch_size", 16), ("seed", 0), ("checkpoint_every", 1), ("eval_count", 0), ("eval_size", 16)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or not 1 <= self.threads <= max_threads()):
            raise ValueError(f"threads must be an integer in [1, {max_threads()}] or None, got {self.threads!r}")
        for name in ("lr", "weight_decay", "eta_min"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        betas = tuple(float(b) for b in self.betas)
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        object.__setattr__(self, "betas", betas)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data


def state_path(out: str | os.PathLike) -> Path:
    """Where the resumable training state of a run writing ``out`` lives (``OUT.state``)."""
    out = Path(out)
    return out.with_name(out.name + ".state")


def _json_path(out: Path) -> Path:
    return out.with_suffix(".json") if out.suffix != ".json" else out.with_name(out.name + ".meta.json")


def _build(config: TrainConfig) -> torch.nn.Module:
    # initial weights from the run's seed, without touching the caller's global RNG state
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return zoo.build_net(config.net, config.preset, **config.net_options)


def make_optimizers(config: TrainConfig, model: torch.nn.Module) -> tuple[list, list, list]:
    """The recipe's steps of ``config.net`` and, per step, its optimizer and learning-rate schedule.

    Returns
    -------
    steps : list of TrainingStep
    optimizers : list of torch.optim.Optimizer
        ``Adam`` or ``AdamW`` (``config.optimizer``) over the step's parameters, with
        ``config.lr``, ``config.betas`` and ``config.weight_decay``.
    schedules : list of torch.optim.lr_scheduler.LRScheduler
        ``CosineAnnealingLR`` over ``config.steps`` down to ``config.eta_min``, or a constant
        rate (``ConstantLR`` with factor 1) (:func:`sparsesel.training.loop.make_optimizers`).
    """
    steps = list(training_recipe(config.net).steps)
    optimizers, schedules = loop.make_optimizers(steps, optimizer_recipe(config), model, config.steps)
    return steps, optimizers, schedules


def optimizer_recipe(config: TrainConfig) -> OptimizerRecipe:
    """The optimizer settings of ``config`` (the network's recipe, with the fields the config overrides)."""
    return OptimizerRecipe(config.optimizer, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
                           schedule=config.schedule, eta_min=config.eta_min)


def evaluate(net: str, model: torch.nn.Module, dataset: PairedPatchDataset) -> dict[str, float]:
    """Mean PSNR/SSIM (Y channel, crop 1) of the degraded inputs and of the network's outputs.

    For the ``harmonize`` task also the foreground metrics fMSE and fPSNR.
    """
    was_training = model.training
    model.eval()
    sums: dict[str, list[float]] = {}
    try:
        for index in range(len(dataset)):
            batch = dataset.batch([index])
            output = predict(net, model, batch).clamp(0.0, 1.0)[0].permute(1, 2, 0).numpy()
            degraded = batch["input"][0].permute(1, 2, 0).numpy()
            target = batch["target"][0].permute(1, 2, 0).numpy()
            scores = {
                "psnr_input": metrics.psnr(degraded, target),
                "psnr_output": metrics.psnr(output, target),
                "ssim_input": metrics.ssim(degraded, target),
                "ssim_output": metrics.ssim(output, target),
            }
            if dataset.task == "harmonize":
                mask = batch["mask"][0, 0].numpy()
                scores.update(
                    fmse_input=metrics.fmse(degraded, target, mask),
                    fmse_output=metrics.fmse(output, target, mask),
                    fpsnr_input=metrics.fpsnr(degraded, target, mask),
                    fpsnr_output=metrics.fpsnr(output, target, mask),
                )
            for key, value in scores.items():
                sums.setdefault(key, []).append(value)
    finally:
        model.train(was_training)
    return {key: float(np.mean(values)) for key, values in sums.items()}


def _check_outputs(out: Path, state_file: Path, *, resume: bool, force: bool) -> None:
    """Refuse, before any work, outputs that cannot or must not be written, and a resume with no state."""
    from sparsesel.outputs import check_output_file

    check_output_file(out, force=True)  # a folder, under a file, a name too long, unwritable: refused before any work
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass force=True (--force) to overwrite it")
    check_output_file(_json_path(out), label="the record of --out", force=force or resume)
    check_output_file(state_file, label="the training state of --out", force=True)
    if resume and not state_file.exists():
        raise FileNotFoundError(f"nothing to resume: {state_file} does not exist")
    if state_file.exists() and not resume and not force:
        raise FileExistsError(f"an interrupted run left {state_file}; pass resume=True (--resume) to continue it or force=True (--force) to start over")


def _write_outputs(config: TrainConfig, model: torch.nn.Module, out: Path, *, evaluation: dict[str, float], train_time: float,
                   steps_done: int, force: bool) -> None:
    """Write the network ``out`` (with how it was made in its meta) and its JSON record."""
    meta = {
        "train": config.to_dict(),
        "train_seconds": round(train_time, 2),
        "steps_done_in_this_process": steps_done,
        "evaluation": evaluation,
        "evaluation_split": "test images (see sparsesel.data.images.IMAGE_SPLITS), random crops",
        "torch": str(torch.__version__),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    zoo.save_net(model, out, net=config.net, meta=meta, force=force)
    write_text_atomic(_json_path(out), json.dumps({"net": config.net, "file": out.name, **meta}, indent=2) + "\n", force=True)


def _evaluate_held_out(config: TrainConfig, model: torch.nn.Module) -> dict[str, float]:
    """The network's scores on ``config.eval_count`` held-out patches of its task (``{}`` when none)."""
    if not config.eval_count:
        return {}
    held_out = PairedPatchDataset(
        config.task, split="test", patch_size=config.eval_size, length=config.eval_count, seed=config.seed + 1, augment=False
    )
    return evaluate(config.net, model, held_out)


def train(
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    callback: Callable[[int, dict[str, float]], Any] | None = None,
    device: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Train ``config.net`` on ``config.task`` and write the network to ``out``.

    Parameters
    ----------
    config : TrainConfig
    out : path
        The final network file (see the module docstring for the other files).
    resume : bool
        Continue from ``OUT.state`` (which must exist and come from the same configuration).
    force : bool
        Overwrite an existing ``out`` and discard an existing ``OUT.state``.
    progress : bool
        Show a tqdm progress bar.
    callback : callable, optional
        ``callback(step, logs)`` after every step (1-based ``step``; ``logs`` maps loss names
        to floats), after the state of that step has been saved when it is saved.
    device : str or torch.device, optional
        Where the network trains (``None``: CUDA when present, else the CPU,
        :func:`sparsesel.compress.deploy.resolve_device`); the file is written from the CPU.

    Returns
    -------
    dict
        ``{"steps", "losses" (per-step main loss), "logs" (last step), "evaluation", "wall_time",
        "out", "resumed_from"}``.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    out = Path(out)
    state_file = state_path(out)
    from sparsesel.compress.deploy import resolve_device

    device = resolve_device(device)
    _check_outputs(out, state_file, resume=resume, force=force)
    previous_threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        model = _build(config).to(device)
        trainable = Trainable(model, *make_optimizers(config, model))
        state = StateFile(state_file, config.net, config.to_dict(), _RESUME_KEYS)
        if force and not resume and state_file.exists():
            state_file.unlink()
        dataset = PairedPatchDataset(
            config.task, split="train", patch_size=config.patch_size, length=config.steps * config.batch_size, seed=config.seed
        )
        outcome = loop.run_loop(trainable, dataset, total_steps=config.steps, batch_size=config.batch_size,
                                checkpoint_every=config.checkpoint_every, state=state, resume=resume, save_final=True,
                                progress=progress, desc=f"train {config.net}/{config.task}", callback=callback)
        start = outcome.resumed_from or 0
        train_time = outcome.wall_time

        evaluation = _evaluate_held_out(config, model)
        model.cpu()
        _write_outputs(config, model, out, evaluation=evaluation, train_time=train_time, steps_done=config.steps - start, force=force)
        if state_file.exists():
            state_file.unlink()
        return {
            "steps": config.steps,
            "losses": outcome.losses,
            "logs": outcome.logs,
            "evaluation": evaluation,
            "wall_time": train_time,
            "out": str(out),
            "resumed_from": outcome.resumed_from,
        }
    finally:
        torch.set_num_threads(previous_threads)
