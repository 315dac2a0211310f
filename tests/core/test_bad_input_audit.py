"""Regression tests of the bad-input audit: each bad input gives a clear error naming the problem.

Every case here was, before the audit, a silent acceptance (a wrong or ignored value), a raw
library message that did not name the argument, or an output clobbered before the error.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import sparsesel as ss
from sparsesel.cli import main
from sparsesel.validation import as_finite_array, as_generator, check_real


def _tensor() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 5, 6))


# ------------------------------------------------------------------ validation helpers
def test_as_finite_array_refuses_complex_values():
    with pytest.raises(TypeError, match="X must be real; got complex"):
        as_finite_array(np.ones((3, 2)) + 1j, "X")


@pytest.mark.parametrize(
    ("value", "kwargs", "error", "message"),
    [
        ("1", {}, TypeError, "t must be a number"),
        (True, {}, TypeError, "t must be a number"),
        (float("nan"), {}, ValueError, "t must be a finite number"),
        (float("inf"), {}, ValueError, "t must be a finite number"),
        (float("-inf"), {"allow_inf": True}, ValueError, "t must be a finite number"),
        (0.0, {"low": 0.0, "low_open": True}, ValueError, "t must be > 0"),
        (-1.0, {"low": 0.0}, ValueError, "t must be >= 0"),
        (2.0, {"high": 1.0}, ValueError, "t must be <= 1"),
    ],
)
def test_check_real_names_the_field(value, kwargs, error, message):
    with pytest.raises(error, match=message):
        check_real(value, "t", **kwargs)


def test_check_real_accepts_valid_values():
    assert check_real(3, "t", low=0.0) == 3.0
    assert check_real(float("inf"), "t", low=0.0, low_open=True, allow_inf=True) == float("inf")
    assert check_real(np.float32(0.5), "t", low=0.0, high=1.0) == 0.5


def test_as_generator_matches_default_rng_and_refuses_bad_seeds():
    np.testing.assert_array_equal(as_generator(7).random(3), np.random.default_rng(7).random(3))
    rng = np.random.default_rng(1)
    assert as_generator(rng) is rng
    with pytest.raises(TypeError, match="seed must be an integer"):
        as_generator("x")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        as_generator(-1)


# ------------------------------------------------------------------ FeatureSelection
def test_feature_selection_complex_X_is_refused_not_truncated():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 3)) + 1j * rng.standard_normal((10, 3))
    with pytest.raises(TypeError, match="X must be real"):
        ss.FeatureSelection(X, rng.standard_normal(10), k=1)


def test_feature_selection_non_numeric_alpha_names_alpha():
    rng = np.random.default_rng(0)
    with pytest.raises(TypeError, match="alpha must be a number"):
        ss.FeatureSelection(rng.standard_normal((10, 3)), rng.standard_normal(10), k=1, alpha="x")


# ------------------------------------------------------------------ Tucker solvers' options
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"time_limit": -1.0}, ValueError, "time_limit must be > 0"),
        ({"time_limit": 0.0}, ValueError, "time_limit must be > 0"),
        ({"time_limit": float("nan")}, ValueError, "time_limit must be a finite number"),
        ({"time_limit": "60"}, TypeError, "time_limit must be a number"),
        ({"workers": -1}, ValueError, "workers must be >= 0"),
        ({"workers": 1.5}, TypeError, "workers must be an integer"),
        ({"max_candidates": 0}, ValueError, "max_candidates must be >= 1"),
        ({"enumeration_limit": -1}, ValueError, "enumeration_limit must be >= 0"),
        ({"seed": "0"}, TypeError, "seed must be an integer"),
    ],
)
def test_ilp_rejects_bad_options(options, error, message):
    problem = ss.CoreShape.from_tensor(_tensor(), 60)
    with pytest.raises(error, match=message):
        ss.solve(problem, "ilp", **options)


def test_ilp_checks_options_even_when_the_budget_is_infeasible():
    problem = ss.CoreShape.from_tensor(_tensor(), 10)  # below the all-ones size (16 entries)
    assert ss.solve(problem, "ilp").status == "infeasible"
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        ss.solve(problem, "ilp", time_limit=-1.0)


def test_ilp_valid_options_still_solve_to_the_brute_force_optimum():
    problem = ss.CoreShape.from_tensor(_tensor(), 60)
    oracle = ss.solve(problem, "brute_force")
    result = ss.solve(problem, "ilp", time_limit=float("inf"), workers=0, seed=3)
    assert result.status == "optimal"
    assert result.objective == pytest.approx(oracle.objective, rel=1e-12)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"n_iter_max": 0}, ValueError, "n_iter_max must be >= 1"),
        ({"tol": -1e-3}, ValueError, "tol must be >= 0"),
        ({"time_limit": 0.0}, ValueError, "time_limit must be > 0"),
        ({"seed": 1.5}, TypeError, "seed must be an integer"),
    ],
)
def test_greedy_tucker_rejects_bad_options(options, error, message):
    with pytest.raises(error, match=message):
        ss.solve(ss.CoreShape.from_tensor(_tensor(), 60), "greedy_tucker", **options)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"n_candidates": 0}, ValueError, "n_candidates must be >= 1"),
        ({"n_fits": -1}, ValueError, "n_fits must be >= 0"),
        ({"shortlist": 0}, ValueError, "shortlist must be >= 1"),
        ({"sweeps": -1}, ValueError, "sweeps must be >= 0"),
        ({"n_final": -2}, ValueError, "n_final must be >= 0"),
        ({"race_sweeps": -1}, ValueError, "race_sweeps must be >= 0"),
        ({"rotated_pad": 1.5}, TypeError, "rotated_pad must be an integer"),
        ({"global_table_limit": -1}, ValueError, "global_table_limit must be >= 0"),
        ({"greedy_start": "yes"}, TypeError, "greedy_start must be a bool"),
        ({"n_iter_max": 0}, ValueError, "n_iter_max must be >= 1"),
        ({"time_limit": -5.0}, ValueError, "time_limit must be > 0"),
    ],
)
def test_ilp_refine_rejects_bad_options(options, error, message):
    with pytest.raises(error, match=message):
        ss.solve(ss.CoreShape.from_tensor(_tensor(), 60), "ilp_refine", **options)


def test_ptas_rejects_bad_epsilon_type_and_time_limit():
    problem = ss.CoreShape.from_tensor(_tensor(), 60)
    with pytest.raises(TypeError, match="epsilon must be a number"):
        ss.solve(problem, "ptas", epsilon="0.5")
    with pytest.raises(ValueError, match="time_limit must be > 0"):
        ss.solve(problem, "ptas", time_limit=-1.0)


# ------------------------------------------------------------------ aggregate seeds
def test_aggregate_functions_name_a_bad_seed():
    from sparsesel.aggregate import private_aggregates, private_label_proportions, random_bags

    y = np.linspace(0.0, 1.0, 12)
    bags = random_bags(12, 3, seed=0)
    with pytest.raises(TypeError, match="seed must be an integer"):
        random_bags(12, 3, seed="x")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        random_bags(12, 3, seed=-1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        private_aggregates(y, bags, epsilon=1.0, clip=(0.0, 1.0), seed=0.5)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        private_label_proportions((y > 0.5).astype(int), bags, epsilon=1.0, seed=-3)


def test_random_bags_seed_still_reproducible():
    from sparsesel.aggregate import random_bags

    ids = random_bags(10, 2, seed=5)
    expected = np.empty(10, dtype=np.int64)  # the documented construction, written out
    expected[np.random.default_rng(5).permutation(10)] = np.arange(10) % 5
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(random_bags(10, 2, seed=np.random.default_rng(5)), expected)


# ------------------------------------------------------------------ CLI
def test_select_ragged_csv_names_the_line(tmp_path, capsys):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,t\n1,2,3\n4,5\n")
    assert main(["select", "--data", str(path), "--target", "t", "--k", "1"]) == 2
    assert "every row must have 3 cells" in capsys.readouterr().err


def test_core_shape_unreadable_npy_names_the_file(tmp_path, capsys):
    path = tmp_path / "garbage.npy"
    path.write_bytes(os.urandom(200))
    assert main(["core-shape", "--tensor", str(path), "--budget", "0.5"]) == 2
    assert f"--tensor {path}: not a readable .npy array" in capsys.readouterr().err


def test_core_shape_refuses_existing_output_before_any_work(tmp_path, capsys):
    out = tmp_path / "result.json"
    out.write_text("precious")
    missing = tmp_path / "missing.npy"  # the existing output is reported first, the tensor never read
    assert main(["core-shape", "--tensor", str(missing), "--budget", "0.5", "--output", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "precious"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--rounds", "0"], "--rounds must be >= 1, got 0"),
        (["--anchor-draws", "0"], "--anchor-draws must be >= 1, got 0"),
    ],
)
def test_attribute_zero_counts_are_refused_not_defaulted(tmp_path, capsys, flags, message):
    # checked before the model is loaded: a missing model file is not reached
    argv = ["attribute", "--model", str(tmp_path / "none.pt"), "--image", "x.png", "--out", str(tmp_path / "o")]
    assert main(argv + flags) == 2
    assert message in capsys.readouterr().err


def test_attribute_unreadable_image_names_the_image(tmp_path, capsys):
    import torch

    from sparsesel.attribution.models import DigitsCNN

    model = tmp_path / "digits.pt"
    torch.save({"arch": "digits-cnn", "state_dict": DigitsCNN().state_dict()}, model)
    image = tmp_path / "notimage.png"
    image.write_bytes(os.urandom(300))
    argv = ["attribute", "--model", str(model), "--image", str(image), "--solver", "gradient", "--k", "3",
            "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "could not be read as an image" in capsys.readouterr().err


# ------------------------------------------------------------------ aggregate risk simulation
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"n_reps": 0}, ValueError, "n_reps must be >= 1, got 0"),
        ({"signal": -1.0}, ValueError, "signal must be finite and >= 0"),
        ({"bag_size": 50}, ValueError, "bag_size must be <= 20"),
        ({"n_samples": 1}, ValueError, "n_samples must be >= 2"),
        ({"seed": "x"}, TypeError, "seed must be an integer"),
    ],
)
def test_simulate_risk_rejects_bad_arguments(kwargs, error, message):
    from sparsesel.aggregate import simulate_risk

    arguments = {"n_samples": 20, "n_features": 2, "bag_size": 4, "signal": 1.0, "noise": 1.0, "n_reps": 2, **kwargs}
    with pytest.raises(error, match=message):
        simulate_risk(**arguments)


# ------------------------------------------------------------------ compression
def _tiny_net():
    from torch import nn

    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)).eval()


def test_plan_refuses_a_non_module():
    from sparsesel.compress import plan

    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        plan("net", 0.5)


def test_plan_load_names_a_corrupt_file_and_bad_layers(tmp_path):
    import json

    from sparsesel.compress import plan
    from sparsesel.compress.plan import Plan

    path = tmp_path / "plan.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"plan file .*plan\.json is not valid JSON"):
        Plan.load(path)
    data = plan(_tiny_net(), 0.6).to_dict()
    path.write_text(json.dumps({**data, "layers": 5}))
    with pytest.raises(TypeError, match="plan layers must be a list"):
        Plan.load(path)
    path.write_text(json.dumps(data))  # a valid file still round-trips
    assert Plan.load(path).to_dict() == data


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"budget": 0.0}, ValueError, "budget must be a fraction in"),
        ({"budget": float("nan")}, ValueError, "budget must be a fraction in"),
        ({"curve": [0.5, 2.5]}, ValueError, "curve: budget must be"),
        ({"method": "bogus"}, ValueError, "unknown method 'bogus'"),
        ({"task": "bogus"}, ValueError, "task must be one of"),
        ({"eval_count": -1}, ValueError, "eval_count must be >= 1"),
        ({"eval_size": 8}, ValueError, "eval_size must be >= 16"),
        ({"latency_repeats": -1}, ValueError, "latency_repeats must be >= 0"),
        ({"threads": 0}, ValueError, "threads must be >= 1"),
    ],
)
def test_compress_checkpoint_checks_arguments_before_loading(tmp_path, kwargs, error, message):
    from sparsesel.compress.pipeline import compress_checkpoint

    # the checkpoint does not exist: the argument error must come first, before any loading or work
    with pytest.raises(error, match=message):
        compress_checkpoint(tmp_path / "missing.pt", tmp_path / "out", **kwargs)


def test_compress_cli_bad_budget_with_force_keeps_the_existing_output(tmp_path, capsys):
    from pathlib import Path

    checkpoint = Path(__file__).resolve().parents[1] / "nets" / "data" / "uhdformer_official_random_g.pth"
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    argv = ["compress", str(checkpoint), "--budget", "0", "--out", str(out), "--force", "--finetune-steps", "0"]
    assert main(argv) == 2
    assert "budget must be a fraction in (0, 1]" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"


def test_compress_cli_bad_curve_names_the_flag(tmp_path, capsys):
    from pathlib import Path

    checkpoint = Path(__file__).resolve().parents[1] / "nets" / "data" / "uhdformer_official_random_g.pth"
    argv = ["compress", str(checkpoint), "--curve", "0.5,abc", "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--curve must be comma-separated budgets" in capsys.readouterr().err


def test_compress_cli_too_small_budget_with_force_keeps_the_existing_output(tmp_path, capsys):
    """A budget no plan can meet is only known after the analysis: --out must survive until then."""
    import torch

    from sparsesel.nets import zoo

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = zoo.build_net("csattn", "small").eval()
    checkpoint = zoo.save_net(model, tmp_path / "csattn.pt", net="csattn")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    argv = ["compress", str(checkpoint), "--budget", "0.001", "--out", str(out), "--force", "--finetune-steps", "0",
            "--no-baselines", "--curve", "", "--latency-repeats", "0", "--no-progress"]
    assert main(argv) == 2
    assert "is too small: the smallest plan costs" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"
