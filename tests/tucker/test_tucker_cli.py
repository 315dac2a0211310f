"""``sparsesel core-shape`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sparsesel as ss
from sparsesel.cli import main


@pytest.fixture
def tensor_file(tmp_path):
    X = np.random.default_rng(0).normal(size=(6, 7, 8))
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path, X


def test_cli_json_matches_api(tensor_file, capsys):
    path, X = tensor_file
    assert main(["core-shape", "--tensor", str(path), "--budget", "0.3", "--json", "--evaluate"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = ss.solve(ss.CoreShape.from_tensor(X, 0.3), "ilp")
    assert out["ranks"] == list(ref.selected) and out["status"] == "optimal"
    assert out["budget"] == int(0.3 * X.size)
    assert 0 <= out["true_relative_error"] <= out["relative_error_bound"] + 1e-12


def test_cli_text_tree_and_output(tensor_file, tmp_path, capsys):
    path, _ = tensor_file
    out_file = tmp_path / "r.json"
    assert main(["core-shape", "--tensor", str(path), "--budget", "150", "--tree", "tt", "--output", str(out_file)]) == 0
    text = capsys.readouterr().out
    assert "ranks (" in text and "relative error bound" in text
    assert json.loads(out_file.read_text())["edges"] == [["0", "1"], ["1", "2"]]
    assert main(["core-shape", "--tensor", str(path), "--budget", "150", "--output", str(out_file)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["core-shape", "--tensor", str(path), "--budget", "150", "--output", str(out_file), "--force"]) == 0


def test_cli_tree_file_and_errors(tensor_file, tmp_path, capsys):
    path, _ = tensor_file
    tree = tmp_path / "t.json"
    tree.write_text(json.dumps({"edges": [["a", "b"], ["b", "c"], ["b", "d"]], "modes": {"a": 0, "c": 1, "d": 2}}))
    assert main(["core-shape", "--tensor", str(path), "--budget", "200", "--tree", str(tree), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["ranks"]) == 3
    assert main(["core-shape", "--tensor", str(path), "--budget", "5", "--json"]) == 1  # infeasible: exit 1
    assert json.loads(capsys.readouterr().out)["status"] == "infeasible"
    assert main(["core-shape", "--tensor", str(path), "--budget", "abc"]) == 2
    assert "--budget must be a fraction in (0, 1] of the entries (e.g. 0.5) or a whole count of entries (e.g. 5000), got 'abc'" in capsys.readouterr().err
    assert main(["core-shape", "--tensor", "builtin:nope", "--budget", "0.1"]) == 2
    assert "unknown built-in tensor" in capsys.readouterr().err
    assert main(["core-shape", "--tensor", str(tmp_path / "missing.npy"), "--budget", "0.1"]) == 2
    cycle = tmp_path / "c.json"
    cycle.write_text(json.dumps({"edges": [["a", "b"], ["b", "c"], ["c", "a"]], "modes": {"a": 0, "b": 1, "c": 2}}))
    assert main(["core-shape", "--tensor", str(path), "--budget", "200", "--tree", str(cycle)]) == 2
    assert "tree must be a tree" in capsys.readouterr().err


def test_cli_builtin_with_ptas(capsys):
    assert main(["core-shape", "--tensor", "builtin:tucker4", "--budget", "0.05", "--solver", "ptas", "--epsilon", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "approximate" and out["guarantee"] == {
        "factor": 0.5, "of": "kept_energy", "relation": ">=", "statement": "kept_energy(selected) >= 0.5 x optimal kept_energy"}
