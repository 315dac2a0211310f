"""Benchmark of the channel selectors (issue 20): which channels a latency plan keeps.

On the demo checkpoint (sparsesel/assets/uhdformer_lowlight.pt), 512x512, 1 thread:

* one latency analysis and one plan per budget (:func:`sparsesel.compress.latency_plan.plan_latency`,
  magnitude errors, its measured latency checked): 50 % (a 2x speed-up) and 25 % (4x; when the
  knapsack cannot reach it, the fastest plan it offers, labelled with its measured speed-up).
  The plan fixes *how many* channels each group keeps, so every selector's network has the same
  layer shapes (checked) and the same latency;
* per selector (``sa++``, ``magnitude``, ``taylor``, ``random``) and seed: the channels chosen
  (:func:`sparsesel.compress.selectors.select_channels`), the network shrunk, then distilled for
  the rest of the same step budget (``--steps``, 60 as the demo: batch 4, 64x64 patches, lr 2e-4;
  SA++ spends ``--sapp-steps`` of them selecting, with its trained weights kept, so every selector
  gets the same number of distillation steps) and its PSNR on 24 held-out 128x128 patches.
  The seed sets the fine-tuning's patches, Taylor's calibration patches, SA++'s patches and the
  random order.

Prints per seed the PSNRs and SA++ minus magnitude and minus Taylor (goal: >= 0.3 dB at 2x with
every seed).  Writes benchmarks/results/compress_selectors.json and .png (or ``--out``).

    python benchmarks/compress_selectors.py [--seeds 0,1,2] [--steps 60] [--sapp-steps 30] [--budgets 0.5,0.25]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparsesel.compress.finetune import FinetuneConfig, finetune
from sparsesel.compress.latency_plan import analyze_latency, apply_latency_plan, fastest_ms, plan_latency
from sparsesel.compress.report import evaluate_quality
from sparsesel.compress.sapp_channels import SappChannelConfig
from sparsesel.compress.selectors import SELECTORS, select_channels
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.nets import zoo

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "sparsesel" / "assets" / "uhdformer_lowlight.pt"
RESULTS = ROOT / "benchmarks" / "results" / "compress_selectors.json"
SIZE = (512, 512)


def plans(model, calibration, budgets: list[float], saved: dict[str, Any]) -> dict[str, Any]:
    """One checked latency plan per budget (the fastest offered plan when a budget is out of reach);
    ``saved``: plans of earlier runs by budget (``Plan.to_dict()``), reused as they are."""
    from sparsesel.compress.plan import Plan

    out = {}
    for budget in [b for b in budgets if f"{b:g}" in saved]:
        plan = Plan.from_dict(saved[f"{budget:g}"])
        speedup = plan.latency["dense_ms"] / plan.latency["measured_ms"]
        out[f"{budget:g}"] = {"plan": plan, "speedup": speedup, "note": plan.latency.get("note")}
        print(f"budget {budget:g}: saved plan, measured {plan.latency['measured_ms']:.1f} of {plan.latency['dense_ms']:.1f} ms (x{speedup:.2f})")
    budgets = [b for b in budgets if f"{b:g}" not in saved]
    if not budgets:
        return out
    analysis = analyze_latency(model, image_size=SIZE, threads=1, calibration=calibration)
    dense_ms = analysis.bases[max(analysis.bases)]["ms"]
    for budget in budgets:
        note = None
        try:
            plan = plan_latency(model, budget, image_size=SIZE, threads=1, analysis=analysis, calibration=calibration)
        except ValueError as error:
            reachable = round(min(1.0, 1.02 * fastest_ms(analysis) / dense_ms), 3)
            note = f"{error}; planned at {reachable} instead"
            plan = plan_latency(model, reachable, image_size=SIZE, threads=1, analysis=analysis, calibration=calibration)
        speedup = plan.latency["dense_ms"] / plan.latency["measured_ms"] if plan.latency.get("measured_ms") else None
        plan.latency["note"] = note
        out[f"{budget:g}"] = {"plan": plan, "speedup": speedup, "note": note}
        print(f"budget {budget:g}: measured {plan.latency.get('measured_ms'):.1f} of {dense_ms:.1f} ms (x{speedup:.2f})"
              + (f" [{note}]" if note else ""), flush=True)
    return out


def run_one(model, plan, name: str, seed: int, args, held_out) -> dict[str, Any]:
    """Select, shrink, distil for the rest of the budget; PSNR before and after."""
    began = time.perf_counter()
    config = FinetuneConfig(task="lowlight", steps=args.steps, batch_size=4, patch_size=64, lr=2e-4, seed=seed)
    counts = {(e["module"], e["kind"]): int(e["channels"]) for e in plan.structured}
    sapp = SappChannelConfig(steps=args.sapp_steps, n_cycles=args.sapp_cycles, logit_lr=args.logit_lr, temperature=args.temperature,
                             score=args.score)
    selection = select_channels(name, model, counts, finetune=config, seed=seed, sapp=sapp)
    network = apply_latency_plan(selection.network, plan, selector=selection.selector).eval()
    before = evaluate_quality(network, held_out)["psnr"]
    remaining = FinetuneConfig(task="lowlight", steps=args.steps - selection.steps, batch_size=4, patch_size=64, lr=2e-4, seed=seed)
    finetune(network.train(), model, remaining, progress=False)
    after = evaluate_quality(network.eval(), held_out)["psnr"]
    shapes = [list(p.shape) for p in network.parameters()]
    return {"psnr_before_finetune": before, "psnr": after, "selection_steps": selection.steps,
            "finetune_steps": remaining.steps, "seconds": time.perf_counter() - began, "shapes": shapes}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = list(results["budgets"])
    fig, axes = plt.subplots(1, len(budgets), figsize=(5 * len(budgets), 3.6), squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        entry = results["budgets"][budget]
        for i, name in enumerate(SELECTORS):
            values = [entry["runs"][name][str(s)]["psnr"] for s in results["seeds"]]
            ax.bar(i, float(np.mean(values)), color="0.8")
            ax.plot([i] * len(values), values, "k.")
        ax.axhline(results["psnr_original"], color="tab:red", lw=1, label="original")
        ax.set_xticks(range(len(SELECTORS)), list(SELECTORS))
        lows = [entry["runs"][n][str(s)]["psnr"] for n in SELECTORS for s in results["seeds"]]
        ax.set_ylim(min(lows) - 1.0, results["psnr_original"] + 0.5)
        label = f"latency budget {budget}" if not entry.get("note") else f"fastest plan ({budget} out of reach)"
        ax.set_title(f"{label}, x{entry['speedup']:.2f} measured")
        ax.set_ylabel(f"PSNR after {results['steps']} distillation steps (dB)")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=60, help="distillation steps per run, selection included (default 60)")
    parser.add_argument("--sapp-steps", type=int, default=30, help="of which SA++ spends selecting (default 30)")
    parser.add_argument("--sapp-cycles", type=int, default=2)
    parser.add_argument("--logit-lr", type=float, default=0.2)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--score", default="effective", choices=("effective", "attention"))
    parser.add_argument("--budgets", default="0.5,0.25")
    parser.add_argument("--selectors", default=",".join(SELECTORS))
    parser.add_argument("--plans", type=Path, default=None,
                        help="JSON {budget: plan} of an earlier run to reuse (default: plan, and save them to <out>.plans.json)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"result file (default {RESULTS.relative_to(ROOT)}; a .png beside it)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    names = [n for n in args.selectors.split(",")]
    torch.set_num_threads(1)
    model, _ = zoo.load_net(CHECKPOINT)
    model.eval()
    calibration = PairedPatchDataset("lowlight", split="train", patch_size=64, length=4, seed=7).batch(range(4))["input"]
    held_out = PairedPatchDataset("lowlight", split="test", patch_size=128, length=24, seed=1, augment=False)
    results: dict[str, Any] = {"checkpoint": CHECKPOINT.name, "size": list(SIZE), "threads": 1, "steps": args.steps, "seeds": seeds,
                               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "out"}, "load_start": os.getloadavg()[0],
                               "psnr_original": evaluate_quality(model, held_out)["psnr"], "budgets": {}}
    saved = json.loads(args.plans.read_text()) if args.plans is not None else {}
    planned_all = plans(model, calibration, [float(b) for b in args.budgets.split(",")], saved)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".plans.json").write_text(json.dumps({b: p["plan"].to_dict() for b, p in planned_all.items()}, indent=1) + "\n")
    for budget, planned in planned_all.items():
        plan = planned["plan"]
        entry = {"speedup": planned["speedup"], "note": planned["note"], "measured_ms": plan.latency.get("measured_ms"),
                 "dense_ms": plan.latency["dense_ms"], "params": plan.params_after, "structured": plan.structured, "runs": {}}
        for seed in seeds:
            for name in names:
                run = run_one(model, plan, name, seed, args, held_out)
                entry["runs"].setdefault(name, {})[str(seed)] = run
                print(f"  x{planned['speedup']:.2f} seed {seed} {name:9s} PSNR {run['psnr']:.2f} dB (before fine-tune "
                      f"{run['psnr_before_finetune']:.2f}; {run['seconds']:.0f} s)", flush=True)
        shapes = {json.dumps(entry["runs"][n][str(s)].pop("shapes")) for n in names for s in seeds}
        entry["same_shapes"] = len(shapes) == 1
        if "sa++" in names:
            entry["sapp_minus"] = {other: {str(s): entry["runs"]["sa++"][str(s)]["psnr"] - entry["runs"][other][str(s)]["psnr"] for s in seeds}
                                   for other in names if other != "sa++"}
            for other, diffs in entry["sapp_minus"].items():
                print(f"  x{planned['speedup']:.2f} sa++ minus {other}: " + ", ".join(f"seed {s} {d:+.2f}" for s, d in diffs.items()), flush=True)
        results["budgets"][budget] = entry
    results["load_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    if set(SELECTORS) <= set(names):
        plot(results, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()
