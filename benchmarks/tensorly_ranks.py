"""TensorLy rank choice: ``sparsesel.tensors.tucker_rank`` / ``tt_rank`` against TensorLy's ``rank=float`` rule.

TensorLy turns a float ``rank`` into ranks proportional to the mode sizes
(``tensorly.tucker_tensor.validate_tucker_rank``, used by ``tucker(X, rank=0.1)``;
``tensorly.tt_tensor.validate_tt_rank``, used by ``tensor_train(X, rank=0.1)``), rounded to
the nearest integer, so the decomposition can be larger than the fraction asked for. For each
bundled tensor and fraction ``f`` this script fits, with TensorLy itself:

* ``tensorly``: TensorLy's rule at ``rank=f``;
* ``ours@f``: our ranks within ``floor(f·X.size)`` parameters (the budget TensorLy was asked for);
* ``ours@size``: our ranks within the size TensorLy's rule actually used (equal size).

Tucker: ``tensorly.decomposition.tucker`` (HOOI, SVD init, TensorLy's default iterations), size
``Π r_n + Σ I_n r_n``. Tensor train: ``tensorly.decomposition.tensor_train`` (TT-SVD), size
``Σ r_k I_k r_{k+1}`` of the cores it returns. Reported: relative reconstruction error
``‖X − X̂‖/‖X‖`` and size. No timings (not the point here).

Usage::

    python benchmarks/tensorly_ranks.py            # ~1-2 min on 2 shared cores
    python benchmarks/tensorly_ranks.py --quick    # smoke run (2 tensors, 1 fraction)
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from pathlib import Path

import numpy as np
import tensorly as tl
from tensorly.decomposition import tensor_train, tucker
from tensorly.tt_tensor import tt_to_tensor, validate_tt_rank
from tensorly.tucker_tensor import tucker_to_tensor, validate_tucker_rank

from sparsesel.tensors import tt_rank, tucker_rank
from sparsesel.tensors.datasets import load_tensor

TENSORS = ("china_small", "flower_small", "hyperspectral", "video_small", "tucker3_small", "digits", "cardiac_small", "tucker4")
FRACTIONS = (0.05, 0.1, 0.2)


def tucker_fit(X: np.ndarray, rank) -> dict:
    core, factors = tucker(tl.tensor(X), rank=list(rank), init="svd")
    error = float(np.linalg.norm(X - tucker_to_tensor((core, factors))) / np.linalg.norm(X))
    return {"rank": [int(r) for r in core.shape], "size": int(core.size + sum(f.size for f in factors)), "error": error}


def tt_fit(X: np.ndarray, rank) -> dict:
    factors = tensor_train(tl.tensor(X), rank=rank)
    error = float(np.linalg.norm(X - tt_to_tensor(factors)) / np.linalg.norm(X))
    ranks = [1] + [int(f.shape[2]) for f in factors]
    return {"rank": ranks, "size": int(sum(f.size for f in factors)), "error": error}


def compare(name: str, X: np.ndarray, fraction: float) -> dict:
    budget = math.floor(fraction * X.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorLy warns for matrices; not our concern here
        theirs_tucker = tucker_fit(X, validate_tucker_rank(X.shape, rank=fraction))
        theirs_tt = tt_fit(X, fraction)
    row = {"tensor": name, "shape": list(X.shape), "fraction": fraction, "budget": budget}
    row["tucker"] = {
        "tensorly": theirs_tucker,
        "ours@f": tucker_fit(X, tucker_rank(X, budget)),
        "ours@size": tucker_fit(X, tucker_rank(X, theirs_tucker["size"])),
    }
    row["tt"] = {
        "tensorly": theirs_tt,
        "ours@f": tt_fit(X, tt_rank(X, budget)),
        "ours@size": tt_fit(X, tt_rank(X, theirs_tt["size"])),
    }
    return row


def print_table(rows: list[dict]) -> None:
    for kind in ("tucker", "tt"):
        print(f"\n{kind}: relative error (size) — tensorly rank=f | ours within f·size | ours at tensorly's size")
        print(f"{'tensor':<15}{'f':>6}{'budget':>9}  {'tensorly':<34}{'ours@f':<34}{'ours@size':<34}")
        for row in rows:
            cells = []
            for key in ("tensorly", "ours@f", "ours@size"):
                fit = row[kind][key]
                mark = "*" if fit["size"] > row["budget"] else " "
                cells.append(f"{fit['error']:.4f} ({fit['size']}{mark}) {fit['rank']}"[:33])
            print(f"{row['tensor']:<15}{row['fraction']:>6}{row['budget']:>9}  " + " ".join(f"{c:<33}" for c in cells))
    print("\n* = over the budget f·X.size")


def summarize(rows: list[dict]) -> dict:
    summary = {}
    for kind in ("tucker", "tt"):
        over = sum(row[kind]["tensorly"]["size"] > row["budget"] for row in rows)
        ours_over = sum(row[kind]["ours@f"]["size"] > row["budget"] for row in rows)
        at_size = [row[kind]["ours@size"]["error"] / row[kind]["tensorly"]["error"] for row in rows]
        at_f = [row[kind]["ours@f"]["error"] / row[kind]["tensorly"]["error"] for row in rows]
        summary[kind] = {
            "cases": len(rows),
            "tensorly_over_budget": int(over),
            "ours_over_budget": int(ours_over),
            "ours_at_equal_size_lower_error": int(sum(r < 1 - 1e-9 for r in at_size)),
            "ours_at_equal_size_equal_error": int(sum(abs(r - 1) <= 1e-9 for r in at_size)),
            "median_error_ratio_at_equal_size": float(np.median(at_size)),
            "median_error_ratio_within_budget": float(np.median(at_f)),
        }
    return summary


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, kind, title in zip(axes, ("tucker", "tt"), ("Tucker", "tensor train")):
        for key, marker, label in (("tensorly", "o", "TensorLy rank=f"), ("ours@f", "s", "ours, budget f"),
                                   ("ours@size", "^", "ours, TensorLy's size")):
            ax.scatter([row[kind][key]["size"] / row["budget"] for row in rows],
                       [row[kind][key]["error"] for row in rows], marker=marker, label=label, alpha=0.75)
        ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
        ax.set_xlabel("size / budget (f · entries)")
        ax.set_ylabel("relative error ‖X − X̂‖/‖X‖")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 tensors, 1 fraction")
    parser.add_argument("--output-dir", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    tensors = TENSORS[:2] if args.quick else TENSORS
    fractions = (0.1,) if args.quick else FRACTIONS
    rows = []
    for name in tensors:
        X = load_tensor(name)
        for fraction in fractions:
            rows.append(compare(name, X, fraction))
            print(f"{name} f={fraction}: done", flush=True)
    print_table(rows)
    summary = summarize(rows)
    print(json.dumps(summary, indent=2))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = "tensorly_ranks_quick" if args.quick else "tensorly_ranks"
    payload = {
        "command": "python benchmarks/tensorly_ranks.py" + (" --quick" if args.quick else ""),
        "tensorly_version": tl.__version__,
        "summary": summary,
        "rows": rows,
    }
    (out / f"{stem}.json").write_text(json.dumps(payload, indent=2))
    plot(rows, out / f"{stem}.png")
    print(f"wrote {out / (stem + '.json')} and {out / (stem + '.png')}")


if __name__ == "__main__":
    main()
