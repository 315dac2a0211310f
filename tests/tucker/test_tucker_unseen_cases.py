"""Cases found by an audit of Tucker packing and tree networks, each against an independent
reference: an exhaustive search over shapes built here from numpy SVDs of explicit
unfoldings, tensorly's HOOI, a closed form, or the exact error message."""

from __future__ import annotations

import itertools
import json
import math
import re
import warnings
from fractions import Fraction

import networkx as nx
import numpy as np
import pytest
import tensorly as tl
from tensorly.decomposition import tucker

import sparsesel as ss
from solvers import tucker_ptas
from sparsesel.cli import main
from sparsesel.problems.core_shape import budget_entries as resolve_budget
from sparsesel.tensors.tree_networks import path_tree, star_tree

ALL_CORE_SOLVERS = ["ilp", "ptas", "brute_force", "greedy_surrogate", "bang_for_buck", "uniform", "energy_threshold", "greedy_tucker", "ilp_refine"]


# ----- independent references ---------------------------------------------------------------
def unfold(X: np.ndarray, n: int) -> np.ndarray:
    """Mode-n unfolding, written with numpy only, shape (I_n, prod of the other dims)."""
    return np.moveaxis(X, n, 0).reshape(X.shape[n], -1)


def reference_optimum(X: np.ndarray, budget: int) -> tuple[float, tuple[int, ...]] | None:
    """Least discarded energy over every shape that fits (numpy SVD spectra, plain loops)."""
    spectra = [np.linalg.svd(unfold(X, n), compute_uv=False) for n in range(X.ndim)]
    best = None
    for ranks in itertools.product(*[range(1, len(s) + 1) for s in spectra]):
        if math.prod(ranks) + sum(i * r for i, r in zip(X.shape, ranks)) > budget:
            continue
        discarded = sum(float(np.sum(s[r:] ** 2)) for s, r in zip(spectra, ranks))
        if best is None or discarded < best[0]:
            best = (discarded, ranks)
    return best


def hosvd_squared_error(X: np.ndarray, ranks) -> float:
    """‖X − X̂‖² of the HOSVD truncation, projecting each mode on its leading left singular vectors."""
    Y = X
    for n, r in enumerate(ranks):
        U = np.linalg.svd(unfold(X, n), full_matrices=False)[0][:, :r]
        Y = np.moveaxis(np.tensordot(U @ U.T, np.moveaxis(Y, n, 0), axes=1), 0, n)
    return float(np.sum((X - Y) ** 2))


# ----- orders 2, 4, 5 and modes of size 1: every solver against the reference ---------------
@pytest.mark.parametrize(
    "shape, budget",
    [((6, 7), 42), ((5, 1, 6), 30), ((4, 5, 3, 2), 40), ((3, 2, 4, 2, 3), 48), ((1, 8, 5), 40), ((7, 3, 1, 4), 84)],
)
def test_every_solver_on_odd_orders_against_brute_force(shape, budget):
    X = np.random.default_rng(sum(shape)).standard_normal(shape)
    best, best_ranks = reference_optimum(X, budget)
    norm2 = float(np.sum(X**2))
    problem = ss.CoreShape.from_tensor(X, budget)
    for name in ALL_CORE_SOLVERS:
        result = ss.solve(problem, name)
        assert result.status != "infeasible", name
        size = math.prod(result.selected) + sum(i * r for i, r in zip(shape, result.selected))
        assert size <= budget, name
        assert result.objective >= best - 1e-9 * max(1.0, best), name
        # the surrogate bounds the HOSVD truncation error (numpy HOSVD)
        assert hosvd_squared_error(X, result.selected) <= result.objective * (1 + 1e-9) + 1e-9, name
        assert result.info["relative_error_bound"] == pytest.approx(result.objective / norm2, abs=1e-12)
        if name in ("ilp", "brute_force"):
            assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-9), (name, result.selected, best_ranks)
        if name == "ptas":
            kept_ref = sum(float(np.sum(np.linalg.svd(unfold(X, n), compute_uv=False)[:r] ** 2)) for n, r in enumerate(best_ranks))
            assert problem.kept_energy(result.selected) >= (1 - 0.5) * kept_ref


