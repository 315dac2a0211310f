"""CoreShape / TreeNetworkRanks construction: budgets, validation errors, copies."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

import sparsesel as ss
from sparsesel.tensors.tree_networks import path_tree, star_tree


def test_budget_fraction_rounds_down_exactly():
    spectra = [np.ones(4), np.ones(5), np.ones(5)]
    assert ss.CoreShape(spectra, (4, 5, 5), 0.29).budget == 29  # 0.29 * 100, not 28.999...
    assert ss.CoreShape(spectra, (4, 5, 5), 0.101).budget == 10
    assert ss.CoreShape(spectra, (4, 5, 5), 1.0).budget == 100
    assert ss.CoreShape(spectra, (4, 5, 5), 77).budget == 77


@pytest.mark.parametrize(
    "budget, error, match",
    [
        (True, TypeError, r"budget must be a fraction in \(0, 1\] of the entries \(a float\) or a whole count of entries \(an int\), got bool"),
        (1.5, ValueError, r"budget must be a fraction in \(0, 1\] of the entries or a whole count of entries >= 1, got 1.5$"),
        (2.0, ValueError, "got 2.0; a number written with a decimal point or exponent is a fraction: write the count as 2"),
        (0.0, ValueError, r"fraction in \(0, 1\] of the entries or a whole count of entries >= 1, got 0.0"),
        (float("nan"), ValueError, "of the entries or a whole count of entries, got nan"),
        (0, ValueError, "whole count of entries >= 1, got 0"),
        ("10", TypeError, r"got str \(read text with sparsesel.budget.Budget.parse\('10', 'entries'\)\)"),
        (0.001, ValueError, "budget 0.001 of 100 entries rounds down to 0 entries"),
    ],
)
def test_bad_budgets(budget, error, match):
    with pytest.raises(error, match=match):
        ss.CoreShape([np.ones(4), np.ones(5), np.ones(5)], (4, 5, 5), budget)


def test_unsorted_negative_nan_spectra():
    with pytest.raises(ValueError, match=r"singular_values\[1\] must be sorted in non-increasing order"):
        ss.CoreShape([np.ones(3), [1.0, 2.0, 0.5], np.ones(3)], (3, 3, 3), 20)
    with pytest.raises(ValueError, match=r"singular_values\[0\] has negative singular values"):
        ss.CoreShape([[1.0, -0.5, -1.0], np.ones(3), np.ones(3)], (3, 3, 3), 20)
    with pytest.raises(ValueError, match=r"singular_values\[2\] contains 1 NaN"):
        ss.CoreShape([np.ones(3), np.ones(3), [1.0, np.nan]], (3, 3, 3), 20)
    with pytest.raises(ValueError, match="the matricization has rank at most 3"):
        ss.CoreShape([np.ones(4), np.ones(3), np.ones(3)], (3, 3, 3), 20)
    with pytest.raises(ValueError, match="2 spectra but shape has 3 modes"):
        ss.CoreShape([np.ones(3), np.ones(3)], (3, 3, 3), 20)
    with pytest.raises(ValueError, match="total_energy=1 is smaller than the energy"):
        ss.CoreShape([np.ones(3), np.ones(3), np.ones(3)], (3, 3, 3), 20, total_energy=1.0)


def test_nan_and_bad_tensors():
    X = np.ones((3, 4, 5))
    X[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="tensor contains NaN or infinite values"):
        ss.CoreShape.from_tensor(X, 0.5)
    with pytest.raises(ValueError, match="tensor contains NaN"):
        ss.TreeNetworkRanks.tensor_train(X, 0.5)
    with pytest.raises(ValueError, match="at least 2 modes"):
        ss.CoreShape.from_tensor(np.ones(5), 3)
    with pytest.raises(TypeError, match="tensor must"):
        ss.CoreShape.from_tensor(np.array([["a", "b"], ["c", "d"]]), 3)


def test_inputs_are_copied():
    s = np.array([3.0, 2.0, 1.0])
    X = np.random.default_rng(0).normal(size=(3, 3, 3))
    p = ss.CoreShape([s, s, s], (3, 3, 3), 20)
    s[0] = 100.0
    assert p.singular_values[0][0] == 3.0
    q = ss.CoreShape.from_tensor(X, 20)
    X[0, 0, 0] = 1e6
    assert q.tensor[0, 0, 0] != 1e6
    assert not q.tensor.flags.writeable


def test_tree_validation():
    shape = (3, 3, 3)
    cycle = nx.cycle_graph(3)
    nx.set_node_attributes(cycle, {k: k for k in range(3)}, "mode")
    with pytest.raises(ValueError, match="tree must be a tree"):
        ss.TreeNetworkRanks(cycle, [np.ones(3)] * 3, shape, 50)
    forest = nx.Graph()
    forest.add_nodes_from([(0, {"mode": 0}), (1, {"mode": 1}), (2, {"mode": 2})])
    forest.add_edge(0, 1)
    with pytest.raises(ValueError, match="tree must be a tree"):
        ss.TreeNetworkRanks(forest, [np.ones(3)], shape, 50)
    t = star_tree(3)
    t.add_node("extra")
    t.add_edge("core", "extra")  # a leaf without a mode
    with pytest.raises(ValueError, match="leaf 'extra' carries no mode"):
        ss.TreeNetworkRanks(t, [np.ones(3)] * 4, shape, 50)
    t = path_tree(3)
    with pytest.raises(ValueError, match=r"modes \[3\] appear at no node"):
        ss.TreeNetworkRanks(t, [np.ones(3)] * 2, (3, 3, 3, 3), 50)
    t = path_tree(3)
    t.nodes[2]["mode"] = 0
    with pytest.raises(ValueError, match="mode 0 appears at two tree nodes"):
        ss.TreeNetworkRanks(t, [np.ones(3)] * 2, shape, 50)
    t = path_tree(3)
    t.nodes[2]["mode"] = 7
    with pytest.raises(ValueError, match="carries mode 7"):
        ss.TreeNetworkRanks(t, [np.ones(3)] * 2, shape, 50)
    with pytest.raises(TypeError, match="undirected networkx.Graph"):
        ss.TreeNetworkRanks(nx.DiGraph(path_tree(3)), [np.ones(3)] * 2, shape, 50)
    with pytest.raises(ValueError, match="misses the edges"):
        ss.TreeNetworkRanks(path_tree(3), {(0, 1): np.ones(3)}, shape, 50)
    p = ss.TreeNetworkRanks(path_tree(3), {(1, 0): np.ones(3), (2, 1): np.ones(3)}, shape, 50)
    assert p.max_ranks == (3, 3)


def test_sizes_follow_the_cost_models():
    p = ss.CoreShape([np.ones(4), np.ones(5), np.ones(6)], (4, 5, 6), 10**6)
    assert p.size((2, 3, 4)) == 2 * 3 * 4 + 4 * 2 + 5 * 3 + 6 * 4
    X = np.random.default_rng(0).normal(size=(4, 5, 6, 3))
    tt = ss.TreeNetworkRanks.tensor_train(X, 1.0)
    assert tt.size((2, 3, 2)) == 4 * 2 + 2 * 5 * 3 + 3 * 6 * 2 + 2 * 3
    with pytest.raises(ValueError, match=r"ranks\[0\] must be <= "):
        p.size((99, 1, 1))
