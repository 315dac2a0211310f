"""Benchmark: learning from aggregate responses (bag-level vs instance-level vs interpolating).

Run::

    python benchmarks/aggregate.py            # full run (a few minutes on 2 cores)
    python benchmarks/aggregate.py --quick    # smoke run

Sections (all test risks are on held-out individual rows):

1. Synthetic Gaussian designs (where the theory applies): excess risk ``‖θ̂-θ₀‖²`` vs
   bag size for bag-level, instance-level, interpolating at the formula's ρ* and
   interpolating with ρ by cross-validation, with and without label DP (Laplace,
   several ε); Monte Carlo next to the risk formula.
2. Predicted optimal bag size (formula) vs the empirical one (Monte Carlo argmin).
3. scikit-learn's diabetes (regression, MSE) and breast cancer (classification,
   accuracy) vs bag size, with and without DP; baselines: the bag-level estimator
   (the ratio column), the random-bag bound-regularised ERM, and the Mean Map
   label-proportion estimator (classification).
4. Curated (k-means) vs random bags at equal mean bag size; a categorical design
   where curated bags make the instance-level loss exact.
5. An MLP on diabetes (the paper's real-data experiment used an MLP on Boston).

The baseline of every ratio is the bag-level estimator measured in the same run.
Fit times are measured after a warm-up fit (torch). Writes
``benchmarks/results/aggregate.json`` and PNG plots beside it.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_diabetes  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from tqdm import tqdm  # noqa: E402

from sparsesel import aggregate as agg  # noqa: E402
from sparsesel.aggregate.risk import optimal_bag_size, predicted_risk  # noqa: E402
from sparsesel.atomic import write_text_atomic  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def mean_se(values) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    se = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else float("nan")
    return float(values.mean()), float(se)


# --------------------------------------------------------------------------- 1-2 synthetic
def synthetic(cfg: dict, progress: tqdm) -> dict:
    n, d, signal, noise, clip = cfg["n"], cfg["d"], 1.0, 1.0, 3.0
    gamma = d / n
    rng = np.random.default_rng(0)
    rows = []
    for eps in cfg["epsilons"]:
        for k in cfg["syn_bags"]:
            draws = {name: [] for name in ("bag", "instance", "interp*", "interp-cv")}
            pred_star = predicted_risk("interpolating", gamma, k, signal, noise, epsilon=eps, clip=clip if eps else None)
            for _ in range(cfg["reps"]):
                X = rng.standard_normal((n, d))
                theta = rng.standard_normal(d)
                theta *= math.sqrt(signal) / np.linalg.norm(theta)
                y = X @ theta + math.sqrt(noise) * rng.standard_normal(n)
                bags = agg.random_bags(n, k, rng)
                y_agg = (agg.aggregate_responses(y, bags) if eps is None else
                         agg.private_aggregates(y, bags, epsilon=eps, clip=clip, seed=rng).values)
                fits = {
                    "bag": agg.BagLevelRegressor(fit_intercept=False),
                    "instance": agg.InstanceLevelRegressor(fit_intercept=False),
                    "interp*": agg.InterpolatingRegressor(rho=pred_star.rho, fit_intercept=False),
                    "interp-cv": agg.InterpolatingRegressor(rho="cv", fit_intercept=False, rho_grid=np.linspace(0, 1, 6), cv=4),
                }
                for name, model in fits.items():
                    model.fit(X, y_agg, bags)
                    draws[name].append(float(np.sum((model.coef_ - theta) ** 2)))
            row = {"epsilon": eps, "bag_size": k, "rho_star": pred_star.rho}
            for name, values in draws.items():
                row[name] = mean_se(values)
            for name, est in (("bag", "bag"), ("instance", "instance"), ("interp*", "interpolating")):
                row[f"theory_{name}"] = predicted_risk(est, gamma, k, signal, noise, epsilon=eps, clip=clip if eps else None).excess_risk
            rows.append(row)
            progress.update(1)
    # predicted vs empirical optimal bag size (interpolating at rho*)
    optimum = []
    for eps in cfg["epsilons"]:
        choice = optimal_bag_size(n, d, signal, noise, epsilon=eps, clip=clip if eps else None, bag_sizes=cfg["opt_bags"])
        empirical = {}
        for k, rho in zip(choice.bag_sizes, choice.rhos):
            mean, se, _ = agg.simulate_risk(n, d, k, signal, noise, rho=rho, epsilon=eps, clip=clip if eps else None,
                                            n_reps=cfg["opt_reps"], seed=100 + k)
            empirical[k] = (mean, se)
        k_emp = min(empirical, key=lambda k: empirical[k][0])
        optimum.append({"epsilon": eps, "k_predicted": choice.bag_size, "risk_predicted": choice.prediction.excess_risk,
                        "k_empirical": k_emp, "risk_empirical": empirical[k_emp],
                        "risk_empirical_at_predicted": empirical[choice.bag_size],
                        "curve_theory": dict(zip(choice.bag_sizes, choice.risks)), "curve_mc": empirical})
        progress.update(1)
    return {"n": n, "d": d, "signal": signal, "noise": noise, "clip": clip, "rows": rows, "optimum": optimum}


# --------------------------------------------------------------------------- 3 real data
def _standardise(X_tr, X_te):
    mean, std = X_tr.mean(axis=0), X_tr.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (X_tr - mean) / std, (X_te - mean) / std


def diabetes(cfg: dict, progress: tqdm) -> dict:
    X, y = load_diabetes(return_X_y=True)
    rows = []
    for eps in cfg["real_eps"]:
        for k in cfg["real_bags"]:
            draws = {name: [] for name in ("bag", "instance", "interp-cv", "interp-auto", "random-ERM", "oracle")}
            for rep in range(cfg["real_reps"]):
                X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=rep)
                X_tr, X_te = _standardise(X_tr, X_te)
                bags = agg.random_bags(len(y_tr), k, rep)
                clip = (25.0, 346.0)  # the documented target range of the data set (public knowledge)
                y_agg = (agg.aggregate_responses(y_tr, bags) if eps is None else
                         agg.private_aggregates(y_tr, bags, epsilon=eps, clip=clip, seed=rep).values)
                models = {
                    "bag": agg.BagLevelRegressor(),
                    "instance": agg.InstanceLevelRegressor(),
                    "interp-cv": agg.InterpolatingRegressor(rho="cv"),
                    "interp-auto": agg.InterpolatingRegressor(rho="auto"),
                    "random-ERM": agg.RandomBagERM(),
                }
                for name, model in models.items():
                    try:
                        model.fit(X_tr, y_agg, bags)
                        draws[name].append(float(np.mean((model.predict(X_te) - y_te) ** 2)))
                    except ValueError:  # rho='auto' needs more bags than features
                        draws[name].append(float("nan"))
                oracle = agg.BagLevelRegressor().fit(X_tr, y_tr, np.arange(len(y_tr)))  # individual labels
                draws["oracle"].append(float(np.mean((oracle.predict(X_te) - y_te) ** 2)))
            row = {"epsilon": eps, "bag_size": k}
            for name, values in draws.items():
                values = [v for v in values if np.isfinite(v)]
                row[name] = mean_se(values) if values else (float("nan"), float("nan"))
            rows.append(row)
            progress.update(1)
    return {"rows": rows}


def breast_cancer(cfg: dict, progress: tqdm) -> dict:
    X, y = load_breast_cancer(return_X_y=True)
    rows = []
    for eps in cfg["real_eps"]:
        for k in cfg["cls_bags"]:
            draws = {name: [] for name in ("bag", "instance", "interp-cv", "mean-map", "oracle")}
            for rep in range(cfg["real_reps"]):
                X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=rep, stratify=y)
                X_tr, X_te = _standardise(X_tr, X_te)
                bags = agg.random_bags(len(y_tr), k, rep)
                props = (agg.label_proportions(y_tr, bags) if eps is None else
                         agg.private_label_proportions(y_tr, bags, epsilon=eps, seed=rep).values)
                models = {
                    "bag": agg.BagLevelClassifier(alpha=1e-3),
                    "instance": agg.InstanceLevelClassifier(alpha=1e-3),
                    "interp-cv": agg.InterpolatingClassifier(rho="cv", alpha=1e-3, rho_grid=[0, 0.25, 0.5, 0.75, 1], cv=3),
                    "mean-map": agg.MeanMapClassifier(alpha=1e-3),
                }
                for name, model in models.items():
                    model.fit(X_tr, props, bags)
                    draws[name].append(float(np.mean(model.predict(X_te) == y_te)))
                oracle = agg.BagLevelClassifier(alpha=1e-3).fit(X_tr, agg.label_proportions(y_tr, np.arange(len(y_tr))), np.arange(len(y_tr)))
                draws["oracle"].append(float(np.mean(oracle.predict(X_te) == y_te)))
            row = {"epsilon": eps, "bag_size": k}
            for name, values in draws.items():
                row[name] = mean_se(values)
            rows.append(row)
            progress.update(1)
    return {"rows": rows}


# --------------------------------------------------------------------------- 4 curated vs random
def curated_vs_random(cfg: dict, progress: tqdm) -> dict:
    rows = []
    data = {"diabetes": load_diabetes(return_X_y=True), "breast_cancer": load_breast_cancer(return_X_y=True)}
    for name, (X, y) in data.items():
        for k in cfg["cur_bags"]:
            draws = {key: [] for key in ("random/bag", "random/instance", "curated/bag", "curated/instance")}
            for rep in range(cfg["real_reps"]):
                X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=rep)
                X_tr, X_te = _standardise(X_tr, X_te)
                n_bags = len(y_tr) // k
                assignments = {"random": agg.random_bags(len(y_tr), k, rep),
                               "curated": agg.curated_bags(X_tr, by="kmeans", n_clusters=n_bags, seed=rep)}
                for kind, bags in assignments.items():
                    if name == "diabetes":
                        y_agg = agg.aggregate_responses(y_tr, bags)
                        for est, model in (("bag", agg.BagLevelRegressor(alpha=1e-3)), ("instance", agg.InstanceLevelRegressor())):
                            model.fit(X_tr, y_agg, bags)
                            draws[f"{kind}/{est}"].append(float(np.mean((model.predict(X_te) - y_te) ** 2)))
                    else:
                        props = agg.label_proportions(y_tr, bags)
                        for est, model in (("bag", agg.BagLevelClassifier(alpha=1e-3)), ("instance", agg.InstanceLevelClassifier(alpha=1e-3))):
                            model.fit(X_tr, props, bags)
                            draws[f"{kind}/{est}"].append(float(np.mean(model.predict(X_te) == y_te)))
            rows.append({"data": name, "bag_size": k, "metric": "mse" if name == "diabetes" else "accuracy",
                         **{key: mean_se(v) for key, v in draws.items()}})
            progress.update(1)
    # categorical design: curated bags on all features make instance-level training exact
    rng = np.random.default_rng(1)
    levels = rng.normal(size=(40, 5))
    theta = rng.normal(size=5)
    cat = []
    for rep in range(cfg["real_reps"]):
        X = levels[rng.integers(0, 40, 2000)]
        y = X @ theta + rng.normal(size=2000)
        bags_c = agg.curated_bags(X)
        k_mean = len(y) / (bags_c.max() + 1)
        bags_r = agg.random_bags(len(y), int(round(k_mean)), rep)
        full = agg.BagLevelRegressor().fit(X, y, np.arange(len(y)))
        res = {"individual labels": np.sum((full.coef_ - theta) ** 2)}
        for kind, bags in (("curated", bags_c), ("random", bags_r)):
            y_agg = agg.aggregate_responses(y, bags)
            model = agg.InstanceLevelRegressor().fit(X, y_agg, bags)
            res[f"{kind}/instance"] = float(np.sum((model.coef_ - theta) ** 2))
        res["coef_equal_curated_vs_individual"] = bool(np.allclose(
            agg.InstanceLevelRegressor().fit(X, agg.aggregate_responses(y, bags_c), bags_c).coef_, full.coef_, atol=1e-8))
        res["mean_bag_size"] = k_mean
        cat.append(res)
    progress.update(1)
    return {"rows": rows, "categorical": cat}


# --------------------------------------------------------------------------- 5 MLP + timing
def mlp_diabetes(cfg: dict, progress: tqdm) -> dict:
    X, y = load_diabetes(return_X_y=True)
    rows = []
    for k in cfg["mlp_bags"]:
        draws = {rho: [] for rho in (0.0, 0.5, 1.0)}
        for rep in range(cfg["mlp_reps"]):
            X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=rep)
            X_tr, X_te = _standardise(X_tr, X_te)
            bags = agg.random_bags(len(y_tr), k, rep)
            y_agg = agg.aggregate_responses(y_tr, bags)
            for rho in draws:
                model = agg.InterpolatingRegressor(rho=rho, model="mlp", hidden_layer_sizes=(32,), max_iter=cfg["mlp_iter"],
                                                   learning_rate=1e-2, alpha=1e-3, seed=rep).fit(X_tr, y_agg, bags)
                draws[rho].append(float(np.mean((model.predict(X_te) - y_te) ** 2)))
        rows.append({"bag_size": k, **{f"rho={rho:g}": mean_se(v) for rho, v in draws.items()}})
        progress.update(1)
    return {"rows": rows}


def timing() -> dict:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 100))
    y = X @ rng.standard_normal(100) + rng.standard_normal(2000)
    bags = agg.random_bags(2000, 10, 0)
    y_agg = agg.aggregate_responses(y, bags)
    Xc = X[:, :10]
    props = agg.label_proportions((y > 0).astype(int), bags)
    jobs = {
        "InterpolatingRegressor linear (n=2000,d=100)": lambda: agg.InterpolatingRegressor(rho=0.5).fit(X, y_agg, bags),
        "InterpolatingRegressor rho=cv (55 fits)": lambda: agg.InterpolatingRegressor(rho="cv").fit(X, y_agg, bags),
        "InterpolatingClassifier logistic (d=10)": lambda: agg.InterpolatingClassifier(rho=0.5).fit(Xc, props, bags),
        "InterpolatingRegressor MLP 300 steps (d=10)": lambda: agg.InterpolatingRegressor(rho=0.5, model="mlp", max_iter=300).fit(Xc, y_agg, bags),
        "risk formula, optimal rho": lambda: agg.optimal_rho(0.05, 10, 1.0, 1.0),
    }
    out = {}
    for name, job in jobs.items():
        job()  # warm-up (torch kernels, imports)
        start = time.perf_counter()
        job()
        out[name] = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------- output
def fmt(pair, digits=3) -> str:
    mean, se = pair
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}±{se:.{digits}f}" if np.isfinite(se) else f"{mean:.{digits}f}"


def print_tables(res: dict) -> None:
    syn = res["synthetic"]
    print(f"\n[1] Synthetic Gaussian, n={syn['n']}, d={syn['d']}, ‖θ₀‖²=1, σ²=1, clip ±{syn['clip']:g}: excess risk ‖θ̂-θ₀‖², "
          "Monte Carlo mean±se (formula); ratio = interp* / bag-level (baseline)")
    head = f"{'eps':>5} {'k':>3} | {'bag-level':>22} | {'instance-level':>22} | {'interp rho*':>22} {'rho*':>5} | {'interp cv':>13} | {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for r in syn["rows"]:
        eps = "none" if r["epsilon"] is None else f"{r['epsilon']:g}"
        cells = []
        for name in ("bag", "instance", "interp*"):
            theory = r[f"theory_{name}"]
            cells.append(f"{fmt(r[name]):>13} ({theory:6.3f})" if np.isfinite(theory) else f"{fmt(r[name]):>13} (   inf)")
        ratio = r["interp*"][0] / r["bag"][0]
        print(f"{eps:>5} {r['bag_size']:>3} | {cells[0]:>22} | {cells[1]:>22} | {cells[2]:>22} {r['rho_star']:5.2f} | {fmt(r['interp-cv']):>13} | {ratio:6.3f}")
    print("\n[2] Optimal bag size (interpolating at rho*): predicted by the formula vs Monte Carlo argmin")
    print(f"{'eps':>5} | {'k* formula':>10} {'risk (formula)':>15} {'risk MC at k*':>14} | {'k* MC':>6} {'risk MC':>13}")
    for o in syn["optimum"]:
        eps = "none" if o["epsilon"] is None else f"{o['epsilon']:g}"
        print(f"{eps:>5} | {o['k_predicted']:>10} {o['risk_predicted']:>15.3f} {fmt(o['risk_empirical_at_predicted']):>14} | "
              f"{o['k_empirical']:>6} {fmt(o['risk_empirical']):>13}")
    print("\n[3a] diabetes (442×10), test MSE (lower is better), 70/30 splits; oracle = individual labels; ratio = interp-cv / bag")
    head = f"{'eps':>5} {'k':>3} | {'bag':>13} {'instance':>13} {'interp-cv':>13} {'interp-auto':>13} {'random-ERM':>13} {'oracle':>13} | {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for r in res["diabetes"]["rows"]:
        eps = "none" if r["epsilon"] is None else f"{r['epsilon']:g}"
        cells = " ".join(f"{fmt(r[n], 0):>13}" for n in ("bag", "instance", "interp-cv", "interp-auto", "random-ERM", "oracle"))
        print(f"{eps:>5} {r['bag_size']:>3} | {cells} | {r['interp-cv'][0] / r['bag'][0]:6.3f}")
    print("\n[3b] breast cancer (569×30), test accuracy (higher is better); ratio = interp-cv / bag")
    head = f"{'eps':>5} {'k':>3} | {'bag (DLLP)':>13} {'instance':>13} {'interp-cv':>13} {'mean-map':>13} {'oracle':>13} | {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for r in res["breast_cancer"]["rows"]:
        eps = "none" if r["epsilon"] is None else f"{r['epsilon']:g}"
        cells = " ".join(f"{fmt(r[n]):>13}" for n in ("bag", "instance", "interp-cv", "mean-map", "oracle"))
        print(f"{eps:>5} {r['bag_size']:>3} | {cells} | {r['interp-cv'][0] / r['bag'][0]:6.3f}")
    print("\n[4] Curated (k-means) vs random bags at equal mean bag size")
    print(f"{'data':>14} {'k':>3} {'metric':>8} | {'random/bag':>13} {'random/inst':>13} {'curated/bag':>13} {'curated/inst':>13}")
    for r in res["curated"]["rows"]:
        digits = 0 if r["metric"] == "mse" else 3
        cells = " ".join(f"{fmt(r[n], digits):>13}" for n in ("random/bag", "random/instance", "curated/bag", "curated/instance"))
        print(f"{r['data']:>14} {r['bag_size']:>3} {r['metric']:>8} | {cells}")
    cat = res["curated"]["categorical"]
    print("   categorical design (40 distinct rows, n=2000, d=5; curated on all features), ‖θ̂-θ₀‖²: "
          f"individual labels {np.mean([c['individual labels'] for c in cat]):.4f}, curated/instance "
          f"{np.mean([c['curated/instance'] for c in cat]):.4f}, random/instance {np.mean([c['random/instance'] for c in cat]):.4f} "
          f"(mean bag {cat[0]['mean_bag_size']:.0f}); curated coef == individual-label coef: {all(c['coef_equal_curated_vs_individual'] for c in cat)}")
    print("\n[5] diabetes, MLP (32 hidden, Adam), test MSE vs rho")
    for r in res["mlp"]["rows"]:
        print(f"   k={r['bag_size']:>3}: " + "  ".join(f"{key} {fmt(v, 0)}" for key, v in r.items() if key != "bag_size"))
    print("\n[6] fit times after one warm-up call (s)")
    for name, seconds in res["timing"].items():
        print(f"   {name:<48} {seconds:8.4f}")


def plots(res: dict, out: Path) -> list[str]:
    files = []
    syn = res["synthetic"]
    eps_values = [None] + sorted({r["epsilon"] for r in syn["rows"] if r["epsilon"] is not None}, reverse=True)
    fig, axes = plt.subplots(1, len(eps_values), figsize=(4.2 * len(eps_values), 3.6), sharey=False)
    for ax, eps in zip(np.atleast_1d(axes), eps_values):
        rows = [r for r in syn["rows"] if r["epsilon"] == eps]
        ks = [r["bag_size"] for r in rows]
        for j, (name, label) in enumerate((("bag", "bag-level"), ("instance", "instance-level"), ("interp*", "interpolating rho*"))):
            means = [r[name][0] for r in rows]
            ses = [r[name][1] for r in rows]
            ax.errorbar(ks, means, yerr=ses, fmt="o", color=f"C{j}", label=f"{label} (MC)")
            ax.plot(ks, [r[f"theory_{name}"] for r in rows], "-", color=f"C{j}", alpha=0.7)
        ax.plot(ks, [r["interp-cv"][0] for r in rows], "x--", color="C3", label="interpolating cv (MC)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title("no DP" if eps is None else f"Laplace eps={eps:g}")
        ax.set_xlabel("bag size k")
    np.atleast_1d(axes)[0].set_ylabel("excess risk (lines: formula)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "aggregate_synthetic_risk.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(str(path))

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for j, o in enumerate(syn["optimum"]):
        ks = list(o["curve_theory"])
        ax.plot(ks, list(o["curve_theory"].values()), "-", color=f"C{j}", label=f"eps={o['epsilon']}" if o["epsilon"] else "no DP")
        mc = o["curve_mc"]
        ax.errorbar(list(mc), [v[0] for v in mc.values()], yerr=[v[1] for v in mc.values()], fmt="o", color=f"C{j}", ms=3)
        ax.axvline(o["k_predicted"], color=f"C{j}", ls=":", alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("bag size k")
    ax.set_ylabel("excess risk at rho*")
    ax.set_title("optimal bag size: formula (lines, dotted k*) vs Monte Carlo")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "aggregate_optimal_bag_size.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(str(path))

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, names, ylabel in (
        (axes[0], "diabetes", ("bag", "instance", "interp-cv", "random-ERM", "oracle"), "test MSE"),
        (axes[1], "breast_cancer", ("bag", "instance", "interp-cv", "mean-map", "oracle"), "test accuracy"),
    ):
        rows = res[key]["rows"]
        for eps, style in ((None, "-"), *((e, "--") for e in sorted({r["epsilon"] for r in rows if r["epsilon"] is not None}))):
            sub = [r for r in rows if r["epsilon"] == eps]
            for j, name in enumerate(names):
                ax.errorbar([r["bag_size"] for r in sub], [r[name][0] for r in sub], yerr=[r[name][1] for r in sub],
                            fmt="o" + style, color=f"C{j}", ms=3, label=f"{name}{'' if eps is None else f' eps={eps:g}'}")
        ax.set_xscale("log")
        ticks = sorted({r["bag_size"] for r in rows})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("bag size k")
        ax.set_ylabel(ylabel)
        ax.set_title(key)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path = out / "aggregate_real_data.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(str(path))

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, data in zip(axes, ("diabetes", "breast_cancer")):
        rows = [r for r in res["curated"]["rows"] if r["data"] == data]
        names = ("random/bag", "random/instance", "curated/bag", "curated/instance")
        width = 0.2
        for j, name in enumerate(names):
            ax.bar(np.arange(len(rows)) + j * width, [r[name][0] for r in rows], width, yerr=[r[name][1] for r in rows], label=name)
        ax.set_xticks(np.arange(len(rows)) + 1.5 * width, [f"k={r['bag_size']}" for r in rows])
        ax.set_ylabel("test MSE" if data == "diabetes" else "test accuracy")
        ax.set_title(f"{data}: curated (k-means) vs random bags")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "aggregate_curated_vs_random.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    files.append(str(path))
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # small dense problems: one BLAS thread is fastest on a shared machine
    if args.quick:
        cfg = dict(n=600, d=30, epsilons=[None, 1.0], syn_bags=[1, 4], reps=2, opt_bags=[1, 2, 4, 8], opt_reps=2,
                   real_eps=[None], real_bags=[5], cls_bags=[5], real_reps=1, cur_bags=[5], mlp_bags=[5], mlp_reps=1, mlp_iter=50)
    else:
        cfg = dict(n=2000, d=100, epsilons=[None, 2.0, 1.0, 0.5], syn_bags=[1, 2, 4, 8, 16], reps=6,
                   opt_bags=[1, 2, 3, 4, 6, 8, 12, 16, 24, 32], opt_reps=6,
                   real_eps=[None, 1.0], real_bags=[1, 2, 5, 10, 20], cls_bags=[2, 5, 10, 20], real_reps=3,
                   cur_bags=[5, 10], mlp_bags=[5, 10], mlp_reps=2, mlp_iter=300)
    steps = (len(cfg["epsilons"]) * (len(cfg["syn_bags"]) + 1) + len(cfg["real_eps"]) * (len(cfg["real_bags"]) + len(cfg["cls_bags"]))
             + 2 * len(cfg["cur_bags"]) + 1 + len(cfg["mlp_bags"]))
    start = time.perf_counter()
    with tqdm(total=steps, desc="aggregate benchmark") as progress:
        res = {"config": cfg,
               "synthetic": synthetic(cfg, progress),
               "diabetes": diabetes(cfg, progress),
               "breast_cancer": breast_cancer(cfg, progress),
               "curated": curated_vs_random(cfg, progress),
               "mlp": mlp_diabetes(cfg, progress)}
    res["timing"] = timing()
    res["total_seconds"] = time.perf_counter() - start
    print_tables(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res["plots"] = plots(res, out)
    name = "aggregate_quick.json" if args.quick else "aggregate.json"

    def default(value):
        if isinstance(value, (np.floating, np.integer)):
            return value.item()
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.ndarray):
            return value.tolist()
        return str(value)

    def keys_to_str(value):
        if isinstance(value, dict):
            return {str(k): keys_to_str(v) for k, v in value.items()}
        if isinstance(value, list):
            return [keys_to_str(v) for v in value]
        return value

    write_text_atomic(out / name, json.dumps(keys_to_str(res), indent=1, default=default), force=True)
    print(f"\nwrote {out / name} and {len(res['plots'])} plots; total {res['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
