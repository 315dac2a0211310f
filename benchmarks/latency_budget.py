"""Benchmark of latency-budget plans (issue 19, items 1-2): structured options, predicted vs measured.

On the demo checkpoint (sparsesel/assets/uhdformer_lowlight.pt), for each thread count:

* the latency analysis at 512x512 (:func:`sparsesel.compress.latency_plan.analyze_latency`: every
  option timed in place at 256x256 and scaled by pixels, families timed together, the encoder
  width enumerated), with its build time;
* plans at 50 % and 25 % of the measured latency: predicted vs measured latency at 512x512
  (the original's best time plus each plan's paired, bracketed difference to it, median of
  ``--repeats``: :func:`sparsesel.compress.latency.time_deltas`; 1 thread: the thread's CPU time,
  robust to the other processes of a shared machine, and wall time too), MACs, parameters, the calibration
  output MSE (no fine-tuning), the kept widths, and where the time goes (stages: full-resolution
  encoder with the perception path, low-resolution CMT groups, tail);
* the scaling check: deltas of two structured options measured at 256x256 and at 512x512;
* with ``--finetune``: every plan fine-tuned as the demo does (60 distillation steps, batch 4,
  64x64 patches) and its PSNR on 24 held-out 128x128 patches against the original's;
* with ``--4k``: the original and the 50 % plan at 3840x2160, one pass each (wall time).

    python benchmarks/latency_budget.py [--threads 1,2] [--budgets 0.5,0.7,0.25] [--repeats 5] [--finetune] [--4k] [--out FILE]

Writes benchmarks/results/latency_budget.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

from sparsesel.compress.latency import time_deltas, time_networks
from sparsesel.compress.latency_plan import analyze_latency, apply_latency_plan, plan_latency
from sparsesel.compress.plan import model_macs
from sparsesel.compress.structured import shrink
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.nets import zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compressed_kernels import stages  # noqa: E402  (the same stage timing, on the thread's CPU clock here)

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "sparsesel" / "assets" / "uhdformer_lowlight.pt"
RESULTS = ROOT / "benchmarks" / "results" / "latency_budget.json"
SIZE = (512, 512)


def load() -> float:
    return os.getloadavg()[0]


def scaling(model, repeats: int) -> dict[str, dict[str, float]]:
    """Deltas of two structured options at 256² x 4 against 512² (1 thread, CPU time)."""
    variants = {"encoder 8": shrink(model, {("", "trunk_encoder"): 8}).eval(),
                "candidates 4": shrink(model, {(u, "candidates"): 4 for u in _matchers(model)}).eval()}
    out = {}
    for size in (256, 512):
        times = time_networks([model] + list(variants.values()), (size, size), repeats)
        for name, t in zip(variants, times[1:]):
            out.setdefault(name, {})[str(size)] = t - times[0]
    for name in out:
        out[name]["ratio_512_over_256"] = out[name]["512"] / out[name]["256"]
    return out


def _matchers(model) -> list[str]:
    from sparsesel.nets.uhdformer import DualCMT

    return [name for name, m in model.named_modules() if isinstance(m, DualCMT)]


def calibration_mse(model, network, calibration) -> float:
    with torch.no_grad():
        return float(((network(calibration) - model(calibration)) ** 2).mean())


def widths(plan) -> dict[str, object]:
    kinds = collections.defaultdict(list)
    for entry in plan.structured:
        kinds[entry["kind"]].append(f"{entry['channels']}/{entry['of']}")
    return {kind: dict(collections.Counter(v)) for kind, v in kinds.items()}


def finetuned_psnr(model, network, steps: int) -> dict[str, float]:
    from sparsesel.compress.finetune import FinetuneConfig, finetune
    from sparsesel.compress.report import evaluate_quality

    held_out = PairedPatchDataset("lowlight", split="test", patch_size=128, length=24, seed=1, augment=False)
    before = evaluate_quality(network, held_out)
    began = time.perf_counter()
    finetune(network.train(), model, FinetuneConfig(task="lowlight", steps=steps, batch_size=4, patch_size=64, lr=2e-4, seed=0), progress=False)
    network.eval()
    return {"psnr_original": evaluate_quality(model, held_out)["psnr"], "psnr_before_finetune": before["psnr"],
            "psnr_after_finetune": evaluate_quality(network, held_out)["psnr"], "finetune_seconds": time.perf_counter() - began}


def run_threads(model, calibration, threads: int, args) -> dict[str, object]:
    torch.set_num_threads(threads)
    began = time.perf_counter()
    analysis = analyze_latency(model, image_size=SIZE, threads=threads, calibration=calibration)
    build_s = time.perf_counter() - began
    print(f"[{threads} thread(s)] analysis {build_s:.0f} s ({analysis.info['timings']} timings, {analysis.info['timing_seconds']:.0f} s timing, "
          f"{analysis.info['cache_hits']} cached), load {load():.1f}", flush=True)
    torch.set_num_threads(threads)
    nets = {"original": model}
    rows: dict[str, dict[str, object]] = {"original": {"params": sum(p.numel() for p in model.parameters()), "macs": model_macs(model, SIZE),
                                                        "predicted_ms": analysis.bases[max(analysis.bases)]["ms"], "calibration_mse": 0.0}}
    plans = {}
    for budget in args.budgets:
        try:
            p = plan_latency(model, budget, image_size=SIZE, threads=threads, analysis=analysis, calibration=calibration)
        except ValueError as error:  # a budget below the fastest plan
            rows[f"latency {budget:.0%}"] = {"infeasible": str(error)}
            print(f"  latency {budget:.0%}: {error}", flush=True)
            continue
        net = apply_latency_plan(model, p).eval()
        name = f"latency {budget:.0%}"
        nets[name], plans[name] = net, p
        rows[name] = {"params": p.params_after, "macs": model_macs(net, SIZE), "predicted_ms": p.latency["predicted_ms"],
                      "calibration_mse": calibration_mse(model, net, calibration), "widths": net.widths, "groups": widths(p),
                      "factorized": [(layer.name, layer.factorization, layer.ranks) for layer in p.layers],
                      "encoder_candidates": p.solver["candidates"], "checks": p.latency["checks"], "fits_when_checked": p.latency["fits"]}
    torch.set_num_threads(threads)
    load_before = load()
    clock = "cpu" if threads == 1 else "wall"
    def paired(clock):
        base, deltas = time_deltas(model, list(nets.values())[1:], SIZE, args.repeats, clock=clock)
        return [base] + [base + d for d in deltas]

    measured = paired("auto")
    wall = paired("wall") if threads == 1 else measured
    timed = [(name, row) for name, row in rows.items() if "infeasible" not in row]
    for (name, row), ms, wall_ms in zip(timed, measured, wall):
        row.update(measured_ms=ms, wall_ms=wall_ms, speedup=measured[0] / ms, predicted_over_measured=row["predicted_ms"] / ms,
                   predicted_over_measured_relative=(row["predicted_ms"] / rows["original"]["predicted_ms"]) / (ms / measured[0]))
    result = {"threads": threads, "clock": clock, "analysis_seconds": build_s, "analysis": analysis.info, "load_before_timing": load_before,
              "load_after_timing": load(), "rows": rows}
    if threads == 1:
        result["stages_ms"] = stages(nets, torch.rand(1, 3, *SIZE), 3, clock=time.thread_time)
        result["scaling"] = scaling(model, 3)
    for name, row in timed:
        print(f"  {name:14s} params {row['params']:>7d}  GMAC {row['macs'] / 1e9:6.2f}  predicted {row['predicted_ms']:7.1f} ms  "
              f"measured {row['measured_ms']:7.1f} ms ({clock}; wall {row['wall_ms']:.1f})  x{row['speedup']:.2f}  "
              f"pred/meas {row['predicted_over_measured']:.3f}  cal MSE {row['calibration_mse']:.2e}", flush=True)
    if args.finetune and threads == args.threads[0]:
        for name in [n for n in nets if n != "original"]:
            rows[name]["finetune"] = finetuned_psnr(model, copy.deepcopy(nets[name]), args.finetune_steps)
            print(f"  {name} fine-tuned {args.finetune_steps} steps:", rows[name]["finetune"], flush=True)
    if args.four_k and threads == args.threads[0] and "latency 50%" in nets:
        result["4k_wall_ms"] = {name: time_networks([nets[name]], (2160, 3840), 1, clock="wall")[0] for name in ("original", "latency 50%")}
        print("  3840x2160:", result["4k_wall_ms"], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--budgets", default="0.5,0.7,0.25")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--finetune", action="store_true")
    parser.add_argument("--finetune-steps", type=int, default=60)
    parser.add_argument("--4k", dest="four_k", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"result file (default {RESULTS.relative_to(ROOT)})")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    args.budgets = [float(b) for b in args.budgets.split(",")]
    model, _ = zoo.load_net(CHECKPOINT)
    model.eval()
    calibration = PairedPatchDataset("lowlight", split="train", patch_size=64, length=4, seed=7).batch(range(4))["input"]
    results = {"checkpoint": CHECKPOINT.name, "size": list(SIZE), "load_start": load(), "torch": torch.__version__,
               "runs": [run_threads(model, calibration, t, args) for t in args.threads]}
    args.out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
