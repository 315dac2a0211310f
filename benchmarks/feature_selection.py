"""Feature-selection benchmark: sparsesel's solvers against scikit-learn, measured in the same run.

(a) ``omp`` vs ``sklearn.linear_model.OrthogonalMatchingPursuit`` at n=20000, d=2000, k=100
    (Gaussian design with column offsets, sparse ground truth, noise). Both are timed as
    users call them, from the raw arrays: ``ss.solve(ss.FeatureSelection(X, y, k), "omp")``
    (validation and copy of X included) and ``OrthogonalMatchingPursuit(n_nonzero_coefs=k).fit(X, y)``
    (defaults: ``fit_intercept=True``, ``precompute="auto"`` = Gram matrix since n > d).
    One untimed warm-up run of each, then the best of 3. Goal: same support, time ratio <= 1.0.

(b) ``sequential_attention`` (model="mlp", its defaults) vs ``SequentialFeatureSelector``
    (forward, cv=5, estimator = StandardScaler + LogisticRegression(max_iter=1000)) on
    scikit-learn's digits, k=20, 75/25 stratified split (seed 0). The held-out accuracy of
    the SAME refit model — StandardScaler + LogisticRegression(max_iter=1000) trained on the
    chosen training columns — is reported for both (and for all 64 features). SA is timed
    through ``ss.solve`` (which includes the problem's own logistic refit for
    ``Result.objective``; that refit is also timed alone and shown). "plain MLP" is one
    training run of the same network (64 -> hidden ReLU -> 10, Adam, same lr, epochs and
    batch) on all features, in torch, written here because the solver exposes no such helper.
    Warm-up: one tiny SA run and one tiny MLP run before timing. Every method runs with the
    same number of BLAS/OpenMP/torch threads (``--threads``, default 1). Goals: SA >= 50x faster
    than SFS with accuracy >= SFS - 1 point; SA time <= 1.5x the plain MLP run.

Usage::

    python benchmarks/feature_selection.py            # full run (SFS takes minutes)
    python benchmarks/feature_selection.py --quick    # small smoke run

Writes ``benchmarks/results/feature_selection{,_quick}.json`` and ``.png`` (atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- (a) OMP
def _omp_data(n: int, d: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + rng.normal(0.0, 2.0, d)
    beta = np.zeros(d)
    support = rng.choice(d, k, replace=False)
    beta[support] = rng.choice([-1.0, 1.0], k) * rng.uniform(0.5, 2.0, k)
    y = X @ beta + 0.5 * rng.standard_normal(n) + 1.0
    return X, y


def bench_omp(n: int, d: int, k: int, repeats: int, bar: Any) -> dict[str, Any]:
    import sparsesel as ss
    from sklearn.linear_model import OrthogonalMatchingPursuit

    X, y = _omp_data(n, d, k)

    def ours() -> tuple[float, float, Any]:
        start = time.perf_counter()
        result = ss.solve(ss.FeatureSelection(X, y, k=k), solver="omp")
        return time.perf_counter() - start, result.wall_time, result

    def theirs() -> tuple[float, Any]:
        start = time.perf_counter()
        model = OrthogonalMatchingPursuit(n_nonzero_coefs=k).fit(X, y)
        return time.perf_counter() - start, model

    ours()  # warm-up (imports, page faults)
    theirs()
    bar.update(1)
    ours_times, solver_times, sk_times = [], [], []
    for _ in range(repeats):
        total, solver_only, result = ours()
        ours_times.append(total)
        solver_times.append(solver_only)
        sk_time, model = theirs()
        sk_times.append(sk_time)
        bar.update(1)
    selected = list(result.selected)
    sk_support = np.flatnonzero(model.coef_)
    coef_error = float(np.max(np.abs(result.info["coef"] - model.coef_[selected])) / np.max(np.abs(model.coef_)))
    return {
        "n": n,
        "d": d,
        "k": k,
        "same_support": bool(set(selected) == set(sk_support.tolist())),
        "max_rel_coef_diff": coef_error,
        "sklearn_s": min(sk_times),
        "omp_s": min(ours_times),
        "omp_solver_only_s": min(solver_times),
        "ratio": min(ours_times) / min(sk_times),
        "ratio_solver_only": min(solver_times) / min(sk_times),
        "passes_over_X": result.info["n_passes"],
        "gram_columns": result.info["n_gram_columns"],
        "goal": "same support, ratio <= 1.0",
        "goal_met": bool(set(selected) == set(sk_support.tolist()) and min(ours_times) <= min(sk_times)),
    }


# --------------------------------------------------------------- (b) SA vs SFS
def _refit_accuracy(X_train, y_train, X_test, y_test, subset) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    model.fit(X_train[:, subset], y_train)
    return float(model.score(X_test[:, subset], y_test))


def _plain_mlp_seconds(X: np.ndarray, y: np.ndarray, hidden: int, epochs: int, lr: float, batch_size, seed: int) -> float:
    """One training run of the SA network on all features (no attention), in torch."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    Xs = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    data = torch.as_tensor(Xs, dtype=torch.float32)
    classes, codes = np.unique(y, return_inverse=True)
    target = torch.as_tensor(codes, dtype=torch.long)
    d = data.shape[1]
    bound_in, bound_out = 1 / np.sqrt(d), 1 / np.sqrt(hidden)
    W_in = ((torch.rand((d, hidden), generator=generator) * 2 - 1) * bound_in).requires_grad_(True)
    b_hidden = ((torch.rand(hidden, generator=generator) * 2 - 1) * bound_in).requires_grad_(True)
    W_out = ((torch.rand((hidden, classes.size), generator=generator) * 2 - 1) * bound_out).requires_grad_(True)
    b_out = torch.zeros(classes.size, requires_grad=True)
    optimizer = torch.optim.Adam([W_in, b_hidden, W_out, b_out], lr=lr)
    n = data.shape[0]
    start = time.perf_counter()
    for _ in range(epochs):
        batches = [None] if batch_size is None or batch_size >= n else torch.split(torch.randperm(n, generator=generator), batch_size)
        for batch in batches:
            x = data if batch is None else data[batch]
            t = target if batch is None else target[batch]
            out = torch.relu(x @ W_in + b_hidden) @ W_out + b_out
            loss = torch.nn.functional.cross_entropy(out, t)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return time.perf_counter() - start


