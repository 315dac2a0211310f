"""``sparsesel demo``: feature selection on scikit-learn's digits, every solver side by side."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

import sparsesel as ss
from sparsesel.atomic import write_atomic, write_text_atomic
from sparsesel.outputs import check_output_folder

#: Solvers compared by the demo, with the options that make them fast on digits.
DEMO_SOLVERS = {
    "omp": ("squared", {}),
    "greedy_forward": ("squared", {}),
    "lasso": ("squared", {}),
    "sequential_attention": ("logistic", {"model": "mlp", "seed": 0}),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="feature selection on scikit-learn's digits: a table and a plot",
        description=(
            "Select k of the 64 pixels of scikit-learn's digits with every feature-selection solver, "
            "refit a logistic regression on the chosen pixels and report held-out accuracy and time."
        ),
    )
    parser.add_argument("--k", type=int, default=12, help="pixels to select (default 12)")
    parser.add_argument("--out", default="sparsesel-demo", help="output folder (default ./sparsesel-demo); only demo.json and demo.png in it are written")
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    out = Path(args.out)
    report_path, plot_path = out / "demo.json", out / "demo.png"
    check_output_folder(out, files=[report_path.name, plot_path.name], force=args.force)

    digits = load_digits()
    X_train, X_test, y_train, y_test = train_test_split(
        digits.data / 16.0, digits.target, test_size=0.3, random_state=0, stratify=digits.target
    )
    rows = []
    for name, (loss, options) in DEMO_SOLVERS.items():
        problem = ss.FeatureSelection(X_train, y_train, k=args.k, loss=loss)
        result = ss.solve(problem, solver=name, **options)
        chosen = list(result.selected)
        model = LogisticRegression(max_iter=2000).fit(X_train[:, chosen], y_train)
        accuracy = float(model.score(X_test[:, chosen], y_test))
        rows.append({"solver": name, "selected": chosen, "test_accuracy": accuracy, "seconds": result.wall_time})

    all_pixels = LogisticRegression(max_iter=2000).fit(X_train, y_train).score(X_test, y_test)
    print(f"digits: select {args.k} of 64 pixels; logistic regression refit on them, 30% held out")
    print(f"{'solver':<22}{'test accuracy':>14}{'time (s)':>10}")
    for row in rows:
        print(f"{row['solver']:<22}{row['test_accuracy']:>14.3f}{row['seconds']:>10.3f}")
    print(f"{'all 64 pixels':<22}{all_pixels:>14.3f}{'':>10}")

    payload = {"k": args.k, "all_pixels_accuracy": all_pixels, "rows": rows}
    write_text_atomic(report_path, json.dumps(payload, indent=2) + "\n", force=args.force)
    _plot(rows, digits.images.mean(axis=0), plot_path, args.force)
    print(f"wrote {report_path} and {plot_path}")
    return 0


def _plot(rows: list[dict], mean_image: np.ndarray, path: Path, force: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(rows), figsize=(3 * len(rows), 3.8))
    for axis, row in zip(np.atleast_1d(axes), rows):
        axis.imshow(mean_image, cmap="gray")
        ys, xs = np.divmod(np.array(row["selected"]), 8)
        axis.scatter(xs, ys, c=np.arange(len(xs)), cmap="autumn", s=60, edgecolors="k")
        axis.set_title(f"{row['solver']}\naccuracy {row['test_accuracy']:.3f}", fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle("Selected pixels on the mean digit (colour = pick order)")
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    write_atomic(path, lambda stream: figure.savefig(stream, format="png", dpi=110), force=force)
    plt.close(figure)
