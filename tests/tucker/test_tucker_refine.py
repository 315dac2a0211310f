"""ilp_refine: budget, never worse than the surrogate optimum, determinism, and its HOOI machinery
checked against tensorly's own ``tucker`` (the benchmark's true error) and explicit HOSVDs."""

from __future__ import annotations

import numpy as np
import pytest
import tensorly as tl
from tensorly.decomposition import tucker

import sparsesel as ss
from solvers.tucker_refine import _greedy_hosvd, _HooiRun, _reduce_tall_modes, _tail_lower_bound
from sparsesel.tensors.datasets import low_rank_tucker
from sparsesel.tensors.tucker import HosvdErrorTable

pytestmark = pytest.mark.filterwarnings("ignore:Trying to compute SVD with n_eigenvecs:UserWarning")


def hooi_error(X, ranks):
    """The benchmark's true error: tensorly HOOI, SVD start, 20 sweeps, tol 1e-6, explicit residual."""
    fit = tucker(X, rank=list(ranks), n_iter_max=20, init="svd", tol=1e-6)
    return float(np.sum((X - tl.tucker_to_tensor(fit)) ** 2) / np.sum(X**2))


def smooth_tensor(shape, seed):
    """Smooth (decaying-spectrum) tensor plus noise: HOOI and HOSVD rank shapes differently."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    X = np.zeros(shape)
    for _ in range(6):
        a = rng.uniform(1, 6, size=len(shape))
        X += rng.normal() * np.exp(-sum(ai * (g - rng.random()) ** 2 for ai, g in zip(a, grids)))
    return X + 0.01 * rng.standard_normal(shape)


CASES = [
    (low_rank_tucker((12, 10, 8), (3, 4, 5), noise=0.05, seed=3), 0.25),
    (low_rank_tucker((12, 10, 8), (3, 4, 5), noise=0.05, seed=3), 0.08),
    (smooth_tensor((14, 12, 9), 1), 0.15),
    (smooth_tensor((9, 8, 7, 5), 2), 0.1),
    (smooth_tensor((40, 4, 5), 4), 0.3),  # tall mode 0 (40 > 4·5): exact QR reduction
]


@pytest.mark.parametrize("X, fraction", CASES)
def test_fits_budget_and_never_worse_than_surrogate_optimum(X, fraction):
    p = ss.CoreShape.from_tensor(X, fraction)
    r = ss.solve(p, "ilp_refine")
    opt = ss.solve(p, "ilp")
    assert r.status == "feasible"
    ranks = r.selected
    assert len(ranks) == X.ndim and all(1 <= k <= m for k, m in zip(ranks, p.max_ranks))
    assert p.size(ranks) <= p.budget  # exact integer budget: core Π r_n + Σ I_n r_n
    assert p.size(ranks) == int(np.prod(ranks)) + sum(i * k for i, k in zip(X.shape, ranks))
    assert r.info["surrogate_optimum"] == opt.selected
    true = hooi_error(X, ranks)
    assert true <= hooi_error(X, opt.selected) * (1 + 1e-9)
    # reported errors are HOOI errors of that shape: converged equals tensorly's, bound is above it
    if r.info["true_relative_error"] is not None:
        assert r.info["true_relative_error"] == pytest.approx(true, rel=1e-7)
    assert r.info["true_error_upper_bound"] >= true * (1 - 1e-9)


def test_deterministic():
    X, fraction = CASES[2]
    p = ss.CoreShape.from_tensor(X, fraction)
    a, b = ss.solve(p, "ilp_refine"), ss.solve(p, "ilp_refine")
    assert a.selected == b.selected
    for key in ["true_relative_error", "true_error_upper_bound", "sweep_relative_error", "hosvd_relative_error", "hooi_sweeps", "greedy_hosvd_shape"]:
        assert a.info[key] == b.info[key]


@pytest.mark.parametrize("ranks", [(3, 4, 5), (6, 2, 7), (1, 9, 8), (12, 10, 1)])
def test_hooi_run_reproduces_tensorly_iterates_and_stopping(ranks):
    X = smooth_tensor((12, 10, 8), 5)
    table = HosvdErrorTable(X, X.shape)
    run = _HooiRun(table, ranks, n_iter_max=20, tol=1e-6, seed=0)
    final = run.finish()
    (core, _), ref = tucker(X, rank=list(ranks), n_iter_max=20, init="svd", tol=1e-6, return_errors=True)
    assert len(run.errors) == len(ref)
    np.testing.assert_allclose(run.errors, ref, rtol=1e-8, atol=1e-13)
    assert final == pytest.approx(hooi_error(X, ranks), rel=1e-7, abs=1e-14)
    # monotone: every intermediate error is an upper bound on the converged one
    assert all(e >= final * (1 - 1e-12) for e in run.sq_errors)


def test_tall_mode_reduction_is_exact():
    X = smooth_tensor((30, 3, 4), 6)
    Xr, bases = _reduce_tall_modes(X)
    assert Xr.shape == (12, 3, 4) and bases[0] is not None and bases[1] is None and bases[2] is None
    np.testing.assert_allclose(tl.fold(bases[0] @ tl.unfold(Xr, 0), 0, X.shape), X, atol=1e-12)
    table = HosvdErrorTable(X, (12, 3, 4))
    for ranks in [(2, 2, 2), (5, 3, 2), (7, 2, 4)]:
        run = _HooiRun(table, ranks, n_iter_max=20, tol=1e-6, seed=0, reduced=(Xr, bases))
        assert run.finish() == pytest.approx(hooi_error(X, ranks), rel=1e-7)


def test_tail_lower_bound_below_every_hooi_error():
    rng = np.random.default_rng(7)
    X = smooth_tensor((10, 9, 8), 8)
    p = ss.CoreShape.from_tensor(X, 1.0)
    norm2 = float(np.sum(X**2))
    for _ in range(15):
        ranks = tuple(int(rng.integers(1, k + 1)) for k in p.max_ranks)
        assert _tail_lower_bound(p, ranks, norm2) <= hooi_error(X, ranks) * (1 + 1e-9)


def test_greedy_hosvd_follows_explicit_hosvd_errors():
    # reference: HOSVD errors from numpy SVD factors of explicit unfoldings
    X = smooth_tensor((9, 8, 6), 9)
    p = ss.CoreShape.from_tensor(X, 0.2)
    Us = [np.linalg.svd(tl.unfold(X, n), full_matrices=False)[0] for n in range(3)]
    norm2 = float(np.sum(X**2))

    def hosvd(r):
        core = tl.tenalg.multi_mode_dot(X, [U[:, :k].T for U, k in zip(Us, r)])
        return (norm2 - float(np.sum(core**2))) / norm2

    ranks = [1, 1, 1]
    while True:
        moves = []
        for n in range(3):
            cand = list(ranks)
            cand[n] += 1
            if cand[n] <= p.max_ranks[n] and p.size(cand) <= p.budget:
                moves.append((hosvd(cand), n))
        if not moves:
            break
        ranks[min(moves)[1]] += 1
    table = HosvdErrorTable(X, p.max_ranks)
    assert _greedy_hosvd(p, table) == tuple(ranks)


def test_bad_options():
    X, fraction = CASES[0]
    p = ss.CoreShape.from_tensor(X, fraction)
    with pytest.raises(ValueError, match="n_fits must be >= 0"):
        ss.solve(p, "ilp_refine", n_fits=-1)
    tiny = ss.CoreShape.from_tensor(X, 5)
    assert ss.solve(tiny, "ilp_refine").status == "infeasible"
