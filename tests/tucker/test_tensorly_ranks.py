"""``sparsesel.tensors.tucker_rank`` / ``tt_rank``: ranks that run in TensorLy, fit the budget and are
the exact optimum of the discarded-energy objective.

Oracles: TensorLy's own ``tucker`` and ``tensor_train`` (the ranks and parameter counts of what they
return), and a brute force in this file over every rank tuple, with sizes from the formulas and
energies from numpy SVDs of the unfoldings / cuts.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import tensorly as tl
from tensorly.decomposition import tensor_train, tucker
from tensorly.tt_tensor import tt_to_tensor
from tensorly.tucker_tensor import tucker_to_tensor

from sparsesel.tensors import tt_rank, tucker_rank


def _tail_energies(matrix: np.ndarray) -> np.ndarray:
    """tails[r−1] = Σ_{i>r} σ_i² of ``matrix`` for r = 1..rank bound."""
    sigma2 = np.linalg.svd(matrix, compute_uv=False) ** 2
    return np.concatenate([np.cumsum(sigma2[::-1])[::-1][1:], [0.0]])


def _brute_force_tucker(X: np.ndarray, budget: int) -> float:
    shape = X.shape
    tails = [_tail_energies(np.moveaxis(X, n, 0).reshape(shape[n], -1)) for n in range(X.ndim)]
    best = math.inf
    for ranks in itertools.product(*(range(1, len(t) + 1) for t in tails)):
        if math.prod(ranks) + sum(i * r for i, r in zip(shape, ranks)) <= budget:
            best = min(best, sum(t[r - 1] for t, r in zip(tails, ranks)))
    return best


def _brute_force_tt(X: np.ndarray, budget: int) -> float:
    shape = X.shape
    tails = [_tail_energies(X.reshape(math.prod(shape[:k]), -1)) for k in range(1, X.ndim)]
    best = math.inf
    for inner in itertools.product(*(range(1, len(t) + 1) for t in tails)):
        full = (1, *inner, 1)
        if sum(full[k] * shape[k] * full[k + 1] for k in range(X.ndim)) <= budget:
            best = min(best, sum(t[r - 1] for t, r in zip(tails, inner)))
    return best


def _small_tensors():
    cases = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        shape = tuple(int(s) for s in rng.integers(2, 6, size=3 if seed % 2 else 4))
        low_rank = np.einsum("ia,ja,ka->ijk", *(rng.standard_normal((s, 2)) for s in shape[:3]))
        X = rng.standard_normal(shape) * 0.1
        X += low_rank.reshape(shape[:3] + (1,) * (len(shape) - 3))
        budget = int(rng.integers(sum(shape) + 1, X.size))
        cases.append(pytest.param(X, budget, id=f"{'x'.join(map(str, shape))}-B{budget}"))
    return cases


@pytest.mark.parametrize(("X", "budget"), _small_tensors())
def test_tucker_rank_runs_in_tensorly_fits_the_budget_and_is_the_brute_force_optimum(X, budget):
    rank, result = tucker_rank(X, budget, return_result=True)
    core, factors = tucker(tl.tensor(X), rank=list(rank), init="svd", n_iter_max=50, tol=1e-10)
    assert tuple(core.shape) == rank
    assert [f.shape for f in factors] == [(i, r) for i, r in zip(X.shape, rank)]
    size = core.size + sum(f.size for f in factors)
    assert size == math.prod(rank) + sum(i * r for i, r in zip(X.shape, rank)) <= budget
    assert result.status == "optimal"
    assert result.objective == pytest.approx(_brute_force_tucker(X, budget), rel=1e-9, abs=1e-12)
    # HOOI from the HOSVD keeps the error within the HOSVD bound, the discarded energy
    error2 = float(np.sum((X - tucker_to_tensor((core, factors))) ** 2))
    assert error2 <= result.objective * (1 + 1e-9) + 1e-12


@pytest.mark.parametrize(("X", "budget"), _small_tensors())
def test_tt_rank_runs_in_tensorly_fits_the_budget_and_is_the_brute_force_optimum(X, budget):
    ranks, result = tt_rank(X, budget, return_result=True)
    assert ranks[0] == ranks[-1] == 1 and len(ranks) == X.ndim + 1
    factors = tensor_train(tl.tensor(X), rank=list(ranks))
    assert [f.shape for f in factors] == [(ranks[k], X.shape[k], ranks[k + 1]) for k in range(X.ndim)]
    assert sum(f.size for f in factors) <= budget
    assert result.status == "optimal"
    optimum = _brute_force_tt(X, budget)
    assert result.objective == pytest.approx(optimum, rel=1e-9, abs=1e-12)
    # TT-SVD's error is within the discarded energy of the optimum (lowering an unreachable rank changes nothing)
    error2 = float(np.sum((X - tt_to_tensor(factors)) ** 2))
    assert error2 <= optimum * (1 + 1e-9) + 1e-12


def test_unreachable_tt_rank_is_lowered_to_what_tensorly_uses():
    """A (4, 3, 2, 3) tensor that is nearly rank 1 across the first cut, at 30 parameters: the optimum
    (1, 4, 1) has r_2 = 4 > r_1·I_1 = 3, which TT-SVD cannot reach; TensorLy stops at 3 and so do the
    returned ranks, with the same decomposition."""
    rng = np.random.default_rng(76)
    X = rng.standard_normal((4, 3, 2, 3))
    X = np.einsum("i,jkl->ijkl", rng.standard_normal(4), rng.standard_normal((3, 2, 3))) + 0.01 * X
    ranks, result = tt_rank(X, 30, return_result=True)
    assert result.selected == (1, 4, 1) and ranks == [1, 1, 3, 1, 1]
    factors = tensor_train(tl.tensor(X), rank=ranks)
    assert [f.shape[2] for f in factors[:-1]] == ranks[1:-1]
    unclipped = tensor_train(tl.tensor(X), rank=[1, *result.selected, 1])
    np.testing.assert_allclose(tt_to_tensor(factors), tt_to_tensor(unclipped), rtol=1e-12, atol=1e-12)
    assert sum(f.size for f in factors) <= 30
    assert result.objective == pytest.approx(_brute_force_tt(X, 30), rel=1e-9, abs=1e-15)


def test_fraction_budget_and_infeasible_budget():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((6, 7, 8))
    assert tucker_rank(X, 0.5) == tucker_rank(X, int(0.5 * X.size))
    assert tt_rank(X, 0.25) == tt_rank(X, int(0.25 * X.size))
    with pytest.raises(ValueError, match="budget 10 is below the size of the smallest decomposition"):
        tucker_rank(X, 10)
    with pytest.raises(ValueError, match="budget 10 is below the size of the smallest decomposition"):
        tt_rank(X, 10)
    with pytest.raises(ValueError, match=r"budget must be a fraction in \(0, 1\] of the entries or a whole count of entries >= 1, got 1.5"):
        tucker_rank(X, 1.5)


def test_china_small_issue_figures():
    """The issue's example: CoreShape + ilp on china_small at 10% gives (19, 14, 3), within 5136 entries."""
    from sparsesel.tensors.datasets import load_tensor

    X = load_tensor("china_small")
    rank, result = tucker_rank(X, 0.1, return_result=True)
    assert rank == (19, 14, 3) and result.info["size"] == 5080 <= 5136 == result.info["budget"]


def _readme_block(containing: str) -> str:
    """The README's python block that contains ``containing`` (the README shows what this test runs)."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]
    found = [block for block in blocks if containing in block]
    assert len(found) == 1, f"expected one README python block containing {containing!r}, found {len(found)}"
    return found[0]


def test_readme_tensorly_example_runs_as_written():
    namespace: dict = {}
    exec(compile(_readme_block("tucker_rank(X, 0.1)"), "README.md", "exec"), namespace)
    assert namespace["rank"] == (19, 14, 3)
    assert [f.shape for f in namespace["factors"]] == [(107, 19), (160, 14), (3, 3)]
    assert [f.shape for f in namespace["tt_factors"]] == [(1, 107, 12), (12, 160, 2), (2, 3, 1)]
