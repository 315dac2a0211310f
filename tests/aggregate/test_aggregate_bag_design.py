"""BagDesign: validation, the formula solver, the simulation solver agreeing with it, and the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from threadpoolctl import threadpool_limits

import sparsesel as ss
from sparsesel.cli import main


@pytest.fixture(autouse=True)
def _one_blas_thread():
    with threadpool_limits(1):  # many small dense solves on a shared machine
        yield


def test_bag_design_is_exported_and_has_both_solvers():
    problem = ss.BagDesign(n_samples=500, n_features=20, signal=1.0, noise=1.0)
    assert set(ss.solvers_for(problem)) >= {"formula", "simulation"}
    assert problem.bag_sizes == tuple(range(1, 101))


def test_without_privacy_the_best_bag_is_one_and_risk_grows_with_bag_size():
    # no DP noise: aggregation only loses information (bag-level risk σ²γk/(1-γk) grows with k)
    problem = ss.BagDesign(1000, 50, 1.0, 1.0, estimator="bag", bag_sizes=(1, 2, 4, 8))
    result = ss.solve(problem, "formula")
    assert result.selected == (1,) and result.status == "optimal"
    gamma = 0.05
    for k, risk in result.info["risks"].items():
        assert risk == pytest.approx(gamma * k / (1 - gamma * k), rel=1e-9)


def test_formula_and_simulation_agree_on_the_private_bag_size():
    problem = ss.BagDesign(800, 40, 1.0, 1.0, epsilon=0.5, clip=3.0, bag_sizes=(1, 2, 4, 8, 16))
    formula = ss.solve(problem, "formula")
    simulated = ss.solve(problem, "simulation", n_reps=6, seed=1)
    k_formula, k_sim = formula.selected[0], simulated.selected[0]
    assert k_formula > 1  # privacy makes aggregation worth it
    sims = simulated.info["simulated"]
    # the formula's choice is within the Monte Carlo band of the empirical best
    mean_f, se_f = sims[k_formula]
    mean_s, se_s = sims[k_sim]
    assert mean_f <= mean_s + 3.3 * math.hypot(se_f, se_s)
    # and every simulated risk is near its prediction (clipping is ignored by the formula: 10%)
    for k, (mean, se) in sims.items():
        predicted = formula.info["risks"][k]
        assert abs(mean - predicted) <= 3.3 * se + 0.1 * predicted, (k, mean, se, predicted)


def test_risk_target_picks_the_largest_bag_meeting_it_or_is_infeasible():
    problem = ss.BagDesign(1000, 50, 1.0, 1.0, bag_sizes=(1, 2, 4, 8), risk_target=0.2, estimator="bag")
    result = ss.solve(problem, "formula")
    risks = result.info["risks"]
    assert result.selected == (max(k for k, r in risks.items() if r <= 0.2),)
    tight = ss.BagDesign(1000, 50, 1.0, 1.0, bag_sizes=(1, 2), risk_target=1e-4)
    assert ss.solve(tight, "formula").status == "infeasible"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"n_samples": 1}, ValueError, "n_samples must be >= 2"),
        ({"n_features": 2.5}, TypeError, "n_features must be an integer"),
        ({"noise": -1}, ValueError, "noise must be finite and >= 0"),
        ({"epsilon": 0.0, "clip": 1.0}, ValueError, "epsilon must be a finite number > 0"),
        ({"epsilon": 1.0}, ValueError, "clip is required"),
        ({"clip": 1.0}, ValueError, "clip is only used with epsilon"),
        ({"bag_sizes": (0, 2)}, ValueError, "bag_sizes entry must be >= 1"),
        ({"bag_sizes": ()}, ValueError, "bag_sizes is empty"),
        ({"estimator": "ridge"}, ValueError, "estimator must be one of"),
        ({"risk_target": 0.0}, ValueError, "risk_target must be finite and > 0"),
    ],
)
def test_bag_design_validation_names_the_field(kwargs, error, message):
    args = {"n_samples": 100, "n_features": 5, "signal": 1.0, "noise": 1.0} | kwargs
    with pytest.raises(error, match=message):
        ss.BagDesign(**args)


def test_cli_prints_risks_writes_the_plot_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "plot.png"
    report = tmp_path / "risks.json"
    argv = ["aggregate", "--data", "builtin:diabetes", "--bag-size", "10", "--estimator", "interpolating",
            "--epsilon", "1.0", "--rho", "auto", "--out", str(out), "--json", str(report)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "(1, 0)-label-DP" in text and "interpolating" in text and "<- chosen" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import json

    payload = json.loads(report.read_text())
    assert set(payload["results"]) == {"bag", "instance", "interpolating"}
    assert all(np.isfinite(row["mse"]) for row in payload["results"].values())
    assert main(argv) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["aggregate", "--data", "builtin:diabetes", "--bag-size", "10", "--epsilon", "-1", "--out", str(tmp_path / "x.png")]) == 2
    assert "--epsilon must be > 0" in capsys.readouterr().err
