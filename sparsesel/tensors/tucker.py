"""Tucker decompositions at given ranks (tensorly HOOI) and the HOSVD error of every shape.

Errors are *squared relative* errors ``‖X − X̂‖²_F / ‖X‖²_F`` (the paper's "RRE").
"""

from __future__ import annotations

from collections.abc import Sequence
import warnings
from dataclasses import dataclass

import numpy as np
import tensorly as tl
from tensorly.decomposition import tucker

from sparsesel.tensors.spectra import check_tensor

#: HOOI settings used by every true-error evaluation in the package (greedy_tucker,
#: ilp_refine, the benchmark): SVD initialisation (deterministic), at most 20 sweeps, stop when
#: the relative change of the error falls below 1e-6 (tensorly's ``tol``).
TUCKER_DEFAULTS = {"n_iter_max": 20, "init": "svd", "tol": 1e-6}


def _check_ranks(X: np.ndarray, ranks: Sequence[int]) -> list[int]:
    ranks = [int(r) for r in ranks]
    if len(ranks) != X.ndim:
        raise ValueError(f"ranks must have one entry per mode ({X.ndim}), got {len(ranks)}")
    for n, r in enumerate(ranks):
        if not 1 <= r <= X.shape[n]:
            raise ValueError(f"ranks[{n}] must be in [1, {X.shape[n]}], got {r}")
    return ranks


def tucker_fit(
    X: np.ndarray,
    ranks: Sequence[int],
    *,
    n_iter_max: int = TUCKER_DEFAULTS["n_iter_max"],
    init: str = TUCKER_DEFAULTS["init"],
    tol: float = TUCKER_DEFAULTS["tol"],
    seed: int = 0,
) -> tl.tucker_tensor.TuckerTensor:
    """HOOI (``tensorly.decomposition.tucker``) of ``X`` at multilinear rank ``ranks``.

    Returns
    -------
    TuckerTensor
        ``(core, factors)`` with core shape ``ranks`` and factors ``(I_n, r_n)``.
    """
    X = check_tensor(X)
    ranks = _check_ranks(X, ranks)
    with warnings.catch_warnings():
        # A rank above the product of the others is degenerate; tensorly lowers it and warns.
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs", category=UserWarning)
        return tucker(X, rank=ranks, n_iter_max=n_iter_max, init=init, tol=tol, random_state=seed)


def tucker_relative_error(X: np.ndarray, ranks: Sequence[int], **options) -> float:
    """Squared relative error ``‖X − X̂‖² / ‖X‖²`` of the HOOI fit at ``ranks``.

    ``options`` are those of :func:`tucker_fit`. The reconstruction is formed explicitly
    (no ``‖X‖² − ‖core‖²`` shortcut), so small errors keep their accuracy.
    """
    X = check_tensor(X)
    _check_ranks(X, ranks)
    norm2 = float(np.vdot(X, X))
    if norm2 == 0.0:  # the zero tensor: every shape is exact (and HOOI would divide by 0)
        return 0.0
    fit = tucker_fit(X, ranks, **options)
    residual = X - tl.tucker_to_tensor(fit)
    return float(np.vdot(residual, residual)) / norm2


def leading_left_singular_vectors(M: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` leading left singular vectors of ``M`` (columns), from a Gram eigendecomposition.

    Columns for zero singular values are returned as zeros (they carry no energy).
    """
    rows, cols = M.shape
    k = min(k, rows, cols)
    if rows <= cols:
        _, vecs = np.linalg.eigh(M @ M.T)
        return vecs[:, ::-1][:, :k].copy()
    vals, vecs = np.linalg.eigh(M.T @ M)
    vals, vecs = vals[::-1][:k], vecs[:, ::-1][:, :k]
    sigma = np.sqrt(np.maximum(vals, 0.0))
    keep = sigma > cols * np.finfo(float).eps * max(sigma[0], 0.0) * 1e4
    U = np.zeros((rows, k))
    U[:, keep] = (M @ vecs[:, keep]) / sigma[keep]
    return U


@dataclass(frozen=True, eq=False)
class HosvdErrorTable:
    """The HOSVD truncation error of every shape ``r <= max_ranks``, each in O(1).

    With ``U_n`` the leading left singular vectors of the mode-``n`` unfoldings, the HOSVD
    truncation at shape ``r`` keeps the sub-box ``[:r_0, ..., :r_{N-1}]`` of the rotated
    tensor ``G = X ×_0 U_0ᵀ ... ×_{N-1} U_{N-1}ᵀ``; its squared error is ``‖X‖² − ‖G[:r]‖²``.
    A cumulative sum of ``G²`` along every axis gives all of them at once.

    Parameters
    ----------
    X : ndarray, shape (I_0, ..., I_{N-1})
    max_ranks : sequence of int
        Largest rank per mode to tabulate.
    """

    X: np.ndarray
    max_ranks: tuple[int, ...]

    def __post_init__(self) -> None:
        X = check_tensor(self.X)
        max_ranks = tuple(_check_ranks(X, self.max_ranks))
        factors = [leading_left_singular_vectors(tl.unfold(X, n), k) for n, k in enumerate(max_ranks)]
        rotated = tl.tenalg.multi_mode_dot(X, factors, transpose=True)
        table = rotated**2
        for axis in range(table.ndim):
            table = np.cumsum(table, axis=axis)
        object.__setattr__(self, "X", X)
        object.__setattr__(self, "max_ranks", tuple(f.shape[1] for f in factors))
        object.__setattr__(self, "norm2", float(np.vdot(X, X)))
        object.__setattr__(self, "captured", table)
        object.__setattr__(self, "factors", tuple(factors))

    def hooi_sweep_error(self, ranks: Sequence[int], sweeps: int = 1) -> float:
        """Squared relative error after ``sweeps`` HOOI sweeps (tensorly ``tucker``) started from the
        HOSVD truncation at ``ranks`` -- a cheap, usually sharper proxy of the converged HOOI error."""
        from tensorly.tucker_tensor import TuckerTensor

        ranks = [int(r) for r in ranks]
        if self.norm2 == 0.0:
            return 0.0
        U = [f[:, :r] for f, r in zip(self.factors, ranks)]
        core = tl.tenalg.multi_mode_dot(self.X, U, transpose=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs", category=UserWarning)
            fit = tucker(self.X, rank=ranks, init=TuckerTensor((core, U)), n_iter_max=int(sweeps), tol=0.0)
        if self.norm2 == 0.0:
            return 0.0
        return max(self.norm2 - float(np.vdot(fit.core, fit.core)), 0.0) / self.norm2

    def relative_errors(self, ranks: np.ndarray) -> np.ndarray:
        """Squared relative HOSVD errors for ``ranks`` of shape ``(M, N)`` (1-based ranks)."""
        ranks = np.asarray(ranks, dtype=np.int64)
        if ranks.ndim == 1:
            ranks = ranks[None, :]
        if np.any(ranks < 1) or np.any(ranks > np.asarray(self.max_ranks)):
            raise ValueError(f"ranks must lie in [1, {self.max_ranks}] per mode")
        captured = self.captured[tuple((ranks - 1).T)]
        if self.norm2 == 0.0:
            return np.zeros(len(ranks))
        return np.maximum(self.norm2 - captured, 0.0) / self.norm2

    def relative_error(self, ranks: Sequence[int]) -> float:
        """Squared relative HOSVD error at one shape."""
        return float(self.relative_errors(np.asarray(ranks)[None, :])[0])
