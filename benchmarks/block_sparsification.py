"""Block sparsification benchmark: SequentialAttention++ vs magnitude, Powerpropagation, ACDC.

Three tasks, every method trained from the same initialisation with the same
budget (``epochs`` passes, same batches in the same order, same optimizer and
learning-rate schedule — the shared training loop of ``solvers/_block_training.py``):

* ``digits-mlp``: MLP 64-256-256-10 on scikit-learn digits; both hidden weights
  (256×64, 256×256) pruned. Metric: held-out accuracy (%).
* ``digits-cnn``: conv 1→32→64→64 (3×3, max-pools after the first two) + linear on the 8×8 digits; conv2 and
  conv3 pruned in blocks over their (out, in) channels. Held-out accuracy (%).
* ``wide-linear``: the stand-in for Criteo's wide first layer — a linear model
  256 → 64 on synthetic regression (:func:`wide_linear_data`). Inputs come in 32
  "fields" of 8 columns (one embedding each, as Criteo's 39 fields × 10) with
  scales log-uniform in [0.2, 5] (embeddings of different fields differ in
  scale); the truth is block-sparse on the 8×8 grid (30% of the blocks) with
  block importances decaying geometrically (0.9^rank): Criteo's fields matter
  very unequally, and its first layer still works at 99% sparsity, so the
  ranking of blocks must matter at every sparsity. Metric: held-out R² (×100,
  "points").

  Why not the former version (truth = 10% of the 8×8 blocks, all equally
  important, weight decay 0.3): (a) weight decay 0.3 was not chosen on
  validation — the dense model's validation R² prefers 0 (93.4 at 0 vs 87.1
  at 0.3) and 0.3 handicapped magnitude and ACDC (R² 89.5 vs 95.9 at 0 for 90%,
  8×8) while SA++ with the paper's attention score needed it; (b) with a hard
  10% support every method kept all true blocks up to 90% sparsity (ties at R²
  ≈ 99, decided by noise) and none could above (ties at ≈ 50 and ≈ 10), so
  the cells compared noise, not methods.

Training: AdamW, cosine learning rate, the same for every method, dense
included. Weight decay is shared per task and was chosen on a validation split
(the last 20% of the training data) with the dense model, grid {0, 0.01, 0.03,
0.1, 0.3}, 2 seeds: 0.03 on the digits tasks (validation accuracy flat within
0.4 points, 0.03 best), 0 on wide-linear. Epochs: 5 on digits, 10 on
wide-linear (2 and 4 with --quick); 5 rather than the earlier 10 digits epochs
keeps three seeds within the time budget.

Sparsities 70/80/90/95/99 %, blocks 1×1, 4×4, 8×8, 16×16 (all tile every pruned
weight), per-layer (uniform) allocation as in the paper. The pruned weights are
named explicitly, which overrides the paper's "layers with fewer than 100 blocks
stay dense" rule (``min_blocks``): the issue asks for every block size on these
small layers, several of which have fewer than 100 blocks (digits-cnn at 16×16
has 8 and 16). The achieved density can exceed the target where a layer has few
blocks (at least one block is kept). Prints the mean ± standard deviation over
seeds with the dense model's score and every method's gap to it, checks the
issue's goals on the means and counts per seed, and writes JSON and a PNG plot
to benchmarks/results/.

Run:  python benchmarks/block_sparsification.py --seeds 3  (full, ~15-25 min on 2 shared cores)
      python benchmarks/block_sparsification.py --quick    (smoke run, ~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import sparsesel as ss

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = {
    "magnitude": {"schedule": "gradual"},
    "powerpropagation": {},
    "acdc": {},
    "sequential_attention_pp": {},
}
SHORT = {"magnitude": "magnitude", "powerpropagation": "powerprop", "acdc": "acdc",
         "sequential_attention_pp": "SA++", "group_regularized": "group_log"}


def digits_split(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, random_state=seed, stratify=y)


def wide_linear_data(seed: int = 0, d: int = 256, m: int = 64, field: int = 8, n_train: int = 3000,
                     n_test: int = 2000, support: float = 0.3, decay: float = 0.9, noise: float = 0.5):
    """Synthetic stand-in for Criteo's wide first layer (see the module docstring).

    Inputs come in ``d / field`` fields of ``field`` columns (an embedding each)
    with field scales log-uniform in [0.2, 5]. The truth is block-sparse on the
    ``field × field`` grid: a fraction ``support`` of the blocks are nonzero, and
    their importances (the output variance they explain) decay geometrically,
    ``decay^rank``, in a random order over the blocks — so the blocks matter
    very unequally, as Criteo's fields do, and every sparsity level has a best
    subset to find. Coefficients are divided by the input scale, so a block's
    weight norm does not tell its importance.

    Returns
    -------
    X : ndarray (n_train + n_test, d), Y : ndarray (n_train + n_test, m), n_train : int
    """
    rng = np.random.default_rng(seed)
    fields = d // field
    scale = np.repeat(np.exp(rng.uniform(np.log(0.2), np.log(5.0), size=fields)), field)
    grid = (m // field) * fields
    chosen = rng.choice(grid, size=int(round(support * grid)), replace=False)
    truth = np.zeros((m, d))
    for rank, b in enumerate(chosen):
        r, c = divmod(int(b), fields)
        block = rng.normal(size=(field, field))
        block *= np.sqrt(field * decay**rank) / np.linalg.norm(block)
        truth[r * field:(r + 1) * field, c * field:(c + 1) * field] = block / scale[c * field]
    X = (rng.normal(size=(n_train + n_test, d)) * scale).astype(np.float32)
    Y = (X @ truth.T + noise * rng.normal(size=(n_train + n_test, m))).astype(np.float32)
    return X, Y, n_train


def make_tasks(quick: bool) -> list[dict]:
    Xtr, Xte, ytr, yte = digits_split()

    def mlp(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))

    def cnn(seed):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(256, 10),
        )

    X, Y, n_train = wide_linear_data()
    d, m = X.shape[1], Y.shape[1]

    def linear(seed):
        torch.manual_seed(seed)
        return nn.Linear(d, m)

    epochs = 2 if quick else 5
    linear_epochs = 4 if quick else 10
    return [
        {"name": "digits-mlp", "model": mlp, "train": (Xtr, ytr), "test": (Xte, yte), "loss": "cross_entropy",
         "params": ["0.weight", "2.weight"], "epochs": epochs, "lr": 3e-3, "weight_decay": 0.03, "batch_size": 64, "metric": "accuracy"},
        {"name": "digits-cnn", "model": cnn, "train": (Xtr, ytr), "test": (Xte, yte), "loss": "cross_entropy",
         "params": ["4.weight", "7.weight"], "epochs": epochs, "lr": 3e-3, "weight_decay": 0.03, "batch_size": 64, "metric": "accuracy"},
        {"name": "wide-linear", "model": linear, "train": (X[:n_train], Y[:n_train]), "test": (X[n_train:], Y[n_train:]),
         "loss": "mse", "params": ["weight"], "epochs": linear_epochs, "lr": 3e-2, "weight_decay": 0.0, "batch_size": 100, "metric": "r2"},
    ]


@torch.no_grad()
def score(task: dict, model: nn.Module) -> float:
    model.eval()
    X, y = task["test"]
    out = model(torch.as_tensor(X)).numpy()
    if task["metric"] == "accuracy":
        return 100.0 * float((out.argmax(axis=1) == y).mean())
    resid = ((out - y) ** 2).sum()
    total = ((y - y.mean(axis=0)) ** 2).sum()
    return 100.0 * (1.0 - float(resid / total))


def run(quick: bool, seeds: list[int], methods: dict) -> dict:
    tasks = make_tasks(quick)
    sparsities = [0.8, 0.95] if quick else [0.7, 0.8, 0.9, 0.95, 0.99]
    block_sizes = [1, 8] if quick else [1, 4, 8, 16]
    # warm-up (torch kernels, imports) before anything is timed
    warm = ss.BlockSparsification(nn.Linear(8, 8), (4, 4), 0.5, data=(np.zeros((8, 8)), np.zeros((8, 8))), min_blocks=1)
    ss.solve(warm, solver="sequential_attention_pp", epochs=1)
    jobs = [(t, s, b, sp, meth) for t in tasks for s in seeds for b in block_sizes for sp in sparsities for meth in methods]
    records = []
    dense = {}
    bar = tqdm(total=len(jobs) + len(tasks) * len(seeds), desc="block sparsification")
    for task in tasks:
        for seed in seeds:
            problem = ss.BlockSparsification(task["model"](seed), (1, 1), 1.0, data=task["train"], loss=task["loss"],
                                             params=task["params"])
            start = time.perf_counter()
            result = ss.solve(problem, solver="magnitude", epochs=task["epochs"], lr=task["lr"],
                              weight_decay=task["weight_decay"], batch_size=task["batch_size"], seed=seed)
            dense[(task["name"], seed)] = score(task, result.info["model"])
            records.append({"task": task["name"], "seed": seed, "method": "dense", "block": 0, "sparsity": 0.0,
                            "density": 1.0, "score": dense[(task["name"], seed)], "seconds": time.perf_counter() - start})
            bar.update(1)
    for task, seed, block, sparsity, method in jobs:
        problem = ss.BlockSparsification(task["model"](seed), (block, block), round(1 - sparsity, 6), data=task["train"],
                                         loss=task["loss"], params=task["params"])
        start = time.perf_counter()
        result = ss.solve(problem, solver=method, epochs=task["epochs"], lr=task["lr"], batch_size=task["batch_size"],
                          weight_decay=task["weight_decay"], seed=seed, **methods[method])
        records.append({"task": task["name"], "seed": seed, "method": method, "block": block, "sparsity": sparsity,
                        "density": result.info["density"], "score": score(task, result.info["model"]),
                        "seconds": time.perf_counter() - start})
        bar.update(1)
    bar.close()
    return {"records": records, "tasks": [t["name"] for t in tasks], "sparsities": sparsities, "blocks": block_sizes,
            "seeds": seeds, "methods": list(methods), "epochs": {t["name"]: t["epochs"] for t in tasks},
            "metrics": {t["name"]: t["metric"] for t in tasks}}


def mean_score(records, **key):
    vals = [r for r in records if all(r[k] == v for k, v in key.items())]
    return float(np.mean([r["score"] for r in vals])), float(np.mean([r["density"] for r in vals]))


def cell_scores(records, **key) -> dict:
    """seed -> score for one (task, method, block, sparsity)."""
    return {r["seed"]: r["score"] for r in records if all(r[k] == v for k, v in key.items())}


def goal_checks(scores: dict, baselines: list, block: int, sp: float) -> dict:
    """The issue's two goals for one cell, from per-method scores (means or one seed's)."""
    sa = scores["sequential_attention_pp"]
    best = max(scores[m] for m in baselines)
    out = {}
    if block >= 4:
        out["beats_every_baseline_blocks_ge_4"] = (sa >= best, sa - best)
    if sp >= 0.9:
        out["plus_2_over_magnitude_ge_90"] = (sa - scores["magnitude"] >= 2.0, sa - scores["magnitude"])
    return out


def table(data: dict) -> tuple[str, dict]:
    recs, methods, seeds = data["records"], data["methods"], data["seeds"]
    baselines = [m for m in methods if m != "sequential_attention_pp"]
    goals = {"beats_every_baseline_blocks_ge_4": [], "plus_2_over_magnitude_ge_90": []}
    per_seed = {g: {s: 0 for s in seeds} for g in goals}
    lines = []
    header = (f"{'task':<12} {'block':>5} {'spars':>5} {'dens':>6} "
              + " ".join(f"{SHORT.get(m, m):>13}" for m in methods)
              + f" {'dense':>7} {'SA++gap':>8} {'SA++-best':>9} {'SA++-mag':>8}")
    lines += [header, "-" * len(header)]
    for task in data["tasks"]:
        d = float(np.mean([r["score"] for r in recs if r["task"] == task and r["method"] == "dense"]))
        for block in data["blocks"]:
            for sp in data["sparsities"]:
                cells = {m: cell_scores(recs, task=task, method=m, block=block, sparsity=sp) for m in methods}
                means = {m: float(np.mean(list(cells[m].values()))) for m in methods}
                sds = {m: float(np.std(list(cells[m].values()), ddof=1)) if len(cells[m]) > 1 else 0.0 for m in methods}
                sa, mag = means["sequential_attention_pp"], means["magnitude"]
                best_base = max(means[m] for m in baselines)
                density = mean_score(recs, task=task, method="sequential_attention_pp", block=block, sparsity=sp)[1]
                lines.append(
                    f"{task:<12} {f'{block}x{block}':>5} {int(round(sp * 100)):>4}% {density:>6.3f} "
                    + " ".join(f"{f'{means[m]:.2f}±{sds[m]:.2f}':>13}" for m in methods)
                    + f" {d:>7.2f} {sa - d:>8.2f} {sa - best_base:>+9.2f} {sa - mag:>+8.2f}"
                )
                for name, (ok, diff) in goal_checks(means, baselines, block, sp).items():
                    goals[name].append((task, block, sp, bool(ok), round(diff, 2)))
                for seed in seeds:
                    one = {m: cells[m][seed] for m in methods}
                    for name, (ok, _) in goal_checks(one, baselines, block, sp).items():
                        per_seed[name][seed] += bool(ok)
        lines.append("")
    goals["per_seed_cells_met"] = per_seed
    return "\n".join(lines), goals


def plot(data: dict, path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, blocks, recs = data["tasks"], data["blocks"], data["records"]
    fig, axes = plt.subplots(len(tasks), len(blocks), figsize=(3.2 * len(blocks), 2.8 * len(tasks)), squeeze=False)
    for i, task in enumerate(tasks):
        dense = np.mean([r["score"] for r in recs if r["task"] == task and r["method"] == "dense"])
        for j, block in enumerate(blocks):
            ax = axes[i, j]
            for method in data["methods"]:
                pts = [mean_score(recs, task=task, method=method, block=block, sparsity=sp) for sp in data["sparsities"]]
                ax.plot([p[1] for p in pts], [p[0] for p in pts], marker="o", label=SHORT.get(method, method))
            ax.axhline(dense, color="k", ls="--", lw=0.8, label="dense")
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([0.01, 0.03, 0.1, 0.3]))
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
            ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
            ax.set_title(f"{task}, {block}x{block}", fontsize=9)
            ax.set_xlabel("density (kept blocks)", fontsize=8)
            ax.set_ylabel("accuracy %" if data["metrics"][task] == "accuracy" else "R² ×100", fontsize=8)
            scores = [r["score"] for r in recs if r["task"] == task]
            low = min(scores) - 2 if data["metrics"][task] != "accuracy" else max(min(scores) - 2, dense - 60)
            ax.set_ylim(low, max(scores) + 1.5)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (initialisation + batch order), >= 1")
    parser.add_argument("--group-regularized", action="store_true", help="also run group_regularized (group log)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG and table from the saved JSON")
    args = parser.parse_args(argv)
    if args.plot_only:
        stem = "block_sparsification_quick" if args.quick else "block_sparsification"
        data = json.loads((RESULTS / f"{stem}.json").read_text())
        print(table(data)[0])
        plot(data, RESULTS / f"{stem}.png")
        return 0
    torch.set_num_threads(args.threads)
    methods = dict(METHODS)
    if args.group_regularized:
        methods = {"group_regularized": {"penalty": "group_log", "lam": 1e-3, "tau": 0.1}, **methods}
    start = time.perf_counter()
    data = run(args.quick, list(range(args.seeds)), methods)
    data["wall_seconds"] = time.perf_counter() - start
    data["command"] = " ".join(["python", "benchmarks/block_sparsification.py", *(argv if argv is not None else sys.argv[1:])])
    text, goals = table(data)
    print(f"\nheld-out score (accuracy % or R²×100), mean over {args.seeds} seed(s); same training budget per method "
          f"(epochs {data['epochs']}); torch warmed up before timing\n")
    print(text)
    for name, cells in goals.items():
        if name == "per_seed_cells_met":
            continue
        missed = [c for c in cells if not c[3]]
        print(f"goal {name}: {len(cells) - len(missed)}/{len(cells)} cells met"
              + ("" if not missed else "; missed: " + ", ".join(f"{t} {b}x{b} {int(round(s*100))}% ({d:+.2f})" for t, b, s, _, d in missed)))
    for name, counts in goals["per_seed_cells_met"].items():
        total = len(goals[name])
        print(f"goal {name} per seed: " + ", ".join(f"seed {s}: {c}/{total}" for s, c in counts.items()))
    print(f"total wall time {data['wall_seconds']:.0f} s")
    data["goals"] = goals
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "block_sparsification_quick" if args.quick else "block_sparsification"
    tmp = RESULTS / f".{stem}.json.tmp"
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, RESULTS / f"{stem}.json")
    plot(data, RESULTS / f"{stem}.png")
    print(f"wrote {RESULTS / (stem + '.json')} and {RESULTS / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
