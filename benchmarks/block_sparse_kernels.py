"""Benchmark of block-sparse inference (issue 20, item 2): when do the kept blocks run faster than dense?

All in one process, timed side by side (interleaved, best of ``--repeats`` -- more for layers under
60 ms, up to 50, so that each form gets about 0.3 s of samples -- after a warm-up call), at 1 and 2
torch threads:

(a) ``layers`` -- one layer of each type keeping 10 % of its blocks (chosen at random, as magnitude
    selection on random weights does), for 4x4, 8x8 and 16x16 blocks: ``Linear`` (channels-last input
    ``(1, H, W, C)``, as UHDformer's per-pixel layers), 1x1 and 3x3 ``Conv2d`` (channels-first input;
    ``conv3x3-cl``: channels-last memory, where torch's dense convolution is fastest),
    C -> C at the widths of the restoration networks: 16, 32, 64 on a 512² input (UHDformer small/paper,
    CSAttn); 128, 256, 512 on 128², 64², 32² (where TSHRNet's U-Nets run those widths for a 512² image).
    Dense is the masked ``nn.Linear`` / ``nn.Conv2d``; "block" is the fastest kernel of
    :mod:`sparsesel.block_layers` (grouped, rows, bsr) for that layer.
(b) ``networks`` -- the UHDformer demo checkpoint (sparsesel/assets/uhdformer_lowlight.pt) and the
    TSHRNet ``small`` config, block-pruned by magnitude at density 0.1 with ``min_blocks=1`` (as
    ``sparsesel prune --density 0.1 --block BxB --min-blocks 1``), timed at 512²: the masked dense
    network, every prunable layer in block form (``--kernel block``) and the per-layer choice
    (``--kernel auto`` before its whole-network check).
(c) ``sweep`` -- speed-up of the block form against density (0.02 ... 0.5) per layer type and block
    shape at width 64 (512²) and 256 (64²): the densities below which the block form wins.

Speed-up = dense time / block time (> 1: the block form is faster). The machine is shared: the load
average (``uptime``) is recorded before and after each part. Each part is stored in
benchmarks/results/block_sparse_kernels.json as it ends (a part not rerun keeps its last results)
and benchmarks/results/block_sparse_kernels.png (speed-up vs density per block shape).

    python benchmarks/block_sparse_kernels.py [--threads 1,2] [--network-threads 1] [--repeats 5] [--parts layers,networks,sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

from sparsesel.block_layers import kernels_for, packed_from_dense
from sparsesel.block_speed import pack_model, time_networks
from sparsesel.blocks import block_grid
from sparsesel.commands.prune import block_masks_of, prune_model
from sparsesel.compress.deploy import time_calls
from sparsesel.nets import zoo

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT = ROOT / "sparsesel" / "assets" / "uhdformer_lowlight.pt"
RESULTS = ROOT / "benchmarks" / "results" / "block_sparse_kernels.json"
PLOT = RESULTS.with_suffix(".png")
BLOCKS = (4, 8, 16)
#: (width, spatial side) of the per-layer rows
WIDTHS = ((16, 512), (32, 512), (64, 512), (128, 128), (256, 64), (512, 32))
LAYER_TYPES = ("linear", "conv1x1", "conv3x3", "conv3x3-cl")
DENSITIES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
SWEEP_WIDTHS = ((64, 512), (256, 64))


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def dense_layer_of(kind: str, width: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(width, width)
    return nn.Conv2d(width, width, 1 if kind == "conv1x1" else 3, padding=0 if kind == "conv1x1" else 1)


def layer_input(kind: str, width: int, side: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(width * side)
    shape = (1, side, side, width) if kind == "linear" else (1, width, side, side)
    x = torch.randn(shape, generator=generator)
    return x.contiguous(memory_format=torch.channels_last) if kind.endswith("-cl") else x


def random_block_mask(grid: tuple[int, int], density: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    count = max(1, round(density * grid[0] * grid[1]))
    mask = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
    mask[torch.randperm(mask.numel(), generator=generator)[:count]] = True
    return mask.reshape(grid)


def time_layer(kind: str, width: int, side: int, block: int, density: float, repeats: int) -> dict:
    """Dense vs every block kernel of one layer, interleaved, best of ``repeats``."""
    torch.manual_seed(block * 1000 + width)
    dense = dense_layer_of(kind, width).eval()
    grid = block_grid(dense.weight.shape, (block, block))
    mask = random_block_mask(grid, density, seed=width + block)
    packed = packed_from_dense(dense, mask, (block, block))
    with torch.no_grad():
        dense.weight.copy_(packed.weight)  # the masked dense layer
    kernels = kernels_for(packed)
    forms = [dense]
    for kernel in kernels:
        twin = packed_from_dense(dense, mask, (block, block), kernel)
        forms.append(twin)
    x = layer_input(kind, width, side)
    first = time_calls([dense], [(x, 1)], 1)[0]  # fast layers get more samples: at least ~0.3 s per form
    times = time_calls(forms, [(x, 1)], max(repeats, min(50, int(300 / max(first, 1e-3)))))
    best = min(range(len(kernels)), key=lambda i: times[1 + i])
    return {"layer": kind, "width": width, "side": side, "block": block, "density": density,
            "kept_blocks": int(mask.sum()), "total_blocks": int(mask.numel()), "ms_dense": round(times[0], 3),
            "ms_kernels": {k: round(t, 3) for k, t in zip(kernels, times[1:])}, "kernel": kernels[best],
            "ms_block": round(times[1 + best], 3), "speedup": round(times[0] / times[1 + best], 3)}


def part_layers(threads: list[int], repeats: int) -> list[dict]:
    rows = []
    for n in threads:
        torch.set_num_threads(n)
        print(f"\n(a) one layer C -> C keeping 10 % of its blocks, {n} thread(s): dense ms / block ms = speed-up (kernel)")
        print(f"{'layer':10s} {'C':>4s} {'input':>7s} " + " ".join(f"{f'{b}x{b}':>34s}" for b in BLOCKS))
        for kind in LAYER_TYPES:
            for width, side in WIDTHS:
                cells = []
                for block in BLOCKS:
                    row = {**time_layer(kind, width, side, block, 0.1, repeats), "threads": n}
                    rows.append(row)
                    cells.append(f"{row['ms_dense']:8.2f}/{row['ms_block']:8.2f} = x{row['speedup']:5.2f} ({row['kernel'][:4]:4s})")
                print(f"{kind:10s} {width:4d} {side:>4d}²  " + " ".join(f"{c:>34s}" for c in cells), flush=True)
    return rows


def pruned_network(name: str, block: int) -> tuple[nn.Module, dict]:
    if name == "uhdformer":
        model, _ = zoo.load_net(CHECKPOINT)
    else:
        torch.manual_seed(0)
        model = zoo.build_net("tshrnet", "small")
    model.eval()
    pruned, result = prune_model(model, 0.1, f"{block}x{block}", "per_layer", 1)
    return pruned.eval(), block_masks_of(result, pruned, (block, block))


def part_networks(threads: list[int], repeats: int) -> list[dict]:
    from sparsesel.block_layers import pack_layer

    rows = []
    for n in threads:
        torch.set_num_threads(n)
        print(f"\n(b) whole networks, density 0.1, --min-blocks 1, 512², {n} thread(s): ms (speed-up vs dense)")
        for name in ("uhdformer", "tshrnet"):
            for block in BLOCKS:
                pruned, masks = pruned_network(name, block)
                every, report = pack_model(pruned, masks, (block, block), kernel="block", example_size=(512, 512),
                                           repeats=repeats, threads=n)
                chosen = [e for e in report["layers"] if e["speedup"] is not None and e["speedup"] > 1]
                auto = pruned
                if chosen:
                    import copy

                    auto = copy.deepcopy(pruned)
                    for entry in chosen:
                        pack_layer(auto, entry["name"], masks[entry["name"] + ".weight"], (block, block), entry["block_kernel"])
                dense_ms, block_ms, auto_ms = time_networks([pruned, every, auto], (512, 512), repeats)
                timed = [e for e in report["layers"] if e["ms_dense"] is not None]
                row = {"net": name, "block": block, "threads": n, "layers": len(report["layers"]), "timed_layers": len(timed),
                       "block_wins": len(chosen), "layers_ms_dense": report["total"]["layers_ms_dense"],
                       "layers_ms_block": round(sum(e["ms_block"] for e in timed), 3),
                       "network_ms_dense": dense_ms, "network_ms_block": block_ms, "network_ms_auto": auto_ms,
                       "speedup_block": round(dense_ms / block_ms, 3), "speedup_auto": round(dense_ms / auto_ms, 3),
                       "wins": [(e["name"], e["layer"], e["speedup"]) for e in chosen]}
                rows.append(row)
                print(f"{name:9s} {block:2d}x{block:<2d} dense {dense_ms:9.1f}  all block {block_ms:9.1f} (x{row['speedup_block']:.2f})"
                      f"  auto {auto_ms:9.1f} (x{row['speedup_auto']:.2f}); block faster in {len(chosen)}/{len(timed)} layers"
                      f" (layers alone: dense {row['layers_ms_dense']:.1f} ms, block {row['layers_ms_block']:.1f} ms)", flush=True)
    return rows


def part_sweep(repeats: int) -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    print("\n(c) speed-up of the block form vs density, 1 thread")
    print(f"{'layer':10s} {'C':>4s} {'block':>5s} " + " ".join(f"{d:>6g}" for d in DENSITIES) + "   wins up to")
    for kind in LAYER_TYPES:
        for width, side in SWEEP_WIDTHS:
            for block in BLOCKS:
                line = [time_layer(kind, width, side, block, d, repeats) for d in DENSITIES]
                rows += line
                wins = [r["density"] for r in line if r["speedup"] > 1]
                print(f"{kind:10s} {width:4d} {block:2d}x{block:<2d} " + " ".join(f"{r['speedup']:6.2f}" for r in line)
                      + f"   {max(wins) if wins else 'never':>6}", flush=True)
    return rows


def plot(sweep: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(kind, width) for kind in LAYER_TYPES for width, _ in SWEEP_WIDTHS]
    fig, axes = plt.subplots(len(LAYER_TYPES), len(SWEEP_WIDTHS), figsize=(9, 11), sharex=True)
    for ax, (kind, width) in zip(axes.ravel(), panels):
        for block in BLOCKS:
            rows = [r for r in sweep if r["layer"] == kind and r["width"] == width and r["block"] == block]
            ax.plot([r["density"] for r in rows], [r["speedup"] for r in rows], marker="o", label=f"{block}x{block}")
        side = dict(SWEEP_WIDTHS)[width]
        ax.axhline(1.0, color="gray", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xticks(DENSITIES, [f"{d:g}" for d in DENSITIES])
        ax.minorticks_off()
        ax.set_title(f"{kind}, C={width}, {side}²", fontsize=9)
        ax.set_ylabel("speed-up vs dense")
    for ax in axes[-1]:
        ax.set_xlabel("density (kept blocks)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("block-sparse kernels vs dense, 1 thread (above 1: block form faster)")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    print(f"wrote {PLOT}")


def markdown(results: dict) -> str:
    """The README's tables from the stored results (1 thread; 2 threads in brackets where measured)."""
    lines = []
    layers = results.get("layers", {}).get("rows", [])
    if layers:
        lines += ["| layer C → C (input) | 4×4 | 8×8 | 16×16 |", "|---|---|---|---|"]
        for kind in LAYER_TYPES:
            for width, side in WIDTHS:
                cells = []
                for block in BLOCKS:
                    found = {r["threads"]: r for r in layers if (r["layer"], r["width"], r["block"]) == (kind, width, block)}
                    if 1 not in found:
                        cells.append("–")
                        continue
                    cells.append(f"{found[1]['speedup']:.2f}×" + (f" [{found[2]['speedup']:.2f}×]" if 2 in found else ""))
                lines.append(f"| {kind} {width} ({side}²) | " + " | ".join(cells) + " |")
        lines.append(f"\nload average {results['layers']['load_before']} before, {results['layers']['load_after']} after\n")
    networks = results.get("networks", {}).get("rows", [])
    if networks:
        lines += ["| network, 512², threads | blocks | dense ms | every layer block, ms | auto, ms | block faster alone |", "|---|---|---|---|---|---|"]
        for row in networks:
            lines.append(f"| {row['net']} ({row['threads']}) | {row['block']}×{row['block']} | {row['network_ms_dense']:.0f} | "
                         f"{row['network_ms_block']:.0f} ({row['speedup_block']:.2f}×) | {row['network_ms_auto']:.0f} "
                         f"({row['speedup_auto']:.2f}×) | {row['block_wins']}/{row['timed_layers']} layers |")
        lines.append(f"\nload average {results['networks']['load_before']} before, {results['networks']['load_after']} after\n")
    sweep = results.get("sweep", {}).get("rows", [])
    if sweep:
        lines += ["| block form wins at density | " + " | ".join(f"{b}×{b}" for b in BLOCKS) + " |", "|---|---|---|---|"]
        for kind in LAYER_TYPES:
            for width, side in SWEEP_WIDTHS:
                cells = []
                for block in BLOCKS:
                    rows = [r for r in sweep if (r["layer"], r["width"], r["block"]) == (kind, width, block)]
                    wins = [r["density"] for r in rows if r["speedup"] > 1]
                    best = max(rows, key=lambda r: r["speedup"]) if rows else None
                    cells.append("never" if not wins else f"≤ {max(wins):g} ({best['speedup']:.1f}× at {best['density']:g})")
                lines.append(f"| {kind} {width} ({side}²) | " + " | ".join(cells) + " |")
        lines.append(f"\nload average {results['sweep']['load_before']} before, {results['sweep']['load_after']} after")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--parts", default="layers,networks,sweep")
    parser.add_argument("--network-threads", default=None, help="threads of part (b) (default: --threads)")
    parser.add_argument("--markdown", action="store_true", help="print the README tables from the stored results, redraw the plot and stop")
    args = parser.parse_args()
    if args.markdown:  # the README tables (and the plot) from the stored results
        stored = json.loads(RESULTS.read_text())
        print(markdown(stored))
        if "sweep" in stored:
            plot(stored["sweep"]["rows"])
        return
    threads = [int(t) for t in args.threads.split(",")]
    parts = set(args.parts.split(","))
    started, load_before = time.time(), load_average()
    print(f"load average before: {load_before} (2 shared cores); torch {torch.__version__}")
    results = {"command": "python benchmarks/block_sparse_kernels.py " + " ".join(
        f"--{k} {v}" for k, v in (("threads", args.threads), ("network-threads", args.network_threads),
                                  ("repeats", args.repeats), ("parts", args.parts)) if v is not None),
               "torch": torch.__version__}
    network_threads = [int(t) for t in (args.network_threads or args.threads).split(",")]
    runs = {"layers": lambda: part_layers(threads, args.repeats),
            "networks": lambda: part_networks(network_threads, args.repeats),
            "sweep": lambda: part_sweep(args.repeats)}
    for part in ("layers", "networks", "sweep"):
        if part not in parts:
            continue
        before = load_average()
        rows = runs[part]()
        save(part, {"command": results["command"], "torch": results["torch"], "repeats": args.repeats,
                    "load_before": before, "load_after": load_average(), "rows": rows})
        if part == "sweep":
            plot(rows)
    print(f"load average after: {load_average()}; {time.time() - started:.0f} s")


def save(part: str, record: dict) -> None:
    """Store one part's rows (with the load average around it) in the JSON; the other parts keep their last results."""
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[part] = record
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"wrote {part} to {RESULTS}")


if __name__ == "__main__":
    main()
