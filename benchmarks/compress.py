"""Benchmark of ``sparsesel compress`` (issue 19 goals; with ``--cost params`` the earlier parameter-budget comparison).

``--cost latency`` (default), on the demo checkpoint:

* ours: the latency plan (:func:`sparsesel.compress.latency_plan.plan_latency`) at each budget
  (default 50 % and 25 %) of the original's latency measured at 512x512 with 1 thread;
* baselines at *equal measured latency*: uniform fraction, energy share and global channel magnitude,
  each bisected to ours' measured latency (:mod:`sparsesel.compress.latency_baselines`); where
  ours has no plan (budget below its fastest plan) the baselines are matched to the budget itself;
* every row measured side by side in one process: latencies at 512x512 interleaved, best of
  ``--repeats`` (5), with 1 thread (the thread's CPU time, robust to the other processes of a shared
  machine) and 2 threads (wall time); at 3840x2160 one pass per network in a fresh process
  (1 thread: CPU time; 2 threads: wall time; peak memory = growth of ``ru_maxrss`` during the pass);
* PSNR on 24 held-out 128x128 patches after the demo's fine-tune (60 distillation steps, batch 4,
  64x64 patches, the demo's learning rate under a latency budget, 2e-3), each network with ``--seeds`` (3)
  fine-tuning seeds;
* ratios against the original measured in the same run, and the goals of issue 19.

``--selectors`` runs ``benchmarks/compress_selectors.py``'s ``main()`` (issue 20) instead.

    python benchmarks/compress.py [--budgets 0.5,0.25] [--seeds 3] [--repeats 5] [--no-4k] [--quick] [--selectors]
    python benchmarks/compress.py --cost params [--budgets 0.5,0.33,0.25] [--seeds 3]

Writes benchmarks/results/compress_latency[_quick].json and .png (``--cost params``: compress[_quick].json and .png).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sparsesel.commands.compress import DEMO_CHECKPOINT
from sparsesel.compress.finetune import FinetuneConfig, finetune
from sparsesel.compress.pipeline import compress_model
from sparsesel.compress.report import measure
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.nets import zoo

METHODS = ("packing", "uniform", "energy", "magnitude")


def check_goals(rows: list[dict], original: dict) -> list[str]:
    """The issue's goals: at 50% a PSNR loss <= 0.3 dB, and packing above every baseline at 50% and 25%."""
    lines = []
    for budget in sorted({r["budget"] for r in rows}, reverse=True):
        ours = next((r for r in rows if r["budget"] == budget and r["method"] == "packing" and "psnr" in r), None)
        if ours is None:
            lines.append(f"goal at {budget:.0%}: packing failed")
            continue
        if budget == 0.5:
            loss = original["psnr"] - ours["psnr"]
            lines.append(f"goal PSNR loss <= 0.3 dB at 50%: loss {loss:+.3f} dB -> {'met' if loss <= 0.3 else 'MISSED'}")
        for r in rows:
            if r["budget"] != budget or r["method"] == "packing":
                continue
            if "psnr" not in r:
                lines.append(f"goal packing > {r['method']} at {budget:.0%}: baseline failed ({r['error'][:60]})")
                continue
            won = ours["psnr"] > r["psnr"]
            seeds = sum(a > b for a, b in zip(ours["psnr_seeds"], r["psnr_seeds"]))
            lines.append(f"goal packing > {r['method']} at {budget:.0%}: PSNR {ours['psnr'] - r['psnr']:+.3f} dB "
                         f"(ahead with {seeds}/{len(ours['psnr_seeds'])} seeds), SSIM {ours['ssim'] - r['ssim']:+.4f} -> {'met' if won else 'MISSED'}")
    return lines


