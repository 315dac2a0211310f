"""The whole ``sparsesel compress`` run: load, plan, apply, fine-tune, measure, report."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from sparsesel.budget import Budget
from sparsesel.compress.apply import apply, count_params, save_compressed
from sparsesel.compress.finetune import MAX_WORKERS, FinetuneConfig, finetune_several
from sparsesel.compress.network_io import example_input
from sparsesel.compress.plan import Plan, analyze, plan
from sparsesel.compress.report import evaluate_quality, measure, write_report
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.nets.adapter import adapter_for

__all__ = ["DEFAULT_LR", "compress_checkpoint", "compress_model", "default_lr", "fastest_plan", "parse_size"]


def _init_distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def default_task(model: torch.nn.Module) -> str:
    """The first task of ``model``'s adapter (:func:`sparsesel.nets.adapter.adapter_for`; ``lowlight``
    for a network without one of its own)."""
    return adapter_for(model).tasks[0]


def compress_model(
    model: torch.nn.Module,
    budget: float | int | Budget,
    *,
    method: str = "packing",
    task: str | None = None,
    exclude: Sequence[str] = (),
    seed: int = 0,
    calibration_count: int = 4,
    calibration_size: int = 64,
    analysis=None,
    processes: int = 1,
    cost: str = "params",
    image_size: Sequence[int] | None = None,
    threads: int | None = None,
    progress: bool = False,
    reach_fastest: bool = False,
    selector: str = "magnitude",
    finetune: FinetuneConfig | None = None,
) -> tuple[torch.nn.Module, Plan | None, Any]:
    """Plan and apply one compression of ``model`` (not modified); returns (network, plan or None, analysis).

    ``task`` (the degradation of the calibration patches) defaults to the network's first task
    (its adapter's; ``lowlight`` for networks without one of their own). The adapter's
    ``compress_exclude`` layers are left untouched besides ``exclude``. ``processes``: worker
    processes for the analysis's calibration passes (:func:`~sparsesel.compress.plan.calibrate_layers`).

    ``cost``: the unit of ``budget`` -- ``"params"``, ``"macs"`` (at ``image_size``) or ``"latency"``
    (measured at ``image_size`` with ``threads`` torch threads, default the current count). Under a
    latency budget ``method="packing"`` is the knapsack of :mod:`sparsesel.compress.latency_plan` and
    ``uniform``, ``energy``, ``magnitude`` are the channel rules of
    :mod:`sparsesel.compress.latency_baselines`, matched to the budget's fraction of the measured
    latency by bisection (``analysis`` is then unused and returned as given). ``reach_fastest``: a
    latency budget below the fastest plan the measurements offer gives the plan at the smallest fraction
    predicted reachable (``Plan.latency["requested_budget"]`` records the request) instead of a
    ``ValueError`` (the demo: the reachable fraction depends on the machine and its load).

    ``selector`` (:mod:`sparsesel.compress.selectors`) chooses which channels a plan's structured
    entries (a latency plan's kept channel counts) keep; ``sa++`` distils with ``finetune`` first.
    """
    from sparsesel.compress.plan import COSTS
    from sparsesel.compress.selectors import apply_with_selector, check_selector

    check_selector(selector)

    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    if cost != "params" and image_size is None:
        raise ValueError(f"cost={cost!r} needs image_size=(H, W)")
    threads = torch.get_num_threads() if threads is None else int(threads)
    if method == "magnitude" and cost == "macs":
        raise ValueError("method 'magnitude' prunes to a parameter or latency budget, not MACs: use cost 'params' or 'latency'")
    if cost == "latency" and method != "packing":
        from sparsesel.compress.latency_baselines import LATENCY_RULES, match_latency

        if method not in LATENCY_RULES:
            raise ValueError(f"under a latency budget the method is 'packing' or one of {LATENCY_RULES}, got {method!r}")
        budget = Budget.coerce(budget, "latency")
        if not budget.is_fraction:
            raise ValueError(f"the {method} rule matches a fraction of the measured latency; give the budget as a fraction "
                             f"(e.g. 0.5), got {budget.text}")
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            network, info = match_latency(model, method, float(budget.amount), size=[min(256, int(s)) for s in image_size])
        finally:
            torch.set_num_threads(previous)
        network.latency_match = info
        return network, None, analysis
    if method == "magnitude":
        from sparsesel.compress.baselines import magnitude_prune

        example = example_input(model, 64, 64, seed=seed)
        cap = Budget.coerce(budget, "params").resolve(count_params(model))
        return magnitude_prune(model, cap, example), None, analysis
    adapter = adapter_for(model)
    multiple = adapter.size_multiple(model)
    size = max(multiple, calibration_size // multiple * multiple)
    task = task or adapter.tasks[0]
    exclude = tuple([exclude] if isinstance(exclude, str) else exclude) + tuple(adapter.compress_exclude)
    calibration = adapter.network_input(PairedPatchDataset(task, split="train", patch_size=size, length=calibration_count, seed=seed + 7).batch(range(calibration_count)))
    if cost == "latency":
        from sparsesel.compress.latency_plan import analyze_latency, apply_latency_plan, plan_latency

        if analysis is None:
            analysis = analyze_latency(model, image_size=image_size, threads=threads, calibration=calibration, exclude=exclude,
                                       progress=progress)
        budget = Budget.coerce(budget, "latency")
        try:
            p = plan_latency(model, budget, image_size=image_size, threads=threads, calibration=calibration, analysis=analysis)
        except ValueError as exc:
            if not reach_fastest or "too small" not in str(exc):
                raise
            p = fastest_plan(model, budget, exc, image_size=image_size, threads=threads, calibration=calibration, analysis=analysis)
        if p.structured:
            return apply_with_selector(model, p, selector, finetune=finetune, seed=seed)[0], p, analysis
        return apply_latency_plan(model, p), p, analysis
    if analysis is None:
        analysis = analyze(model, exclude=exclude, calibration=calibration, budget=Budget.coerce(budget, cost), processes=processes,
                           cost=cost, image_size=image_size, progress=progress)
    p = plan(model, Budget.coerce(budget, cost), method=method, analysis=analysis, calibration=calibration, seed=seed, cost=cost,
             image_size=image_size)
    if p.structured:
        return apply_with_selector(model, p, selector, finetune=finetune, seed=seed)[0], p, analysis
    return apply(model, p), p, analysis


#: Fine-tuning learning rates by cost kind (see :func:`default_lr`).
DEFAULT_LR = {"params": 2e-4, "macs": 2e-4, "latency": 2e-3}


def default_lr(cost: str) -> float:
    """The fine-tuning's default learning rate under a ``cost`` budget.

    A factorized layer starts from the truncated decomposition of its trained weight, close to the
    original; a latency plan removes whole channels (the demo's 50 % plan starts at 12.7 dB against the
    original's 26.6 dB), and its 60 demo steps recover more with a larger step: on that plan, 60
    distillation steps reached 21.97 / 22.50 / 23.23 / 23.55 dB at 2e-4 / 5e-4 / 1e-3 / 2e-3 on 24 held-out patches (one seed).
    """
    return DEFAULT_LR[cost]


def parse_size(value: Any, name: str = "latency_size") -> tuple[int, int]:
    """``(H, W)`` from ``N`` (square), ``"HxW"``, ``"N"`` or a pair of positive ints.

    Raises
    ------
    ValueError
        Anything else, naming ``name`` and the value.
    """
    if isinstance(value, str):
        parts = value.lower().replace("×", "x").split("x")
        try:
            numbers = [int(part.strip()) for part in parts]
        except ValueError:
            numbers = []
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        numbers = [int(value)]
    elif isinstance(value, (tuple, list)) and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        numbers = [int(v) for v in value]
    else:
        numbers = []
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or min(numbers) < 1:
        raise ValueError(f"{name} must be a positive size written N or HxW (e.g. 512 or 2160x3840), got {value!r}")
    return numbers[0], numbers[1]


def fastest_plan(model, budget: Budget, error: ValueError, *, image_size, threads, calibration, analysis) -> Plan:
    """The latency plan at the smallest fraction of the dense latency the analysis predicts reachable."""
    from sparsesel.compress.latency_plan import fastest_ms, plan_latency

    dense_ms = analysis.bases[max(analysis.bases)]["ms"]
    fraction = float(min(1.0, np.ceil(1000.0 * fastest_ms(analysis) / dense_ms + 1.0) / 1000.0))
    p = plan_latency(model, fraction, image_size=image_size, threads=threads, calibration=calibration, analysis=analysis)
    p.latency["requested_budget"] = budget.value
    p.latency["requested_note"] = f"{budget.text} was out of reach ({error}); planned at {fraction:.3f}, the fastest plan"
    return p


def _check_run_arguments(budget: Any, method: Any, curve: Sequence[Any], task: Any, eval_count: Any, eval_size: Any,
                         latency_size: Any, latency_repeats: Any, threads: Any, cost: Any = "params",
                         latency_threads: Any = 1) -> tuple[Budget, list[Budget], tuple[int, int]]:
    """Refuse bad arguments of :func:`compress_checkpoint` before any work (and before ``out`` is touched);
    returns the budget, the curve's budgets and the latency size (the size checks need the model)."""
    from sparsesel.compress.plan import COSTS, METHODS
    from sparsesel.data.datasets import TASKS
    from sparsesel.validation import check_int, max_threads

    if cost not in COSTS:
        raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
    budget = Budget.coerce(budget, cost)
    points = []
    for point in curve:
        try:
            points.append(Budget.coerce(point, cost))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"curve: {exc}") from None
    if method not in (*METHODS, "magnitude"):
        raise ValueError(f"unknown method {method!r}; choose one of {(*METHODS, 'magnitude')}")
    if cost == "latency" and method not in ("packing", "uniform", "energy", "magnitude"):
        raise ValueError(f"under a latency budget the method is packing, uniform, energy or magnitude, got {method!r}")
    if cost == "macs" and method == "magnitude":
        raise ValueError("method 'magnitude' prunes to a parameter or latency budget, not MACs: use cost 'params' or 'latency'")
    if cost == "latency" and points:
        raise ValueError("the quality-vs-size curve is planned for parameter or MAC budgets; under a latency budget give curve=() "
                         "(the report plots PSNR against the measured latency instead)")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    check_int(eval_count, "eval_count", low=1)
    check_int(eval_size, "eval_size", low=16)
    size = parse_size(latency_size)
    check_int(latency_repeats, "latency_repeats", low=0)
    if cost == "latency" and latency_repeats == 0:
        raise ValueError("a latency budget needs the latency measured: latency_repeats must be >= 1")
    if threads is not None:
        check_int(threads, "threads", low=1, high=max_threads())
    check_int(latency_threads, "latency_threads", low=1, high=max_threads())
    return budget, points, size


def unpack_block_layers(model: torch.nn.Module) -> list[str]:
    """Replace (in place) every block-sparse packed layer of ``model`` (``prune --kernel``) by the plain layer it
    computes, so that compression plans it like any other layer; returns their names.

    Each layer's ``block_pack`` edit leaves the log; its ``block_mask`` edit (the zeros) stays.
    """
    from sparsesel.block_layers import PackedBlocks, unpack_layer

    names = [name for name, module in model.named_modules() if isinstance(module, PackedBlocks)]
    for name in names:
        unpack_layer(model, name)
    return names


def compress_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    budget: float | int | Budget = 0.5,
    method: str = "packing",
    finetune_steps: int = 100,
    task: str | None = None,
    batch_size: int = 4,
    patch_size: int = 64,
    lr: float | None = None,
    eval_count: int = 24,
    eval_size: int = 128,
    curve: Sequence[float | int | Budget] = (0.25, 0.5, 0.75),
    baselines: bool = True,
    latency_size: int | str | Sequence[int] = 512,
    latency_repeats: int = 3,
    exclude: Sequence[str] = (),
    seed: int = 0,
    threads: int | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    net: str | None = None,
    trust_code: bool = False,
    cost: str = "params",
    latency_threads: int = 1,
    footprint_size: Sequence[int] | None = (2160, 3840),
    device: str | torch.device | None = None,
    reach_fastest: bool = False,
    selector: str = "magnitude",
) -> str | None:
    """Run the pipeline; returns a one-paragraph summary (rank 0) or None (other ranks).

    ``checkpoint`` is any network file (:func:`sparsesel.nets.zoo.load_net`); ``net`` names the network
    it must hold (a factory ``"package.module:function"`` given here is the opt-in to import it, and
    ``checkpoint`` may then be a plain state dict of the network the factory builds); ``trust_code``
    lets a file built by a factory import it without naming it.

    ``cost`` is the unit of ``budget`` (``params``, ``macs`` at ``latency_size``, or ``latency``: measured
    at ``latency_size`` with ``latency_threads`` torch threads, see
    :func:`compress_model`); under a latency budget the baselines are matched to the plan's *measured*
    latency (:mod:`sparsesel.compress.latency_baselines`). Every network of the report (the original,
    ours, each baseline) is timed at ``latency_size`` side by side (interleaved, best of
    ``latency_repeats``; with one thread the thread's CPU time, robust to other processes), and with
    ``footprint_size`` (default 3840x2160; ``None``: skipped; also skipped with ``latency_repeats=0``) given
    one pass each in a fresh process for its time and peak memory (:func:`sparsesel.compress.footprint.one_pass_footprint`).

    ``lr`` (the fine-tuning's learning rate) defaults to :func:`default_lr` of ``cost``.

    ``reach_fastest``: see :func:`compress_model` (``--demo``).

    ``device`` (default: CUDA when present, else the CPU; :func:`sparsesel.compress.deploy.resolve_device`)
    runs the fine-tuning and the quality evaluation; latency and peak memory are CPU figures (with
    ``latency_threads`` threads).

    With ``torch.get_num_threads()`` (``threads``) above 1, no ``torch.distributed`` and the CPU as device,
    the analysis's calibration passes and the fine-tuning of the result and of the baselines run in that many worker
    processes (at most :data:`~sparsesel.compress.finetune.MAX_WORKERS`, the threads shared among
    them; ``spawn``: a script that calls this function needs the usual
    ``if __name__ == "__main__":`` guard, as with a DataLoader's workers); ``threads=1`` keeps
    everything in this process.

    ``out`` (see :mod:`sparsesel.compress.run_folder`) is checked before any work: it must be a folder
    (created if missing) that does not hold ``checkpoint``, and be empty unless ``force`` (then only this
    command's own files in it are replaced) or ``resume``. A run holds the folder's lock
    (:class:`sparsesel.outputs.OutputLock`) until it ends, so a second run to the same ``out`` fails at
    once. The fine-tuning states stay in ``out`` until every final output is written: ``resume=True``
    after an interruption at any stage continues without redoing a fine-tuning step, and refuses (at
    once, naming them) settings that differ from the interrupted run's.
    """
    from sparsesel.compress import run_folder
    from sparsesel.compress.deploy import resolve_device
    from sparsesel.outputs import OutputLock, first_missing, remove_if_empty

    began = time.perf_counter()
    budget, curve, size = _check_run_arguments(budget, method, curve, task, eval_count, eval_size, latency_size, latency_repeats,
                                               threads, cost, latency_threads)
    lr = default_lr(cost) if lr is None else lr
    if resume and cost == "latency":
        raise ValueError("resume is not available under a latency budget yet: the plan and the baselines depend on timings, so a "
                         "second run may plan other networks than the saved fine-tuning states; start over with --force")
    if footprint_size is not None:
        footprint_size = parse_size(footprint_size, "footprint_size")
    device = resolve_device(device)
    from sparsesel.compress.selectors import check_selector

    check_selector(selector)
    out = Path(out)
    run_folder.prepare(out, checkpoint, force=force, resume=resume)
    if threads is not None:
        torch.set_num_threads(int(threads))
    rank, world = _init_distributed()
    options = dict(net=net, trust_code=trust_code, budget=budget, method=method, finetune_steps=finetune_steps, task=task,
                   batch_size=batch_size,
                   patch_size=patch_size, lr=lr, eval_count=eval_count, eval_size=eval_size, curve=curve, baselines=baselines,
                   latency_size=size, latency_repeats=latency_repeats, exclude=exclude, seed=seed, resume=resume,
                   progress=progress and rank == 0, cost=cost, latency_threads=int(latency_threads), footprint_size=footprint_size,
                   device=device, reach_fastest=reach_fastest, selector=selector)
    if rank != 0:  # rank 0 holds the lock and writes every file
        return _compress(checkpoint, out, rank=rank, world=world, began=began, **options)
    created = first_missing(out)
    try:
        with OutputLock(out, "sparsesel compress"):
            run_folder.start(out, force=force, resume=resume)
            try:
                return _compress(checkpoint, out, rank=rank, world=world, began=began, **options)
            except BaseException:
                run_folder.remove_temporaries(out)  # of a worker stopped mid-write (the workers are stopped by now)
                raise
    finally:
        if created is not None:  # the folders this run made, if it left them empty (it failed before writing)
            remove_if_empty(out, created)


def _compress(checkpoint: str | os.PathLike, out: Path, *, rank: int, world: int, began: float, net: str | None,
              trust_code: bool, budget: Budget, method: str,
              finetune_steps: int, task: str | None, batch_size: int, patch_size: int, lr: float, eval_count: int,
              eval_size: int, curve: Sequence[Budget], baselines: bool, latency_size: tuple[int, int], latency_repeats: int,
              exclude: Sequence[str], seed: int, resume: bool, progress: bool, cost: str, latency_threads: int,
              footprint_size: tuple[int, int] | None, device: torch.device, reach_fastest: bool = False,
              selector: str = "magnitude") -> str | None:
    """The work of :func:`compress_checkpoint`, once ``out`` is checked and locked (rank 0)."""
    from sparsesel.compress import run_folder
    from sparsesel.nets import zoo

    teacher, info = zoo.load_net(checkpoint, trust_code=trust_code, net=net)
    unpack_block_layers(teacher)
    net = info["net"]
    if cost == "latency" and net != "uhdformer":
        raise ValueError(f"{checkpoint}: --cost latency plans UHDformer networks only (its options are UHDformer's channel "
                         f"groups), got {net!r}; use --cost params or --cost macs")
    adapter = adapter_for(teacher)
    task = task or adapter.tasks[0]
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    config = FinetuneConfig(task=task, steps=finetune_steps, batch_size=batch_size, patch_size=patch_size, lr=lr, seed=seed)
    settings = run_folder.run_settings(checkpoint, task=task, budget=budget.value, method=method, exclude=exclude, seed=seed,
                                       finetune_steps=finetune_steps, batch_size=batch_size, patch_size=patch_size, lr=lr,
                                       baselines=bool(baselines), cost=cost, latency_size=list(latency_size),
                                       selector=selector)
    if resume:
        run_folder.check_resume_settings(out, settings)
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[name] = stages.get(name, 0.0) + now - clock
        clock = now

    # the calibration passes of the analysis run side by side in worker processes (one process per rank
    # under torch.distributed)
    run_folder.enter_stage("analyze", progress)
    plan_size = None if cost == "params" else latency_size
    student, the_plan, analysis = compress_model(teacher, budget, method=method, task=task, exclude=exclude, seed=seed,
                                                 processes=min(torch.get_num_threads(), MAX_WORKERS) if world == 1 else 1,
                                                 cost=cost, image_size=plan_size, threads=latency_threads, progress=progress,
                                                 reach_fastest=reach_fastest, selector=selector, finetune=config)
    zoo.check_saveable(student, net=net, config=info["config"])  # a network no file could rebuild fails now, not after the work
    lap("analyze_and_plan")
    if world > 1:
        dist.barrier()
    run_folder.enter_stage("baselines", progress)
    baseline_models = _baselines(teacher, student, the_plan, adapter, net, method=method, budget=budget, cost=cost, task=task,
                                 exclude=exclude, seed=seed, analysis=analysis, latency_size=latency_size,
                                 latency_threads=latency_threads) if baselines else {}
    lap("baselines")
    run_folder.enter_stage("finetune", progress)
    tuned, baseline_resumed_from = _finetune_all(student, baseline_models, teacher, config, out, settings, resume=resume,
                                                 progress=progress, world=world, device=device)
    lap("finetune")
    if rank != 0:
        return None
    run_folder.enter_stage("evaluate", progress)
    held_out = PairedPatchDataset(task, split="test", patch_size=eval_size, length=eval_count, seed=seed + 1, augment=False)
    networks = {"original": teacher, "ours": student,
                **{name: model_b for name, model_b in baseline_models.items() if not isinstance(model_b, str)}}
    rows = _measure_networks(networks, held_out, latency_size=latency_size, latency_repeats=latency_repeats,
                             latency_threads=latency_threads, footprint_size=footprint_size, net=net, config=info["config"],
                             device=device, progress=progress)
    before, after = rows["original"], rows["ours"]
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint), "net": net, "method": method, "budget": budget.value, "cost": cost, "task": task,
        "params_before": before["params"], "params_after": after["params"],
        "psnr_before": before["psnr"], "psnr_after": after["psnr"], "ssim_before": before["ssim"], "ssim_after": after["ssim"],
        "latency_ms_before": before["latency_ms"], "latency_ms_after": after["latency_ms"],
        "macs_before": before.get("macs"), "macs_after": after.get("macs"), "latency_size": list(latency_size),
        "latency_threads": latency_threads, "latency_clock": "thread CPU time" if latency_threads == 1 else "wall time",
        "footprint_size": None if footprint_size is None else list(footprint_size),
        "device": str(device),
        "threads": torch.get_num_threads(), "finetune": {**config.to_dict(), "final_loss": tuned["losses"][-1] if tuned["losses"] else None,
                                                          "wall_time": tuned["wall_time"], "world_size": world,
                                                          "resumed_from": tuned.get("resumed_from")},
        "evaluation": f"{eval_count} held-out {eval_size}x{eval_size} patches of the test images (seed {seed + 1}), Y-channel PSNR/SSIM, crop 1",
        "networks": rows,
        "baselines": {},
        "baseline_rule": _BASELINE_RULE[cost],
        "plan": None if the_plan is None else the_plan.to_dict(),
    }
    if getattr(student, "latency_match", None) is not None:
        report["latency_match"] = student.latency_match
    for name, model_b in baseline_models.items():
        if isinstance(model_b, str):
            report["baselines"][name] = {"params": None, "psnr": None, "ssim": None, "error": model_b}
        else:
            report["baselines"][name] = {**rows[name], "finetune_resumed_from": baseline_resumed_from.get(name)}
    lap("measure")
    run_folder.enter_stage("curve", progress)
    points = []
    if curve and analysis is not None:
        for b in curve:
            for name in ("packing", "uniform", "energy"):
                try:
                    model_c, p_c, _ = compress_model(teacher, b, method=name, task=task, exclude=exclude, seed=seed, analysis=analysis,
                                                     cost=cost, image_size=plan_size)
                except ValueError as exc:
                    points.append({"method": name, "budget": b.value, "error": str(exc)})
                    continue
                points.append({"method": name, "budget": b.value, "params": count_params(model_c), **evaluate_quality(model_c, held_out)})
    lap("curve")
    report["curve"] = points
    report["stage_seconds"] = {k: round(v, 2) for k, v in stages.items()}
    report["wall_time_s"] = time.perf_counter() - began
    if report["plan"] is None:  # magnitude or a latency rule: no factorization plan
        report["plan"] = {"layers": []}
    run_folder.enter_stage("write", progress)
    save_compressed(student, out / "compressed.pt", net=net, config=info["config"], meta={"compress_report": {k: report[k] for k in ("psnr_before", "psnr_after", "params_before", "params_after")}}, force=True)
    if the_plan is not None:
        the_plan.save(out / "plan.json", force=True)
    files = write_report(report, out, force=True)
    run_folder.finish(out, ["compressed.pt", *(["plan.json"] if the_plan is not None else []), *files])
    return _summary(report, checkpoint, net, budget, out, (["plan.json"] if the_plan is not None else []) + files)


