"""ilp (CP-SAT) against brute force on hundreds of random instances, exactness and edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tucker_instances import random_core_shape, random_spectrum, random_tree

import sparsesel as ss
from sparsesel.tensors.tree_networks import edge_max_ranks


@pytest.mark.parametrize("method", ["cp_sat", "enumeration"])
@pytest.mark.parametrize("block", range(3))
def test_ilp_matches_brute_force_on_random_core_shapes(block, method):
    rng = np.random.default_rng(1000 + block)
    checked = 0
    for _ in range(50):
        p = random_core_shape(rng)
        exact = ss.solve(p, "brute_force")
        got = ss.solve(p, "ilp", method=method)
        if exact.status == "infeasible":
            assert got.status == "infeasible"
            continue
        checked += 1
        assert got.status == "optimal"
        assert p.size(got.selected) <= p.budget
        assert got.objective == pytest.approx(exact.objective, rel=1e-12, abs=1e-12 * p.total_energy)
        assert got.lower_bound == pytest.approx(got.objective) and got.upper_bound == got.objective
    assert checked >= 35


@pytest.mark.parametrize("method", ["cp_sat", "enumeration"])
@pytest.mark.parametrize("seed", range(3))
def test_ilp_matches_brute_force_on_random_trees(seed, method):
    rng = np.random.default_rng(7 + seed)
    for _ in range(15):
        n_modes = int(rng.integers(3, 5))
        shape = tuple(int(v) for v in rng.integers(2, 5, size=n_modes))
        tree = random_tree(rng, n_modes)
        edges = list(tree.edges())
        caps = edge_max_ranks(tree, edges, shape)
        spectra = [random_spectrum(rng, min(c, 8)) for c in caps]
        p0 = ss.TreeNetworkRanks(tree, spectra, shape, 10**9)
        full = p0.size_model.size(p0.max_ranks)
        budget = int(rng.integers(p0.min_size - 2, full + 3))
        p = ss.TreeNetworkRanks(tree, spectra, shape, budget)
        exact = ss.solve(p, "brute_force")
        got = ss.solve(p, "ilp", method=method)
        assert got.status == exact.status or (exact.status == "optimal" and got.status == "optimal")
        if exact.status == "optimal":
            assert p.size(got.selected) <= budget
            assert got.objective == pytest.approx(exact.objective, rel=1e-12, abs=1e-12 * p.total_energy)


def test_ilp_is_exact_below_float_resolution():
    # Two modes can each afford rank 2 only alone; their second energies differ by 1e-17,
    # far below the 2^-52 resolution of the scaled weights: the exact check must pick mode 1.
    spectra = [np.sqrt([1.0, 1e-17]), np.sqrt([1.0, 2e-17]), np.array([1.0])]
    shape = (2, 2, 1)
    # sizes: (1,1,1) -> 1 + 5 = 6; (2,1,1) -> 2 + 2*2 + 2 + 1 = 9; (2,2,1) -> 4 + 4 + 4 + 1 = 13
    p = ss.CoreShape(spectra, shape, 9)
    for method in ("cp_sat", "enumeration"):
        r = ss.solve(p, "ilp", method=method)
        assert r.status == "optimal"
        assert r.selected == (1, 2, 1)
        assert r.info["window_candidates"] >= 2


def test_ilp_handles_massive_ties():
    # every singular value equal: many shapes tie exactly; the objective must still be optimal.
    shape = (6, 6, 6)
    spectra = [np.ones(6)] * 3
    p = ss.CoreShape(spectra, shape, 80)
    exact = ss.solve(p, "brute_force")
    for method in ("cp_sat", "enumeration"):
        got = ss.solve(p, "ilp", method=method)
        assert got.status == "optimal"
        assert got.objective == pytest.approx(exact.objective)


def test_ilp_infeasible_budget_returns_status_not_exception():
    p = ss.CoreShape([np.ones(3), np.ones(4), np.ones(5)], (3, 4, 5), 12)  # all-ones size is 13
    r = ss.solve(p, "ilp")
    assert r.status == "infeasible"
    assert r.selected == ()
    assert math.isnan(r.objective)
    assert "below the size of the smallest decomposition" in r.info["message"]
    assert ss.solve(p, "ptas").status == "infeasible"


def test_ilp_rejects_unknown_method():
    p = ss.CoreShape([np.ones(3), np.ones(4), np.ones(5)], (3, 4, 5), 13)
    with pytest.raises(ValueError, match="method must be one of"):
        ss.solve(p, "ilp", method="milp")


def test_ilp_budget_exactly_min_size():
    p = ss.CoreShape([np.ones(3), np.ones(4), np.ones(5)], (3, 4, 5), 13)
    r = ss.solve(p, "ilp")
    assert r.status == "optimal" and r.selected == (1, 1, 1)


def test_ilp_time_limit_returns_feasible_shape_with_bound():
    rng = np.random.default_rng(3)
    shape = (60, 70, 80, 50)
    spectra = [random_spectrum(rng, I) for I in shape]
    p = ss.CoreShape(spectra, shape, 200_000)
    r = ss.solve(p, "ilp", method="cp_sat", time_limit=0.001)
    assert r.status in ("time_limit", "optimal")
    assert p.size(r.selected) <= p.budget
    assert r.lower_bound is not None and r.lower_bound <= r.objective + 1e-9 and r.upper_bound == r.objective
