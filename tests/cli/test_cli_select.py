"""The `sparsesel select`, `solvers` and `demo` commands."""

import json

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import OrthogonalMatchingPursuit

from sparsesel.cli import main


def _sklearn_omp_support(X, y, k):
    coef = OrthogonalMatchingPursuit(n_nonzero_coefs=k).fit(X, y).coef_
    return set(np.flatnonzero(coef).tolist())


def test_select_builtin_json_matches_sklearn_omp(capsys):
    assert main(["select", "--data", "builtin:diabetes", "--k", "4", "--solver", "omp", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    X, y = load_diabetes(return_X_y=True)
    assert set(payload["selected"]) == _sklearn_omp_support(X, y, 4)
    assert payload["feature_names"][0] == load_diabetes().feature_names[payload["selected"][0]]
    assert payload["solver"] == "omp"


def test_select_csv_by_target_column(tmp_path, capsys):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((60, 5))
    y = 3 * X[:, 3] - 2 * X[:, 0] + 0.01 * rng.standard_normal(60)
    path = tmp_path / "table.csv"
    header = "a,b,c,d,e,target"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="")
    assert main(["select", "--data", str(path), "--target", "target", "--k", "2", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["selected"]) == _sklearn_omp_support(X, y, 2) == {0, 3}
    assert set(payload["feature_names"]) == {"a", "d"}


def test_select_npz(tmp_path, capsys):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((50, 6))
    y = X[:, 5] + 0.01 * rng.standard_normal(50)
    path = tmp_path / "data.npz"
    np.savez(path, X=X, y=y)
    assert main(["select", "--data", str(path), "--k", "1", "--solver", "greedy_forward"]) == 0
    assert "[5] x5" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "builtin:nope", "--k", "2"], "unknown builtin dataset 'nope'"),
        (["--data", "builtin:diabetes", "--k", "11"], "k must be <= 10, got 11"),
        (["--data", "builtin:diabetes", "--k", "2", "--solver", "xyz"], "unknown solver 'xyz'"),
        (["--data", "missing.csv", "--k", "2"], "missing.csv does not exist"),
        (["--data", "builtin:diabetes", "--k", "2", "--solver", "omp", "--seed", "-1"], "--seed must be >= 0"),
    ],
)
def test_select_bad_input_exits_2_with_message(argv, message, capsys):
    assert main(["select", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("solver", ["lasso", "sequential_attention"])
def test_select_seed_goes_to_the_solvers_that_take_one(solver, capsys):
    argv = ["select", "--data", "builtin:diabetes", "--k", "3", "--solver", solver, "--json"]
    assert main([*argv, "--seed", "3"]) == 0
    seeded = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    assert len(seeded["selected"]) == 3 and seeded["solver"] == solver


@pytest.mark.parametrize("solver", ["omp", "greedy_forward"])
def test_select_seed_is_ignored_by_deterministic_solvers(solver, capsys):
    """A script looping over solvers with one --seed keeps working: omp / greedy_forward take no seed
    and answer as without it (the issue: `select --seed` only where a solver takes one)."""
    argv = ["select", "--data", "builtin:diabetes", "--k", "3", "--solver", solver, "--json"]
    assert main([*argv, "--seed", "5"]) == 0
    seeded = json.loads(capsys.readouterr().out)
    assert main(argv) == 0
    plain = json.loads(capsys.readouterr().out)
    assert seeded["selected"] == plain["selected"] and "seed" not in seeded["info"]
    if solver == "omp":
        X, y = load_diabetes(return_X_y=True)
        assert set(seeded["selected"]) == _sklearn_omp_support(X, y, 3)


def test_select_csv_with_text_cell(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,y\n1,2,3\n4,x,6\n")
    assert main(["select", "--data", str(path), "--target", "y", "--k", "1"]) == 2
    assert "non-numeric cell" in capsys.readouterr().err


def test_solvers_lists_feature_selection_solvers(capsys):
    assert main(["solvers", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert {"omp", "greedy_forward", "lasso", "sequential_attention", "brute_force"} <= set(table["FeatureSelection"])


def test_demo_writes_outputs_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--k", "3", "--out", str(out)]) == 0
    report = json.loads((out / "demo.json").read_text())
    assert {row["solver"] for row in report["rows"]} == {"omp", "greedy_forward", "lasso", "sequential_attention"}
    assert all(len(row["selected"]) == 3 and 0.0 < row["test_accuracy"] <= 1.0 for row in report["rows"])
    assert (out / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = (out / "demo.json").read_bytes()
    assert main(["demo", "--k", "3", "--out", str(out)]) == 2
    assert "already holds demo.json, demo.png; pass --force" in capsys.readouterr().err
    assert (out / "demo.json").read_bytes() == before
