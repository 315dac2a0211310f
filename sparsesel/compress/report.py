"""Measure networks before/after compression and write ``report.json``, ``report.md`` and plots.

``report.json`` holds at least ``params_before``, ``params_after``, ``psnr_before``, ``psnr_after``,
``ssim_before``, ``ssim_after``, ``latency_ms_before``, ``latency_ms_after``, ``macs_before``,
``macs_after`` and ``baselines`` (``{name: {params, psnr, ssim, ...}}``), plus the quality-vs-size
``curve`` and the per-layer ranks.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsesel.atomic import write_atomic, write_text_atomic
from sparsesel.compress.apply import count_params
from sparsesel.compress.network_io import example_input, network_output
from sparsesel.data import metrics
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.nets.adapter import adapter_for

__all__ = ["MAX_LABELS", "evaluate_quality", "grouped_by_block", "latency_ms", "measure", "write_report"]


def _predict(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The network's image for ``batch``, any size (its adapter's ``restore``), clamped to [0, 1]."""
    from sparsesel.training.loop import on_device

    with torch.inference_mode():
        return adapter_for(model).restore(model, on_device(batch, model)).clamp(0, 1).cpu()


def evaluate_quality(model: nn.Module, dataset: PairedPatchDataset, batch_size: int = 8) -> dict[str, float]:
    """Mean PSNR / SSIM (Y channel, crop 1; :mod:`sparsesel.data.metrics`) over ``dataset``.

    The patches go through the network ``batch_size`` at a time (fewer, larger forward passes are
    about 1.3× faster on the CPU than one patch per pass; the outputs agree to float rounding).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    model.eval()
    psnrs, ssims = [], []
    for start in range(0, len(dataset), batch_size):
        batch = dataset.batch(list(range(start, min(start + batch_size, len(dataset)))))
        outputs = _predict(model, batch).permute(0, 2, 3, 1).numpy()
        targets = batch["target"].permute(0, 2, 3, 1).numpy()
        for out, target in zip(outputs, targets):
            psnrs.append(metrics.psnr(out, target))
            ssims.append(metrics.ssim(out, target))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims))}


def latency_ms(model: nn.Module, size: int = 512, repeats: int = 3) -> float:
    """Median CPU wall time (ms) of one ``(1, C, size, size)`` forward pass, after one warm-up run."""
    x = example_input(model, size, size)
    model.eval()
    times = []
    with torch.inference_mode():
        network_output(model, x)  # warm-up
        for _ in range(repeats):
            began = time.perf_counter()
            network_output(model, x)
            times.append((time.perf_counter() - began) * 1e3)
    return float(statistics.median(times))


def measure(model: nn.Module, dataset: PairedPatchDataset, *, latency_size: int = 512, repeats: int = 3) -> dict[str, Any]:
    """``{params, macs (at latency_size), psnr, ssim, latency_ms}`` of ``model``."""
    from sparsesel.compress.plan import model_macs

    out = {"params": count_params(model), **evaluate_quality(model, dataset)}
    try:
        out["macs"] = model_macs(model, (latency_size, latency_size))
    except Exception as exc:  # noqa: BLE001 - the FLOP counter does not know every op
        out["macs"] = None
        out["macs_error"] = str(exc).splitlines()[0]
    out["latency_ms"] = latency_ms(model, latency_size, repeats) if repeats else None
    return out


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _rows(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(label, row) of the original, ours and every baseline; rows of older reports rebuilt from their fields."""
    networks = report.get("networks")
    if networks is None:
        networks = {"original": {"params": report["params_before"], "psnr": report["psnr_before"], "ssim": report["ssim_before"],
                                 "latency_ms": report.get("latency_ms_before"), "macs": report.get("macs_before")},
                    "ours": {"params": report["params_after"], "psnr": report["psnr_after"], "ssim": report["ssim_after"],
                             "latency_ms": report.get("latency_ms_after"), "macs": report.get("macs_after")}}
    rows = [("original", networks["original"]), (f"{report['method']} (ours)", networks["ours"])]
    for name, b in report["baselines"].items():
        rows.append((name, networks.get(name, b)))
    return rows


def _parallel(report: dict[str, Any]) -> int:
    return max([row.get("footprint_parallel", 1) for row in (report.get("networks") or {}).values()] or [1])