#: How the baselines are made for each cost (recorded in report.json).
_BASELINE_RULE = {
    "params": "each baseline at the same parameter budget (uniform ranks, energy threshold, channel magnitude)",
    "macs": "each rank rule at the same MAC budget (channel magnitude counts parameters: not run)",
    "latency": "each baseline a one-number channel rule over the same channel groups (uniform fraction, energy share, "
               "global magnitude threshold), bisected to the largest network whose measured latency is within ours' "
               "measured latency (sparsesel.compress.latency_baselines)",
}


def _baselines(teacher, student, the_plan, adapter, net, *, method, budget, cost, task, exclude, seed, analysis,
               latency_size, latency_threads) -> dict[str, Any]:
    """Each baseline's network, or the reason it is missing (a string)."""
    models: dict[str, Any] = {}
    target = None
    if cost == "latency":  # the baselines match ours' measured latency, not the budget
        measured = the_plan.latency if the_plan is not None else student.latency_match
        target = (measured["measured_ms"] / measured["dense_ms"]) if the_plan is not None else measured["measured_ratio"]
        target = float(min(1.0, round(target, 6)))
    for name in ("uniform", "energy", "magnitude"):
        if name == method:
            continue
        if cost != "latency" and name == "magnitude" and adapter.channel_pruner is None:
            # Torch-Pruning 1.6.1 needs minutes just to trace CSAttn/TSHRNet; run it on purpose
            # with --method magnitude instead of stalling every compression
            models[name] = (f"skipped for {net}: Torch-Pruning's dependency tracing takes minutes on this network; "
                            "run `sparsesel compress --method magnitude` to compute it")
            continue
        if cost == "macs" and name == "magnitude":
            models[name] = "channel magnitude pruning counts parameters, not MACs: run it with --cost params or --cost latency"
            continue
        try:
            model_b, _, _ = compress_model(teacher, target if cost == "latency" else budget, method=name, task=task, exclude=exclude,
                                           seed=seed, analysis=analysis, cost=cost,
                                           image_size=None if cost == "params" else latency_size, threads=latency_threads)
        except ValueError as exc:
            models[name] = str(exc)
            continue
        models[name] = model_b
    return models


