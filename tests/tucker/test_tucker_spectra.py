"""Spectra against numpy SVD of explicit unfoldings; surrogate and HOSVD bounds; TT recovery."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorly as tl
from tensorly.decomposition import tucker
from tensorly.random import random_tt
from tucker_instances import random_tree

import sparsesel as ss
from sparsesel.tensors import HosvdErrorTable, mode_spectra, mode_spectrum
from sparsesel.tensors.spectra import matricization_spectrum
from sparsesel.tensors.tree_networks import cut_modes, tree_relative_error, tree_truncation


def explicit_unfolding(X, rows):
    """Rows: the modes ``rows``; built by explicit index loops (independent of tensorly)."""
    cols = [m for m in range(X.ndim) if m not in rows]
    R = int(np.prod([X.shape[m] for m in rows]))
    C = int(np.prod([X.shape[m] for m in cols]))
    M = np.empty((R, C))
    for i, ri in enumerate(itertools.product(*[range(X.shape[m]) for m in rows])):
        for j, cj in enumerate(itertools.product(*[range(X.shape[m]) for m in cols])):
            idx = [0] * X.ndim
            for m, v in zip(rows, ri):
                idx[m] = v
            for m, v in zip(cols, cj):
                idx[m] = v
            M[i, j] = X[tuple(idx)]
    return M


@pytest.mark.parametrize("seed", range(3))
def test_mode_spectra_equal_numpy_svd_of_explicit_unfoldings(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(2, 7, size=3 + seed % 2))
    X = rng.normal(size=shape) * rng.uniform(0.1, 10)
    spectra = mode_spectra(X)
    for n in range(X.ndim):
        ref = np.linalg.svd(explicit_unfolding(X, [n]), compute_uv=False)
        assert spectra[n].shape == ref.shape
        np.testing.assert_allclose(spectra[n] ** 2, ref**2, atol=1e-10 * ref[0] ** 2, rtol=1e-9)


def test_matricization_spectrum_of_a_cut():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3, 4, 2, 5))
    ref = np.linalg.svd(explicit_unfolding(X, [0, 2]), compute_uv=False)
    np.testing.assert_allclose(matricization_spectrum(X, (0, 2)), ref, rtol=1e-8, atol=1e-8 * ref[0])


def test_truncated_and_randomized_spectra():
    rng = np.random.default_rng(1)
    U, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    s = 0.7 ** np.arange(200)
    M = (U * s) @ rng.normal(size=(200, 300)) / np.sqrt(300)
    X = M.reshape(200, 20, 15)
    ref = np.linalg.svd(M, compute_uv=False)
    np.testing.assert_allclose(mode_spectrum(X, 0, max_rank=10), ref[:10], rtol=1e-8)
    approx = mode_spectrum(X, 0, max_rank=10, method="randomized", seed=0)
    np.testing.assert_allclose(approx, ref[:10], rtol=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        mode_spectrum(X, 0, method="qr")


def test_zero_noise_floor_is_exact_zero():
    X = np.zeros((5, 6, 7))
    X[0, 0, 0] = 3.0
    s = mode_spectrum(X, 1)
    assert s[0] == pytest.approx(3.0) and np.all(s[1:] == 0)


@pytest.mark.filterwarnings("ignore:Trying to compute SVD with n_eigenvecs:UserWarning")
@pytest.mark.parametrize("seed", range(4))
def test_surrogate_bounds_true_hosvd_error(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(3, 8, size=3))
    X = rng.normal(size=shape) + 3 * np.einsum("i,j,k->ijk", *[rng.normal(size=I) for I in shape])
    p = ss.CoreShape.from_tensor(X, 1.0)
    norm2 = float(np.vdot(X, X))
    Us = [np.linalg.svd(explicit_unfolding(X, [n]), full_matrices=False)[0] for n in range(3)]
    table = HosvdErrorTable(X, shape)
    for ranks in itertools.product(*[range(1, I + 1, 2) for I in shape]):
        factors = [U[:, :r] for U, r in zip(Us, ranks)]
        core = np.einsum("ijk,ia,jb,kc->abc", X, *factors)
        Xh = np.einsum("abc,ia,jb,kc->ijk", core, *factors)
        hosvd_err = float(np.sum((X - Xh) ** 2))
        assert hosvd_err <= p.objective(ranks) * (1 + 1e-9) + 1e-9
        assert table.relative_error(ranks) == pytest.approx(hosvd_err / norm2, abs=1e-10)
        # the surrogate is at most N times the optimal Tucker error, hence N x the HOOI error
        hooi = tucker(X, rank=list(ranks), n_iter_max=50, tol=1e-12)
        hooi_err = float(np.sum((X - tl.tucker_to_tensor(hooi)) ** 2))
        assert p.objective(ranks) <= 3 * hooi_err * (1 + 1e-6) + 1e-9


def test_tensor_train_with_known_ranks_is_recovered_exactly():
    shape, tt_ranks = (4, 5, 6, 5), (1, 2, 3, 2, 1)
    X = np.asarray(random_tt(shape, rank=list(tt_ranks), full=True, random_state=0))
    size = sum(tt_ranks[k] * shape[k] * tt_ranks[k + 1] for k in range(4))
    p = ss.TreeNetworkRanks.tensor_train(X, size)
    assert p.size((2, 3, 2)) == size
    r = ss.solve(p, "ilp")
    assert r.status == "optimal"
    assert r.selected == (2, 3, 2)
    assert r.objective <= 1e-12 * p.total_energy
    assert tree_relative_error(X, p.tree, p.edges, r.selected) < 1e-20
    # one entry less: some rank must drop and energy is lost
    q = ss.TreeNetworkRanks.tensor_train(X, size - 1)
    assert ss.solve(q, "ilp").objective > 1e-6 * q.total_energy


@pytest.mark.parametrize("seed", range(3))
def test_tree_truncation_error_bounded_by_surrogate(seed):
    rng = np.random.default_rng(seed)
    tree = random_tree(rng, 4)
    X = rng.normal(size=(3, 4, 3, 4))
    p = ss.TreeNetworkRanks.from_tensor(X, tree, 1.0)
    for _ in range(5):
        ranks = tuple(int(rng.integers(1, k + 1)) for k in p.max_ranks)
        Xh = tree_truncation(X, p.tree, p.edges, ranks)
        err = float(np.sum((X - Xh) ** 2))
        assert err <= p.objective(ranks) * (1 + 1e-9) + 1e-9
        # the truncation has the tree format: every cut's matricization has rank <= r_e
        for edge, r in zip(p.edges, ranks):
            s = np.linalg.svd(explicit_unfolding(Xh, list(cut_modes(p.tree, edge))), compute_uv=False)
            assert np.all(s[r:] <= 1e-9 * s[0])


def test_tucker_star_equals_core_shape():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4, 5, 6))
    a = ss.CoreShape.from_tensor(X, 0.5)
    b = ss.TreeNetworkRanks.tucker(X, 0.5)
    assert a.budget == b.budget
    ra, rb = ss.solve(a, "ilp"), ss.solve(b, "ilp")
    assert ra.objective == pytest.approx(rb.objective)
    assert a.size(ra.selected) == b.size(ra.selected)
