"""Power-of-two column scaling of a design matrix: extreme scales without overflow, rounding unchanged.

Least-squares quantities of a design ``X`` (``n × d``) and a response ``y`` overflow or
underflow float64 long before the data themselves do: a Gram entry ``xᵢᵀxⱼ`` of columns of
magnitude ``1e200`` is ``1e400``. Dividing every (centred) column and the (centred) response by a
power of two close to its largest magnitude keeps every intermediate near 1. Because a power of
two scales a float exactly, the scaled computation rounds exactly like the unscaled one wherever
the latter neither overflows nor underflows: solvers built on it give the same numbers as before
on ordinary data and the right ones on extreme data.

A scipy sparse ``X`` is scaled without densifying it: ``X·diag(1/x_scale)`` keeps the
sparsity pattern (:meth:`ColumnScaling.scaled_sparse`), and the centring stays implicit
(:mod:`sparsesel.design_matrix`) with the scaled means ``x_mean / x_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesel.design_matrix import column_extremes, column_means, dense_columns, is_sparse, scale_sparse_columns


def power_of_two_scale(spread: np.ndarray) -> np.ndarray:
    """The power of two ``2^e`` with ``spread / 2^e`` in ``[0.5, 1)``; 1 where ``spread`` is 0.

    Parameters
    ----------
    spread : ndarray, shape (m,)
        Non-negative finite magnitudes.

    Returns
    -------
    ndarray, shape (m,)
        Powers of two (exact float64 values).
    """
    _, exponent = np.frexp(np.asarray(spread, dtype=np.float64))
    return np.ldexp(1.0, exponent)


def strongest_scaled(magnitude: np.ndarray, eligible: np.ndarray, relative: np.ndarray,
                     log_scale: np.ndarray) -> int:
    """The eligible ``j`` of largest ``magnitudeⱼ·relativeⱼ`` (first on exact ties); -1 if none is eligible.

    ``magnitude`` holds each column's correlation in its own scaled units and ``relative`` the columns'
    scales over the largest (exact powers of two, ``<= 1``). Where that product underflows for every
    eligible column (scales over 300 orders of magnitude apart), ``log2(magnitude) + log2(log_scale)``
    decides, ``log_scale`` being the scales or ``relative`` (they differ by a constant factor).
    """
    if not np.any(eligible):
        return -1
    score = np.where(eligible, magnitude * relative, -1.0)
    pick = int(np.argmax(score))
    if score[pick] == 0.0:
        with np.errstate(divide="ignore"):
            pick = int(np.argmax(np.where(eligible, np.log2(magnitude) + np.log2(log_scale), -np.inf)))
    return pick


@dataclass(frozen=True)
class ColumnScaling:
    """How ``X`` and ``y`` are centred and scaled: ``Xₛ = (X − x_mean) / x_scale``, ``yₛ = (y − y_mean) / y_scale``.

    Attributes
    ----------
    x_mean : ndarray, shape (d,)
        Column means (zeros without an intercept).
    x_scale : ndarray, shape (d,)
        Powers of two: ``max |xⱼ − x_meanⱼ| / x_scaleⱼ`` lies in ``[0.5, 1)``; 1 for a
        column that is constant (with an intercept; its ``x_mean`` is then its value
        exactly, so it centres to zero) or zero.
    y_mean : float
        Mean of ``y`` (0 without an intercept).
    y_scale : float
        Power of two scaling ``y − y_mean`` to magnitude below 1 (1 if it is zero).
    x_spread : ndarray, shape (d,)
        ``max |xⱼ − x_meanⱼ|`` (in ``X``'s units).
    y_spread : float
        ``max |y − y_mean|``.
    """

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float
    x_spread: np.ndarray
    y_spread: float

    @property
    def y_exponent(self) -> int:
        """``e`` with ``y_scale = 2^e``."""
        return int(math.frexp(self.y_scale)[1]) - 1

    def scaled_columns(self, X: np.ndarray, subset: list[int] | np.ndarray) -> np.ndarray:
        """The scaled columns ``subset`` of ``X`` (dense or sparse), dense: shape ``(n, len(subset))``, entries in ``(-1, 1)``."""
        subset = np.asarray(subset, dtype=np.intp)
        columns = dense_columns(X, subset) if is_sparse(X) else X[:, subset]  # a fresh copy either way
        columns -= self.x_mean[subset]
        columns /= self.x_scale[subset]
        return columns

    def scaled_sparse(self, X: Any, scale: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        """A sparse ``X`` with its columns divided by ``x_scale``, and the means in the same units.

        ``Xₛ = X/x_scale − 1·mₛᵀ`` with the returned ``(X/x_scale, mₛ)`` is the scaled centred
        design, kept implicit: ``X/x_scale`` has ``X``'s sparsity pattern (nothing is densified).
        A column of zero spread (constant: every entry equals ``x_mean``) is centred to exactly
        zero, so it is returned empty with ``mₛ = 0`` — unscaled, its entries could be as large
        as 1e250 and their products would overflow.

        Parameters
        ----------
        X : scipy sparse matrix or array, shape (n, d)
            The design this scaling was computed from.
        scale : ndarray, shape (d,), optional
            Powers of two to divide by instead of ``x_scale`` (e.g. one common factor).

        Returns
        -------
        scaled : scipy.sparse.csc_array, shape (n, d)
        scaled_mean : ndarray, shape (d,)
        """
        scale = self.x_scale if scale is None else np.asarray(scale, dtype=np.float64)
        keep = self.x_spread > 0
        factor = np.where(keep, 1.0 / scale, 0.0)
        return scale_sparse_columns(X, factor), np.where(keep, self.x_mean / scale, 0.0)

    def scaled_response(self, y: np.ndarray) -> np.ndarray:
        """``(y − y_mean) / y_scale``, shape ``(n,)``."""
        return (y - self.y_mean) / self.y_scale

    def unscale_squared(self, value: float) -> float:
        """A squared-loss value of the scaled response in the units of ``y²`` (exact: ``value · y_scale²``).

        Raises
        ------
        OverflowError
            When the value in ``y``'s units exceeds float64's range.
        """
        return math.ldexp(float(value), 2 * self.y_exponent)

    def unscale_coef(self, coef: np.ndarray, subset: list[int] | np.ndarray) -> np.ndarray:
        """Coefficients of the scaled columns ``subset`` and response, in the original units."""
        subset = np.asarray(subset, dtype=np.intp)
        with np.errstate(over="ignore"):
            return np.asarray(coef, dtype=np.float64) * self.y_scale / self.x_scale[subset]


def column_scaling(X: np.ndarray, y: np.ndarray | None, fit_intercept: bool) -> ColumnScaling:
    """Centre (with an intercept) and find power-of-two scales for the columns of ``X`` and for ``y``.

    Parameters
    ----------
    X : ndarray or scipy sparse matrix/array, shape (n, d)
        Finite values; those of magnitude above ~1e300 make the means overflow (callers refuse them).
        A sparse ``X`` is only reduced (means, column extremes counting its implicit zeros).
    y : ndarray, shape (n,), optional
        The response; ``None`` gives ``y_mean = 0``, ``y_scale = 1``.
    fit_intercept : bool
        Centre the columns and ``y`` by their means.

    Returns
    -------
    ColumnScaling
    """
    d = X.shape[1]
    x_mean = column_means(X) if fit_intercept else np.zeros(d)
    # max |x − mean| from the column extremes: two passes over X, no n × d temporary
    x_max, x_min = column_extremes(X)
    if fit_intercept:
        # a constant column centres to exactly zero: its computed mean may round away from the
        # value (60 × 1e200 / 60 ≠ 1e200), which would leave a noise column of spread ~1e184
        x_mean = np.where(x_max == x_min, x_max, x_mean)
    spread = np.maximum(x_max - x_mean, x_mean - x_min)
    x_scale = power_of_two_scale(spread)
    if y is None:
        return ColumnScaling(x_mean, x_scale, 0.0, 1.0, spread, 0.0)
    y_mean = float(y.mean()) if fit_intercept else 0.0
    y_spread = float(max(y.max() - y_mean, y_mean - y.min()))
    y_scale = float(power_of_two_scale(np.array([y_spread]))[0])
    return ColumnScaling(x_mean, x_scale, y_mean, y_scale, spread, y_spread)
