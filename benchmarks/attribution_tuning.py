"""Choose Greedy PIG's image configuration for ``benchmarks/attribution.py`` on a tuning split.

Run::

    python benchmarks/attribution_tuning.py --configs "NAME|NAME|..."   # whole split, ~7 min for 5 configurations
    python benchmarks/attribution_tuning.py --images 50                 # every configuration, first 50 images
    python benchmarks/attribution_tuning.py --oracle                    # ~2 min: would an exact greedy win?
    python benchmarks/attribution_tuning.py --mismatch                  # ~1 min: G vs SIC image, top-q sets

The evaluation in ``benchmarks/attribution.py`` scores even-indexed crops test
images (0, 2, ..., 298) and digits test images 0..149; this script uses the
disjoint odd-indexed crops (1, 3, ..., 299) and digits 150..449 (all the other
digits test images: the first version used only 300..399, whose 98 scored
images put the chosen configuration's share 8 points above its rate over
150..449 — with ~100 images a share has a standard error of ~4 points). For each
configuration at the same gradient budget (64) it prints the share of tuning
images whose SIC AUC beats integrated gradients' (64 steps, softmax; blurred and
black baselines) and the mean SIC; a run over the whole split writes
``results/attribution_tuning.json`` (with every scored image's SIC AUC under
``sic_auc``, for paired comparisons). ``--seed`` changes the models' training
seed too: ``--seed 1`` is a replication on other models.

``--oracle`` runs an exact forward greedy (no gradients) on the two set
functions a Greedy PIG path can approximate — ``G`` with a fixed blurred
baseline (the linear path) and ``G`` of SIC's interpolated image — and reports
how often each beats IG on SIC: the ceiling of each path.

``--mismatch`` compares, on the same split, Greedy PIG's and IG's top-q pixel
sets by ``G`` (target softmax with the set at x and the rest at the blurred
baseline) and by the softmax of SIC's image (the set and 1% random pixels kept,
the rest linearly interpolated), for the linear and the chosen imputed path.
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
from sparsesel.attribution.ranking import rank_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attribution import from_uint8, to_uint8, wilson_interval  # noqa: E402
from solvers.attribution_greedy_pig import SIC_ROUNDS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SPLITS = {"crops": range(1, 300, 2), "digits": range(150, 450)}

# name -> (problem output, problem baseline, greedy_pig options); every configuration spends the budget (64)
# gradient evaluations, like the reference IG (64 steps, softmax, blurred baseline)
IMPUTED = {"path": "imputed", "ranked": 0.75}
CONFIGS = {
    "linear 16x4 uniform (the fixed-baseline schedule)": ("softmax", "blurred", {"rounds": 16, "steps": 4, "ranked": 0.75}),
    "linear 16x4 geometric": ("softmax", "blurred", {"rounds": 16, "steps": 4, "ranked": 0.75, "schedule": "geometric"}),
    "imputed 1x64 (no adaptivity)": ("softmax", "blurred", {**IMPUTED, "rounds": 1, "steps": 64}),
    "imputed 16x4 uniform": ("softmax", "blurred", {**IMPUTED, "rounds": 16, "steps": 4}),
    "imputed 16x4 geometric": ("softmax", "blurred", {**IMPUTED, "rounds": 16, "steps": 4, "schedule": "geometric"}),
    "imputed 8x8 geometric": ("softmax", "blurred", {**IMPUTED, "rounds": 8, "steps": 8, "schedule": "geometric"}),
    "imputed 8x8 uniform": ("softmax", "blurred", {**IMPUTED, "rounds": 8, "steps": 8}),
    "imputed 4x16 uniform": ("softmax", "blurred", {**IMPUTED, "rounds": 4, "steps": 16}),
    "imputed 4x16 geometric": ("softmax", "blurred", {**IMPUTED, "rounds": 4, "steps": 16, "schedule": "geometric"}),
    "imputed 4x16 geometric, no anchors": ("softmax", "blurred", {**IMPUTED, "rounds": 4, "steps": 16,
                                                                  "schedule": "geometric", "anchors": 0.0}),
    "imputed 4x16 geometric, power 1.5": ("softmax", "blurred", {**IMPUTED, "rounds": 4, "steps": 16,
                                                                 "schedule": "geometric", "power": 1.5}),
    "imputed 4x16 geometric, power 2.5": ("softmax", "blurred", {**IMPUTED, "rounds": 4, "steps": 16,
                                                                 "schedule": "geometric", "power": 2.5}),
    "imputed 3x21 geometric": ("softmax", "blurred", {**IMPUTED, "rounds": 3, "steps": 21, "schedule": "geometric"}),
    "imputed 5x12 geometric": ("softmax", "blurred", {**IMPUTED, "rounds": 5, "steps": 12, "schedule": "geometric"}),
    "imputed 2x32 geometric": ("softmax", "blurred", {**IMPUTED, "rounds": 2, "steps": 32, "schedule": "geometric"}),
    "imputed 8x8 geometric, power 1.5": ("softmax", "blurred", {**IMPUTED, "rounds": 8, "steps": 8,
                                                                "schedule": "geometric", "power": 1.5}),
    "imputed 32x2 geometric": ("softmax", "blurred", {**IMPUTED, "rounds": 32, "steps": 2, "schedule": "geometric"}),
    "imputed 16x4 geometric, power 3": ("softmax", "blurred", {**IMPUTED, "rounds": 16, "steps": 4, "schedule": "geometric",
                                                               "power": 3.0}),
    "imputed 16x4 geometric, power 1.5": ("softmax", "blurred", {**IMPUTED, "rounds": 16, "steps": 4,
                                                                 "schedule": "geometric", "power": 1.5}),
    "imputed 16x4 geometric, no anchors": ("softmax", "blurred", {**IMPUTED, "rounds": 16, "steps": 4,
                                                                  "schedule": "geometric", "anchors": 0.0}),
    "imputed 16x4 geometric, mean prior": ("softmax", "mean", {**IMPUTED, "rounds": 16, "steps": 4, "schedule": "geometric"}),
    "imputed 16x4 geometric, log_softmax": ("log_softmax", "blurred", {**IMPUTED, "rounds": 16, "steps": 4,
                                                                       "schedule": "geometric"}),
}
CONFIGS["imputed 8x8 SIC rounds"] = ("softmax", "blurred", {**IMPUTED, "rounds": 8, "steps": 8, "schedule": SIC_ROUNDS})
CHOSEN = "imputed 8x8 SIC rounds"
# anchor averaging (issue 8, not adopted: no change on digits, whose 64 pixels have no random anchor)
CONFIGS["SIC rounds, 8 anchor draws, one per node"] = ("softmax", "blurred", {**CONFIGS[CHOSEN][2], "anchor_draws": 8})


def mismatch(seed: int, options: dict, budget: int = 64) -> dict:
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
            pig = ss.solve(problem, "greedy_pig", seed=seed + i, **options)
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


def oracle(seed: int, budget: int = 64, n_images: int = 100) -> dict:
    """Would a perfect greedy win? Exact forward greedy (no gradients) on two set functions, digits tuning images.

    For the first 75% of the pixels (48 of 64), each step adds the pixel with the largest ``G(S ∪ {i})``,
    the rest follows IG's order; compared with IG (64 steps, blurred baseline) by SIC AUC:

    * ``G_linear``: softmax with ``S`` at ``x`` and the rest at the blurred baseline (Greedy PIG's linear path);
    * ``G_interpolated``: softmax of the image that keeps ``S`` and the four corners and linearly
      interpolates the rest, the image SIC scores (for 8×8 digits SIC's 1% random pixels are 0 pixels,
      so this start image is exactly the metric's, not a guess of it).
    """
    trained = models.digits_cnn(seed)
    model = trained.model
    scores = {"ig": [], "exact greedy on G_linear": [], "exact greedy on G_interpolated": []}
    for i in tqdm(list(range(300, 400))[:n_images], desc="oracle digits", leave=False):  # the images it was first run on
        x = trained.x_test[i]
        with torch.no_grad():
            target = int(model(x[None]).argmax())
        image = to_uint8(x)
        h, w = image.shape
        n = h * w
        mask = sic.random_pixel_mask(h, w, 0.01, seed=seed + 10_000 + i)
        predict = sic.softmax_predictor(model, target, from_uint8)
        problem = ss.Attribution(model, x, baseline="blurred", target=target, k=n // 2, groups="pixels", output="softmax")
        ig = ss.solve(problem, "integrated_gradients", steps=budget)

        def greedy(values_of) -> np.ndarray:
            chosen, order = np.zeros(n, dtype=bool), []
            for _ in range(int(0.75 * n)):
                candidates = np.flatnonzero(~chosen)
                best = candidates[int(np.argmax(values_of(chosen, candidates)))]
                chosen[best] = True
                order.append(best)
            rest = [j for j in ig.info["order"] if not chosen[j]]
            return rank_scores(np.asarray(order + rest)).reshape(h, w)

        def linear(chosen, candidates):
            weights = np.tile(chosen, (len(candidates), 1))
            weights[np.arange(len(candidates)), candidates] = True
            with torch.no_grad():
                return problem.evaluate(problem.compose(torch.from_numpy(weights.astype(np.float32)))).numpy()

        def interpolated(chosen, candidates):
            shown = []
            for j in candidates:
                keep = chosen.copy()
                keep[j] = True
                shown.append(sic.interpolated_image(image, keep.reshape(h, w) | mask))
            return predict(np.stack(shown))

        maps = {"ig": np.asarray(ig.info["rank_scores"]), "exact greedy on G_linear": greedy(linear),
                "exact greedy on G_interpolated": greedy(interpolated)}
        try:
            row = {c: sic.pic_curve(image, m, mask, predict).auc for c, m in maps.items()}
        except sic.PicSkipped:
            continue
        for c, v in row.items():
            scores[c].append(v)
    ig = np.asarray(scores["ig"])
    out = {"images": len(ig), "ig_mean_sic": float(ig.mean())}
    print(f"digits, {len(ig)} tuning images: IG (blurred, {budget} steps) mean SIC {ig.mean():.3f}")
    for c in list(scores)[1:]:
        v = np.asarray(scores[c])
        out[c] = {"beats_ig": float(np.mean(v > ig)), "mean_sic": float(v.mean())}
        print(f"  {c:<34} beats IG on {out[c]['beats_ig']:.1%}, mean SIC {v.mean():.3f}")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mismatch", action="store_true", help="the G-vs-SIC-image comparison instead of the tuning")
    parser.add_argument("--oracle", action="store_true", help="exact forward greedy on G_linear / G_interpolated (digits)")
    parser.add_argument("--images", type=int, default=None, help="first N tuning images per dataset (default all)")
    parser.add_argument("--configs", default="", help="only these configurations (exact names, |-separated)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.oracle:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "attribution_oracle.json").write_text(json.dumps(oracle(args.seed, args.budget), indent=1))
        return 0
    if args.mismatch:
        RESULTS.mkdir(parents=True, exist_ok=True)
        record = {path: mismatch(args.seed, CONFIGS[name][2], args.budget) for path, name in
                  (("linear", "linear 16x4 uniform (the fixed-baseline schedule)"), ("imputed", CHOSEN))}
        (RESULTS / "attribution_sic_mismatch.json").write_text(json.dumps(record, indent=1))
        return 0
    chosen = [c for c in CONFIGS if not args.configs or c in args.configs.split("|")]
    out = {}
    for name in ("crops", "digits"):
        trained = models.crops_cnn(args.seed) if name == "crops" else models.digits_cnn(args.seed)
        model = trained.model
        references = ("ig (blurred)", "ig (black)")
        scores = {c: [] for c in (*references, *chosen)}
        for i in tqdm(list(SPLITS[name])[: args.images], desc=name, leave=False):
            x = trained.x_test[i]
            with torch.no_grad():
                target = int(model(x[None]).argmax())
            image = to_uint8(x)
            h, w = image.shape[:2]
            mask = sic.random_pixel_mask(h, w, 0.01, seed=args.seed + 10_000 + i)
            predict = sic.softmax_predictor(model, target, from_uint8)
            problems = {}

            def problem(output, baseline):
                if (output, baseline) not in problems:
                    problems[output, baseline] = ss.Attribution(model, x, baseline=baseline, target=target, k=h * w // 2,
                                                                groups="pixels", output=output)
                return problems[output, baseline]

            maps = {"ig (blurred)": ss.solve(problem("softmax", "blurred"), "integrated_gradients", steps=args.budget),
                    "ig (black)": ss.solve(problem("softmax", "black"), "integrated_gradients", steps=args.budget)}
            for c in chosen:
                output, baseline, opts = CONFIGS[c]
                maps[c] = ss.solve(problem(output, baseline), "greedy_pig", seed=args.seed + i, **opts)
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
        ig = {r: np.asarray(scores[r]) for r in references}
        out[name] = {"images": len(ig[references[0]]), "tuning_images": f"test images {SPLITS[name]}"[:80],
                     "ig_mean_sic": {r: float(v.mean()) for r, v in ig.items()},
                     "configs": {c: {"beats_ig_blurred": float(np.mean(np.asarray(scores[c]) > ig[references[0]])),
                                     "ties_ig_blurred": float(np.mean(np.asarray(scores[c]) == ig[references[0]])),
                                     "beats_ig_blurred_95ci": wilson_interval(
                                         int(np.sum(np.asarray(scores[c]) > ig[references[0]])), len(scores[c])),
                                     "beats_ig_black": float(np.mean(np.asarray(scores[c]) > ig[references[1]])),
                                     "mean_sic": float(np.mean(scores[c]))} for c in chosen},
                     "sic_auc": {c: [float(v) for v in scores[c]] for c in scores}}
        print(f"\n{name}: {out[name]['images']} tuning images scored; IG mean SIC blurred "
              f"{ig[references[0]].mean():.3f}, black {ig[references[1]].mean():.3f}")
        print(f"  {'Greedy PIG configuration':<52}{'> IG blurred':>12}{'95% CI':>16}{'ties':>6}{'> IG black':>11}"
              f"{'mean SIC':>10}")
        for c, e in out[name]["configs"].items():
            low, high = e["beats_ig_blurred_95ci"]
            print(f"  {c:<52}{e['beats_ig_blurred']:>12.1%}{f'[{low:.1%}, {high:.1%}]':>16}{e['ties_ig_blurred']:>6.1%}"
                  f"{e['beats_ig_black']:>11.1%}{e['mean_sic']:>10.3f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.images is None:  # the whole tuning split (any subset of the configurations)
        (RESULTS / "attribution_tuning.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
