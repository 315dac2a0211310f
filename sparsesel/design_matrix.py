"""Column algebra of a design matrix that may be a scipy sparse matrix, without densifying it.

Feature-selection solvers need the centred design ``Xᶜ = X − 1μᵀ`` (``μ`` the
column means, for the intercept) only through products and column statistics.
For a sparse ``X`` these are computed by the implicit-centring algebra, so ``X``
itself stays sparse and only the columns a caller asks for become dense:

* ``Xᶜᵀ v = Xᵀ v − μ·(1ᵀ v)`` (one sparse product);
* ``Xᶜᵀ Xᶜ[:, F] = Xᵀ X[:, F] − n·μ μ_Fᵀ`` (a sparse product, ``d × |F|`` dense);
* ``‖xᶜ_j‖² = Σ_{i: x_ij ≠ 0} (x_ij − μ_j)² + (n − nnz_j)·μ_j²`` (exact: no
  cancellation, unlike ``Σx² − nμ²``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

_COLUMN_BLOCK = 256


def is_sparse(X: Any) -> bool:
    """Whether ``X`` is a scipy sparse matrix or array."""
    return bool(sp.issparse(X))


def column_means(X: Any) -> np.ndarray:
    """Column means ``μ``, shape ``(d,)``, of a dense or sparse ``(n, d)`` design."""
    return np.asarray(X.mean(axis=0), dtype=np.float64).ravel()


def centred_transpose_product(X: Any, mean: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``Xᶜᵀ v = Xᵀ v − μ·(1ᵀ v)``, shape ``(d,)`` (``v`` of shape ``(n,)``)."""
    return np.asarray(X.T @ v, dtype=np.float64).ravel() - mean * float(np.sum(v))


def dense_columns(X: Any, columns: Sequence[int] | np.ndarray) -> np.ndarray:
    """The columns ``X[:, columns]`` as a fresh dense float64 array of shape ``(n, len(columns))``."""
    columns = np.asarray(columns, dtype=np.intp)
    block = X[:, columns]
    return block.toarray() if is_sparse(block) else np.array(block, dtype=np.float64)


def sparse_centred_gram_columns(X: Any, mean: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``Xᶜᵀ Xᶜ[:, columns]`` for a sparse ``X``, shape ``(d, len(columns))``, dense."""
    columns = np.asarray(columns, dtype=np.intp)
    product = X.T @ X[:, columns]
    gram = product.toarray() if is_sparse(product) else np.array(product, dtype=np.float64)
    del product
    n = X.shape[0]
    for start in range(0, columns.size, _COLUMN_BLOCK):  # in place, without a d × |F| temporary
        block = slice(start, start + _COLUMN_BLOCK)
        gram[:, block] -= n * np.outer(mean, mean[columns[block]])
    return gram


def sparse_centred_sq_norms(X: Any, mean: np.ndarray) -> np.ndarray:
    """``‖xᶜ_j‖² = Σ_i (x_ij − μ_j)²`` for every column of a sparse ``X``, shape ``(d,)``.

    Summed over the stored entries plus ``(n − nnz_j)·μ_j²`` for the implicit zeros.
    """
    csc = sp.csc_array(X)
    n, d = csc.shape
    counts = np.diff(csc.indptr)
    column_of_entry = np.repeat(np.arange(d), counts)
    deviations = csc.data - mean[column_of_entry]
    stored = np.bincount(column_of_entry, weights=deviations * deviations, minlength=d)
    return stored + (n - counts) * mean * mean


def sparse_description(X: Any) -> str:
    """``"100000×5000, 0.1% non-zero"``: for messages about a sparse ``X``."""
    n, d = X.shape
    density = X.nnz / max(n * d, 1)
    return f"{n}×{d}, {100 * density:.3g}% non-zero"
