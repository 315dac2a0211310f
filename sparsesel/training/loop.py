"""The one training loop: a recipe's steps over deterministic batches, resumable from an atomic state file.

Both :func:`sparsesel.training.train` (a network from scratch) and
:func:`sparsesel.compress.finetune.finetune` (distillation into a compressed network) are this
loop with a :class:`~sparsesel.training.losses.TrainingRecipe`:

* **Batches.** Step ``t`` (0-based) uses samples ``t·B .. t·B + B − 1`` of the dataset (``B`` the
  global batch), each a pure function of the dataset's seed and its index, so a resumed run sees
  the batches an uninterrupted one would.
* **Steps.** Every batch goes through the recipe's steps in order; each zeroes its optimizer's
  gradients, computes its loss (``FloatingPointError`` if it is not finite, naming the step and
  the iteration), back-propagates and steps its optimizer and learning-rate schedule.
* **State.** Every ``checkpoint_every`` steps (and, with ``save_final``, after the last step) the
  whole state -- network, optimizers, schedules, step, loss history, the run's configuration and
  the caller's ``meta`` -- is written atomically (temp file + rename) to one file
  (:class:`StateFile`); a resume checks the configuration (naming every changed key) and that the
  state fits the network, and continues bit for bit.
* **Data-parallel.** With ``data_parallel=True`` under ``torchrun --nproc_per_node=N`` (an
  initialised process group), the network is wrapped in ``DistributedDataParallel``, rank ``r``
  takes the ``r``-th slice of each global batch (so the averaged gradients are the global
  batch's), the logged loss is averaged over the ranks, and only rank 0 writes the state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from sparsesel.atomic import write_atomic
from sparsesel.training.losses import OptimizerRecipe, TrainingStep

__all__ = ["STATE_FORMAT", "LoopOutcome", "StateFile", "Trainable", "make_optimizers", "read_state", "run_loop", "world"]

#: The ``format`` entry of every training state file.
STATE_FORMAT = "sparsesel.training.state"
# states written before the two loops were one: their format and the names of their entries
_LEGACY_FORMATS = {
    "sparsesel.training": {},
    "sparsesel.compress.finetune": {"student": "model", "optimizer": "optimizers", "schedule": "schedules"},
}
_OPTIMIZER_CLASSES = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}


def world() -> tuple[int, int]:
    """``(rank, world size)`` of the initialised process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass
class Trainable:
    """What the loop optimises: a network, the recipe's steps and one optimizer and schedule per step.

    Attributes
    ----------
    model : torch.nn.Module
        The network (not a ``DistributedDataParallel`` wrapper); its state is what is saved.
    steps : sequence of TrainingStep
    optimizers : list of torch.optim.Optimizer
    schedules : list of torch.optim.lr_scheduler.LRScheduler
    """

    model: nn.Module
    steps: Sequence[TrainingStep]
    optimizers: list[torch.optim.Optimizer]
    schedules: list[Any]

    @classmethod
    def from_recipe(cls, model: nn.Module, steps: Sequence[TrainingStep], optimizer: OptimizerRecipe, total_steps: int) -> Trainable:
        """``model`` with an optimizer and a schedule per step made by :func:`make_optimizers`."""
        optimizers, schedules = make_optimizers(steps, optimizer, model, total_steps)
        return cls(model, tuple(steps), optimizers, schedules)

    def state(self) -> dict[str, Any]:
        """The tensors and counters of the network, the optimizers and the schedules."""
        return {"model": self.model.state_dict(), "optimizers": [o.state_dict() for o in self.optimizers],
                "schedules": [s.state_dict() for s in self.schedules]}

    def load(self, state: dict[str, Any]) -> None:
        """Load :meth:`state`'s output (``KeyError``, ``RuntimeError`` or ``ValueError`` if it does not fit)."""
        optimizers, schedules = state["optimizers"], state["schedules"]
        if len(optimizers) != len(self.optimizers) or len(schedules) != len(self.schedules):
            raise ValueError(f"{len(optimizers)} optimizer(s) saved for {len(self.optimizers)} step(s) of this recipe")
        self.model.load_state_dict(state["model"])
        for optimizer, schedule, saved_optimizer, saved_schedule in zip(self.optimizers, self.schedules, optimizers, schedules):
            optimizer.load_state_dict(saved_optimizer)
            schedule.load_state_dict(saved_schedule)


