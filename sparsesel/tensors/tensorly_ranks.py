"""Ranks for TensorLy's decompositions within a parameter budget, chosen exactly.

``tucker_rank(X, budget)`` and ``tt_rank(X, budget)`` return ranks that go straight
into ``tensorly.decomposition.tucker(X, rank=...)`` and
``tensorly.decomposition.tensor_train(X, rank=...)``. They replace TensorLy's own
``rank=float`` rule (``validate_tucker_rank`` / ``validate_tt_rank``: ranks
proportional to the mode sizes, rounded, so the size can exceed the budget) by the
exact optimum of the discarded spectral energy within the budget:

* Tucker: :class:`~sparsesel.CoreShape` (size ``Π r_n + Σ I_n r_n``, core plus
  factors; objective ``Σ_n Σ_{i>r_n} σ²_{n,i}``, the mode-unfolding spectra), solved by
  the ``ilp`` solver;
* tensor train: :class:`~sparsesel.TreeNetworkRanks` on the path (size
  ``Σ_k r_k I_k r_{k+1}``, the cores; objective ``Σ_k Σ_{i>r_k} σ²_{k,i}``, the
  spectra of the cuts ``I_0⋯I_{k−1} × I_k⋯I_{N−1}``), solved by ``ilp``.

Both objectives bound the squared error of the truncated decomposition (HOSVD,
TT-SVD), so a smaller one is a better guarantee; ``ilp`` proves its answer optimal.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _solve_exactly(problem: Any) -> Any:
    from sparsesel.registry import solve

    result = solve(problem, "ilp")
    if result.status == "infeasible":
        raise ValueError(problem.infeasible_message())
    return result


def tucker_rank(X: Any, budget: int | float, *, return_result: bool = False) -> tuple[int, ...] | tuple[tuple[int, ...], Any]:
    """The Tucker ranks of least discarded energy whose decomposition fits in ``budget``.

    Parameters
    ----------
    X : array_like, shape (I_0, ..., I_{N-1})
        Finite real tensor, ``N >= 2``.
    budget : int or float
        Parameters of the decomposition (core ``Π r_n`` plus factors ``Σ I_n r_n``): an int
        count, or a float fraction in ``(0, 1]`` of ``X.size`` (rounded down).
    return_result : bool
        Also return the solver's :class:`~sparsesel.Result` (``info["size"]``,
        ``info["relative_error_bound"]``, ``status == "optimal"``).

    Returns
    -------
    tuple of int, length N
        ``rank`` for ``tensorly.decomposition.tucker(X, rank=rank)``; ``(rank, result)``
        with ``return_result``.

    Raises
    ------
    ValueError
        A budget below the all-ones size, or a bad tensor or budget (the message names it).

    Examples
    --------
    >>> import tensorly as tl
    >>> from tensorly.decomposition import tucker
    >>> from sparsesel.tensors import tucker_rank
    >>> from sparsesel.tensors.datasets import load_tensor
    >>> X = load_tensor("china_small")              # 107×160×3
    >>> rank = tucker_rank(X, 0.1)                  # (19, 14, 3): 5080 <= 5136 parameters
    >>> core, factors = tucker(tl.tensor(X), rank=rank)
    """
    from sparsesel.problems.core_shape import CoreShape

    problem = CoreShape.from_tensor(X, budget)
    result = _solve_exactly(problem)
    ranks = tuple(int(r) for r in result.selected)
    return (ranks, result) if return_result else ranks


def realisable_tt_ranks(ranks: tuple[int, ...], shape: tuple[int, ...]) -> list[int]:
    """Lower TT ranks to what TT-SVD can reach: ``r_{k+1} <= r_k·I_k`` (``r_0 = 1``).

    TensorLy's ``tensor_train`` applies the same cap itself (the unfolding it splits at
    step ``k`` has ``r_k·I_k`` rows), so the decomposition is unchanged and only the
    reported ranks and size become the true ones.

    Parameters
    ----------
    ranks : tuple of int, length N−1
        Inner ranks ``r_1..r_{N−1}``.
    shape : tuple of int, length N

    Returns
    -------
    list of int
        ``[1, r_1, ..., r_{N−1}, 1]`` (TensorLy's format).
    """
    full = [1, *(int(r) for r in ranks), 1]
    for k in range(len(shape) - 1):
        full[k + 1] = min(full[k + 1], full[k] * int(shape[k]))
    return full


def tt_rank(X: Any, budget: int | float, *, return_result: bool = False) -> list[int] | tuple[list[int], Any]:
    """The tensor-train ranks of least discarded energy whose cores fit in ``budget``.

    Parameters
    ----------
    X : array_like, shape (I_0, ..., I_{N-1})
        Finite real tensor, ``N >= 2``.
    budget : int or float
        Parameters of the cores (``Σ_k r_k I_k r_{k+1}``, ``r_0 = r_N = 1``): an int count,
        or a float fraction in ``(0, 1]`` of ``X.size`` (rounded down).
    return_result : bool
        Also return the solver's :class:`~sparsesel.Result` for the path problem
        (``selected`` = the inner ranks of the optimum before :func:`realisable_tt_ranks`).

    Returns
    -------
    list of int, length N+1
        ``[1, r_1, ..., r_{N−1}, 1]`` for ``tensorly.decomposition.tensor_train(X, rank=...)``:
        the exact optimum, with any rank TT-SVD cannot reach lowered to what it reaches
        (:func:`realisable_tt_ranks`; the decomposition is the same). ``(ranks, result)``
        with ``return_result``.

    Raises
    ------
    ValueError
        A budget below the all-ones size, or a bad tensor or budget.
    """
    from sparsesel.problems.tree_network_ranks import TreeNetworkRanks

    problem = TreeNetworkRanks.tensor_train(X, budget)
    result = _solve_exactly(problem)
    ranks = realisable_tt_ranks(tuple(result.selected), tuple(np.shape(problem.tensor)))
    return (ranks, result) if return_result else ranks
