"""Choose Greedy PIG's schedule for ``benchmarks/attribution.py`` on a tuning split (not the evaluation images).

Run::

    python benchmarks/attribution_tuning.py            # ~3-4 min on 2 busy cores

The evaluation in ``benchmarks/attribution.py`` uses test images ``0..99`` of each
CNN; this script uses disjoint test images (crops: every 2nd of ``101..299``,
mostly other photographs' classes; digits: ``300..399``) and prints, for
each configuration at the same gradient budget (64), the share of images whose
SIC AUC beats integrated gradients' (64 steps, softmax), and the mean SIC.

``--mismatch`` (~30 s) instead compares, on the same split, Greedy PIG's and IG's
top-q pixel sets in two ways: by ``G`` (target softmax with the set at x and the
rest at the blurred baseline, the set function Greedy PIG maximises) and by the
softmax of SIC's image (the set and 1% random pixels kept, the rest linearly
interpolated).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import sparsesel as ss
from sparsesel.attribution import models, sic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attribution import from_uint8, to_uint8  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPLITS = {"crops": range(101, 300, 2), "digits": range(300, 400)}

# name -> (output, greedy_pig options given the budget); "ig" is the reference
CONFIGS = {
    "k=50%, 64x1 crops / 32x2 digits (before)": ("softmax", "old"),
    "ranked=k=50%, uniform 16x4": ("softmax", {"rounds": 16, "steps": 4}),
    "ranked=75%, uniform 4x16": ("softmax", {"rounds": 4, "steps": 16, "ranked": 0.75}),
    "ranked=75%, uniform 8x8": ("softmax", {"rounds": 8, "steps": 8, "ranked": 0.75}),
    "ranked=75%, uniform 16x4 (chosen)": ("softmax", {"rounds": 16, "steps": 4, "ranked": 0.75}),
    "ranked=75%, uniform 32x2": ("softmax", {"rounds": 32, "steps": 2, "ranked": 0.75}),
    "ranked=100%, uniform 16x4": ("softmax", {"rounds": 16, "steps": 4, "ranked": 1.0}),
    "ranked=75%, geometric 8x8": ("softmax", {"rounds": 8, "steps": 8, "ranked": 0.75, "schedule": "geometric"}),
    "ranked=75%, geometric 16x4": ("softmax", {"rounds": 16, "steps": 4, "ranked": 0.75, "schedule": "geometric"}),
    "ranked=75%, uniform 8x8, log_softmax": ("log_softmax", {"rounds": 8, "steps": 8, "ranked": 0.75}),
}


def mismatch(seed: int, rounds: int = 16, steps: int = 4, ranked: float = 0.75, budget: int = 64) -> dict:
    """Share of tuning images where Greedy PIG's top-q set beats IG's: on ``G`` and on SIC's interpolated image."""
    out = {}
    for name in ("crops", "digits"):
        trained = models.crops_cnn(seed) if name == "crops" else models.digits_cnn(seed)
        model = trained.model
        wins = {q: {"G_blurred": [], "sic_image": []} for q in (0.02, 0.05, 0.10, 0.21)}
        for i in tqdm(SPLITS[name], desc=name, leave=False):
            x = trained.x_test[i]
            with torch.no_grad():
                probs = torch.softmax(model(x[None]), 1)[0]
            target = int(probs.argmax())
            if probs[target] < 0.8:  # SIC's first skip rule
                continue
            image = to_uint8(x)
            h, w = image.shape[:2]
            mask = sic.random_pixel_mask(h, w, 0.01, seed=seed + 10_000 + i)
            problem = ss.Attribution(model, x, baseline="blurred", target=target, k=h * w // 2, groups="pixels",
                                     output="softmax")
            ig = ss.solve(problem, "integrated_gradients", steps=budget)
            pig = ss.solve(problem, "greedy_pig", rounds=rounds, steps=steps, ranked=ranked)
            for q, entry in wins.items():
                n = max(1, int(round(q * h * w)))
                sets = [list(ig.info["order"][:n]), list(pig.info["order"][:n])]
                g_ig, g_pig = problem.objectives(sets)
                shown = []
                for subset in sets:
                    keep = np.zeros(h * w, dtype=bool)
                    keep[subset] = True
                    shown.append(sic.interpolated_image(image, keep.reshape(h, w) | mask))
                with torch.no_grad():
                    s_ig, s_pig = torch.softmax(model(from_uint8(np.stack(shown))), 1)[:, target].tolist()
                if abs(g_pig - g_ig) > 1e-6:
                    entry["G_blurred"].append(bool(g_pig > g_ig))
                if abs(s_pig - s_ig) > 1e-6:
                    entry["sic_image"].append(bool(s_pig > s_ig))
        out[name] = {}
        for q, entry in wins.items():
            out[name][q] = {k: (float(np.mean(v)), len(v)) for k, v in entry.items()}
            (g, ng), (si, ns) = out[name][q]["G_blurred"], out[name][q]["sic_image"]
            print(f"{name} top {q:>4.0%}: Greedy PIG > IG on G (blurred baseline) for {g:4.0%} of {ng}; "
                  f"on the SIC image's softmax for {si:4.0%} of {ns}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mismatch", action="store_true", help="the G-vs-SIC-image comparison instead of the tuning")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.mismatch:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "attribution_sic_mismatch.json").write_text(json.dumps(mismatch(args.seed), indent=1))
        return 0
    out = {}
    for name in ("crops", "digits"):
        trained = models.crops_cnn(args.seed) if name == "crops" else models.digits_cnn(args.seed)
        model = trained.model
        scores = {c: [] for c in ("ig", *CONFIGS)}
        for i in tqdm(SPLITS[name], desc=name, leave=False):
            x = trained.x_test[i]
            with torch.no_grad():
                target = int(model(x[None]).argmax())
            image = to_uint8(x)
            h, w = image.shape[:2]
            mask = sic.random_pixel_mask(h, w, 0.01, seed=args.seed + 10_000 + i)
            predict = sic.softmax_predictor(model, target, from_uint8)
            problems = {o: ss.Attribution(model, x, baseline="blurred", target=target, k=h * w // 2, groups="pixels",
                                          output=o) for o in ("softmax", "log_softmax", "raw")}
            maps = {"ig": ss.solve(problems["softmax"], "integrated_gradients", steps=args.budget)}
            for c, (output, opts) in CONFIGS.items():
                if opts == "old":
                    rounds = 64 if name == "crops" else 32
                    opts = {"rounds": rounds, "steps": args.budget // rounds}
                maps[c] = ss.solve(problems[output], "greedy_pig", **opts)
            row = {}
            for c, result in maps.items():
                try:
                    row[c] = sic.pic_curve(image, np.asarray(result.info["rank_scores"]), mask, predict).auc
                except sic.PicSkipped:
                    row = None
                    break
            if row:
                for c, v in row.items():
                    scores[c].append(v)
        ig = np.asarray(scores["ig"])
        out[name] = {"images": len(ig), "ig_mean_sic": float(ig.mean()),
                     "configs": {c: {"beats_ig": float(np.mean(np.asarray(v) > ig)), "mean_sic": float(np.mean(v))}
                                 for c, v in scores.items() if c != "ig"}}
        print(f"\n{name}: {len(ig)} tuning images scored; IG mean SIC {ig.mean():.3f}")
        for c, e in out[name]["configs"].items():
            print(f"  {c:<45} beats IG {e['beats_ig']:6.1%}   mean SIC {e['mean_sic']:.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "attribution_tuning.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
