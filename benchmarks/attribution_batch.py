"""Batched attribution: a batch of images in one call, against Captum's batched IntegratedGradients.

A batch of ``--batch`` (default 8) held-out 3×32×32 crops of the crops CNN, each with its own
predicted class as target, explained at IG's budget of 64 gradient evaluations per image
(softmax output, blurred baseline, Gauss–Legendre nodes), on one CPU thread:

* ``captum_ig``: ``IntegratedGradients(softmax∘model).attribute(x, baselines, target=targets,
  n_steps=64)`` — Captum's default ``internal_batch_size=None``, every path point of every
  image in one forward/backward pass (what a Captum user gets);
* ``captum_ig_chunked``: the same with ``internal_batch_size`` set to our default points per
  pass (for reference: Captum given the chunking we use);
* ``ours_ig``: ``sparsesel.attribution.attribute(model, x, baselines, target=targets,
  output="softmax", n_steps=64)``, end to end (problem validation included);
* ``ours_ig_loop``: the per-example loop this replaces (one single-input problem and solve per image);
* ``greedy_pig``: ``attribute(..., method="greedy_pig", groups="pixels")`` with the image setting of
  ``benchmarks/attribution.py`` (imputed path, 8 SIC rounds × 8 steps, ranked 0.75, 8 anchor draws).

Every repeat runs all variants one after the other (interleaved, so that changes in machine load hit
all of them); the table reports the best (minimum) time of each over the repeats, after a warm-up
call of each. The machine is shared: rerun to see the spread. Goals (issue 21): ``ours_ig`` ≤ 1.0×
``captum_ig``; ``greedy_pig`` ≤ 2.5× IG.

Run: ``python benchmarks/attribution_batch.py`` (``--quick``: 2 repeats); writes
``benchmarks/results/attribution_batch.json`` (``attribution_batch_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import sparsesel as ss
from sparsesel.attribution import attribute, models
from sparsesel.attribution.integrated import points_per_pass

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET = 64
#: Greedy PIG's image setting (the same as ``benchmarks/attribution.py``'s ``GREEDY_IMAGE``).
GREEDY_IMAGE = {"path": "imputed", "rounds": 8, "steps": 8, "ranked": 0.75, "schedule": "sic", "anchor_draws": 8}


def variants(model, images, baselines, targets):
    """The timed calls, each returning attributions of the images' shape."""
    from captum.attr import IntegratedGradients

    captum = IntegratedGradients(lambda z: torch.softmax(model(z), dim=1))
    problem = ss.Attribution(model, images, baseline=baselines, target=targets, k=1, output="softmax", batched=True)
    chunk = points_per_pass(problem, None)

    def ours_ig_loop():
        maps = []
        for image, baseline, target in zip(images, baselines, targets.tolist()):
            single = ss.Attribution(model, image, baseline=baseline, target=target, k=1, output="softmax")
            maps.append(torch.as_tensor(ss.solve(single, "integrated_gradients", steps=BUDGET).info["attribution"]))
        return torch.stack(maps)

    return chunk, {
        "captum_ig": lambda: captum.attribute(images, baselines=baselines, target=targets, n_steps=BUDGET,
                                              method="gausslegendre"),
        "captum_ig_chunked": lambda: captum.attribute(images, baselines=baselines, target=targets, n_steps=BUDGET,
                                                      method="gausslegendre", internal_batch_size=chunk),
        "ours_ig": lambda: attribute(model, images, baselines=baselines, target=targets, output="softmax",
                                     n_steps=BUDGET),
        "ours_ig_loop": ours_ig_loop,
        "greedy_pig": lambda: attribute(model, images, baselines=baselines, target=targets, output="softmax",
                                        method="greedy_pig", groups="pixels", **GREEDY_IMAGE),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 repeats instead of 7")
    parser.add_argument("--batch", type=int, default=8, help="images per batch (default 8)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7; quick 2)")
    parser.add_argument("--seed", type=int, default=0, help="training seed of the crops CNN")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats = args.repeats or (2 if args.quick else 7)

    trained = models.crops_cnn(args.seed)
    model = trained.model
    images = trained.x_test[: args.batch]
    with torch.no_grad():
        targets = model(images).argmax(dim=1)
    from sparsesel.attribution.baselines import blurred

    baselines = torch.stack([blurred(image) for image in images])
    chunk, calls = variants(model, images, baselines, targets)

    reference = calls["captum_ig"]()
    agreement = float((calls["ours_ig"]() - reference).abs().max())
    for call in calls.values():  # warm-up: allocator, autograd, FFT plans
        call()
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            seconds[name].append(time.perf_counter() - started)
    best = {name: min(values) for name, values in seconds.items()}
    ratios = {
        "ours_ig / captum_ig": best["ours_ig"] / best["captum_ig"],
        "ours_ig / captum_ig_chunked": best["ours_ig"] / best["captum_ig_chunked"],
        "ours_ig_loop / captum_ig": best["ours_ig_loop"] / best["captum_ig"],
        "greedy_pig / ours_ig": best["greedy_pig"] / best["ours_ig"],
        "greedy_pig / captum_ig": best["greedy_pig"] / best["captum_ig"],
    }

    print(f"batch of {args.batch} crops (3x32x32), {BUDGET} gradient evaluations per image, softmax, blurred "
          f"baseline, 1 thread; best of {repeats} interleaved repeats after a warm-up; our points per pass: {chunk}")
    print(f"{'variant':<20}{'best s':>9}{'median s':>10}{'vs captum_ig':>14}")
    for name, values in seconds.items():
        median = sorted(values)[len(values) // 2]
        print(f"{name:<20}{best[name]:>9.4f}{median:>10.4f}{best[name] / best['captum_ig']:>13.2f}x")
    for name, value in ratios.items():
        print(f"ratio {name:<28} {value:.3f}")
    print(f"max |ours - captum| over the batch's attributions: {agreement:.2e}")
    print(f"goal ours_ig <= 1.0x captum_ig: {'met' if ratios['ours_ig / captum_ig'] <= 1.0 else 'missed'}; "
          f"goal greedy_pig <= 2.5x IG: ours {ratios['greedy_pig / ours_ig']:.2f}x, "
          f"Captum's {ratios['greedy_pig / captum_ig']:.2f}x")

    record = {
        "command": " ".join(["python", "benchmarks/attribution_batch.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": platform.platform(), "torch": torch.__version__, "threads": 1, "batch": args.batch,
        "budget": BUDGET, "points_per_pass": chunk, "greedy_image": GREEDY_IMAGE, "repeats": repeats,
        "seconds": seconds, "best_seconds": best, "ratios": ratios, "max_abs_difference_vs_captum": agreement,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("attribution_batch_quick.json" if args.quick else "attribution_batch.json")
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
