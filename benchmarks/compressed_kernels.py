"""Benchmark of the compressed kernels (issue 19, item 3): is the compressed network faster?

Rows, all in one process and timed side by side (interleaved, best of ``--repeats``):

* ``original`` -- the demo checkpoint (sparsesel/assets/uhdformer_lowlight.pt);
* ``packing`` -- ``sparsesel.compress.plan(model, 0.5)`` + ``apply`` (50 % of the parameters);
* ``deployed`` -- ``sparsesel.compress.deploy(packing, refold="auto")`` (each factorized layer in
  its faster form, measured at 512²);
* ``channels`` -- block-internal channel widths pruned by L2 magnitude to 50 % of the parameters
  (sparsesel.compress.channel_pruning), to see what the full-resolution work scales with.

Printed: MACs, milliseconds at 1 and 2 threads, ratios to the original, the profiler's count of
``aten::_slow_conv2d_forward`` calls, the time of the planned layers alone (on the inputs they get
in the network) against their MACs, and the goal "latency falls at least in proportion to the MACs
of the layers compressed": ``T_original - T_deployed >= T_layers * (1 - MACs_layers' / MACs_layers)``.
At 3840x2160 each network runs once in a fresh subprocess (fewest threads) for its time and peak memory
(``ru_maxrss`` growth during the forward pass).

    python benchmarks/compressed_kernels.py [--sizes 512,1024] [--threads 1,2] [--repeats 5] [--no-4k]

Writes benchmarks/results/compressed_kernels.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from sparsesel.budget import Budget
from sparsesel.compress import apply, deploy, plan, save_compressed
from sparsesel.compress.channel_pruning import magnitude_prune_uhdformer
from sparsesel.compress.deploy import recorded_inputs, time_calls
from sparsesel.compress.plan import model_macs
from sparsesel.nets import zoo

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "sparsesel" / "assets" / "uhdformer_lowlight.pt"
RESULTS = ROOT / "benchmarks" / "results" / "compressed_kernels.json"


def build(checkpoint: Path, budget: Budget) -> tuple[dict[str, nn.Module], list[str]]:
    """The four networks and the names of the layers the plan factorized."""
    model, _ = zoo.load_net(checkpoint)
    model.eval()
    plan_ = plan(model, budget)
    packing = apply(model, plan_).eval()
    deployed = deploy(packing, refold="auto", example_size=(512, 512), device="cpu")
    params = sum(p.numel() for p in model.parameters())
    channels, _ = magnitude_prune_uhdformer(model, budget.resolve(params))
    names = [layer.name for layer in plan_.layers if layer.factorization != "dense"]
    print("deploy decisions:", ", ".join(f"{e['name']}={e['form']} ({e['ms_factorized']:.2f} vs {e['ms_dense']:.2f} ms)"
                                         for e in deployed.deploy_report if e["ms_dense"] is not None))
    return {"original": model, "packing": packing, "deployed": deployed, "channels": channels.eval()}, names


def race(nets: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Best-of-``repeats`` wall milliseconds per network, interleaved."""
    best = {name: float("inf") for name in nets}
    with torch.inference_mode():
        for net in nets.values():
            net(x)
        for _ in range(repeats):
            for name, net in nets.items():
                start = time.perf_counter()
                net(x)
                best[name] = min(best[name], time.perf_counter() - start)
    return {name: t * 1e3 for name, t in best.items()}


def stages(nets: dict[str, nn.Module], x: torch.Tensor, repeats: int, clock=time.perf_counter) -> dict[str, dict[str, float]]:
    """Best-of-``repeats`` ms of UHDformer's three stages: the full-resolution encoder with the
    perception path (``_front``), the low-resolution CMT groups, and the full-resolution tail,
    timed with ``clock`` (wall time; ``time.thread_time``: the thread's CPU time)."""
    best = {name: {"front": float("inf"), "groups": float("inf"), "tail": float("inf")} for name in nets}
    for _ in range(repeats):
        for name, net in nets.items():
            spent = {}

            def timed(stage, function):
                def wrapper(*args):
                    start = clock()
                    out = function(*args)
                    spent[stage] = clock() - start
                    return out
                return wrapper

            net._front, net._tail = timed("front", type(net)._front.__get__(net)), timed("tail", type(net)._tail.__get__(net))
            try:
                start = clock()
                with torch.inference_mode():
                    net(x)
                total = clock() - start
            finally:
                del net._front, net._tail
            spent["groups"] = total - spent["front"] - spent["tail"]
            for stage, seconds in spent.items():
                best[name][stage] = min(best[name][stage], seconds * 1e3)
    return best


def slow_conv_calls(net: nn.Module, x: torch.Tensor) -> int:
    from torch.profiler import profile

    with torch.inference_mode(), profile() as prof:
        net(x)
    return sum(e.count for e in prof.key_averages() if e.key == "aten::_slow_conv2d_forward")


def layer_macs(module: nn.Module, inputs: list[tuple[torch.Tensor, int]]) -> int:
    total = 0
    for x, count in inputs:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            module(x)
        total += count * counter.get_total_flops() // 2
    return int(total)