def test_greedy_tucker_true_error_matches_tensorly():
    X = np.random.default_rng(3).standard_normal((4, 5, 6))
    result = ss.solve(ss.CoreShape.from_tensor(X, 70), "greedy_tucker")
    fit = tucker(X, rank=list(result.selected), n_iter_max=20, init="svd", tol=1e-6)
    reference = float(np.sum((X - tl.tucker_to_tensor(fit)) ** 2) / np.sum(X**2))
    assert result.info["true_relative_error"] == pytest.approx(reference, rel=1e-9)


# ----- input types --------------------------------------------------------------------------
def test_complex_tensor_is_refused_not_silently_truncated():
    X = np.random.default_rng(0).standard_normal((3, 4, 5))
    Z = X + 1j * X
    with pytest.raises(TypeError, match="complex"):
        ss.CoreShape.from_tensor(Z, 40)
    with pytest.raises(TypeError, match="complex"):
        ss.CoreShape.from_tensor(X.astype(complex), 40)  # zero imaginary part: still refused
    with pytest.raises(TypeError, match="complex"):
        ss.TreeNetworkRanks.tensor_train(Z, 40)
    spectra = [np.linalg.svd(unfold(X, n), compute_uv=False) for n in range(3)]
    with pytest.raises(TypeError, match="complex"):
        ss.CoreShape(spectra, X.shape, 40, tensor=Z)


def test_int_bool_float32_and_strided_inputs_match_the_reference():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 4, 5))
    cases = {
        "int": (base * 10).astype(np.int64),
        "bool": base > 0,
        "float32": base.astype(np.float32),
        "strided": base.transpose(2, 0, 1)[::2],
    }
    for label, X in cases.items():
        budget = X.size // 2
        best, _ = reference_optimum(np.asarray(X, dtype=np.float64), budget)
        result = ss.solve(ss.CoreShape.from_tensor(X, budget), "ilp")
        assert result.objective == pytest.approx(best, rel=1e-6, abs=1e-6), label


def test_tensor_whose_energy_overflows_gets_a_clear_error():
    with pytest.raises(ValueError, match="too large.*rescale"):
        ss.CoreShape.from_tensor(np.full((3, 3), 1e200), 9)
    with pytest.raises(ValueError, match="too large.*rescale"):
        ss.TreeNetworkRanks.tensor_train(np.full((3, 3), 1e200), 9)


def test_numpy_float32_fraction_is_read_in_its_own_precision():
    # np.float32(0.7) widens to 0.69999998..., which would round 0.7 * 10 down to 6
    for value, full in [(np.float32(0.7), 10), (np.float32(0.3), 10), (np.float16(0.1), 1000), (np.float64(0.29), 100), (0.29, 100)]:
        expected = math.floor(Fraction(str(value)) * full)
        assert resolve_budget(value, full) == expected
    assert resolve_budget(np.float32(0.7), 10) == 7


