"""Fine-tune a compressed network by distillation from the original one.

The fine-tuning is the training loop of :mod:`sparsesel.training.loop` with the distillation
recipe (:func:`sparsesel.training.distillation.distillation_recipe`): loss per batch
``L1+0.1·FFT-L1(student, teacher output) + L1+0.1·FFT-L1(student, target)`` on degraded patches
of :class:`sparsesel.data.datasets.PairedPatchDataset`, AdamW + cosine schedule. From the loop:

* **Resumable**: every ``checkpoint_every`` steps the full state (student, optimizer,
  schedule, step, losses) is written atomically to ``state_file``; ``resume=True`` continues
  from it, bit for bit. With ``keep_state=True`` the state of the last step is written too and
  left in place, so that a caller with more work to do after the fine-tuning (``sparsesel
  compress``: evaluation, report) can resume after it without a single step redone, and removes
  the file once its own outputs are written.
* **Data-parallel**: launched with ``torchrun --nproc_per_node=N`` (``WORLD_SIZE`` set), the
  student is wrapped in ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU); rank ``r`` takes
  the ``r``-th slice of each global batch, so gradients averaged over ranks equal the global
  batch's gradient and the weights equal a one-process run up to floating-point noise.

:func:`finetune_several` runs several fine-tunings side by side in worker processes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from sparsesel.compress.network_io import network_input, network_output
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.training.distillation import distillation_recipe
from sparsesel.training.loop import StateFile, Trainable, read_state, run_loop, world

__all__ = ["FinetuneConfig", "finetune", "finetune_several", "read_state"]

#: Most worker processes :func:`finetune_several` starts by default (each imports its own torch).
MAX_WORKERS = 4
_RESUME_KEYS = ("task", "steps", "batch_size", "patch_size", "lr", "weight_decay", "eta_min", "seed", "teacher_weight", "target_weight")


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning settings.

    Attributes
    ----------
    task : str
        Degradation of :class:`PairedPatchDataset` (``lowlight``, ``haze``, ``blur``).
    steps : int
    batch_size : int
        The *global* batch (split evenly across data-parallel ranks).
    patch_size : int
    lr, weight_decay, eta_min : float
    seed : int
    checkpoint_every : int
    teacher_weight, target_weight : float
        Weights of the distillation and the ground-truth terms.
    """

    task: str = "lowlight"
    steps: int = 100
    batch_size: int = 4
    patch_size: int = 64
    lr: float = 2e-4
    weight_decay: float = 0.0
    eta_min: float = 1e-6
    seed: int = 0
    checkpoint_every: int = 25
    teacher_weight: float = 1.0
    target_weight: float = 1.0

    def __post_init__(self) -> None:
        for name, low in (("steps", 0), ("batch_size", 1), ("patch_size", 16), ("seed", 0), ("checkpoint_every", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"FinetuneConfig.{name} must be an integer >= {low}, got {value!r}")
        for name in ("lr", "weight_decay", "eta_min", "teacher_weight", "target_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise ValueError(f"FinetuneConfig.{name} must be a non-negative number, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def finetune(
    student: nn.Module,
    teacher: nn.Module,
    config: FinetuneConfig,
    *,
    state_file: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[int, float], Any] | None = None,
    keep_state: bool = False,
    state_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Distil ``teacher`` into ``student`` (trained in place; ``teacher`` is not modified).

    Parameters
    ----------
    student : torch.nn.Module
        The compressed network; its weights are updated.
    teacher : torch.nn.Module
        The original network (evaluated without gradients).
    config : FinetuneConfig
    state_file : path, optional
        Where the resumable state is written every ``checkpoint_every`` steps (rank 0 only).
    resume : bool
        Continue from ``state_file`` (must exist and match ``config``).
    progress : bool
        tqdm bar (rank 0 only).
    callback : callable, optional
        ``callback(step, loss)`` after each step (after that step's state is saved).
    keep_state : bool
        Also write the state of the last step and leave ``state_file`` in place (the caller removes
        it); resuming from it runs no step. Default: the file is removed when the fine-tuning ends.
    state_meta : dict, optional
        Plain data stored with the state (``read_state(path)["meta"]``), e.g. the settings of the
        caller's run, to be compared before a resume.

    Returns
    -------
    dict
        ``{"losses", "steps", "resumed_from", "wall_time", "world_size"}``.
    """
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    state_file = None if state_file is None else Path(state_file)
    if resume and (state_file is None or not state_file.exists()):
        raise FileNotFoundError(f"nothing to resume: {state_file} does not exist")
    recipe = distillation_recipe(teacher, lr=config.lr, weight_decay=config.weight_decay, eta_min=config.eta_min,
                                 teacher_weight=config.teacher_weight, target_weight=config.target_weight,
                                 input_of=network_input, output_of=network_output)
    trainable = Trainable.from_recipe(student, recipe.steps, recipe.optimizer, config.steps)
    state = None if state_file is None else StateFile(state_file, "distillation", config.to_dict(), _RESUME_KEYS, dict(state_meta or {}))
    dataset = PairedPatchDataset(config.task, split="train", patch_size=config.patch_size,
                                 length=max(config.steps, 1) * config.batch_size, seed=config.seed)
    was_training = teacher.training
    teacher.eval()  # its outputs are computed under no_grad; its parameters are left as they are
    try:
        outcome = run_loop(trainable, dataset, total_steps=config.steps, batch_size=config.batch_size,
                           checkpoint_every=config.checkpoint_every, state=state, resume=resume, save_final=keep_state,
                           data_parallel=True, progress=progress, desc="fine-tune",
                           callback=None if callback is None else lambda step, logs: callback(step, _distillation_loss(logs)))
    finally:
        teacher.train(was_training)
    if not keep_state and state_file is not None and world()[0] == 0 and state_file.exists():
        state_file.unlink()
    student.eval()
    return {"losses": outcome.losses, "steps": config.steps, "resumed_from": outcome.resumed_from,
            "wall_time": outcome.wall_time, "world_size": outcome.world_size}


def _distillation_loss(logs: dict[str, float]) -> float:
    """The distillation loss in the logs of one step of :func:`~sparsesel.training.loop.run_loop`."""
    return logs["distillation_loss"]


def _finetune_in_worker(student: nn.Module, teacher: nn.Module, config: FinetuneConfig, threads: int,
                        options: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """One :func:`finetune` run in a worker process with ``threads`` torch threads; returns (weights, result)."""
    torch.set_num_threads(threads)
    result = finetune(student, teacher, config, **options)
    return student.state_dict(), result


def finetune_several(
    students: list[nn.Module],
    teacher: nn.Module,
    config: FinetuneConfig,
    *,
    options: list[dict[str, Any]] | None = None,
    processes: int | None = None,
) -> list[dict[str, Any]]:
    """Distil ``teacher`` into each of ``students`` (each trained in place), several at a time.

    A fine-tuning step of a small restoration network at 64² is dominated by per-operation
    overhead, so a second torch thread hardly speeds it up (UHDformer's demo student: 0.77 s per
    step with one thread, 0.82 s with two), while two single-threaded runs side by side give ~1.7×
    the throughput. With ``processes > 1`` the runs go to that many worker processes (``spawn``),
    each with ``torch.get_num_threads() // processes`` threads; the trained weights are copied back
    into ``students``. Each run is the same :func:`finetune` call as a sequential one (same batches,
    same schedule); only the thread count, and so the floating-point rounding, can differ. A script
    that calls this with ``processes > 1`` needs the usual ``if __name__ == "__main__":`` guard
    (``spawn`` re-imports the main module).

    Parameters
    ----------
    students : list of torch.nn.Module
    teacher : torch.nn.Module
    config : FinetuneConfig
    options : list of dict, optional
        Keyword arguments of :func:`finetune` per student (``state_file``, ``resume``, ``progress``;
        ``callback`` only in the sequential case, ``processes=1``).
    processes : int, optional
        Worker processes; default ``min(len(students), torch.get_num_threads(), MAX_WORKERS)``
        (each worker holds its own torch, ~0.3 GB). ``1`` runs the students one after the other in
        this process.
        Only 1 under ``torch.distributed`` (the ranks fine-tune together).

    Returns
    -------
    list of dict
        :func:`finetune`'s result per student.
    """
    from sparsesel.workers import run_in_workers

    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    options = [{} for _ in students] if options is None else [dict(o) for o in options]
    if len(options) != len(students):
        raise ValueError(f"options has {len(options)} entries for {len(students)} students")
    threads = torch.get_num_threads()
    if processes is None:
        processes = max(1, min(len(students), threads, MAX_WORKERS))
    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a positive int, got {processes!r}")
    if world()[1] > 1 and processes > 1:
        raise ValueError("finetune_several runs one process per rank under torch.distributed: use processes=1")
    if processes == 1 or len(students) <= 1:
        return [finetune(student, teacher, config, **opts) for student, opts in zip(students, options)]
    unpicklable = [key for opts in options for key in ("callback",) if opts.get(key) is not None]
    if unpicklable:
        raise ValueError(f"{sorted(set(unpicklable))} cannot be passed to worker processes; use processes=1")
    per_worker = max(1, threads // processes)
    outcomes = run_in_workers(_finetune_in_worker, [(student, teacher, config, per_worker, opts)
                                                    for student, opts in zip(students, options)], processes)
    results = []
    for student, (weights, result) in zip(students, outcomes):
        student.load_state_dict(weights)
        student.eval()
        results.append(result)
    return results
