"""Singular values of tensor unfoldings and matricizations.

The spectrum of a matricization ``M`` (rows: the modes in ``row_modes``; columns: the rest)
is computed from the eigenvalues of the smaller Gram matrix (``M Mᵀ`` or ``Mᵀ M``), which
is several times cheaper than a full SVD of ``M``. Squaring loses the *relative* accuracy
of the smallest singular values, but their squares -- the energies the rank-selection
problems use -- keep an absolute accuracy of about ``m·eps·σ₁²``; eigenvalues below that
noise floor are set to exactly zero. For huge matricizations (smaller side above
``randomized_threshold``) and a requested ``max_rank`` well below it, a randomized SVD
(scikit-learn) returns only the leading values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorly as tl

METHODS = ("auto", "gram", "svd", "randomized")


def check_tensor(X: np.ndarray) -> np.ndarray:
    """``X`` as a float64 array with at least 2 modes, non-empty and finite.

    Booleans become 0/1; complex or non-numeric arrays raise ``TypeError``, and too
    few modes, an empty tensor or NaN/inf raise ``ValueError``.
    """
    X = np.asarray(X)
    if X.dtype == np.bool_:
        X = X.astype(np.float64)
    if not np.issubdtype(X.dtype, np.number) or np.iscomplexobj(X):
        raise TypeError(f"tensor must hold real numbers, got dtype {X.dtype}")
    if X.ndim < 2:
        raise ValueError(f"tensor must have at least 2 modes, got shape {X.shape}")
    if X.size == 0:
        raise ValueError(f"tensor is empty (shape {X.shape})")
    X = np.asarray(X, dtype=np.float64)
    if not np.all(np.isfinite(X)):
        raise ValueError("tensor contains NaN or infinite values")
    with np.errstate(over="ignore"):
        norm2 = float(np.vdot(X, X))
    if not np.isfinite(norm2):
        raise ValueError(
            f"tensor values are too large (max |x| = {float(np.max(np.abs(X))):.3g}): the squared Frobenius norm "
            "overflows float64; rescale the tensor"
        )
    return X


def as_real_tensor(X: Any) -> np.ndarray:
    """A validated float64 **copy** of ``X`` (real numbers, >= 2 modes, non-empty, finite).

    Complex input is refused (``TypeError``) rather than silently losing its imaginary part,
    as would a plain ``np.array(X, dtype=float64)``.

    Parameters
    ----------
    X : array_like, shape (I_0, ..., I_{N-1})

    Returns
    -------
    ndarray, shape (I_0, ..., I_{N-1}), float64
    """
    try:
        arr = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tensor must be numeric ({exc})") from None
    if np.iscomplexobj(arr):
        raise TypeError(f"tensor must hold real numbers, got complex dtype {arr.dtype}; pass X.real or abs(X) explicitly")
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        try:
            arr = np.array(arr, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"tensor must be numeric ({exc})") from None
    return np.array(check_tensor(arr), dtype=np.float64, copy=True)


def matricize(X: np.ndarray, row_modes: Sequence[int]) -> np.ndarray:
    """The matrix whose rows index the modes ``row_modes`` (in that order), columns the rest.

    Parameters
    ----------
    X : ndarray, shape (I_0, ..., I_{N-1})
    row_modes : sequence of int
        Distinct modes. ``(n,)`` gives tensorly's mode-``n`` unfolding.

    Returns
    -------
    ndarray, shape (prod I_rows, prod I_rest)
    """
    row_modes = [int(m) for m in row_modes]
    if len(row_modes) == 1:
        return tl.unfold(X, row_modes[0])
    rest = [m for m in range(X.ndim) if m not in row_modes]
    rows = int(np.prod([X.shape[m] for m in row_modes]))
    return np.transpose(X, row_modes + rest).reshape(rows, -1)


def _spectrum_of_matrix(M: np.ndarray, max_rank: int | None, method: str, seed: int, randomized_threshold: int) -> np.ndarray:
    m = min(M.shape)
    k = m if max_rank is None else min(int(max_rank), m)
    if method == "auto":
        method = "randomized" if (m > randomized_threshold and k <= m // 4) else "gram"
    if method == "svd":
        return np.linalg.svd(M, compute_uv=False)[:k]
    if method == "randomized":
        from sklearn.utils.extmath import randomized_svd

        _, s, _ = randomized_svd(M, n_components=k, n_oversamples=max(10, k // 2), n_iter=6, random_state=seed)
        return np.sort(s)[::-1]
    gram = M @ M.T if M.shape[0] <= M.shape[1] else M.T @ M
    # All eigenvalues (LAPACK syevd via numpy), then the leading k: the subset driver (syevr)
    # was 3-20x slower in our measurements even for k = m/10.
    eig = np.linalg.eigvalsh(gram)
    top = eig[-1]
    eig = eig[m - k :]
    eig = eig[::-1].copy()
    floor = m * np.finfo(np.float64).eps * max(float(top), 0.0)
    eig[eig <= floor] = 0.0
    return np.sqrt(eig)


def matricization_spectrum(
    X: np.ndarray,
    row_modes: Sequence[int],
    *,
    max_rank: int | None = None,
    method: str = "auto",
    seed: int = 0,
    randomized_threshold: int = 4096,
) -> np.ndarray:
    """Singular values (descending) of the matricization of ``X`` with rows ``row_modes``.

    Parameters
    ----------
    X : ndarray, shape (I_0, ..., I_{N-1})
        Finite real tensor.
    row_modes : sequence of int
        The modes indexing the rows.
    max_rank : int, optional
        Return only the leading ``max_rank`` values (cheaper; enables the randomized path).
    method : {"auto", "gram", "svd", "randomized"}
        ``gram``: eigenvalues of the smaller Gram matrix; ``svd``: full ``numpy.linalg.svd``
        (the reference); ``randomized``: scikit-learn's randomized SVD (leading values only,
        approximate); ``auto``: ``randomized`` when the smaller side exceeds
        ``randomized_threshold`` and ``max_rank`` is at most a quarter of it, else ``gram``.
    seed : int
        Seed of the randomized SVD.

    Returns
    -------
    ndarray, shape (min(rows, cols, max_rank),)
        Non-negative, non-increasing singular values.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    X = check_tensor(X)
    for m in row_modes:
        if not (0 <= int(m) < X.ndim):
            raise ValueError(f"row_modes must be modes of a {X.ndim}-way tensor, got {list(row_modes)}")
    if len(set(int(m) for m in row_modes)) != len(row_modes) or not (0 < len(row_modes) < X.ndim):
        raise ValueError(f"row_modes must be distinct and a proper non-empty subset of the modes, got {list(row_modes)}")
    s = _spectrum_of_matrix(matricize(X, row_modes), max_rank, method, seed, randomized_threshold)
    return np.minimum.accumulate(np.maximum(s, 0.0))