def _markdown(report: dict[str, Any]) -> str:
    size = report.get("latency_size", 512)
    height, width = (size, size) if isinstance(size, int) else size
    footprint = report.get("footprint_size")
    four_k = f"{footprint[1]}x{footprint[0]}" if footprint else None
    cost = report.get("cost", "params")
    lines = [f"# Compression report ({report['method']}, {cost} budget {report['budget']})", ""]
    header = ["network", "params", f"GMAC {width}x{height}", "PSNR (dB)", "SSIM", f"latency {width}x{height} (ms)", "speed-up"]
    if four_k:
        header += [f"{four_k} (ms)", f"{four_k} peak memory (MiB)"]
    lines += ["| " + " | ".join(header + ["note"]) + " |", "|" + "---|" * (len(header) + 1)]
    for name, row in _rows(report):
        macs = row.get("macs")
        cells = [name, _fmt(row.get("params"), 0), "–" if macs is None else f"{macs / 1e9:.2f}", _fmt(row.get("psnr"), 3),
                 _fmt(row.get("ssim"), 4), _fmt(row.get("latency_ms"), 1),
                 "–" if row.get("speedup") is None else f"{row['speedup']:.2f}x"]
        if four_k:
            cells += [_fmt(row.get("footprint_ms"), 0), _fmt(row.get("footprint_peak_mib"), 0)]
        note = report["baselines"].get(name, {}).get("error", "") if name in report["baselines"] else ""
        if not note and row.get("footprint", {}).get("error"):
            note = f"{four_k}: {row['footprint']['error']}"
        lines.append("| " + " | ".join(cells + [note]) + " |")
    lines += [""]
    if report.get("latency_threads") is not None:
        lines.append(f"Latency: every network side by side in one process, interleaved, best of the runs, {report['latency_threads']} "
                     f"torch thread(s), {report.get('latency_clock', 'wall time')}."
                     + (f" {four_k}: one pass per network in a fresh process, {_parallel(report)} at a time (time of the pass; "
                        "peak memory = the peak resident set during it above the resident set before it)." if four_k else ""))
    latency = (report.get("plan") or {}).get("latency")
    if latency and latency.get("measured_ms") is not None:
        cap = report["plan"]["budget_cost"] / 1e3
        lines.append(f"Plan: budget {cap:.1f} ms of the original's {latency['dense_ms']:.1f} ms (as timed by the analysis); the planned network "
                     f"was predicted at {latency['predicted_ms']:.1f} ms and measured at {latency['measured_ms']:.1f} ms, "
                     + ("within the budget." if latency.get("fits") else "OVER the budget (no plan measured within it; the last one is kept)."))
    if latency and latency.get("requested_note"):
        lines.append(f"Budget: {latency['requested_note']}.")
    if report.get("baseline_rule"):
        lines.append(f"Baselines: {report['baseline_rule']}.")
    lines.append(f"Quality: {report.get('evaluation', '')}; all fine-tuned alike ({report.get('finetune', {}).get('steps', 0)} steps).")
    if report.get("curve"):
        lines += ["", "## Quality vs size (no fine-tuning)", "", "| method | budget | params | PSNR | SSIM |", "|---|---|---|---|---|"]
        for point in report["curve"]:
            lines.append(f"| {point['method']} | {point['budget']} | {point.get('params', '–')} | {_fmt(point.get('psnr'), 3)} | {_fmt(point.get('ssim'), 4)} |")
    structured = report["plan"].get("structured") or []
    if structured:
        lines += ["", "## Kept channels", "", "| module | group | kept |", "|---|---|---|"]
        for entry in structured:
            lines.append(f"| {entry['module'] or '(network)'} | {entry['kind']} | {entry['channels']} of {entry['of']} |")
    lines += ["", "## Per-layer choice", "", "| layer | shape | factorization | ranks | params |", "|---|---|---|---|---|"]
    for layer in report["plan"]["layers"]:
        lines.append(f"| {layer['name']} | {layer['shape']} | {layer['factorization']} | {layer['ranks'] or ''} | {layer['dense_params']} → {layer['params']} |")
    return "\n".join(lines) + "\n"


#: Most bars (labels) of layer_ranks.png.
MAX_LABELS = 40