def make_optimizers(steps: Sequence[TrainingStep], recipe: OptimizerRecipe, model: nn.Module,
                    total_steps: int) -> tuple[list[torch.optim.Optimizer], list[Any]]:
    """Per step, its optimizer over ``step.parameters(model)`` and its learning-rate schedule.

    Parameters
    ----------
    steps : sequence of TrainingStep
    recipe : OptimizerRecipe
        ``Adam`` or ``AdamW`` with ``recipe.lr``, ``recipe.betas``, ``recipe.weight_decay``;
        ``CosineAnnealingLR`` over ``max(total_steps, 1)`` steps down to ``recipe.eta_min``, or a
        constant rate (``ConstantLR`` with factor 1).
    model : torch.nn.Module
    total_steps : int
        Length of the run (the cosine's period).

    Returns
    -------
    optimizers : list of torch.optim.Optimizer
    schedules : list of torch.optim.lr_scheduler.LRScheduler
    """
    optimizers, schedules = [], []
    for step in steps:
        optimizer = _OPTIMIZER_CLASSES[recipe.optimizer](list(step.parameters(model)), lr=recipe.lr, betas=recipe.betas,
                                                         weight_decay=recipe.weight_decay)
        optimizers.append(optimizer)
        if recipe.schedule == "cosine":
            schedules.append(torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(int(total_steps), 1), eta_min=recipe.eta_min))
        else:
            schedules.append(torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0))
    return optimizers, schedules


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The training state in ``path`` (read with ``weights_only=True``).

    Returns
    -------
    dict
        ``{"format", "recipe", "config", "step", "model", "optimizers", "schedules", "losses", "meta"}``
        (``meta``: what the writer passed, ``{}`` if nothing). States of earlier versions (formats
        ``sparsesel.training`` and ``sparsesel.compress.finetune``) are read too.

    Raises
    ------
    ValueError
        The file is not a training state.
    """
    from sparsesel.nets.zoo import load_checkpoint_file

    state = load_checkpoint_file(path)
    kind = state.get("format") if isinstance(state, dict) else None
    if kind in _LEGACY_FORMATS:
        state = {_LEGACY_FORMATS[kind].get(key, key): value for key, value in state.items()}
        if kind == "sparsesel.compress.finetune":
            state["optimizers"], state["schedules"], state["recipe"] = [state["optimizers"]], [state["schedules"]], "distillation"
        state["format"] = STATE_FORMAT
    elif kind != STATE_FORMAT:
        raise ValueError(f"{path} is not a training state (no 'format': {STATE_FORMAT!r} entry)")
    state.setdefault("meta", {})
    state.setdefault("recipe", None)
    return state


@dataclass(frozen=True)
class StateFile:
    """Where and with what settings a run's state is kept.

    Attributes
    ----------
    path : Path
    recipe : str
        The recipe's name (a network's name, ``"distillation"``); a state of another recipe is
        not resumed.
    config : dict
        The run's settings, stored with the state (plain data).
    resume_keys : tuple of str
        The keys of ``config`` that must be equal for a resume.
    meta : dict
        Plain data stored with the state for the caller (:func:`read_state` ``["meta"]``).
    """

    path: Path
    recipe: str
    config: dict[str, Any]
    resume_keys: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, trainable: Trainable, step: int, losses: Sequence[float]) -> None:
        """Write the state after ``step`` steps atomically (replacing the previous one)."""
        state = {"format": STATE_FORMAT, "recipe": self.recipe, "config": self.config, "step": int(step),
                 **trainable.state(), "losses": [float(v) for v in losses], "meta": dict(self.meta)}
        write_atomic(self.path, lambda stream: torch.save(state, stream), force=True)

    def load_into(self, trainable: Trainable) -> tuple[int, list[float]]:
        """Load the saved state into ``trainable``; returns ``(step, losses)``.

        Raises
        ------
        FileNotFoundError
            No state at :attr:`path`.
        ValueError
            A state of another recipe, a configuration that differs in a key of
            :attr:`resume_keys` (each named, with both values), or tensors that do not fit.
        """
        if not self.path.exists():
            raise FileNotFoundError(f"nothing to resume: {self.path} does not exist")
        state = read_state(self.path)
        if state["recipe"] not in (None, self.recipe):
            raise ValueError(f"cannot resume {self.path}: it is the state of a {state['recipe']!r} run, not of {self.recipe!r}")
        saved = state.get("config", {}) if isinstance(state.get("config"), dict) else {}
        changed = [key for key in self.resume_keys if saved.get(key) != self.config.get(key)]
        if changed:
            values = "; ".join(f"{key}: saved {saved.get(key)!r}, now {self.config.get(key)!r}" for key in changed)
            raise ValueError(f"cannot resume {self.path}: its configuration differs in {changed} ({values})")
        try:
            trainable.load(state)
        except (KeyError, RuntimeError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"cannot resume {self.path}: it does not fit this network (made with other settings?): {first}") from None
        return int(state["step"]), [float(v) for v in state["losses"]]


@dataclass
class LoopOutcome:
    """What :func:`run_loop` did.

    Attributes
    ----------
    losses : list of float
        Per step (all of them, the resumed ones included), the first step's loss (averaged over ranks).
    logs : dict
        The last step's logged scalars (``loss`` of the ``main`` step, ``<name>_<key>`` of the others;
        the first step's loss averaged over the ranks).
    resumed_from : int or None
        The step the run resumed from.
    wall_time : float
        Seconds of this call's steps.
    world_size : int
    """

    losses: list[float]
    logs: dict[str, float]
    resumed_from: int | None
    wall_time: float
    world_size: int


def run_loop(
    trainable: Trainable,
    dataset: Any,
    *,
    total_steps: int,
    batch_size: int,
    checkpoint_every: int,
    state: StateFile | None = None,
    resume: bool = False,
    save_final: bool = False,
    data_parallel: bool = False,
    progress: bool = True,
    desc: str = "train",
    callback: Callable[[int, dict[str, float]], Any] | None = None,
) -> LoopOutcome:
    """Run ``trainable``'s steps from step 0 (or the saved one) to ``total_steps`` (see the module docstring).

    Parameters
    ----------
    trainable : Trainable
        Trained in place (left in training mode).
    dataset : object with ``batch(indices) -> dict``
        E.g. :class:`sparsesel.data.datasets.PairedPatchDataset`, at least ``total_steps · batch_size`` long.
    total_steps, batch_size, checkpoint_every : int
        ``batch_size`` is the global batch (divisible by the number of ranks).
    state : StateFile, optional
        Written every ``checkpoint_every`` steps (rank 0); ``resume``: continue from it.
    save_final : bool
        Also write the state after the last step (not when a resume found nothing left to do);
        the caller removes it once its own outputs are written.
    data_parallel : bool
        Under an initialised process group, train data-parallel (see the module docstring).
    progress, desc : bool, str
        A tqdm bar (rank 0) and its label.
    callback : callable, optional
        ``callback(step, logs)`` after each step (1-based; after that step's state is saved).

    Returns
    -------
    LoopOutcome

    Raises
    ------
    FloatingPointError
        A loss that is not finite.
    FileNotFoundError, ValueError
        From :meth:`StateFile.load_into` on a resume.
    """
    rank, size = world() if data_parallel else (0, 1)
    if batch_size % size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {size}")
    if resume and state is None:
        raise FileNotFoundError("nothing to resume: no state file was given")
    start, losses = state.load_into(trainable) if resume else (0, [])
    trainable.model.train()
    # some parameters (e.g. of channels a matching step never selects) may get no gradient in a step
    model = nn.parallel.DistributedDataParallel(trainable.model, find_unused_parameters=True) if size > 1 else trainable.model
    saving = state is not None and rank == 0
    local = batch_size // size
    began, logs = time.perf_counter(), {}
    with tqdm(total=total_steps, initial=start, desc=desc, disable=not progress or rank != 0, dynamic_ncols=True) as bar:
        for step in range(start, total_steps):
            first = step * batch_size + rank * local
            logs = _one_iteration(trainable, model, dataset.batch(range(first, first + local)), step)
            losses.append(_mean_over_ranks(logs, _first_loss_key(trainable.steps), size))
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            done = step + 1
            if saving and done % checkpoint_every == 0 and done < total_steps:
                state.save(trainable, done, losses)
            if callback is not None:
                callback(done, logs)
    if saving and save_final and start < total_steps:  # kept for the caller: a resume after this point redoes no step
        state.save(trainable, total_steps, losses)
    return LoopOutcome(losses, logs, start if resume else None, time.perf_counter() - began, size)


def _mean_over_ranks(logs: dict[str, float], key: str, size: int) -> float:
    """``logs[key]`` averaged over the ``size`` ranks (the global batch's loss); stored back into ``logs``."""
    if size > 1:
        reduced = torch.tensor([logs[key]], dtype=torch.float64)
        dist.all_reduce(reduced)
        logs[key] = float(reduced) / size
    return logs[key]


def _first_loss_key(steps: Sequence[TrainingStep]) -> str:
    return "loss" if steps[0].name == "main" else f"{steps[0].name}_loss"


def _one_iteration(trainable: Trainable, model: nn.Module, batch: dict, step: int) -> dict[str, float]:
    """Every step of the recipe on one batch; returns the logged scalars."""
    cache: dict = {}
    logs: dict[str, float] = {}
    for training_step, optimizer, schedule in zip(trainable.steps, trainable.optimizers, trainable.schedules):
        optimizer.zero_grad(set_to_none=True)
        result = training_step.loss(model, batch, cache)
        loss = result["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{training_step.name} loss became {loss.item()} at step {step + 1}")
        loss.backward()
        optimizer.step()
        schedule.step()
        prefix = "" if training_step.name == "main" else f"{training_step.name}_"
        logs.update({f"{prefix}{key}": float(value.detach()) for key, value in result.items()})
    return logs