def bench_sa(k: int, cv: int, bar: Any) -> dict[str, Any]:
    import sparsesel as ss
    from sklearn.datasets import load_digits
    from sklearn.feature_selection import SequentialFeatureSelector
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)

    # warm-up: torch kernels, solver imports
    ss.solve(ss.FeatureSelection(X_train[:200], y_train[:200], k=2, loss="logistic", alpha=1e-2),
             solver="sequential_attention", model="mlp", epochs=4)
    _plain_mlp_seconds(X_train[:200], y_train[:200], 8, 2, 0.01, None, 0)
    bar.update(1)

    problem = ss.FeatureSelection(X_train, y_train, k=k, loss="logistic")
    start = time.perf_counter()
    result = ss.solve(problem, solver="sequential_attention", model="mlp", seed=0)
    sa_seconds = time.perf_counter() - start
    start = time.perf_counter()
    problem.objective(result.selected)
    refit_seconds = time.perf_counter() - start
    sa_selected = list(result.selected)
    bar.update(1)

    info = result.info
    plain_seconds = _plain_mlp_seconds(X_train, y_train, info["hidden"], info["epochs"], info["lr"], info["batch_size"], 0)
    bar.update(1)

    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    sfs = SequentialFeatureSelector(estimator, n_features_to_select=k, direction="forward", cv=cv)
    start = time.perf_counter()
    sfs.fit(X_train, y_train)
    sfs_seconds = time.perf_counter() - start
    sfs_selected = np.flatnonzero(sfs.get_support()).tolist()
    bar.update(1)

    sa_acc = _refit_accuracy(X_train, y_train, X_test, y_test, sa_selected)
    sfs_acc = _refit_accuracy(X_train, y_train, X_test, y_test, sfs_selected)
    all_acc = _refit_accuracy(X_train, y_train, X_test, y_test, list(range(X.shape[1])))
    sa_selection_only = sa_seconds - refit_seconds
    return {
        "dataset": "digits (1797 x 64, 10 classes), 75/25 stratified split, seed 0",
        "k": k,
        "sfs_cv": cv,
        "refit_model": "StandardScaler + LogisticRegression(max_iter=1000) on the chosen columns",
        "sa_options": {key: info[key] for key in ("model", "epochs", "hidden", "lr", "batch_size", "warmup")},
        "sa_selected": sa_selected,
        "sfs_selected": sfs_selected,
        "sa_accuracy": sa_acc,
        "sfs_accuracy": sfs_acc,
        "all_features_accuracy": all_acc,
        "sa_s": sa_seconds,
        "sa_problem_refit_s": refit_seconds,
        "sa_without_refit_s": sa_selection_only,
        "sfs_s": sfs_seconds,
        "plain_mlp_s": plain_seconds,
        "speedup_vs_sfs": sfs_seconds / sa_seconds,
        "speedup_vs_sfs_without_refit": sfs_seconds / sa_selection_only,
        "sa_over_plain_mlp": sa_seconds / plain_seconds,
        "sa_without_refit_over_plain_mlp": sa_selection_only / plain_seconds,
        "goal": "speedup >= 50 with accuracy >= SFS - 0.01; SA / plain MLP <= 1.5",
        "goal_met_speed": bool(sfs_seconds / sa_seconds >= 50),
        "goal_met_accuracy": bool(sa_acc >= sfs_acc - 0.01),
        "goal_met_plain_mlp": bool(sa_seconds / plain_seconds <= 1.5),
    }


