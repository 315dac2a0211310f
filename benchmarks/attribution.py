"""Greedy PIG vs integrated gradients (ours and Captum's): time, SIC/AIC, motif recovery, tabular selection.

Run::

    python benchmarks/attribution.py            # full run (~11 min on 2 cores, 1 thread)
    python benchmarks/attribution.py --quick    # smoke run (~2 min)

Sections (IG and every Greedy PIG variant spend 64 gradient evaluations per image):

1. Time of our ``integrated_gradients`` vs Captum's ``IntegratedGradients`` on the
   crops CNN (same model, steps, quadrature, one thread, warmed up, interleaved;
   goal ratio <= 1.1x), and Greedy PIG's time.
2. SIC and AIC AUC (PAIR's definitions, :mod:`sparsesel.attribution.sic`) per method
   on 150 test images of the crops CNN (even indices) and of the digits CNN (0..149),
   explaining the predicted class's softmax, with the blurred, the black (``x.min()``) and the
   zeros baseline (Captum's default; true black for these [0, 1] images) for both IG and Greedy PIG; the per-image share where Greedy PIG's SIC AUC beats
   IG's (goal >= 80%; ties, equal AUCs, are counted as not beating and reported, and
   the share's 95% Wilson interval is printed: over ~100-150 images it spans about
   +-7 points). Greedy PIG runs the imputed path (absent pixels interpolated
   from present ones, the set function SIC measures), 8 rounds x 8 steps whose
   boundaries are SIC's reveal fractions, 75% of the pixels fixed, each quadrature node with its own
   draw of the imputer's random anchors (``GREEDY_IMAGE``), chosen by
   ``benchmarks/attribution_tuning.py`` on disjoint tuning images; ``greedy_pig
   linear`` is the paper's straight-line path (16 x 4) and ``imputed, 1 round`` the
   same imputed path without adaptivity (an ablation). Captum's IG equals ours on
   the same inputs (tests/attribution) so it is timed, not re-scored.
2b. Greedy PIG vs IG at the same baseline (blurred, the headline, black and zeros) repeated on crops
   and digits models trained from other seeds (``--model-seeds``, default 1,2), same images and
   metric seed, and the share pooled over all models: on the tuning split the share
   moved from 80.3% to 65.9% of the digits between two trained models, so one model's
   share is not the method's.
3. Graphs: recovery of the planted motif nodes by the top-5 nodes, and G(top-5); and of the
   motif edges by the top-5 edges when the edge weights are attributed (``GraphEdgeInstance``).
4. Tabular: accuracy (R^2 for diabetes) of a logistic/linear model retrained on the
   top-k columns, and of the MLP re-evaluated with the other columns at their mean,
   against Sequential Attention and OMP (FeatureSelection solvers).

Torch runs on one thread; every model is trained (seeded) and warmed up before
timing. Writes ``benchmarks/results/attribution.json`` and PNG plots there.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import binomtest
from tqdm import tqdm

import sparsesel as ss
from solvers.attribution_greedy_pig import SIC_ROUNDS
from sparsesel.attribution import models, sic

RESULTS = Path(__file__).resolve().parent / "results"
#: Greedy PIG's image configuration, chosen on the tuning split by ``benchmarks/attribution_tuning.py``
#: (the same for both image datasets): the imputed path, 8 rounds x 8 steps (= IG's 64 gradient
#: evaluations) whose boundaries are eight of SIC's reveal fractions (``SIC_ROUNDS``: 0.5%, 2%, 4%, 7%,
#: 13%, 21%, 34%, 75%), so each round fixes exactly the pixels of one SIC band, up to 75% of the pixels
#: (the most that SIC reveals).
#: ``anchor_draws=8``: each of a round's 8 quadrature nodes uses its own draw of the imputer's random anchor
#: pixels, averaging over the random 1% that SIC keeps and no method can know (no extra gradients). Adopted on
#: the tuning split's crops (76.4% -> 83.6% beating IG, 10 images won against 2 lost; with models trained from
#: seed 1: 79.8% -> 84.0%); on 8x8 digits 1% of the pixels is no random anchor, so the option changes nothing
#: there (see the solver's docstring). On the evaluation split it did not carry over: with one draw, crops
#: shares were 78.7% / 78.5% / 77.9% for the models of seeds 0 / 1 / 2 (pooled 78.4%), with 8 draws 75.9% /
#: 78.5% / 77.9% (77.4%); the setting stays as the tuning split chose it.
GREEDY_IMAGE = {"path": "imputed", "rounds": len(SIC_ROUNDS), "steps": 8, "ranked": 0.75, "schedule": "sic",
                "anchor_draws": 8}
#: The previous recommendation (4 x 16, geometric schedule), kept as a row for comparison.
GREEDY_GEOMETRIC = {"path": "imputed", "rounds": 4, "steps": 16, "ranked": 0.75, "schedule": "geometric"}
#: The paper's straight-line path with the schedule tuned for it before (16 x 4, uniform, 75% fixed).
GREEDY_LINEAR = {"path": "linear", "rounds": 16, "steps": 4, "ranked": 0.75}

#: Gradient evaluations per image of IG (its steps), of Greedy PIG (rounds x steps) and of the timing section.
BUDGET = 64
#: label -> (solver, problem baseline, options); every gradient method spends the same budget (64).
IMAGE_METHODS = {
    "integrated_gradients (blurred)": ("integrated_gradients", "blurred", {"steps": BUDGET}),
    "integrated_gradients (black)": ("integrated_gradients", "black", {"steps": BUDGET}),
    "integrated_gradients (zeros)": ("integrated_gradients", "zeros", {"steps": BUDGET}),
    "greedy_pig imputed (blurred)": ("greedy_pig", "blurred", GREEDY_IMAGE),
    "greedy_pig imputed (black)": ("greedy_pig", "black", GREEDY_IMAGE),
    "greedy_pig imputed (zeros)": ("greedy_pig", "zeros", GREEDY_IMAGE),
    "greedy_pig imputed 4x16 geometric": ("greedy_pig", "blurred", GREEDY_GEOMETRIC),
    "greedy_pig imputed, 1 round": ("greedy_pig", "blurred", {**GREEDY_IMAGE, "rounds": 1, "steps": BUDGET, "ranked": None,
                                                              "schedule": "uniform"}),
    "greedy_pig linear (blurred)": ("greedy_pig", "blurred", GREEDY_LINEAR),
    "greedy_pig linear (black)": ("greedy_pig", "black", GREEDY_LINEAR),
    "gradient_x_input": ("gradient_x_input", "blurred", {}),
    "random": ("random", "blurred", {}),
}
#: (Greedy PIG, IG) pairs whose per-image SIC AUCs are compared; the first is the headline, the first
#: :data:`SAME_BASELINE` give both methods the same baseline: blurred, black (``x.min()``, the darkest value
#: of the image) and zeros (Captum's default baseline; true black for these images in [0, 1]).
COMPARISONS = (
    ("greedy_pig imputed (blurred)", "integrated_gradients (blurred)"),
    ("greedy_pig imputed (black)", "integrated_gradients (black)"),
    ("greedy_pig imputed (zeros)", "integrated_gradients (zeros)"),
    ("greedy_pig imputed (blurred)", "integrated_gradients (black)"),
    ("greedy_pig linear (blurred)", "integrated_gradients (blurred)"),
    ("greedy_pig linear (black)", "integrated_gradients (black)"),
    ("greedy_pig imputed (blurred)", "greedy_pig imputed, 1 round"),
    ("greedy_pig imputed 4x16 geometric", "integrated_gradients (blurred)"),
)
SAME_BASELINE = 3
#: Evaluation images (disjoint from the tuning split of attribution_tuning.py: crops odd, digits 150..449).
EVAL_IMAGES = {"crops": lambda n: range(0, 2 * n, 2), "digits": lambda n: range(n)}


def wilson_interval(wins: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a share ``wins / n`` (scipy's ``binomtest``), the spread of a per-image win share."""
    if n == 0:
        return (0.0, 1.0)
    interval = binomtest(wins, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (float(interval.low), float(interval.high))


def solve_image(problem, method, seed):
    """Per-pixel saliency map ``(H, W)`` (rank scores: higher = revealed first) and the Result."""
    solver, _, options = IMAGE_METHODS[method]
    options = {k: v for k, v in options.items() if v is not None}
    if solver == "random":
        options = {"seed": seed}
    elif solver == "greedy_pig":
        options = {**options, "seed": seed}
    result = ss.solve(problem, solver, **options)
    return np.asarray(result.info["rank_scores"], dtype=np.float64), result


# ----------------------------------------------------------------- 1. timing
def bench_time(trained, n_images, budget, repeats):
    from captum.attr import IntegratedGradients

    model = trained.model
    forward = lambda z: torch.softmax(model(z), dim=1)  # noqa: E731
    captum_ig = IntegratedGradients(forward)
    rows = {"ours_ig": [], "captum_ig": [], "greedy_pig": []}
    images = trained.x_test[:n_images]
    targets = model(images).argmax(1).tolist()
    problems = [ss.Attribution(model, x, baseline="blurred", target=t, k=512, groups="pixels", output="softmax")
                for x, t in zip(images, targets)]
    # warm-up (allocator, autograd graph caches)
    for p in problems[:2]:
        ss.solve(p, "integrated_gradients", steps=budget)
        captum_ig.attribute(p.x[None], baselines=p.baseline[None], target=p.target, n_steps=budget)
        ss.solve(p, "greedy_pig", **GREEDY_IMAGE)
    for _ in tqdm(range(repeats), desc="timing", leave=False):
        for p in problems:  # interleaved so that load changes hit both equally
            t = time.perf_counter()
            captum_ig.attribute(p.x[None], baselines=p.baseline[None], target=p.target, n_steps=budget, method="gausslegendre")
            rows["captum_ig"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ss.solve(p, "integrated_gradients", steps=budget, method="gausslegendre")
            rows["ours_ig"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ss.solve(p, "greedy_pig", **GREEDY_IMAGE, method="gausslegendre")
            rows["greedy_pig"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in rows.items()}
    return {
        "gradient_evaluations": budget,
        "median_seconds": med,
        "ratio_ours_over_captum": med["ours_ig"] / med["captum_ig"],
        "ratio_greedy_pig_over_captum": med["greedy_pig"] / med["captum_ig"],
        "samples": len(rows["ours_ig"]),
    }


# -------------------------------------------------------------- 2. SIC / AIC
def to_uint8(x: torch.Tensor) -> np.ndarray:
    array = np.round(x.numpy() * 255.0).clip(0, 255).astype(np.uint8)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def from_uint8(images: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(images.astype(np.float32) / 255.0)
    return t[:, None] if t.ndim == 3 else t.permute(0, 3, 1, 2)


def bench_sic(trained, name, n_images, seed, keep_examples, methods=None):
    """SIC/AIC of ``methods`` (default all of ``IMAGE_METHODS``) on the evaluation images; ``seed`` seeds the metric."""
    model = trained.model
    methods = {m: IMAGE_METHODS[m] for m in (methods or IMAGE_METHODS)}
    comparisons_run = [(w, r) for w, r in COMPARISONS if w in methods and r in methods]
    curves = {m: {"sic": [], "aic": []} for m in methods}
    per_image = []
    skipped = {"sic": 0, "aic": 0}
    examples = []
    indices = list(EVAL_IMAGES[name](n_images))
    images = trained.x_test[indices]
    with torch.no_grad():
        targets = model(images).argmax(1).tolist()
    for i, x, target in tqdm(list(zip(indices, images, targets)), desc=f"SIC {name}", leave=False):
        image = to_uint8(x)
        height, width = image.shape[:2]
        mask = sic.random_pixel_mask(height, width, 0.01, seed=seed + i)
        predictors = {"sic": sic.softmax_predictor(model, target, from_uint8),
                      "aic": sic.accuracy_predictor(model, target, from_uint8)}
        k = height * width // 2
        problems = {b: ss.Attribution(model, x, baseline=b, target=target, k=k, groups="pixels", output="softmax")
                    for b in ("blurred", "black", "zeros")}
        row, maps = {"image": i, "target": target}, {}
        for method, (_, baseline, _) in methods.items():
            # the method's own random numbers (anchors, random ranking) never share the metric's seed
            saliency, result = solve_image(problems[baseline], method, seed + 1_000_003 + i)
            out = sic.pic_curves(image, saliency, mask, predictors)
            for metric in ("sic", "aic"):
                if isinstance(out[metric], sic.PicCurve):
                    curves[method][metric].append(out[metric])
                    row[f"{method}|{metric}"] = out[metric].auc
                elif method == next(iter(methods)):
                    skipped[metric] += 1
            row[f"{method}|G"] = result.objective
            maps[method] = (result.info["attribution"], result.selected)
        if len(examples) < keep_examples and f"{comparisons_run[0][0]}|sic" in row:
            examples.append((x, maps, target))
        per_image.append(row)

    table = {}
    for method in methods:
        entry = {}
        for metric in ("sic", "aic"):
            if curves[method][metric]:
                cx, cy, auc = sic.aggregate_curves(curves[method][metric], "median")
                entry[f"{metric}_auc_median_curve"] = auc
                entry[f"{metric}_auc_mean_of_images"] = float(np.mean([c.auc for c in curves[method][metric]]))
                entry[f"{metric}_curve"] = (cx[::10].tolist(), cy[::10].tolist())
            entry[f"{metric}_images"] = len(curves[method][metric])
        entry["mean_softmax_of_top_k"] = float(np.mean([r[f"{method}|G"] for r in per_image]))
        table[method] = entry
    comparisons = []
    for winner, reference in comparisons_run:
        both = [r for r in per_image if f"{winner}|sic" in r and f"{reference}|sic" in r]
        diffs = np.asarray([r[f"{winner}|sic"] - r[f"{reference}|sic"] for r in both])
        comparisons.append({"method": winner, "reference": reference, "images": len(both),
                            "wins": int(np.sum(diffs > 0)), "beats_share": float(np.mean(diffs > 0)), "ties_share": float(np.mean(diffs == 0)),
                            "beats_share_95ci": wilson_interval(int(np.sum(diffs > 0)), len(both)),
                            "mean_auc_difference": float(diffs.mean())})
    return {"images": len(indices), "image_indices": f"{indices[0]}..{indices[-1]} step {indices[1] - indices[0]}",
            "k": k, "skipped": skipped, "methods": table, "comparisons": comparisons,
            "scored_images": comparisons[0]["images"], "per_image": per_image}, examples


# ------------------------------------------------------------------ 3. graphs
def bench_graphs(n_graphs, budget, rounds, seed):
    trained = models.motif_gnn(seed)
    adjacency, motifs = trained.extra["adjacency_test"], trained.extra["motif_nodes_test"]
    methods = ("greedy_pig", "integrated_gradients", "gradient", "gradient_x_input", "random")
    recovery = {m: [] for m in methods}
    softmax_top5 = {m: [] for m in methods}  # G(top-5): target softmax with only the 5 nodes' features present
    edge_recovery = {m: [] for m in methods}  # share of the top-5 edges inside the motif (edge weights attributed)
    edge_chance = []  # the same share for a uniformly random edge: motif edges / edges
    labels = trained.y_test[:n_graphs].numpy()
    for g in tqdm(range(n_graphs), desc="graphs", leave=False):
        instance = models.GraphInstance(trained.model, adjacency[g]).eval()
        x = trained.x_test[g]
        groups = np.arange(x.shape[0])[:, None]
        problem = ss.Attribution(instance, x, baseline="zeros", target=int(trained.y_test[g]), k=5, groups=groups,
                                 output="softmax")
        truth = set(motifs[g].tolist())
        for m in methods:
            options = {"greedy_pig": {"rounds": rounds, "steps": budget // rounds},
                       "integrated_gradients": {"steps": budget}, "random": {"seed": seed + g}}.get(m, {})
            result = ss.solve(problem, m, **options)
            recovery[m].append(len(truth & set(result.selected)) / 5.0)
            softmax_top5[m].append(result.objective)
        edge_instance = models.GraphEdgeInstance(trained.model, adjacency[g], x).eval()
        edges = edge_instance.edges.tolist()
        in_motif = np.array([u in truth and v in truth for u, v in edges])
        edge_chance.append(float(in_motif.mean()))
        edge_problem = ss.Attribution(edge_instance, torch.ones(len(edges)), baseline="zeros",
                                      target=int(trained.y_test[g]), k=5, output="softmax")
        for m in methods:
            options = {"greedy_pig": {"rounds": rounds, "steps": budget // rounds},
                       "integrated_gradients": {"steps": budget}, "random": {"seed": seed + g}}.get(m, {})
            chosen = list(ss.solve(edge_problem, m, **options).selected)
            edge_recovery[m].append(float(in_motif[chosen].mean()))
    return {"graphs": n_graphs, "gnn_test_accuracy": trained.test_accuracy,
            "motif_recovery": {m: float(np.mean(v)) for m, v in recovery.items()},
            "motif_recovery_house": {m: float(np.mean(np.asarray(v)[labels == 1])) for m, v in recovery.items()},
            "motif_recovery_cycle": {m: float(np.mean(np.asarray(v)[labels == 0])) for m, v in recovery.items()},
            "mean_softmax_of_top5": {m: float(np.mean(v)) for m, v in softmax_top5.items()},
            "edge_motif_recovery": {m: float(np.mean(v)) for m, v in edge_recovery.items()},
            "edge_motif_recovery_chance": float(np.mean(edge_chance))}


# ----------------------------------------------------------------- 4. tabular
def bench_tabular(budget, seed, ks):
    from sparsesel.attribution.selection_scores import masked_score, retrained_score

    out, notes = {}, []
    for name, k in ks.items():
        trained = models.tabular_mlp(name, seed)
        task = trained.extra["task"]
        X_tr, X_te = trained.x_train, trained.x_test
        y_tr, y_te = trained.y_train, trained.y_test
        d = X_tr.shape[1]
        objective = models.TableObjective(trained.model, y_tr, task).eval()
        problem = ss.Attribution(objective, X_tr, baseline="zeros", k=k, groups=np.arange(d))
        selections = {}
        for m, opts in (("greedy_pig", {"rounds": k, "steps": max(1, budget // k)}), ("integrated_gradients", {"steps": budget}),
                        ("gradient_x_input", {}), ("random", {"seed": seed})):
            selections[m] = list(ss.solve(problem, m, **opts).selected)
        fs = ss.FeatureSelection(X_tr.double().numpy(), y_tr.double().numpy(), k=k,
                                 loss="logistic" if task == "classification" else "squared")
        runs = [("sequential_attention", "sequential_attention", fs), ("omp", "omp", fs)]
        if task == "classification":  # OMP fits squared loss only: run it on the class labels as numbers
            runs[1] = ("omp (squared loss on labels)", "omp",
                       ss.FeatureSelection(X_tr.double().numpy(), y_tr.double().numpy(), k=k, loss="squared"))
        for label, solver, feature_problem in runs:
            try:
                selections[label] = list(ss.solve(feature_problem, solver).selected)
            except Exception as exc:  # a solver another helper is still writing, or one that refuses this loss
                notes.append(f"{name}: {label} skipped ({type(exc).__name__}: {str(exc)[:120]})")
        rows = {}
        for m, cols in selections.items():
            # LogisticRegression(max_iter=2000) / LinearRegression refitted on the columns; the MLP with the
            # other test columns at 0, their training mean (the columns are standardised)
            retrained = retrained_score(X_tr, y_tr, X_te, y_te, cols, task=task)
            reeval = masked_score(trained.model, X_te, y_te, cols, task=task, fill=0.0)
            rows[m] = {"selected": cols, "retrained": retrained, "mlp_masked": reeval}
        out[name] = {"k": k, "d": d, "task": task, "mlp_full_test_score": trained.test_accuracy, "methods": rows}
    return out, notes


# ------------------------------------------------------------------- plots
def plot_heatmaps(examples, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ("input", "integrated_gradients (blurred)", "greedy_pig imputed (blurred)", "greedy_pig linear (blurred)")
    fig, axes = plt.subplots(len(examples), len(cols), figsize=(2.4 * len(cols), 2.4 * len(examples)), squeeze=False)
    for row, (x, maps, target) in enumerate(examples):
        shown = x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()
        for c, name in enumerate(cols):
            ax = axes[row, c]
            ax.set_axis_off()
            if name == "input":
                ax.imshow(shown, cmap="gray" if x.shape[0] == 1 else None)
                ax.set_title(f"class {target}", fontsize=8)
                continue
            attr, selected = maps[name]
            bound = float(np.abs(attr).max()) or 1.0
            ax.imshow(attr, cmap="bwr", vmin=-bound, vmax=bound)
            first = np.asarray(selected[: max(1, attr.size // 20)])  # the first 5% chosen
            ys, xs = np.unravel_index(first, attr.shape)
            ax.scatter(xs, ys, s=2, c="k", marker=".")
            ax.set_title(name.replace("_", " "), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_sic_curves(sections, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # one colour per method (tab20 has enough for every row), the baseline as the line style
    styles = {"(black)": "--", "(zeros)": ":"}
    colours = plt.get_cmap("tab20").colors
    fig, axes = plt.subplots(len(sections), 2, figsize=(13, 3.8 * len(sections)), squeeze=False)
    for row, (name, section) in enumerate(sections.items()):
        for c, metric in enumerate(("sic", "aic")):
            ax = axes[row, c]
            for i, (method, entry) in enumerate(section["methods"].items()):
                if f"{metric}_curve" in entry:
                    cx, cy = entry[f"{metric}_curve"]
                    style = next((s for key, s in styles.items() if method.endswith(key)), "-")
                    ax.plot(cx, cy, linestyle=style, color=colours[i % len(colours)],
                            label=f"{method} ({entry[f'{metric}_auc_median_curve']:.3f})")
            ax.set_title(f"{name}: {metric.upper()} (median curve)", fontsize=9)
            ax.set_xlabel("normalised information (WebP)")
            ax.set_ylabel("normalised softmax" if metric == "sic" else "accuracy")
            ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -------------------------------------------------------------------- main
def parse_seeds(text: str) -> list[int]:
    """``"1,2"`` -> ``[1, 2]``; empty text -> ``[]``."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--model-seeds must be comma-separated integers, got {text!r}") from None


def headline_on_other_models(model_seeds, n_images, metric_seed, sections):
    """The same-baseline comparisons (``COMPARISONS[:SAME_BASELINE]``) on models trained from ``model_seeds``.

    Returns per-model rows and, per comparison and dataset, the share pooled over every image of every
    model (the main run's included): wins / images, with its Wilson interval.
    """
    pairs = COMPARISONS[:SAME_BASELINE]
    methods = tuple(dict.fromkeys(m for pair in pairs for m in pair))
    rows, wins, images = [], {}, {}

    def add(pair, name, comparison):
        key = (" > ".join(pair), name)
        wins[key] = wins.get(key, 0) + comparison["wins"]
        images[key] = images.get(key, 0) + comparison["images"]

    for name, section in sections.items():
        for c in section["comparisons"][:SAME_BASELINE]:
            add((c["method"], c["reference"]), name, c)
    for model_seed in model_seeds:
        trained = {"crops": models.crops_cnn(model_seed), "digits": models.digits_cnn(model_seed)}
        for name in ("crops", "digits"):
            section, _ = bench_sic(trained[name], name, n_images, metric_seed, 0, methods=methods)
            for c in section["comparisons"][:SAME_BASELINE]:
                rows.append({"comparison": f"{c['method']} > {c['reference']}", "dataset": name,
                             "model_seed": model_seed, "images": c["images"], "beats_share": c["beats_share"],
                             "beats_share_95ci": c["beats_share_95ci"],
                             "model_test_accuracy": trained[name].test_accuracy})
                add((c["method"], c["reference"]), name, c)
    pooled = [{"comparison": key[0], "dataset": key[1], "images": images[key], "beats_share": wins[key] / images[key],
               "beats_share_95ci": wilson_interval(wins[key], images[key])} for key in images] if rows else []
    return {"comparisons": [" > ".join(p) for p in pairs], "model_seeds": list(model_seeds), "per_model": rows,
            "pooled": pooled}


def package_versions() -> dict[str, str]:
    """Versions that change the figures: SIC's x axis is libwebp's byte count (via Pillow), and the
    crops come from scikit-image's bundled images."""
    from importlib.metadata import version

    import PIL.features

    names = ("numpy", "scipy", "scikit-image", "scikit-learn", "pillow", "captum")
    return {**{name: version(name) for name in names}, "libwebp": PIL.features.version("webp") or "unknown"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--images", type=int, default=None, help="images per SIC dataset (default 150; quick 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-seeds", default=None,
                        help="comma-separated seeds of further trained models on which the headline comparison is "
                             "repeated (default 1,2; none with --quick)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    n_images = args.images or (12 if args.quick else 150)
    started = time.perf_counter()

    t = time.perf_counter()
    trained = {"crops": models.crops_cnn(args.seed), "digits": models.digits_cnn(args.seed)}
    models.motif_gnn(args.seed)
    train_seconds = time.perf_counter() - t
    print(f"models trained in {train_seconds:.1f}s: crops acc {trained['crops'].test_accuracy:.3f}, "
          f"digits acc {trained['digits'].test_accuracy:.3f}", flush=True)

    timing = bench_time(trained["crops"], 6 if args.quick else 12, BUDGET, 1 if args.quick else 3)
    sections, all_examples = {}, []
    for name in ("crops", "digits"):
        section, examples = bench_sic(trained[name], name, n_images, args.seed, 2)
        sections[name] = section
        all_examples += examples
    extra_seeds = parse_seeds(args.model_seeds if args.model_seeds is not None else ("" if args.quick else "1,2"))
    other_models = headline_on_other_models(extra_seeds, n_images, args.seed, sections)
    graphs = bench_graphs(20 if args.quick else 100, 50, 5, args.seed)
    tabular, notes = bench_tabular(50, args.seed, {"breast_cancer": 5, "wine": 3, "diabetes": 3})

    RESULTS.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    plot_heatmaps(all_examples, RESULTS / f"attribution_heatmaps{suffix}.png")
    plot_sic_curves(sections, RESULTS / f"attribution_sic_curves{suffix}.png")

    # ---------------------------------------------------------------- report
    print(f"\n== 1. time at {BUDGET} gradient evaluations (crops CNN 3x32x32, softmax, 1 thread, warmed up; "
          f"median of {timing['samples']}) ==")
    med = timing["median_seconds"]
    print(f"{'method':<26}{'seconds':>10}{'vs Captum':>11}")
    print(f"{'Captum IntegratedGradients':<26}{med['captum_ig']:>10.4f}{1.0:>10.2f}x")
    r = timing["ratio_ours_over_captum"]
    print(f"{'ours integrated_gradients':<26}{med['ours_ig']:>10.4f}{r:>10.2f}x   goal <= 1.10x: {'met' if r <= 1.1 else 'MISSED'}")
    print(f"{'greedy_pig (imputed 8x8)':<26}{med['greedy_pig']:>10.4f}"
          f"{timing['ratio_greedy_pig_over_captum']:>10.2f}x   (overhead, reported separately)")

    for name, section in sections.items():
        print(f"\n== 2. {name}: SIC / AIC AUC, test images {section['image_indices']} ({section['images']}; "
              f"{section['scored_images']} scored for SIC, skipped sic={section['skipped']['sic']} "
              f"aic={section['skipped']['aic']}); PAIR pic.py definitions; {BUDGET} gradient evaluations per "
              f"gradient method; G(top-k) = softmax with the top k={section['k']} pixels over the method's baseline ==")
        print(f"{'method':<34}{'SIC(median)':>12}{'SIC(mean)':>11}{'AIC(median)':>12}{'AIC(mean)':>11}{'G(top-k)':>10}")
        for method, e in section["methods"].items():
            def f(key):
                return f"{e[key]:.3f}" if e.get(key) is not None else "-"
            print(f"{method:<34}{f('sic_auc_median_curve'):>12}{f('sic_auc_mean_of_images'):>11}"
                  f"{f('aic_auc_median_curve'):>12}{f('aic_auc_mean_of_images'):>11}{f('mean_softmax_of_top_k'):>10}")
        print(f"{'per-image SIC AUC: method':<34} {'> reference':<34}{'share':>7}{'95% CI':>16}{'ties':>6}{'mean diff':>10}")
        for c in section["comparisons"]:
            goal = ("   goal >= 80%: " + ("met" if c["beats_share"] >= 0.8 else "MISSED")) if c is section["comparisons"][0] else ""
            low, high = c["beats_share_95ci"]
            print(f"{c['method']:<34} {c['reference']:<34}{c['beats_share']:>7.1%}{f'[{low:.1%}, {high:.1%}]':>16}"
                  f"{c['ties_share']:>6.1%}{c['mean_auc_difference']:>+10.3f}{goal}")

    if other_models["per_model"]:
        print(f"\n== 2b. Greedy PIG vs IG at the same baseline on crops/digits models trained from seeds "
              f"{args.seed} (above) and {', '.join(map(str, other_models['model_seeds']))} (same images, same "
              f"metric seed): the share depends on the trained model ==")
        print(f"{'comparison':<66}{'dataset':<8}{'model':>6}{'images':>8}{'share':>8}{'95% CI':>17}")
        for row in other_models["per_model"] + other_models["pooled"]:
            low, high = row["beats_share_95ci"]
            goal = "" if "model_seed" in row else f"   goal >= 80%: {'met' if row['beats_share'] >= 0.8 else 'MISSED'}"
            print(f"{row['comparison']:<66}{row['dataset']:<8}{row.get('model_seed', 'pooled'):>6}{row['images']:>8}"
                  f"{row['beats_share']:>8.1%}{f'[{low:.1%}, {high:.1%}]':>17}{goal}")

    print(f"\n== 3. graphs: planted-motif recovery of the top-5 nodes ({graphs['graphs']} test graphs, "
          f"GCN test acc {graphs['gnn_test_accuracy']:.3f}) ==")
    print(f"{'method':<22}{'all':>8}{'house (class 1)':>17}{'cycle (class 0)':>17}{'G(top-5)':>10}")
    for m, v in graphs["motif_recovery"].items():
        print(f"{m:<22}{v:>8.3f}{graphs['motif_recovery_house'][m]:>17.3f}{graphs['motif_recovery_cycle'][m]:>17.3f}"
              f"{graphs['mean_softmax_of_top5'][m]:>10.3f}")
    print("(random expectation 5/25 = 0.200; G(top-5) = target softmax with only the top-5 nodes' features, "
          "the set function Greedy PIG maximises)")
    print("edges (attribution over edge weights, all-ones graph vs the edgeless baseline): share of the top-5 edges "
          f"inside the motif; a random edge: {graphs['edge_motif_recovery_chance']:.3f}")
    for m, v in graphs["edge_motif_recovery"].items():
        print(f"{m:<22}{v:>8.3f}")

    print("\n== 4. tabular: test score with the top-k columns (accuracy; R^2 for diabetes) ==")
    print(f"{'dataset':<15}{'k/d':>6}  {'method':<30}{'retrained':>10}{'MLP masked':>11}")
    for name, entry in tabular.items():
        for m, row in entry["methods"].items():
            print(f"{name:<15}{entry['k']:>3}/{entry['d']:<2}  {m:<30}{row['retrained']:>10.3f}{row['mlp_masked']:>11.3f}")
        print(f"{'':<15}{'':>6}  {'(MLP, all columns)':<30}{'':>10}{entry['mlp_full_test_score']:>11.3f}")
    for note in notes:
        print("note:", note)
    total = time.perf_counter() - started
    print(f"\ntotal {total:.0f}s (model training {train_seconds:.0f}s); results in {RESULTS}")

    record = {
        "command": " ".join(["python", "benchmarks/attribution.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": platform.platform(), "torch": torch.__version__, "threads": 1, "versions": package_versions(),
        "budget": BUDGET, "greedy_image": {**GREEDY_IMAGE, "schedule": list(SIC_ROUNDS)}, "greedy_linear": GREEDY_LINEAR,
        "greedy_geometric": GREEDY_GEOMETRIC, "seconds_total": total,
        "timing": timing, "sic": {k: {kk: vv for kk, vv in v.items()} for k, v in sections.items()},
        "other_models": other_models, "graphs": graphs, "tabular": tabular, "notes": notes,
    }
    path = RESULTS / ("attribution_quick.json" if args.quick else "attribution.json")
    path.write_text(json.dumps(record, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