def mode_spectrum(X: np.ndarray, mode: int, **options) -> np.ndarray:
    """Singular values of the mode-``mode`` unfolding (see :func:`matricization_spectrum`)."""
    return matricization_spectrum(X, (mode,), **options)


def mode_spectra(
    X: np.ndarray,
    *,
    max_ranks: Sequence[int | None] | None = None,
    method: str = "auto",
    seed: int = 0,
    randomized_threshold: int = 4096,
) -> list[np.ndarray]:
    """Singular values of every mode unfolding of ``X``.

    Parameters
    ----------
    X : ndarray, shape (I_0, ..., I_{N-1})
    max_ranks : sequence of int or None, optional
        Per mode, how many leading values are needed (``None``: all).
    method, seed, randomized_threshold
        See :func:`matricization_spectrum`.

    Returns
    -------
    list of ndarray
        Entry ``n`` has shape ``(min(I_n, prod_{m != n} I_m, max_ranks[n]),)``.
    """
    X = check_tensor(X)
    if max_ranks is None:
        max_ranks = [None] * X.ndim
    if len(max_ranks) != X.ndim:
        raise ValueError(f"max_ranks must have one entry per mode ({X.ndim}), got {len(max_ranks)}")
    return [
        matricization_spectrum(X, (n,), max_rank=max_ranks[n], method=method, seed=seed, randomized_threshold=randomized_threshold)
        for n in range(X.ndim)
    ]
