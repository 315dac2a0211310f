"""greedy_tucker, ilp_refine and the surrogate baselines against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import tensorly as tl
from tensorly.decomposition import tucker
from tucker_instances import random_core_shape

import sparsesel as ss
from sparsesel.tensors.datasets import low_rank_tucker

pytestmark = pytest.mark.filterwarnings("ignore:Trying to compute SVD with n_eigenvecs:UserWarning")


def hooi_error(X, ranks):
    fit = tucker(X, rank=list(ranks), n_iter_max=20, init="svd", tol=1e-6)
    return float(np.sum((X - tl.tucker_to_tensor(fit)) ** 2) / np.sum(X**2))


@pytest.fixture(scope="module")
def small_problem():
    X = low_rank_tucker((12, 10, 8), (3, 4, 5), noise=0.05, seed=3)
    return ss.CoreShape.from_tensor(X, 0.25)


def test_greedy_tucker_follows_true_errors(small_problem):
    p = small_problem
    r = ss.solve(p, "greedy_tucker")
    assert p.size(r.selected) <= p.budget
    assert r.info["true_relative_error"] == pytest.approx(hooi_error(p.tensor, r.selected), rel=1e-6)
    # each step moved to the best feasible +1 neighbour by tensorly's own errors
    for before, after in zip(r.trace[:-1], r.trace[1:]):
        options = []
        for n in range(3):
            cand = list(before["ranks"])
            cand[n] += 1
            if cand[n] <= p.max_ranks[n] and p.size(cand) <= p.budget:
                options.append(hooi_error(p.tensor, cand))
        assert after["error"] == pytest.approx(min(options), rel=1e-6)


def test_greedy_tucker_needs_a_tensor():
    p = ss.CoreShape([np.ones(3)] * 3, (3, 3, 3), 20)
    with pytest.raises(ValueError, match=r"needs the tensor itself.*CoreShape.from_tensor"):
        ss.solve(p, "greedy_tucker")
    with pytest.raises(ValueError, match="needs the tensor itself"):
        ss.solve(p, "ilp_refine")


def test_ilp_refine_not_worse_than_surrogate_optimum(small_problem):
    p = small_problem
    opt = ss.solve(p, "ilp")
    r = ss.solve(p, "ilp_refine", n_fits=3)
    assert p.size(r.selected) <= p.budget
    assert r.info["surrogate_optimum"] == opt.selected
    assert r.info["true_relative_error"] == pytest.approx(hooi_error(p.tensor, r.selected), rel=1e-6)
    assert r.info["true_relative_error"] <= hooi_error(p.tensor, opt.selected) * (1 + 1e-9)
    assert r.info["fits"] <= 3


def test_ilp_refine_without_fits_minimises_hosvd_error(small_problem):
    # reference: explicit HOSVD (numpy SVD factors) of every feasible shape by brute force
    p = small_problem
    X = p.tensor
    Us = [np.linalg.svd(tl.unfold(X, n), full_matrices=False)[0] for n in range(3)]
    norm2 = float(np.sum(X**2))
    best = None
    for ranks in np.ndindex(*p.max_ranks):
        ranks = tuple(int(v) + 1 for v in ranks)
        if p.size(ranks) > p.budget:
            continue
        core = tl.tenalg.multi_mode_dot(X, [U[:, :r].T for U, r in zip(Us, ranks)])
        err = (norm2 - float(np.sum(core**2))) / norm2
        if best is None or err < best[0]:
            best = (err, ranks)
    r = ss.solve(p, "ilp_refine", sweeps=0)
    assert r.info["fits"] == 0
    assert r.info["hosvd_relative_error"] == pytest.approx(best[0], rel=1e-6, abs=1e-12)
    # default: the shortlist is re-scored after one HOOI sweep, never worse than HOSVD's best
    d = ss.solve(p, "ilp_refine")
    assert p.size(d.selected) <= p.budget
    assert d.info["sweep_relative_error"] <= best[0] + 1e-12
    assert hooi_error(p.tensor, d.selected) <= d.info["sweep_relative_error"] + 1e-9


def test_fit_cache_is_reused(small_problem):
    cache = {}
    a = ss.solve(small_problem, "greedy_tucker", fit_cache=cache)
    b = ss.solve(small_problem, "greedy_tucker", fit_cache=cache)
    assert a.selected == b.selected and b.info["cache_hits"] == b.info["fits"]
    assert b.info["fit_seconds"] == pytest.approx(a.info["fit_seconds"])


@pytest.mark.parametrize("solver", ["greedy_surrogate", "bang_for_buck", "uniform", "energy_threshold"])
def test_surrogate_baselines_feasible_and_not_better_than_optimum(solver):
    rng = np.random.default_rng(11)
    for _ in range(20):
        p = random_core_shape(rng)
        exact = ss.solve(p, "brute_force")
        got = ss.solve(p, solver)
        assert got.status == ("infeasible" if exact.status == "infeasible" else "feasible")
        if exact.status != "infeasible":
            assert p.size(got.selected) <= p.budget
            assert got.objective >= exact.objective - 1e-9 * p.total_energy


def test_greedy_surrogate_picks_largest_next_energy():
    # hand-worked: energies (σ²) mode0 [9, 4, 1], mode1 [9, 5, 3], mode2 [9, 1, 1]; budget lets 2 steps
    spectra = [np.sqrt([9, 4, 1]), np.sqrt([9, 5, 3]), np.sqrt([9, 1, 1])]
    p = ss.CoreShape(spectra, (3, 3, 3), 1 + 9 + 2 + 3 + 3 + 3)  # (1,2,1)=2+3+6+3=14 ; (2,2,1)=4+6+6+3=19
    r = ss.solve(p, "greedy_surrogate")
    assert r.selected == (2, 2, 1)


def test_uniform_and_energy_threshold_semantics():
    spectra = [np.linspace(10, 1, 10)] * 3
    p = ss.CoreShape(spectra, (10, 10, 10), 10**6)
    assert ss.solve(p, "uniform").selected == (10, 10, 10)
    assert ss.solve(p, "energy_threshold").selected == (10, 10, 10)
    q = ss.CoreShape(spectra, (10, 10, 10), 5 * 5 * 5 + 3 * 10 * 5)
    assert ss.solve(q, "uniform").selected == (5, 5, 5)


def test_brute_force_refuses_politely():
    p = ss.CoreShape([np.ones(100)] * 4, (100, 100, 100, 100), 10**5)
    with pytest.raises(ValueError, match="brute_force would enumerate 100000000 shapes"):
        ss.solve(p, "brute_force")


def test_tree_solvers_registered():
    names = ss.solvers_for(ss.TreeNetworkRanks)
    for name in ["ilp", "brute_force", "greedy_surrogate", "bang_for_buck", "uniform", "energy_threshold"]:
        assert name in names
    core = ss.solvers_for(ss.CoreShape)
    for name in ["ilp", "ptas", "brute_force", "greedy_tucker", "ilp_refine", "uniform", "energy_threshold"]:
        assert name in core
