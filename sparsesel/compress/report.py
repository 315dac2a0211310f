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

__all__ = ["evaluate_quality", "latency_ms", "measure", "write_report"]


def _predict(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The network's image for ``batch``, any size (its adapter's ``restore``), clamped to [0, 1]."""
    with torch.inference_mode():
        return adapter_for(model).restore(model, batch).clamp(0, 1)


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


def _markdown(report: dict[str, Any]) -> str:
    rows = [("original", report["params_before"], report["psnr_before"], report["ssim_before"], report.get("latency_ms_before")),
            (f"{report['method']} (ours)", report["params_after"], report["psnr_after"], report["ssim_after"], report.get("latency_ms_after"))]
    for name, b in report["baselines"].items():
        rows.append((name, b.get("params"), b.get("psnr"), b.get("ssim"), b.get("latency_ms")))
    fmt = lambda v, p: "–" if v is None else (f"{v:.{p}f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"# Compression report ({report['method']}, budget {report['budget']})", "",
             "| network | params | PSNR (dB) | SSIM | latency 512² (ms) | note |", "|---|---|---|---|---|---|"]
    for name, params, psnr, ssim, lat in rows:
        note = report["baselines"].get(name, {}).get("error", "") if name in report["baselines"] else ""
        lines.append(f"| {name} | {fmt(params, 0)} | {fmt(psnr, 3)} | {fmt(ssim, 4)} | {fmt(lat, 1)} | {note} |")
    if report.get("curve"):
        lines += ["", "## Quality vs size (no fine-tuning)", "", "| method | budget | params | PSNR | SSIM |", "|---|---|---|---|---|"]
        for point in report["curve"]:
            lines.append(f"| {point['method']} | {point['budget']} | {point.get('params', '–')} | {fmt(point.get('psnr'), 3)} | {fmt(point.get('ssim'), 4)} |")
    lines += ["", "## Per-layer choice", "", "| layer | shape | factorization | ranks | params |", "|---|---|---|---|---|"]
    for layer in report["plan"]["layers"]:
        lines.append(f"| {layer['name']} | {layer['shape']} | {layer['factorization']} | {layer['ranks'] or ''} | {layer['dense_params']} → {layer['params']} |")
    return "\n".join(lines) + "\n"


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
    layers = report["plan"]["layers"]
    fig, ax = plt.subplots(figsize=(max(5, 0.18 * len(layers)), 3.5))
    kept = [layer["params"] / max(layer["dense_params"], 1) for layer in layers]
    ax.bar(range(len(layers)), kept)
    ax.set_xticks(range(len(layers)))
    ax.set_xticklabels([layer["name"] for layer in layers], rotation=90, fontsize=5)
    ax.set_ylabel("kept parameter fraction")
    ax.set_title("per-layer choice (labels: ranks in report.md)")
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