# ------------------------------------------------------------------- output
def _table(omp_row: dict[str, Any], sa_row: dict[str, Any]) -> str:
    lines = [
        f"(a) omp vs scikit-learn OrthogonalMatchingPursuit  n={omp_row['n']} d={omp_row['d']} k={omp_row['k']} (best of 3 after warm-up)",
        f"  {'same support':<34}{str(omp_row['same_support']):>12}   (max rel coef diff {omp_row['max_rel_coef_diff']:.1e})",
        f"  {'scikit-learn fit [s]':<34}{omp_row['sklearn_s']:>12.3f}",
        f"  {'sparsesel problem+solve [s]':<34}{omp_row['omp_s']:>12.3f}   ratio {omp_row['ratio']:.3f}  (goal <= 1.0)",
        f"  {'sparsesel solve only [s]':<34}{omp_row['omp_solver_only_s']:>12.3f}   ratio {omp_row['ratio_solver_only']:.3f}",
        f"  {'passes over X / Gram columns':<34}{omp_row['passes_over_X']:>6} / {omp_row['gram_columns']}",
        "",
        f"(b) sequential_attention (mlp) vs SequentialFeatureSelector on digits, k={sa_row['k']}, SFS cv={sa_row['sfs_cv']}",
        f"  {'method':<34}{'time [s]':>10}{'held-out acc':>14}",
        f"  {'SequentialFeatureSelector':<34}{sa_row['sfs_s']:>10.2f}{sa_row['sfs_accuracy']:>14.4f}",
        f"  {'sequential_attention (ss.solve)':<34}{sa_row['sa_s']:>10.2f}{sa_row['sa_accuracy']:>14.4f}",
        f"  {'  of which problem refit':<34}{sa_row['sa_problem_refit_s']:>10.2f}",
        f"  {'  without the refit':<34}{sa_row['sa_without_refit_s']:>10.2f}",
        f"  {'plain MLP run, all features':<34}{sa_row['plain_mlp_s']:>10.2f}",
        f"  {'all 64 features (refit model)':<34}{'':>10}{sa_row['all_features_accuracy']:>14.4f}",
        f"  speed-up vs SFS: {sa_row['speedup_vs_sfs']:.1f}x (without refit {sa_row['speedup_vs_sfs_without_refit']:.1f}x; goal >= 50x)",
        f"  accuracy SA - SFS: {100 * (sa_row['sa_accuracy'] - sa_row['sfs_accuracy']):+.2f} points (goal >= -1)",
        f"  SA / plain MLP: {sa_row['sa_over_plain_mlp']:.2f}x (without refit {sa_row['sa_without_refit_over_plain_mlp']:.2f}x; goal <= 1.5x)",
    ]
    return "\n".join(lines)


