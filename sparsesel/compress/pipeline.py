"""The whole ``sparsesel compress`` run: load, plan, apply, fine-tune, measure, report."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

__all__ = ["compress_checkpoint", "compress_model"]


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
    selector: str = "magnitude",
    finetune: FinetuneConfig | None = None,
) -> tuple[torch.nn.Module, Plan | None, Any]:
    """Plan and apply one compression of ``model`` (not modified); returns (network, plan or None, analysis).

    ``task`` (the degradation of the calibration patches) defaults to the network's first task
    (its adapter's; ``lowlight`` for networks without one of their own). The adapter's
    ``compress_exclude`` layers are left untouched besides ``exclude``. ``processes``: worker
    processes for the analysis's calibration passes (:func:`~sparsesel.compress.plan.calibrate_layers`).
    ``selector`` (:mod:`sparsesel.compress.selectors`) chooses which channels a plan's structured
    entries (a latency plan's kept channel counts) keep; ``sa++`` distils with ``finetune`` first.
    """
    from sparsesel.compress.selectors import apply_with_selector, check_selector

    check_selector(selector)
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
    if analysis is None:
        analysis = analyze(model, exclude=exclude, calibration=calibration, budget=budget, processes=processes)
    p = plan(model, budget, method=method, analysis=analysis, calibration=calibration, seed=seed)
    if p.structured:
        return apply_with_selector(model, p, selector, finetune=finetune, seed=seed)[0], p, analysis
    return apply(model, p), p, analysis


def _check_run_arguments(budget: Any, method: Any, curve: Sequence[Any], task: Any, eval_count: Any, eval_size: Any,
                         latency_size: Any, latency_repeats: Any, threads: Any) -> tuple[Budget, list[Budget]]:
    """Refuse bad arguments of :func:`compress_checkpoint` before any work (and before ``out`` is touched);
    returns the budget and the curve's budgets (the size checks need the model)."""
    from sparsesel.compress.plan import METHODS
    from sparsesel.data.datasets import TASKS
    from sparsesel.validation import check_int, max_threads

    budget = Budget.coerce(budget, "params")
    points = []
    for point in curve:
        try:
            points.append(Budget.coerce(point, "params"))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"curve: {exc}") from None
    if method not in (*METHODS, "magnitude"):
        raise ValueError(f"unknown method {method!r}; choose one of {(*METHODS, 'magnitude')}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    check_int(eval_count, "eval_count", low=1)
    check_int(eval_size, "eval_size", low=16)
    check_int(latency_size, "latency_size", low=1)
    check_int(latency_repeats, "latency_repeats", low=0)
    if threads is not None:
        check_int(threads, "threads", low=1, high=max_threads())
    return budget, points


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
    lr: float = 2e-4,
    eval_count: int = 24,
    eval_size: int = 128,
    curve: Sequence[float | int | Budget] = (0.25, 0.5, 0.75),
    baselines: bool = True,
    latency_size: int = 512,
    latency_repeats: int = 3,
    exclude: Sequence[str] = (),
    seed: int = 0,
    threads: int | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    net: str | None = None,
    trust_code: bool = False,
    selector: str = "magnitude",
) -> str | None:
    """Run the pipeline; returns a one-paragraph summary (rank 0) or None (other ranks).

    ``checkpoint`` is any network file (:func:`sparsesel.nets.zoo.load_net`); ``net`` names the network
    it must hold (a factory ``"package.module:function"`` given here is the opt-in to import it, and
    ``checkpoint`` may then be a plain state dict of the network the factory builds); ``trust_code``
    lets a file built by a factory import it without naming it.

    With ``torch.get_num_threads()`` (``threads``) above 1 and no ``torch.distributed``, the analysis's
    calibration passes and the fine-tuning of the result and of the baselines run in that many worker
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
    from sparsesel.outputs import OutputLock, first_missing, remove_if_empty

    began = time.perf_counter()
    budget, curve = _check_run_arguments(budget, method, curve, task, eval_count, eval_size, latency_size, latency_repeats, threads)
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
                   latency_size=latency_size, latency_repeats=latency_repeats, exclude=exclude, seed=seed, resume=resume,
                   progress=progress and rank == 0, selector=selector)
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
              eval_size: int, curve: Sequence[Budget], baselines: bool, latency_size: int, latency_repeats: int,
              exclude: Sequence[str], seed: int, resume: bool, progress: bool, selector: str = "magnitude") -> str | None:
    """The work of :func:`compress_checkpoint`, once ``out`` is checked and locked (rank 0)."""
    from sparsesel.compress import run_folder
    from sparsesel.nets import zoo

    teacher, info = zoo.load_net(checkpoint, trust_code=trust_code, net=net)
    net = info["net"]
    adapter = adapter_for(teacher)
    task = task or adapter.tasks[0]
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    config = FinetuneConfig(task=task, steps=finetune_steps, batch_size=batch_size, patch_size=patch_size, lr=lr, seed=seed)
    settings = run_folder.run_settings(checkpoint, task=task, budget=budget.value, method=method, exclude=exclude, seed=seed,
                                       finetune_steps=finetune_steps, batch_size=batch_size, patch_size=patch_size, lr=lr,
                                       baselines=bool(baselines), selector=selector)
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
    student, the_plan, analysis = compress_model(teacher, budget, method=method, task=task, exclude=exclude, seed=seed,
                                                 processes=min(torch.get_num_threads(), MAX_WORKERS) if world == 1 else 1,
                                                 selector=selector, finetune=config)
    zoo.check_saveable(student, net=net, config=info["config"])  # a network no file could rebuild fails now, not after the work
    lap("analyze_and_plan")
    if world > 1:
        dist.barrier()
    run_folder.enter_stage("baselines", progress)
    baseline_models = {}
    if baselines:
        for name in ("uniform", "energy", "magnitude"):
            if name == method:
                continue
            if name == "magnitude" and adapter.channel_pruner is None:
                # Torch-Pruning 1.6.1 needs minutes just to trace CSAttn/TSHRNet; run it on purpose
                # with --method magnitude instead of stalling every compression
                baseline_models[name] = (f"skipped for {net}: Torch-Pruning's dependency tracing takes minutes on this network; "
                                         "run `sparsesel compress --method magnitude` to compute it")
                continue
            try:
                model_b, _, _ = compress_model(teacher, budget, method=name, task=task, exclude=exclude, seed=seed, analysis=analysis)
            except ValueError as exc:
                baseline_models[name] = str(exc)
                continue
            baseline_models[name] = model_b
    lap("baselines")
    run_folder.enter_stage("finetune", progress)
    if finetune_steps:
        # ours and the baselines are distilled with the same config, side by side in worker processes
        # (one process per rank under torch.distributed); each keeps its state until the outputs are written
        tuned_names = [name for name, m in baseline_models.items() if not isinstance(m, str)]

        def state_options(model: str, show: bool) -> dict[str, Any]:
            path = run_folder.state_file(out, model)
            return {"state_file": path, "resume": resume and path.is_file(), "progress": show, "keep_state": True,
                    "state_meta": {"compress_settings": settings, "model": model}}

        results = finetune_several(
            [student, *(baseline_models[name] for name in tuned_names)], teacher, config,
            options=[state_options("ours", progress), *(state_options(name, False) for name in tuned_names)],
            processes=None if world == 1 else 1)
        tuned = results[0]
        baseline_resumed_from = {name: result.get("resumed_from") for name, result in zip(tuned_names, results[1:])}
    else:
        tuned, baseline_resumed_from = {"losses": [], "wall_time": 0.0, "resumed_from": None}, {}
    lap("finetune")
    if rank != 0:
        return None
    run_folder.enter_stage("evaluate", progress)
    held_out = PairedPatchDataset(task, split="test", patch_size=eval_size, length=eval_count, seed=seed + 1, augment=False)
    before = measure(teacher, held_out, latency_size=latency_size, repeats=latency_repeats)
    after = measure(student, held_out, latency_size=latency_size, repeats=latency_repeats)
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint), "net": net, "method": method, "budget": budget.value, "task": task,
        "params_before": before["params"], "params_after": after["params"],
        "psnr_before": before["psnr"], "psnr_after": after["psnr"], "ssim_before": before["ssim"], "ssim_after": after["ssim"],
        "latency_ms_before": before["latency_ms"], "latency_ms_after": after["latency_ms"],
        "macs_before": before.get("macs"), "macs_after": after.get("macs"), "latency_size": latency_size,
        "threads": torch.get_num_threads(), "finetune": {**config.to_dict(), "final_loss": tuned["losses"][-1] if tuned["losses"] else None,
                                                          "wall_time": tuned["wall_time"], "world_size": world,
                                                          "resumed_from": tuned.get("resumed_from")},
        "evaluation": f"{eval_count} held-out {eval_size}x{eval_size} patches of the test images (seed {seed + 1}), Y-channel PSNR/SSIM, crop 1",
        "baselines": {},
        "plan": None if the_plan is None else the_plan.to_dict(),
    }
    for name, model_b in baseline_models.items():
        if isinstance(model_b, str):
            report["baselines"][name] = {"params": None, "psnr": None, "ssim": None, "error": model_b}
        else:
            m = measure(model_b, held_out, latency_size=latency_size, repeats=latency_repeats)
            report["baselines"][name] = {**{k: m[k] for k in ("params", "psnr", "ssim", "latency_ms", "macs")},
                                         "finetune_resumed_from": baseline_resumed_from.get(name)}
    lap("measure")
    run_folder.enter_stage("curve", progress)
    points = []
    if curve and analysis is not None:
        for b in curve:
            for name in ("packing", "uniform", "energy"):
                try:
                    model_c, p_c, _ = compress_model(teacher, b, method=name, task=task, exclude=exclude, seed=seed, analysis=analysis)
                except ValueError as exc:
                    points.append({"method": name, "budget": b.value, "error": str(exc)})
                    continue
                points.append({"method": name, "budget": b.value, "params": count_params(model_c), **evaluate_quality(model_c, held_out)})
    lap("curve")
    report["curve"] = points
    report["stage_seconds"] = {k: round(v, 2) for k, v in stages.items()}
    report["wall_time_s"] = time.perf_counter() - began
    if report["plan"] is None:  # magnitude: no factorization plan
        report["plan"] = {"layers": []}
    run_folder.enter_stage("write", progress)
    save_compressed(student, out / "compressed.pt", net=net, config=info["config"], meta={"compress_report": {k: report[k] for k in ("psnr_before", "psnr_after", "params_before", "params_after")}}, force=True)
    if the_plan is not None:
        the_plan.save(out / "plan.json", force=True)
    files = write_report(report, out, force=True)
    run_folder.finish(out, ["compressed.pt", *(["plan.json"] if the_plan is not None else []), *files])
    lines = [f"compressed {checkpoint} ({net}) with {method} at budget {budget.text}: params {report['params_before']} -> {report['params_after']}, "
             f"PSNR {report['psnr_before']:.3f} -> {report['psnr_after']:.3f} dB, SSIM {report['ssim_before']:.4f} -> {report['ssim_after']:.4f}"]
    for name, b in report["baselines"].items():
        lines.append(f"  baseline {name}: " + (f"params {b['params']}, PSNR {b['psnr']:.3f} dB, SSIM {b['ssim']:.4f}" if b.get("psnr") is not None else f"failed: {b.get('error')}"))
    lines.append(f"wrote {out}/: compressed.pt, plan.json, " + ", ".join(files) + f" ({report['wall_time_s']:.0f} s)")
    return "\n".join(lines)