def _finetune_all(student, baseline_models, teacher, config, out, settings, *, resume, progress, world, device):
    """Distil ours and the baselines with the same config (side by side in worker processes on the CPU;
    one after the other on another device); returns (ours' result, {baseline: resumed_from})."""
    from sparsesel.compress import run_folder

    if not config.steps:
        return {"losses": [], "wall_time": 0.0, "resumed_from": None}, {}
    tuned_names = [name for name, m in baseline_models.items() if not isinstance(m, str)]

    def state_options(model: str, show: bool) -> dict[str, Any]:
        path = run_folder.state_file(out, model)
        return {"state_file": path, "resume": resume and path.is_file(), "progress": show, "keep_state": True,
                "state_meta": {"compress_settings": settings, "model": model}}

    students = [student, *(baseline_models[name] for name in tuned_names)]
    on_cpu = device.type == "cpu"
    if not on_cpu:
        teacher.to(device)
        for network in students:
            network.to(device)
    try:
        results = finetune_several(students, teacher, config,
                                   options=[state_options("ours", progress), *(state_options(name, False) for name in tuned_names)],
                                   processes=None if world == 1 and on_cpu else 1)
    finally:
        if not on_cpu:
            teacher.cpu()
            for network in students:
                network.cpu()
    return results[0], {name: result.get("resumed_from") for name, result in zip(tuned_names, results[1:])}


