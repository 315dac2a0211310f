"""The benchmark's least-squares oracle for the wide-linear task, against independent references.

* ``LeastSquaresRefit`` (normal equations on centred data, per block row) vs
  scikit-learn's ``LinearRegression`` fitted output by output on the kept columns;
* ``greedy_block_selection`` (Schur-complement gains) vs a forward selection
  that refits every candidate with scikit-learn, and its first pick vs
  ``brute_force`` over single blocks;
* ``block_energy`` vs a loop.
"""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from torch import nn

import sparsesel as ss

torch.set_num_threads(1)

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "block_sparsification.py"
_spec = importlib.util.spec_from_file_location("bench_block_sparsification_oracle", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def instance(seed, n=80, d=8, m=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.exp(rng.uniform(-1, 1, size=d)) + rng.normal(size=d)
    W = rng.normal(size=(m, d)) * (rng.random((m, d)) < 0.5)
    Y = X @ W.T + 0.3 * rng.normal(size=(n, m)) + rng.normal(size=m)
    return X, Y


def columns_of(block_mask, r, block):
    return [c * block + j for c in np.flatnonzero(block_mask[r]) for j in range(block)]


def sklearn_sse_and_r2(X, Y, Xte, Yte, block_mask, block):
    sse, resid = 0.0, 0.0
    for i in range(Y.shape[1]):
        cols = columns_of(block_mask, i // block, block)
        if cols:
            model = LinearRegression().fit(X[:, cols], Y[:, i])
            sse += float(((model.predict(X[:, cols]) - Y[:, i]) ** 2).sum())
            resid += float(((model.predict(Xte[:, cols]) - Yte[:, i]) ** 2).sum())
        else:
            sse += float(((Y[:, i] - Y[:, i].mean()) ** 2).sum())
            resid += float(((Yte[:, i] - Y[:, i].mean()) ** 2).sum())
    total = float(((Yte - Yte.mean(axis=0)) ** 2).sum())
    return sse, 100 * (1 - resid / total)


@pytest.mark.parametrize("seed", range(3))
def test_refit_r2_matches_sklearn(seed):
    X, Y = instance(seed)
    Xte, Yte = instance(seed + 50)
    block = 2
    mask = np.random.default_rng(seed).random((Y.shape[1] // block, X.shape[1] // block)) < 0.5
    mask[0] = False  # a block row with nothing kept predicts the training mean
    refit = bench.LeastSquaresRefit(X, Y, Xte, Yte, block)
    assert refit.r2(mask) == pytest.approx(sklearn_sse_and_r2(X, Y, Xte, Yte, mask, block)[1], abs=1e-8)


@pytest.mark.parametrize("seed", range(3))
def test_greedy_matches_forward_selection_with_sklearn_refits(seed):
    X, Y = instance(seed)
    block, k = 2, 5
    R, C = Y.shape[1] // block, X.shape[1] // block
    picks = bench.greedy_block_selection(X, Y, block, k)
    mask = np.zeros((R, C), bool)
    for step in range(k):
        sses = {}
        for r in range(R):
            for c in range(C):
                if not mask[r, c]:
                    trial = mask.copy()
                    trial[r, c] = True
                    sses[(r, c)] = sklearn_sse_and_r2(X, Y, X, Y, trial, block)[0]
        best = min(sses, key=sses.get)
        assert sses[picks[step]] == pytest.approx(sses[best], rel=1e-9)
        mask[picks[step]] = True


def test_greedy_first_pick_is_the_brute_force_single_block():
    for seed in range(3):
        X, Y = instance(seed)
        torch.manual_seed(seed)
        problem = ss.BlockSparsification(nn.Linear(8, 4), (2, 2), density=1 / 8, min_blocks=1, data=(X, Y), loss="mse")
        (_, (flat,)), = ss.solve(problem, solver="brute_force").selected
        assert bench.greedy_block_selection(X, Y, 2, 1) == [divmod(flat, 4)]


def test_block_energy_and_top_k():
    M = np.arange(24.0).reshape(4, 6)
    expected = np.array([[sum(M[r * 2 + i, c * 2 + j] ** 2 for i in range(2) for j in range(2)) for c in range(3)]
                         for r in range(2)])
    assert np.allclose(bench.block_energy(M, 2), expected)
    assert bench.top_k_mask(np.array([[1.0, 3.0], [2.0, 3.0]]), 2).tolist() == [[False, True], [False, True]]
