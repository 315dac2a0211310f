"""Column algebra of a design matrix that may be a scipy sparse matrix, without densifying it.

Feature-selection solvers need the centred design ``Xᶜ = X − 1μᵀ`` (``μ`` the
column means, for the intercept) only through products and column statistics.
For a sparse ``X`` these are computed by the implicit-centring algebra, so ``X``
itself stays sparse and only the columns a caller asks for become dense:

* ``Xᶜᵀ v = Xᵀ v − μ·(1ᵀ v)`` (one sparse product);
* ``Xᶜᵀ Xᶜ[:, F] = Xᵀ X[:, F] − n·μ μ_Fᵀ`` (a sparse product, ``d × |F|`` dense);
* ``‖xᶜ_j‖² = Σ_{i: x_ij ≠ 0} (x_ij − μ_j)² + (n − nnz_j)·μ_j²`` (exact: no
  cancellation, unlike ``Σx² − nμ²``).

Dividing the columns by powers of two (:func:`scale_sparse_columns`, for
:mod:`sparsesel.problems.column_scaling`) is ``X·diag(1/s)``: the stored entries
are scaled in place of a copy, the sparsity pattern is shared, and the same
algebra then runs on the scaled columns and the scaled means ``μ/s``.
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


def column_extremes(X: Any) -> tuple[np.ndarray, np.ndarray]:
    """Column maxima and minima, each of shape ``(d,)``, of a dense or sparse ``(n, d)`` design.

    For a sparse ``X`` the implicit zeros count (a column with one is at least 0 and at most 0).
    """
    if not is_sparse(X):
        return X.max(axis=0), X.min(axis=0)
    return _dense_row(X.max(axis=0)), _dense_row(X.min(axis=0))


def _dense_row(value: Any) -> np.ndarray:
    """A ``(d,)`` float64 array from a sparse or dense reduction of shape ``(d,)`` or ``(1, d)``."""
    if is_sparse(value):
        value = value.toarray()
    return np.asarray(value, dtype=np.float64).ravel()


def scale_sparse_columns(X: Any, factor: np.ndarray) -> Any:
    """``X·diag(factor)`` for a sparse ``X``: a CSC array with the same sparsity pattern.

    Parameters
    ----------
    X : scipy sparse matrix or array, shape (n, d)
    factor : ndarray, shape (d,)
        One factor per column; powers of two make the scaling exact (barring underflow).

    Returns
    -------
    scipy.sparse.csc_array, shape (n, d)
        New ``data`` (``nnz`` floats); ``indices`` and ``indptr`` are shared with a CSC ``X``.
    """
    csc = X if isinstance(X, sp.csc_array) and X.has_canonical_format else sp.csc_array(X)
    data = np.repeat(np.asarray(factor, dtype=np.float64), np.diff(csc.indptr))  # the factor of each entry
    data *= csc.data
    return sp.csc_array((data, csc.indices, csc.indptr), shape=csc.shape, copy=False)


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
