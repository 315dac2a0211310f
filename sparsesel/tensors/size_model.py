"""The size of a decomposition as a sum of products of ranks.

Both Tucker decompositions and tree tensor networks store, for each node, an array whose
number of entries is a constant (the physical dimension, or 1) times the product of the
ranks of some of the rank variables ("groups": modes for Tucker, edges for trees):

* Tucker with shape ``(I_0, ..., I_{N-1})`` and ranks ``r``: the core ``prod_n r_n`` plus the
  factor matrices ``sum_n I_n r_n``.
* A tree tensor network: ``sum_v I_v prod_{e incident to v} r_e`` (``I_v = 1`` at nodes
  without a physical mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SizeModel:
    """``size(r) = sum_t coef_t * prod_{g in groups_t} r_g`` over integer ranks ``r``.

    Parameters
    ----------
    n_groups : int
        Number of rank variables.
    terms : tuple of (int, tuple of int)
        ``(coefficient, groups)`` per stored array; coefficients are positive integers.
    """

    n_groups: int
    terms: tuple[tuple[int, tuple[int, ...]], ...]

    @classmethod
    def tucker(cls, shape: Sequence[int]) -> SizeModel:
        """Core ``prod r_n`` plus factor matrices ``sum I_n r_n``."""
        n = len(shape)
        return cls(n, ((1, tuple(range(n))),) + tuple((int(shape[i]), (i,)) for i in range(n)))

    def size(self, ranks: Sequence[int]) -> int:
        """Exact number of entries (Python integers, no overflow)."""
        total = 0
        for coef, groups in self.terms:
            prod = int(coef)
            for g in groups:
                prod *= int(ranks[g])
            total += prod
        return total

    def sizes(self, ranks: np.ndarray) -> np.ndarray:
        """Vectorized :meth:`size` for ``ranks`` of shape ``(M, n_groups)``; int64 (caller keeps it small)."""
        ranks = np.asarray(ranks, dtype=np.int64)
        total = np.zeros(ranks.shape[0], dtype=np.int64)
        for coef, groups in self.terms:
            prod = np.full(ranks.shape[0], coef, dtype=np.int64)
            for g in groups:
                prod *= ranks[:, g]
            total += prod
        return total

    @property
    def min_size(self) -> int:
        """Size with every rank equal to 1."""
        return self.size([1] * self.n_groups)