# ----- budgets far above the tensor ----------------------------------------------------------
@pytest.mark.parametrize("budget", [10**25, 2**63 + 5])
def test_huge_budget_gives_the_full_shape(budget):
    X = np.random.default_rng(2).standard_normal((4, 5, 6))
    full = tuple(min(i, X.size // i) for i in X.shape)  # closed form: every rank at its maximum
    problem = ss.CoreShape.from_tensor(X, budget)
    for name, options in [("ilp", {"method": "enumeration"}), ("ilp", {"method": "cp_sat"}), ("ilp", {}), ("ilp_refine", {}), ("ptas", {}), ("brute_force", {})]:
        result = ss.solve(problem, name, **options)
        assert result.selected == full, (name, options)
        assert result.objective == pytest.approx(0.0, abs=1e-9 * float(np.sum(X**2)))
    tt = ss.solve(ss.TreeNetworkRanks.tensor_train(X, budget), "ilp")
    assert tt.selected == (4, 6)  # min(4, 30), min(20, 6)


# ----- the zero tensor ------------------------------------------------------------------------
def test_zero_tensor_every_solver_is_exact_and_silent():
    problem = ss.CoreShape.from_tensor(np.zeros((4, 5, 6)), 60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tensorly's HOOI used to divide by the zero norm
        for name in ALL_CORE_SOLVERS:
            result = ss.solve(problem, name)
            assert result.objective == 0.0, name
            assert result.info.get("true_relative_error", 0.0) == 0.0, name


# ----- ptas: small-rank enumeration without a huge grid --------------------------------------
def _reference_small_best(problem: ss.CoreShape, cap: int) -> float:
    best = math.inf
    for ranks in itertools.product(*[range(1, min(cap, k) + 1) for k in problem.max_ranks]):
        if problem.size(ranks) <= problem.budget:
            best = min(best, sum(float(np.sum(problem.energies[g][r:])) for g, r in enumerate(ranks)))
    return best


@pytest.mark.parametrize("cap", [2, 3, 6, 12])
def test_ptas_small_rank_fallback_matches_exhaustive_search(cap, monkeypatch):
    rng = np.random.default_rng(cap)
    spectra = [np.sort(rng.random(10))[::-1] * np.exp(-np.arange(10) / 4) for _ in range(4)]
    problem = ss.CoreShape(spectra, (10, 10, 10, 10), 900)
    reference = _reference_small_best(problem, cap)
    monkeypatch.setattr(tucker_ptas, "SMALL_RANK_GRID_LIMIT", 0)  # force the exact-solver path
    ranks, complete = tucker_ptas._small_rank_best(problem, cap, list(problem.max_ranks))
    assert complete
    assert max(ranks) <= cap and problem.size(ranks) <= problem.budget
    discarded = sum(float(np.sum(problem.energies[g][r:])) for g, r in enumerate(ranks))
    assert discarded == pytest.approx(reference, rel=1e-12, abs=1e-12)


def test_ptas_with_many_small_shapes_stays_within_its_factor(monkeypatch):
    X = np.random.default_rng(7).standard_normal((5, 4, 6))
    best, _ = reference_optimum(X, 60)
    monkeypatch.setattr(tucker_ptas, "SMALL_RANK_GRID_LIMIT", 0)
    problem = ss.CoreShape.from_tensor(X, 60)
    result = ss.solve(problem, "ptas", epsilon=0.2)
    total = float(np.sum(X**2))
    kept_opt = 3 * total - best  # every mode's energy is ‖X‖²
    assert problem.size(result.selected) <= 60
    assert 3 * total - result.objective >= (1 - 0.2) * kept_opt


# ----- trees with odd shapes -----------------------------------------------------------------
def reference_tree_optimum(X: np.ndarray, tree: nx.Graph, budget: int) -> float:
    """Exhaustive search over edge ranks with numpy SVDs of explicit cut matricizations."""
    edges = list(tree.edges())
    spectra = []
    for u, v in edges:
        cut = tree.copy()
        cut.remove_edge(u, v)
        side = sorted(cut.nodes[w]["mode"] for w in nx.node_connected_component(cut, u) if cut.nodes[w].get("mode") is not None)
        rest = [m for m in range(X.ndim) if m not in side]
        M = np.transpose(X, side + rest).reshape(math.prod(X.shape[m] for m in side), -1)
        spectra.append(np.linalg.svd(M, compute_uv=False))
    index = {frozenset(e): i for i, e in enumerate(edges)}
    best = math.inf
    for ranks in itertools.product(*[range(1, len(s) + 1) for s in spectra]):
        size = 0
        for v in tree.nodes:
            mode = tree.nodes[v].get("mode")
            size += (1 if mode is None else X.shape[mode]) * math.prod(ranks[index[frozenset((v, w))]] for w in tree.neighbors(v))
        if size <= budget:
            best = min(best, sum(float(np.sum(s[r:] ** 2)) for s, r in zip(spectra, ranks)))
    return best


def _odd_trees():
    branched = nx.Graph([("a", "b"), ("b", "c"), ("c", "d"), ("b", "e")])  # modes on an internal node, a mode-less node
    nx.set_node_attributes(branched, {"a": 0, "b": 1, "d": 2, "e": 3}, "mode")
    shuffled = nx.path_graph(4)
    nx.set_node_attributes(shuffled, {0: 2, 1: 0, 2: 3, 3: 1}, "mode")
    return [("star", star_tree(4)), ("path", path_tree(4)), ("branched", branched), ("shuffled path", shuffled)]


@pytest.mark.parametrize("label, tree", _odd_trees())
@pytest.mark.parametrize("budget", [20, 60, 200])
def test_tree_ilp_matches_exhaustive_search(label, tree, budget):
    X = np.random.default_rng(2).standard_normal((3, 4, 2, 3))
    reference = reference_tree_optimum(X, tree, budget)
    result = ss.solve(ss.TreeNetworkRanks.from_tensor(X, tree, budget), "ilp")
    if math.isinf(reference):
        assert result.status == "infeasible"
    else:
        assert result.objective == pytest.approx(reference, rel=1e-9, abs=1e-9), label


@pytest.mark.parametrize(
    "tree, message",
    [
        (star_tree(3), "modes \\[3\\] appear at no node"),
        (star_tree(5), "carries mode 4"),
        (nx.cycle_graph(4), "must be a tree"),
    ],
)
def test_trees_not_matching_the_modes_are_refused(tree, message):
    X = np.random.default_rng(0).standard_normal((3, 4, 2, 3))
    with pytest.raises(ValueError, match=message):
        ss.TreeNetworkRanks.from_tensor(X, tree, 60)


# ----- the core-shape CLI --------------------------------------------------------------------
@pytest.fixture
def tensor_file(tmp_path):
    X = np.random.default_rng(0).standard_normal((4, 5, 6))
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path, X


def test_cli_text_file_named_npy_is_not_reported_as_pickle(tmp_path, capsys):
    bad = tmp_path / "bad.npy"
    bad.write_text("garbage\n")
    assert main(["core-shape", "--tensor", str(bad), "--budget", "50"]) == 2
    err = capsys.readouterr().err
    assert "not a .npy file" in err and "pickle" not in err


def test_cli_complex_npy_is_refused(tmp_path, capsys):
    path = tmp_path / "c.npy"
    np.save(path, np.ones((3, 3)) + 1j)
    assert main(["core-shape", "--tensor", str(path), "--budget", "8"]) == 2
    assert "complex" in capsys.readouterr().err


@pytest.mark.parametrize(
    "content, message",
    [
        ({"edges": [[0, 1, 2]], "modes": {}}, "edges\\[0\\] = \\[0, 1, 2\\] is not a pair"),
        ([1, 2], "top level must be an object"),
        ({"edges": "01", "modes": {}}, "top level must be an object"),
    ],
)
def test_cli_bad_tree_json_names_the_problem(tensor_file, tmp_path, capsys, content, message):
    path, _ = tensor_file
    spec = tmp_path / "tree.json"
    spec.write_text(json.dumps(content))
    assert main(["core-shape", "--tensor", str(path), "--budget", "60", "--tree", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"--tree {spec}" in err
    assert re.search(message, err), err


def test_cli_tree_directory_and_binary_tree_file(tensor_file, tmp_path, capsys):
    path, _ = tensor_file
    assert main(["core-shape", "--tensor", str(path), "--budget", "60", "--tree", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    binary = tmp_path / "t.json"
    binary.write_bytes(b"\xff\xfe\x00")
    assert main(["core-shape", "--tensor", str(path), "--budget", "60", "--tree", str(binary)]) == 2
    assert "UTF-8" in capsys.readouterr().err


def test_cli_output_directory_is_refused_even_with_force(tensor_file, tmp_path, capsys):
    path, _ = tensor_file
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    assert main(["core-shape", "--tensor", str(path), "--budget", "60", "--output", str(target), "--force"]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]


def test_cli_existing_output_is_kept(tensor_file, tmp_path, capsys):
    path, _ = tensor_file
    out = tmp_path / "r.json"
    out.write_text("{}")
    assert main(["core-shape", "--tensor", str(path), "--budget", "60", "--output", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_text() == "{}"


def test_cli_huge_budget_prints_the_full_shape(tensor_file, capsys):
    path, X = tensor_file
    assert main(["core-shape", "--tensor", str(path), "--budget", str(10**25), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ranks"] == [min(i, X.size // i) for i in X.shape]