def _measure_networks(networks: dict[str, torch.nn.Module], held_out, *, latency_size, latency_repeats, latency_threads,
                      footprint_size, net, config, device, progress) -> dict[str, dict[str, Any]]:
    """Per network: params, MACs at ``latency_size``, PSNR/SSIM (on ``device``), latency at ``latency_size``
    (all networks interleaved, best of ``latency_repeats``, ``latency_threads`` threads) and one pass at
    ``footprint_size`` in a fresh process (time, peak memory)."""
    from sparsesel.compress.footprint import footprints
    from sparsesel.compress.latency import time_networks
    from sparsesel.compress.plan import model_macs

    rows: dict[str, dict[str, Any]] = {}
    for name, network in networks.items():
        network.eval()
        row: dict[str, Any] = {"params": count_params(network)}
        try:
            row["macs"] = model_macs(network, latency_size)
        except Exception as exc:  # noqa: BLE001 - the FLOP counter does not know every op
            row["macs"], row["macs_error"] = None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        network.to(device)
        try:
            row.update(evaluate_quality(network, held_out))
        finally:
            network.cpu()
        rows[name] = row
    previous = torch.get_num_threads()
    torch.set_num_threads(latency_threads)
    try:
        times = time_networks(list(networks.values()), latency_size, latency_repeats) if latency_repeats else [None] * len(networks)
    finally:
        torch.set_num_threads(previous)
    for (name, row), ms in zip(rows.items(), times):
        row["latency_ms"] = ms
        row["speedup"] = None if ms is None or times[0] is None else times[0] / ms
    if footprint_size is not None and latency_repeats:
        # one process per free core at one thread (each measures its own CPU time and peak memory)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        parallel = max(1, min(cores // latency_threads, MAX_WORKERS)) if latency_threads == 1 else 1
        if progress:
            print(f"compress: one {footprint_size[1]}x{footprint_size[0]} pass per network ({parallel} at a time)",
                  file=sys.stderr, flush=True)
        found = footprints(networks, size=footprint_size, threads=latency_threads, net=net, config=config, parallel=parallel)
        for name, result in found.items():
            rows[name]["footprint"] = result
            rows[name]["footprint_ms"] = result.get("cpu_ms" if latency_threads == 1 else "ms")
            rows[name]["footprint_peak_mib"] = result.get("peak_mib")
            rows[name]["footprint_parallel"] = parallel
    return rows