def planned_layers(nets: dict[str, nn.Module], names: list[str], size: int, repeats: int) -> dict[str, float]:
    """Time and MACs of the planned layers alone, original vs deployed form, on their in-network inputs."""
    original, deployed = nets["original"], nets["deployed"]
    inputs = recorded_inputs(original, {n: original.get_submodule(n) for n in names}, (size, size))
    t_orig = t_dep = m_orig = m_dep = 0.0
    for name in names:
        a, b = original.get_submodule(name), deployed.get_submodule(name)
        times = time_calls([a, b], inputs[name], repeats)
        t_orig, t_dep = t_orig + times[0], t_dep + times[1]
        m_orig, m_dep = m_orig + layer_macs(a, inputs[name]), m_dep + layer_macs(b, inputs[name])
    return {"ms_original": t_orig, "ms_deployed": t_dep, "macs_original": m_orig, "macs_deployed": m_dep}


_MEMORY_SCRIPT = r"""
import json, resource, sys, time, torch
from sparsesel.compress import load_compressed
torch.set_num_threads(int(sys.argv[2]))
model, _ = load_compressed(sys.argv[1])
x = torch.rand(1, 3, 2160, 3840)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
with torch.inference_mode():
    model(x)
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ms": seconds * 1e3, "peak_mib": (after - before) / 1024}))
"""


def four_k(nets: dict[str, nn.Module], threads: int) -> dict[str, dict]:
    """One 3840x2160 forward per network in a fresh subprocess: ms and peak memory growth (MiB)."""
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, net in nets.items():
            path = Path(folder) / f"{name}.pt"
            save_compressed(net, path, net="uhdformer")
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            done = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(path), str(threads)], capture_output=True, text=True, env=env)
            if done.returncode != 0:
                results[name] = {"error": done.stderr[-500:]}
                continue
            results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    parser.add_argument("--budget", default="0.5", help="parameters kept, as `sparsesel compress --budget` reads it")
    parser.add_argument("--sizes", default="512", help="square sides, comma-separated (default 512)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-4k", action="store_true", help="skip the 3840x2160 run")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    thread_counts = [int(t) for t in args.threads.split(",")]
    print(f"load before: {os.getloadavg()}  (2-core machine shared with other jobs: best-of-{args.repeats}, interleaved)")
    nets, names = build(args.checkpoint, Budget.parse(args.budget, "params", name="--budget"))
    results: dict = {"load_before": os.getloadavg(), "planned_layers": names, "rows": {}}
    macs = {size: {name: model_macs(net, (size, size)) for name, net in nets.items()} for size in sizes}
    torch.set_num_threads(1)
    slow = {name: slow_conv_calls(net, torch.rand(1, 3, 512, 512)) for name, net in nets.items()}
    layers = planned_layers(nets, names, 512, args.repeats)
    breakdown = stages(nets, torch.rand(1, 3, 512, 512), args.repeats)
    times = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for size in sizes:
            times[(threads, size)] = race(nets, torch.rand(1, 3, size, size), args.repeats)
    print("\n| network | " + " | ".join(f"{s}²: GMAC" for s in sizes) + " | "
          + " | ".join(f"{t} thr {s}²: ms (× orig)" for t in thread_counts for s in sizes) + " | slow conv calls 512² |")
    print("|---" * (2 + len(sizes) + len(thread_counts) * len(sizes)) + "|")
    for name in nets:
        cells = [f"{macs[s][name] / 1e9:.2f}" for s in sizes]
        cells += [f"{times[(t, s)][name]:.0f} ({times[(t, s)][name] / times[(t, s)]['original']:.2f})" for t in thread_counts for s in sizes]
        print(f"| {name} | " + " | ".join(cells) + f" | {slow[name]} |")
        results["rows"][name] = {"macs": {str(s): macs[s][name] for s in sizes}, "slow_conv_calls_512": slow[name],
                                 "ms": {f"{t}x{s}": times[(t, s)][name] for t in thread_counts for s in sizes}}
    print("\nstages at 512², 1 thread, ms (best of each stage): " + "; ".join(
        f"{name}: front {b['front']:.0f}, groups {b['groups']:.0f}, tail {b['tail']:.0f}" for name, b in breakdown.items()))
    results["stages_512_1thread"] = breakdown
    ratio = layers["macs_deployed"] / layers["macs_original"]
    print(f"\nplanned layers alone at 512², 1 thread: {layers['ms_original']:.1f} ms -> {layers['ms_deployed']:.1f} ms "
          f"(× {layers['ms_deployed'] / layers['ms_original']:.2f}); MACs {layers['macs_original'] / 1e9:.3f} -> "
          f"{layers['macs_deployed'] / 1e9:.3f} G (× {ratio:.3f})")
    results["layers_512_1thread"] = layers
    for threads in thread_counts:
        if 512 not in sizes:
            break
        t = times[(threads, 512)]
        needed = layers["ms_original"] * (1 - ratio)
        saved = t["original"] - t["deployed"]
        print(f"goal at 512², {threads} thread(s): saved {saved:.1f} ms, in proportion to the layers' MACs: {needed:.1f} ms "
              f"(layer times at 1 thread) -> {'met' if saved >= needed else 'MISSED'}")
    if not args.no_4k:
        big = four_k(nets, min(thread_counts))
        results["4k"] = big
        print(f"\n3840x2160, {min(thread_counts)} thread(s), one run each in a fresh process:")
        for name, r in big.items():
            print(f"  {name}: " + (f"{r['ms']:.0f} ms, peak +{r['peak_mib']:.0f} MiB" if "ms" in r else f"failed: {r['error']}"))
    results["load_after"] = os.getloadavg()
    print(f"\nload after: {os.getloadavg()}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
