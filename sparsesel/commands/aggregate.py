"""``sparsesel aggregate``: learn from bag aggregates of a table, print test risks, plot them.

Example::

    sparsesel aggregate --data builtin:diabetes --bag-size 10 --estimator interpolating --epsilon 1.0
"""

from __future__ import annotations

import argparse
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ESTIMATOR_NAMES = ("bag", "instance", "interpolating")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "aggregate",
        help="learn from bag-aggregated responses (optionally label-DP) and report test risks",
        description=(
            "Split a table into train/test, group the training rows into random bags, release only "
            "the bag means (regression) or label proportions (classification), optionally with a "
            "label-DP mechanism, fit bag-level, instance-level and interpolating estimators, print "
            "their test risks and write a plot of the test risk against the mixing weight rho."
        ),
    )
    parser.add_argument("--data", required=True, help="builtin:NAME (e.g. builtin:diabetes), FILE.csv or FILE.npz")
    parser.add_argument("--target", help="response column (CSV) or array key (NPZ)")
    parser.add_argument("--task", choices=("auto", "regression", "classification"), default="auto",
                        help="auto (default): the builtin set's own task, regression for files; classification "
                             "needs integer class labels (a CSV column of 0/1, say) and uses label proportions")
    parser.add_argument("--bag-size", type=int, required=True, help="rows per random bag")
    parser.add_argument("--estimator", choices=ESTIMATOR_NAMES, default="interpolating")
    parser.add_argument("--rho", default="cv", help="mixing weight in [0, 1], 'cv' (default) or 'auto' (regression)")
    parser.add_argument("--model", choices=("linear", "mlp"), default="linear")
    parser.add_argument("--alpha", type=float, default=None, help="ridge strength (default 0 regression, 1e-4 classification)")
    parser.add_argument("--epsilon", type=float, default=None, help="label-DP budget; omitted: exact aggregates")
    parser.add_argument(
        "--clip", default=None,
        help="LO,HI clipping range of responses for DP, with --epsilon only (regression; default: the training "
             "range, which is not itself private)",
    )
    parser.add_argument("--test-size", type=float, default=0.3, help="held-out fraction (default 0.3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="plot path (default aggregate_<data>_k<bag>.png)")
    parser.add_argument("--json", default=None, help="also write the risks as JSON to this path")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(func=run)


def _parse_rho(text: str) -> float | str:
    if text in ("cv", "auto"):
        return text
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--rho must be a number in [0, 1], 'cv' or 'auto', got {text!r}") from None
    if not 0 <= value <= 1:
        raise ValueError(f"--rho must be in [0, 1], got {value}")
    return value


def _parse_clip(text: str | None, epsilon: float | None) -> tuple[float, float] | None:
    """The ``--clip LO,HI`` range (finite, ``LO < HI``), checked before any work; ``None`` if not given."""
    if text is None:
        return None
    if epsilon is None:
        raise ValueError(
            f"--clip {text} needs --epsilon: it is the clipping range of the label-DP mechanism, and without "
            "--epsilon the aggregates are exact (nothing is clipped)"
        )
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--clip must be LO,HI, got {text!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"--clip needs finite LO,HI, got {text!r}")
    if not lo < hi:
        raise ValueError(f"--clip needs LO < HI, got {text!r}")
    return lo, hi


def run(args: argparse.Namespace) -> int:
    import torch

    from sparsesel.atomic import write_text_atomic

    _check_arguments(args)
    rho = _parse_rho(args.rho)
    clip = _parse_clip(args.clip, args.epsilon)
    out = _check_outputs(args)
    torch.set_num_threads(1)
    data = _bagged_data(args, clip)
    classification = data.classification
    estimators = _estimators(classification, rho, args.alpha, args.model, args.seed)
    results = {}
    for key, model in estimators.items():
        model.fit(data.X_tr, data.y_agg, data.bags)
        results[key] = data.risk(model) | {"rho": float(model.rho_)}
    metric = "accuracy" if classification else "mse"
    print(f"data {args.data}: {data.X_tr.shape[0]} training rows in {data.bags.max() + 1} bags of ~{args.bag_size}, "
          f"{data.X_te.shape[0]} test rows; {data.privacy}")
    print(f"{'estimator':<15}{'rho':>8}{metric:>14}" + (f"{'cross-ent.':>14}" if classification else ""))
    for key, row in results.items():
        mark = "  <- chosen" if key == args.estimator else ""
        extra = f"{row['cross_entropy']:>14.4f}" if classification else ""
        print(f"{key:<15}{row['rho']:>8.3f}{row[metric]:>14.4f}{extra}{mark}")
    grid, curve = _rho_curve(data, _alpha(args.alpha, classification), args.model, args.seed, metric)
    _write_plot(out, args, grid, curve, results[args.estimator], metric)
    print(f"plot written to {out}")
    if args.json:
        payload = {"data": args.data, "task": "classification" if classification else "regression",
                   "bag_size": args.bag_size, "epsilon": args.epsilon, "privacy": data.privacy,
                   "results": results, "rho_grid": grid.tolist(), "rho_curve": curve}
        write_text_atomic(args.json, json.dumps(payload, indent=2), force=args.force)
        print(f"risks written to {args.json}")
    return 0


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse an out-of-range numeric option, naming it."""
    if args.bag_size < 1:
        raise ValueError(f"--bag-size must be >= 1, got {args.bag_size}")
    if args.epsilon is not None and not args.epsilon > 0:
        raise ValueError(f"--epsilon must be > 0, got {args.epsilon}")
    if not 0 < args.test_size < 1:
        raise ValueError(f"--test-size must be in (0, 1), got {args.test_size}")
    if args.alpha is not None and not 0 <= args.alpha < float("inf"):
        raise ValueError(f"--alpha must be a finite number >= 0, got {args.alpha}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")


def _check_outputs(args: argparse.Namespace) -> Path:
    """The plot's path; refuse outputs that exist (without --force), clash with each other or with --data."""
    from sparsesel.outputs import check_output_file, same_file

    name = args.data.removeprefix("builtin:").replace("/", "_").replace(".", "_")
    out = Path(args.out or f"aggregate_{name}_k{args.bag_size}.png")
    data_file = None if args.data.startswith("builtin:") else args.data
    check_output_file(out, label="--out", inputs={"--data": data_file}, force=args.force)
    if args.json:
        if same_file(args.json, out):
            raise ValueError(f"--json and the plot (--out) name the same file {out}; give them different paths")
        check_output_file(args.json, label="--json", inputs={"--data": data_file}, force=args.force)
    return out


@dataclass
class _BaggedData:
    """The standardised train/test split, the bags and the released aggregates of the training responses.

    ``codes_te`` are the test labels as class indices (classification), ``privacy`` describes the release.
    """

    classification: bool
    X_tr: np.ndarray
    X_te: np.ndarray
    y_te: np.ndarray
    codes_te: np.ndarray | None
    bags: np.ndarray
    y_agg: np.ndarray
    privacy: str

    def risk(self, model) -> dict[str, float]:  # noqa: ANN001
        """Test risks of a fitted estimator: accuracy and cross-entropy, or mean squared error."""
        if self.classification:
            codes_te = self.codes_te
            proba = model.predict_proba(self.X_te)
            ce = float(-np.mean(np.log(np.clip(proba[np.arange(len(codes_te)), codes_te], 1e-300, None))))
            return {"accuracy": float(np.mean(model.predict(self.X_te) == codes_te)), "cross_entropy": ce}
        return {"mse": float(np.mean((model.predict(self.X_te) - self.y_te) ** 2))}


def _bagged_data(args: argparse.Namespace, clip: tuple[float, float] | None) -> _BaggedData:
    """Load ``--data``, split and standardise it, draw the bags and release the aggregates (``--epsilon``: DP)."""
    from sklearn.model_selection import train_test_split

    from sparsesel import aggregate as agg
    from sparsesel.tabular import load_table

    table = load_table(args.data, args.target)
    X, y = table.X, table.y
    classification = table.is_classification if args.task == "auto" else args.task == "classification"
    if classification:
        _check_class_labels(y, table.target_name)
        if clip is not None:
            raise ValueError(
                "--clip applies to regression responses; classification releases label proportions, "
                "which the label-DP mechanism does not clip: drop --clip"
            )
    X_tr, X_te, y_tr, y_te = train_test_split(
        X, y, test_size=args.test_size, random_state=args.seed, stratify=y if classification else None
    )
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    X_tr, X_te = (X_tr - mean) / std, (X_te - mean) / std
    if args.bag_size > X_tr.shape[0]:
        raise ValueError(f"--bag-size {args.bag_size} exceeds the {X_tr.shape[0]} training rows")
    bags = agg.random_bags(X_tr.shape[0], args.bag_size, args.seed)
    codes_te = None
    if classification:
        classes = np.unique(y_tr)
        codes_te = np.searchsorted(classes, y_te)
        y_agg, privacy = _released_proportions(np.searchsorted(classes, y_tr), bags, classes.size, args)
    else:
        y_agg, privacy = _released_means(y_tr, bags, clip, args)
    return _BaggedData(classification, X_tr, X_te, y_te, codes_te, bags, y_agg, privacy)


def _released_proportions(codes_tr: np.ndarray, bags: np.ndarray, n_classes: int,
                          args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """Each bag's label proportions, exact or label-DP (``--epsilon``), and a description of the release."""
    from sparsesel import aggregate as agg

    if args.epsilon is None:
        return agg.label_proportions(codes_tr, bags, np.arange(n_classes)), "exact aggregates (no DP)"
    release = agg.private_label_proportions(codes_tr, bags, epsilon=args.epsilon, classes=np.arange(n_classes),
                                            seed=args.seed)
    return release.values, release.guarantee()


def _released_means(y_tr: np.ndarray, bags: np.ndarray, clip: tuple[float, float] | None,
                    args: argparse.Namespace) -> tuple[np.ndarray, str]:
    """Each bag's mean response, exact or label-DP (``--epsilon``, clipped to ``clip`` or the training range)."""
    from sparsesel import aggregate as agg

    if args.epsilon is None:
        return agg.aggregate_responses(y_tr, bags), "exact aggregates (no DP)"
    derived = clip is None
    if derived:
        clip = (float(y_tr.min()), float(y_tr.max()))
    release = agg.private_aggregates(y_tr, bags, epsilon=args.epsilon, clip=clip, seed=args.seed)
    privacy = release.guarantee()
    if derived:
        privacy += " (clip range taken from the training responses: not itself private; pass --clip)"
    return release.values, privacy


def _alpha(alpha: float | None, classification: bool) -> float:
    """``--alpha``, or its default: 1e-4 for classification, 0 for regression."""
    return alpha if alpha is not None else (1e-4 if classification else 0.0)


def _estimators(classification: bool, rho: float | str, alpha: float | None, model: str, seed: int) -> dict:
    """The bag-level, instance-level and interpolating estimators of the task, unfitted."""
    from sparsesel import aggregate as agg

    common = {"alpha": _alpha(alpha, classification), "model": model, "seed": seed}
    if classification:
        if rho == "auto":
            raise ValueError("--rho auto uses the linear-regression risk formula; use a number or cv for classification")
        return {
            "bag": agg.BagLevelClassifier(**common),
            "instance": agg.InstanceLevelClassifier(**common),
            "interpolating": agg.InterpolatingClassifier(rho=rho, **common),
        }
    return {
        "bag": agg.BagLevelRegressor(**common),
        "instance": agg.InstanceLevelRegressor(**common),
        "interpolating": agg.InterpolatingRegressor(rho=rho, **common),
    }


def _rho_curve(data: _BaggedData, alpha: float, model: str, seed: int, metric: str) -> tuple[np.ndarray, list[float]]:
    """The test ``metric`` of the interpolating estimator at fixed rho = 0, 0.1, ..., 1."""
    from sparsesel import aggregate as agg

    cls = agg.InterpolatingClassifier if data.classification else agg.InterpolatingRegressor
    grid = np.linspace(0.0, 1.0, 11)
    common = {"alpha": alpha, "model": model, "seed": seed}
    curve = [data.risk(cls(rho=float(value), **common).fit(data.X_tr, data.y_agg, data.bags))[metric] for value in grid]
    return grid, curve


def _write_plot(out: Path, args: argparse.Namespace, grid: np.ndarray, curve: list[float], chosen: dict,
                metric: str) -> None:
    """Plot the rho curve and the chosen estimator's risk to ``out`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sparsesel.atomic import write_atomic

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(grid, curve, "o-", label="interpolating, fixed rho")
    ax.axhline(chosen[metric], color="C3", ls="--", label=f"{args.estimator} (rho={chosen['rho']:.2f})")
    ax.set_xlabel("rho (0 = bag-level, 1 = instance-level)")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"{args.data}, bag size {args.bag_size}" + (f", eps={args.epsilon:g}" if args.epsilon else ""))
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    write_atomic(out, lambda stream: stream.write(buffer.getvalue()), force=args.force)


def _check_class_labels(y: np.ndarray, name: str) -> None:
    """Classification needs at least two classes given as integer labels (floats such as 1.0 are fine)."""
    values = np.unique(y)
    if not np.all(np.isfinite(values)) or not np.all(values == np.round(values)):
        example = values[~(np.isfinite(values) & (values == np.round(values)))][0]
        raise ValueError(f"--task classification needs integer class labels, but column {name!r} holds "
                         f"non-integer values such as {example!r}; use --task regression for a continuous response")
    if values.size < 2:
        raise ValueError(f"--task classification needs at least two classes; column {name!r} holds only {values.tolist()}")