def grouped_by_block(names: list[str], kept: list[float], whole: list[float], max_groups: int = MAX_LABELS) -> list[tuple[str, float]]:
    """``(block, kept / whole)`` with the names cut to the deepest common prefix depth giving at most ``max_groups`` blocks.

    ``names`` are dotted module paths; ``kept`` and ``whole`` their kept and full amounts (parameters or channels),
    summed within each block. Blocks keep their first appearance's order.
    """
    if not names:
        return []
    depth = max(name.count(".") + 1 for name in names)
    while True:
        blocks: dict[str, list[float]] = {}
        for name, k, w in zip(names, kept, whole):
            block = ".".join(name.split(".")[:depth]) or "(network)"
            total = blocks.setdefault(block, [0.0, 0.0])
            total[0] += k
            total[1] += w
        if len(blocks) <= max_groups or depth == 1:
            break
        depth -= 1
    if len(blocks) > max_groups:  # even the top level has too many: the rest in one bar
        items = list(blocks.items())
        rest = items[max_groups - 1:]
        blocks = dict(items[:max_groups - 1])
        blocks["(others)"] = [sum(v[0] for _, v in rest), sum(v[1] for _, v in rest)]
    return [(block, k / w if w else 1.0) for block, (k, w) in blocks.items()]


def _plots(report: dict[str, Any], out_dir: Path, force: bool) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if report.get("curve"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for method in sorted({p["method"] for p in report["curve"]}):
            pts = sorted((p["params"], p["psnr"]) for p in report["curve"] if p["method"] == method and p.get("psnr") is not None)
            if pts:
                ax.plot(*zip(*pts), marker="o", label=method)
        ax.axhline(report["psnr_before"], color="k", ls="--", lw=0.8, label="original")
        ax.set_xlabel("parameters")
        ax.set_ylabel("PSNR (dB)")
        ax.legend(fontsize=8)
        ax.set_title("quality vs size (before fine-tuning)")
        fig.tight_layout()
        _save_fig(fig, out_dir / "quality_vs_size.png", force)
        plt.close(fig)
        written.append("quality_vs_size.png")
    points = [(name, row["latency_ms"], row["psnr"]) for name, row in _rows(report)
              if row.get("latency_ms") is not None and row.get("psnr") is not None]
    if points:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, ms, psnr in points:
            ax.scatter(ms, psnr, marker="*" if "ours" in name else "o", s=80 if "ours" in name else 40)
            ax.annotate(name, (ms, psnr), textcoords="offset points", xytext=(4, 4), fontsize=7)
        size = report.get("latency_size", 512)
        height, width = (size, size) if isinstance(size, int) else size
        ax.set_xlabel(f"latency at {width}x{height} (ms, {report.get('latency_threads', '?')} thread(s))")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title("quality vs measured latency (after fine-tuning)")
        fig.tight_layout()
        _save_fig(fig, out_dir / "psnr_vs_latency.png", force)
        plt.close(fig)
        written.append("psnr_vs_latency.png")
    layers = report["plan"]["layers"]
    structured = report["plan"].get("structured") or []
    names = [layer["name"] for layer in layers] + [entry["module"] or "(network)" for entry in structured]
    kept = [layer["params"] for layer in layers] + [entry["channels"] for entry in structured]
    whole = [layer["dense_params"] for layer in layers] + [entry["of"] for entry in structured]
    bars = grouped_by_block(names, kept, whole)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * len(bars) + 1.5), 3.8))
    ax.bar(range(len(bars)), [value for _, value in bars])
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([block for block, _ in bars], rotation=90, fontsize=7)
    ax.set_ylabel("kept fraction" + (" (params; channels)" if structured else " of parameters"))
    ax.set_title("per-block choice (layers: report.md)")
    fig.tight_layout()
    _save_fig(fig, out_dir / "layer_ranks.png", force)
    plt.close(fig)
    written.append("layer_ranks.png")
    return written


def _save_fig(fig, path: Path, force: bool) -> None:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    write_atomic(path, lambda stream: stream.write(buffer.getvalue()), force=force)


def write_report(report: dict[str, Any], out_dir: str | os.PathLike, *, force: bool = False) -> list[str]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out_dir``; returns the file names."""
    out_dir = Path(out_dir)
    from sparsesel.result import jsonable

    write_text_atomic(out_dir / "report.json", json.dumps(jsonable(report), indent=1) + "\n", force=force)
    write_text_atomic(out_dir / "report.md", _markdown(report), force=force)
    return ["report.json", "report.md", *_plots(report, out_dir, force)]