def _plot(omp_row: dict[str, Any], sa_row: dict[str, Any], path: Path) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["scikit-learn", "sparsesel\n(problem+solve)", "sparsesel\n(solve only)"]
    values = [omp_row["sklearn_s"], omp_row["omp_s"], omp_row["omp_solver_only_s"]]
    left.bar(names, values, color=["grey", "tab:blue", "tab:cyan"])
    left.set_ylabel("seconds (best of 3)")
    left.set_title(f"OMP n={omp_row['n']} d={omp_row['d']} k={omp_row['k']}")
    points = [
        ("SFS", sa_row["sfs_s"], sa_row["sfs_accuracy"], "grey"),
        ("SA (ss.solve)", sa_row["sa_s"], sa_row["sa_accuracy"], "tab:blue"),
        ("SA w/o refit", sa_row["sa_without_refit_s"], sa_row["sa_accuracy"], "tab:cyan"),
    ]
    for label, seconds, accuracy, color in points:
        right.scatter(seconds, accuracy, color=color, label=label, s=50)
    right.axvline(sa_row["plain_mlp_s"], color="tab:orange", linestyle="--", label="plain MLP run")
    right.axhline(sa_row["all_features_accuracy"], color="k", linestyle=":", label="all 64 features")
    right.set_xscale("log")
    right.set_xlabel("wall time [s] (log)")
    right.set_ylabel("held-out accuracy (same refit model)")
    right.set_title(f"digits, k={sa_row['k']}")
    right.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    _atomic_write(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (n=4000, d=400, k=20; digits k=4, cv=3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS/OpenMP and torch threads for every method alike (default 1: on a shared "
                             "machine, spinning BLAS/torch threads slow everything down many-fold)")
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    import sklearn.feature_selection  # noqa: F401  (load every native library before limiting threads)
    import sklearn.linear_model  # noqa: F401

    import sparsesel.registry

    sparsesel.registry.load_solvers()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    n, d, k_omp = (4000, 400, 20) if args.quick else (20000, 2000, 100)
    k_sa, cv = (4, 3) if args.quick else (20, 5)
    repeats = 3
    with threadpool_limits(args.threads), tqdm(total=repeats + 1 + 4, desc="feature-selection benchmark", unit="stage") as bar:
        omp_row = bench_omp(n, d, k_omp, repeats, bar)
        sa_row = bench_sa(k_sa, cv, bar)
        from threadpoolctl import threadpool_info

        pools = sorted({(pool["internal_api"], pool["num_threads"]) for pool in threadpool_info()})
    table = _table(omp_row, sa_row)
    print(table)
    print(f"threads per method: {args.threads}; load average before/after: "
          f"{load_before[0]:.1f} / {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    import sklearn

    stem = "feature_selection_quick" if args.quick else "feature_selection"
    payload = {
        "command": "python benchmarks/feature_selection.py" + (" --quick" if args.quick else ""),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__,
                    "scikit-learn": sklearn.__version__, "torch": torch.__version__,
                    "threads_per_method": args.threads, "load_average_before": load_before[0],
                    "load_average_after": os.getloadavg()[0],
                    "thread_pools_during_run": pools},
        "warm_up": "one untimed run of each method before timing",
        "omp": omp_row,
        "sequential_attention": sa_row,
        "table": table,
    }
    _atomic_write(RESULTS / f"{stem}.json", json.dumps(payload, indent=2).encode())
    _plot(omp_row, sa_row, RESULTS / f"{stem}.png")
    print(f"wrote {RESULTS / (stem + '.json')} and {RESULTS / (stem + '.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