def _summary(report: dict[str, Any], checkpoint, net, budget: Budget, out: Path, files: list[str]) -> str:
    rows = report["networks"]
    speed = "" if rows["ours"].get("speedup") is None else f", {rows['ours']['speedup']:.2f}x faster at " \
        f"{report['latency_size'][1]}x{report['latency_size'][0]}"
    lines = [f"compressed {checkpoint} ({net}) with {report['method']} at {report['cost']} budget {budget.text}: "
             f"params {report['params_before']} -> {report['params_after']}{speed}, "
             f"PSNR {report['psnr_before']:.3f} -> {report['psnr_after']:.3f} dB, SSIM {report['ssim_before']:.4f} -> {report['ssim_after']:.4f}"]
    note = ((report.get("plan") or {}).get("latency") or {}).get("requested_note")
    if note:
        lines.append(f"  budget: {note}")
    for name, b in report["baselines"].items():
        lines.append(f"  baseline {name}: " + (f"params {b['params']}, PSNR {b['psnr']:.3f} dB, SSIM {b['ssim']:.4f}"
                                               + ("" if b.get("speedup") is None else f", {b['speedup']:.2f}x faster")
                                               if b.get("psnr") is not None else f"failed: {b.get('error')}"))
    lines.append(f"wrote {out}/: compressed.pt, " + ", ".join(files) + f" ({report['wall_time_s']:.0f} s)")
    return "\n".join(lines)