def params_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", default="params")
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--budgets", default="0.5,0.33,0.25",
                        help="0.33: just above the 32.4%% floor of magnitude pruning on the demo UHDformer")
    parser.add_argument("--eval-count", type=int, default=24,
                        help="held-out 128x128 patches (6 patches gave +-1 dB noise between methods)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="fine-tuning seeds per model; PSNR/SSIM are their means")
    parser.add_argument("--quick", action="store_true", help="8 steps, 2 eval patches, no latency")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        raise SystemExit(f"checkpoint {args.checkpoint} not found (the demo asset is not installed yet?); pass --checkpoint")
    torch.set_num_threads(args.threads)
    steps, count, repeats = (8, 2, 0) if args.quick else (args.steps, args.eval_count, 3)
    teacher, info = zoo.load_net(args.checkpoint)
    held_out = PairedPatchDataset("lowlight", split="test", patch_size=128, length=count, seed=1, augment=False)
    began = time.perf_counter()
    original = measure(teacher, held_out, repeats=repeats)
    rows, analysis = [], None
    budgets = [float(b) for b in args.budgets.split(",")]
    config = FinetuneConfig(steps=steps, batch_size=4, patch_size=64, lr=2e-4, seed=0)
    for budget in budgets:
        for method in tqdm(METHODS, desc=f"budget {budget}"):
            row = {"budget": budget, "method": method}
            try:
                t0 = time.perf_counter()
                model, p, analysis_new = compress_model(teacher, budget, method=method, analysis=analysis)
                analysis = analysis or analysis_new
                row["plan_s"] = time.perf_counter() - t0
                row.update({f"{k}_no_ft": v for k, v in measure(model, held_out, repeats=0).items() if k in ("psnr", "ssim")})
                tuned = []
                for seed in range(args.seeds):  # fine-tuning seeds: batch order and augmentation
                    student = copy.deepcopy(model)
                    if steps:
                        finetune(student, teacher, dataclasses.replace(config, seed=seed), progress=False)
                    tuned.append(measure(student, held_out, repeats=repeats if seed == 0 else 0))
                row.update(tuned[0])
                for key in ("psnr", "ssim"):
                    values = [t[key] for t in tuned]
                    row[f"{key}_seeds"] = values
                    row[key] = float(np.mean(values))
                    row[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            except ValueError as exc:
                row["error"] = str(exc)
            rows.append(row)
    wall = time.perf_counter() - began
    print(f"\ncheckpoint {args.checkpoint} ({info['net']}, {original['params']} params); {steps} fine-tuning steps per model; "
          f"torch threads {torch.get_num_threads()}; latency at 512x512, median of 3 after 1 warm-up run")
    print(f"original: PSNR {original['psnr']:.3f} dB, SSIM {original['ssim']:.4f}, latency {original['latency_ms'] or float('nan'):.1f} ms")
    header = f"{'budget':>6} {'method':>10} {'params':>8} {'PSNR no-FT':>10} {'PSNR ± sd':>14} {'dPSNR':>7} {'SSIM':>7} {'lat ms':>8}  vs packing"
    print(header)
    for row in rows:
        if "error" in row:
            print(f"{row['budget']:>6} {row['method']:>10}  failed: {row['error'][:90]}")
            continue
        ours = next(r for r in rows if r["budget"] == row["budget"] and r["method"] == "packing")
        ratio = "" if row["method"] == "packing" or "psnr" not in ours else f"packing {ours['psnr'] - row['psnr']:+.2f} dB, params ratio {ours['params'] / row['params']:.3f}"
        lat = row.get("latency_ms")
        print(f"{row['budget']:>6} {row['method']:>10} {row['params']:>8} {row['psnr_no_ft']:>10.3f} {row['psnr']:>8.3f}±{row['psnr_sd']:.3f} "
              f"{row['psnr'] - original['psnr']:>+7.3f} {row['ssim']:>7.4f} {(lat if lat else float('nan')):>8.1f}  {ratio}")
    print(f"total {wall:.0f} s")
    goals = check_goals(rows, original)
    for line in goals:
        print(line)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    name = "compress_quick" if args.quick else "compress"
    (out / f"{name}.json").write_text(json.dumps({"checkpoint": str(args.checkpoint), "steps": steps, "original": original,
                                                  "rows": rows, "goals": goals,
                                                  "eval_count": count, "wall_time_s": wall}, indent=1, default=str) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method in METHODS:
        pts = sorted((r["params"], r["psnr"]) for r in rows if r["method"] == method and "psnr" in r)
        if pts:
            ax.plot(*zip(*pts), marker="o", label=method)
    ax.axhline(original["psnr"], color="k", ls="--", lw=0.8, label="original")
    ax.set_xlabel("parameters")
    ax.set_ylabel("PSNR after fine-tuning (dB)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=120)
    print(f"wrote {out / name}.json and .png")


LATENCY_RULES = ("uniform", "energy", "magnitude")
SIZE = (512, 512)
FOUR_K = (2160, 3840)


def _ours(teacher, budget: float, analysis, calibration, reach_fastest: bool = False):
    """(network or None, record) of the latency plan at ``budget``."""
    from sparsesel.compress.latency_plan import apply_latency_plan, plan_latency

    try:
        p = plan_latency(teacher, budget, image_size=SIZE, threads=1, analysis=analysis, calibration=calibration)
    except ValueError as exc:
        if not reach_fastest:
            return None, {"error": str(exc)}
        from sparsesel.budget import Budget
        from sparsesel.compress.pipeline import fastest_plan

        p = fastest_plan(teacher, Budget.coerce(budget, "latency"), exc, image_size=SIZE, threads=1, calibration=calibration,
                         analysis=analysis)
    return apply_latency_plan(teacher, p).eval(), {"plan_measured_ratio": p.latency["measured_ms"] / p.latency["dense_ms"],
                                                   "fits": p.latency["fits"], "widths": None, "structured": p.structured,
                                                   "factorized": [(l.name, l.factorization, l.ranks) for l in p.layers],
                                                   "requested_note": p.latency.get("requested_note")}


def _latencies(nets: dict, repeats: int, four_k: bool) -> dict[str, dict]:
    """Per network: 512x512 best-of ms at 1 thread (CPU time) and 2 threads (wall), interleaved; 4K passes."""
    from sparsesel.compress.footprint import one_pass_footprint
    from sparsesel.compress.latency import time_networks

    out = {name: {} for name in nets}
    for threads, clock in ((1, "cpu"), (2, "wall")):
        torch.set_num_threads(threads)
        for name, ms in zip(nets, time_networks(list(nets.values()), SIZE, repeats, clock=clock)):
            out[name][f"ms_512_t{threads}"] = ms
        if four_k:
            for name, net in nets.items():
                found = one_pass_footprint(net, size=FOUR_K, threads=threads, net="uhdformer")
                out[name][f"ms_4k_t{threads}"] = found.get("cpu_ms" if threads == 1 else "ms")
                out[name][f"peak_mib_4k_t{threads}"] = found.get("peak_mib")
                if "error" in found:
                    out[name][f"error_4k_t{threads}"] = found["error"]
    torch.set_num_threads(1)
    return out


def _tuned_psnr(teacher, nets: dict, seeds: int, steps: int, held_out, lr: float) -> dict[str, list[float]]:
    """PSNR after the demo's fine-tune, per network and seed (two worker processes)."""
    from sparsesel.compress.finetune import finetune_several
    from sparsesel.compress.report import evaluate_quality

    jobs = [(name, seed) for name in nets for seed in range(seeds)]
    students = [copy.deepcopy(nets[name]) for name, _ in jobs]
    torch.set_num_threads(2)
    out: dict[str, list[float]] = {name: [] for name in nets}
    for seed in range(seeds):  # finetune_several takes one config: one call per seed
        picked = [i for i, (_, s) in enumerate(jobs) if s == seed]
        config = FinetuneConfig(steps=steps, batch_size=4, patch_size=64, lr=lr, seed=seed)
        if steps:
            finetune_several([students[i] for i in picked], teacher, config, options=[{"progress": False} for _ in picked])
    torch.set_num_threads(1)
    for (name, _), student in zip(jobs, students):
        out[name].append(evaluate_quality(student.eval(), held_out)["psnr"])
    return out


def _goals(budget: float, rows: dict, original: dict) -> list[str]:
    ours = rows.get("ours")
    lines = []
    if ours is None or "psnr_mean" not in ours:
        return [f"{budget:.0%}: no plan of ours ({rows.get('ours_error', '')[:100]})"]
    if budget == 0.5:
        for key, label in (("ms_512_t1", "512x512, 1 thread"), ("ms_512_t2", "512x512, 2 threads"),
                           ("ms_4k_t1", "3840x2160, 1 thread"), ("ms_4k_t2", "3840x2160, 2 threads")):
            if ours.get(key) and original.get(key):
                speed = original[key] / ours[key]
                lines.append(f"50%: >= 2x faster at {label}: {speed:.2f}x -> {'met' if speed >= 2 else 'MISSED'}")
        for threads in (1, 2):
            key = f"peak_mib_4k_t{threads}"
            if ours.get(key) and original.get(key):
                ratio = ours[key] / original[key]
                lines.append(f"50%: 4K peak memory <= 0.6x ({threads} thread(s)): {ratio:.2f}x -> {'met' if ratio <= 0.6 else 'MISSED'}")
        loss = original["psnr"] - ours["psnr_mean"]
        lines.append(f"50%: PSNR loss <= 0.3 dB after the demo fine-tune: {loss:+.3f} dB -> {'met' if loss <= 0.3 else 'MISSED'}")
    for name in LATENCY_RULES:
        row = rows.get(name)
        if row is None or "psnr_seeds" not in row:
            continue
        leads = [a - b for a, b in zip(ours["psnr_seeds"], row["psnr_seeds"])]
        met = all(lead >= 0.5 for lead in leads)
        lines.append(f"{budget:.0%}: >= 0.5 dB ahead of {name} at equal latency (ours {ours.get('ms_512_t1', 0):.0f} ms, "
                     f"{name} {row.get('ms_512_t1', 0):.0f} ms) with each seed: leads {', '.join(f'{v:+.2f}' for v in leads)} dB "
                     f"-> {'met' if met else 'MISSED'}")
    return lines


def latency_main(argv: list[str] | None = None) -> None:
    """The issue-19 benchmark (see the module docstring)."""
    from sparsesel.compress.latency_baselines import match_latency
    from sparsesel.compress.latency_plan import analyze_latency
    from sparsesel.compress.plan import model_macs
    from sparsesel.compress.report import evaluate_quality

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost", default="latency")
    parser.add_argument("--checkpoint", type=Path, default=DEMO_CHECKPOINT)
    parser.add_argument("--budgets", default="0.5,0.25")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--lr", type=float, default=None, help="fine-tuning learning rate (default: the demo's, default_lr('latency'))")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--eval-count", type=int, default=24)
    parser.add_argument("--no-4k", dest="four_k", action="store_false")
    parser.add_argument("--reach-fastest", action="store_true",
                        help="a budget below ours' fastest plan: ours at its fastest plan (as the demo does); baselines matched to it")
    parser.add_argument("--quick", action="store_true", help="1 seed, 4 steps, 4 eval patches, 2 repeats, no 4K")
    args = parser.parse_args(argv)
    from sparsesel.compress.pipeline import default_lr

    args.lr = default_lr("latency") if args.lr is None else args.lr
    if args.quick:
        args.seeds, args.steps, args.eval_count, args.repeats, args.four_k = 1, 4, 4, 2, False
    began = time.perf_counter()
    torch.set_num_threads(1)
    teacher, info = zoo.load_net(args.checkpoint)
    teacher.eval()
    held_out = PairedPatchDataset("lowlight", split="test", patch_size=128, length=args.eval_count, seed=1, augment=False)
    calibration = PairedPatchDataset("lowlight", split="train", patch_size=64, length=4, seed=7).batch(range(4))["input"]
    t0 = time.perf_counter()
    analysis = analyze_latency(teacher, image_size=SIZE, threads=1, calibration=calibration, progress=True)
    analysis_s = time.perf_counter() - t0
    print(f"latency analysis at 512x512, 1 thread: {analysis_s:.0f} s ({analysis.info['timings']} timings, "
          f"{analysis.info['cache_hits']} cached)", flush=True)
    original_psnr = evaluate_quality(teacher, held_out)["psnr"]
    results = {"checkpoint": str(args.checkpoint), "size": list(SIZE), "four_k": list(FOUR_K) if args.four_k else None,
               "steps": args.steps, "lr": args.lr, "seeds": args.seeds, "repeats": args.repeats, "eval_count": args.eval_count,
               "analysis_s": analysis_s, "analysis": analysis.info, "load_start": os.getloadavg()[0], "budgets": {}}
    for budget in [float(b) for b in args.budgets.split(",")]:
        print(f"--- latency budget {budget:.0%}", flush=True)
        torch.set_num_threads(1)
        ours, record = _ours(teacher, budget, analysis, calibration, reach_fastest=args.reach_fastest)
        target = record.get("plan_measured_ratio", budget)
        nets = {"original": teacher, **({"ours": ours} if ours is not None else {})}
        rows: dict[str, dict] = {"ours_plan": record}
        if ours is None:
            rows["ours_error"] = record["error"]
            print(f"  ours: {record['error']}", flush=True)
        for rule in LATENCY_RULES:
            network, match = match_latency(teacher, rule, min(1.0, target), size=(256, 256))
            nets[rule] = network.eval()
            rows[f"{rule}_match"] = match
        timed = _latencies(nets, args.repeats, args.four_k and budget == 0.5)
        psnrs = _tuned_psnr(teacher, {k: v for k, v in nets.items() if k != "original"}, args.seeds, args.steps, held_out, args.lr)
        for name, net in nets.items():
            row = {"params": sum(p.numel() for p in net.parameters()), "macs_512": model_macs(net, SIZE), **timed[name]}
            if name == "original":
                row["psnr"] = original_psnr
            else:
                row.update(psnr_seeds=psnrs[name], psnr_mean=float(np.mean(psnrs[name])))
            rows[name] = row
        original = rows["original"]
        for name in nets:
            for key in [k for k in rows[name] if k.startswith("ms_") and rows[name][k]]:
                rows[name][f"speedup_{key[3:]}"] = original[key] / rows[name][key]
            for key in [k for k in rows[name] if k.startswith("peak_mib") and rows[name][k]]:
                rows[name][f"ratio_{key}"] = rows[name][key] / original[key] if original.get(key) else None
        goals = _goals(budget, rows, original)
        results["budgets"][str(budget)] = {"rows": rows, "goals": goals}
        print(f"  {'network':10s} {'params':>7s} {'GMAC':>6s} {'ms 1t':>7s} {'x':>5s} {'ms 2t':>7s} {'x':>5s} {'4K ms 1t':>9s} "
              f"{'4K MiB':>7s} {'PSNR (mean of seeds)':>22s}")
        for name in nets:
            r = rows[name]
            psnr = r.get("psnr", r.get("psnr_mean"))
            print(f"  {name:10s} {r['params']:7d} {r['macs_512'] / 1e9:6.2f} {r['ms_512_t1']:7.1f} {r.get('speedup_512_t1', 1):5.2f} "
                  f"{r['ms_512_t2']:7.1f} {r.get('speedup_512_t2', 1):5.2f} {r.get('ms_4k_t1') or float('nan'):9.0f} "
                  f"{r.get('peak_mib_4k_t1') or float('nan'):7.0f} {psnr:10.3f} {r.get('psnr_seeds', '')}", flush=True)
        for line in goals:
            print("  goal", line, flush=True)
    results["wall_time_s"] = time.perf_counter() - began
    out = Path(__file__).parent / "results"
    name = "compress_latency_quick" if args.quick else "compress_latency"
    (out / f"{name}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    _latency_plot(results, out / f"{name}.png")
    print(f"wrote {out / name}.json and .png ({results['wall_time_s']:.0f} s)")


def _latency_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    markers = {"ours": "*", "uniform": "o", "energy": "s", "magnitude": "^", "original": "D"}
    for budget, block in results["budgets"].items():
        for name, marker in markers.items():
            row = block["rows"].get(name)
            if not row or "ms_512_t1" not in row:
                continue
            seeds = row.get("psnr_seeds") or [row["psnr"]]
            ax.errorbar(row["ms_512_t1"], np.mean(seeds), yerr=np.std(seeds) if len(seeds) > 1 else None, marker=marker,
                        ms=10 if name == "ours" else 6, ls="none", label=f"{name} ({float(budget):.0%})" if name != "original" else name)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7)
    ax.set_xlabel("latency at 512x512 (ms, 1 thread, CPU time)")
    ax.set_ylabel("PSNR after the demo fine-tune (dB)")
    ax.set_title("equal measured latency: ours vs channel rules")
    fig.tight_layout()
    fig.savefig(path, dpi=120)

SELECTORS = Path(__file__).resolve().parent / "compress_selectors.py"


def run_selectors(argv: list[str]) -> None:
    """``benchmarks/compress_selectors.py``'s ``main`` (issue 20), imported by path."""
    import importlib.util
    import sys

    if not SELECTORS.is_file():
        raise SystemExit(f"--selectors runs {SELECTORS}, which does not exist yet (issue 20 adds it)")
    spec = importlib.util.spec_from_file_location("compress_selectors", SELECTORS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "main"):
        raise SystemExit(f"{SELECTORS} has no main() to run")
    sys.argv = [str(SELECTORS), *argv]
    module.main()


def main() -> None:
    import sys

    argv = sys.argv[1:]
    if "--selectors" in argv:
        run_selectors([a for a in argv if a != "--selectors"])
    elif "--cost" in argv and argv[argv.index("--cost") + 1:argv.index("--cost") + 2] == ["params"]:
        params_main(argv)
    else:
        latency_main(argv)


if __name__ == "__main__":
    main()
