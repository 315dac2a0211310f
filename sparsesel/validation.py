"""Input checks shared by the problem kinds; every message names the field."""

from __future__ import annotations

import numbers
import os
from typing import Any

import numpy as np


def as_finite_array(value: Any, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``value`` as a fresh float64 array, checking it is numeric and finite.

    Parameters
    ----------
    value : array_like
        The user's input; it is copied, never modified.
    name : str
        The field name used in error messages.
    ndim : int or tuple of int, optional
        Allowed numbers of dimensions.
    """
    if np.iscomplexobj(value):
        raise TypeError(f"{name} must be real; got complex values (pass the real part explicitly, e.g. {name}.real)")
    try:
        array = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be numeric; could not convert it to floats ({exc})") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return array


def as_finite_sparse(value: Any, name: str) -> Any:
    """Return a scipy sparse ``value`` as a fresh, read-only CSC float64 array, checking it.

    The copy is canonical (sorted indices, duplicates summed) and explicit zeros
    are dropped; its ``data``, ``indices`` and ``indptr`` are read-only, so
    nothing downstream can change the problem's data.

    Parameters
    ----------
    value : scipy.sparse matrix or array, shape (n, d)
        The user's input; it is copied, never modified.
    name : str
        The field name used in error messages.

    Returns
    -------
    scipy.sparse.csc_array, shape (n, d)
    """
    import scipy.sparse as sp

    if value.ndim != 2:
        raise ValueError(f"{name} must have 2 dimension(s), got shape {value.shape}")
    if np.issubdtype(value.dtype, np.complexfloating):
        raise TypeError(f"{name} must be real; got complex values (pass the real part explicitly, e.g. {name}.real)")
    if not (np.issubdtype(value.dtype, np.number) or value.dtype == np.bool_):
        raise TypeError(f"{name} must be numeric; got a sparse matrix of dtype {value.dtype}")
    if 0 in value.shape:
        raise ValueError(f"{name} is empty (shape {value.shape})")
    array = sp.csc_array(value, dtype=np.float64, copy=True)
    array.sum_duplicates()
    array.sort_indices()
    array.eliminate_zeros()
    bad = int(np.size(array.data) - np.count_nonzero(np.isfinite(array.data)))
    if bad:
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    for part in (array.data, array.indices, array.indptr):
        part.setflags(write=False)
    return array


#: ``--threads`` / ``threads`` above this many per CPU are refused: torch starts every one of them
#: (20,000 made libgomp abort the process on a 2-core machine; 4,096 still ran).
MAX_THREADS_PER_CPU = 8


def max_threads() -> int:
    """The largest thread count accepted for torch on this machine (``MAX_THREADS_PER_CPU`` per CPU)."""
    return MAX_THREADS_PER_CPU * (os.cpu_count() or 1)


def check_int(value: Any, name: str, low: int | None = None, high: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return value


def check_index_set(values: Any, name: str, size: int, *, allow_empty: bool = False) -> np.ndarray:
    """Check that ``values`` are distinct integer indices into ``range(size)``; return them as int64.

    Parameters
    ----------
    values : array_like of int, shape (m,)
        The indices (a list, numpy array or tensor); ``m >= 1`` unless
        ``allow_empty``. Booleans are refused (a mask is not an index list: use
        ``np.flatnonzero(mask)``).
    name : str
        The field name used in error messages.
    size : int
        Valid indices are ``0 .. size - 1``.
    allow_empty : bool
        Accept an empty set (e.g. the empty subset of a set function).

    Returns
    -------
    ndarray of int64, shape (m,)
        The indices in their given order.
    """
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    if isinstance(values, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in values):
        raise TypeError(f"{name} must hold integer indices, got a bool in {list(values)}")
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of indices, got shape {array.shape}")
    if array.size == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.int64)
        raise ValueError(f"{name} is empty: give at least one index")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer indices, got dtype {array.dtype}"
            + (" (a boolean mask: use np.flatnonzero(mask))" if array.dtype == np.bool_ else "")
        )
    outside = array[(array < 0) | (array >= size)]
    if outside.size:
        raise ValueError(f"{name} has out-of-range indices {outside.tolist()}; valid indices are 0..{size - 1}")
    unique, counts = np.unique(array, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"{name} has repeated indices {unique[counts > 1].tolist()}; each index may appear once")
    return array.astype(np.int64)


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Check that ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_tensor_shape(shape: Any) -> tuple[int, ...]:
    """Check a tensor shape: a sequence of at least two positive integers (field ``shape``)."""
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
        raise TypeError(f"shape must be a sequence of ints, got {shape!r}")
    dims = tuple(check_int(int(i) if isinstance(i, np.integer) else i, f"shape[{n}]", low=1) for n, i in enumerate(shape))
    if len(dims) < 2:
        raise ValueError(f"shape must have at least 2 modes, got {dims}")
    return dims


def check_real(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    allow_inf: bool = False,
) -> float:
    """Check that ``value`` is a real number (not a bool) within ``[low, high]``.

    Parameters
    ----------
    value : Any
        The user's input.
    name : str
        The field name used in error messages.
    low, high : float, optional
        Bounds of the allowed interval (closed unless ``low_open``).
    low_open : bool
        Exclude ``low`` itself (``value > low``).
    allow_inf : bool
        Accept ``+inf`` (e.g. "no time limit"); NaN is always refused.

    Returns
    -------
    float
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if np.isnan(value) or (np.isinf(value) and not (allow_inf and value > 0)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high:g}, got {value!r}")
    return value


def as_generator(seed: Any, name: str = "seed") -> np.random.Generator:
    """A numpy Generator from ``seed``: a Generator (used as is), an integer ``>= 0``, or
    ``None`` (fresh entropy, as :func:`numpy.random.default_rng`)."""
    if seed is None or isinstance(seed, np.random.Generator):
        return np.random.default_rng(seed) if seed is None else seed
    return np.random.default_rng(check_int(seed, name, low=0))


def check_inference_mode(model: Any, when: str) -> None:
    """Refuse a torch module whose batch-norm/instance-norm or dropout submodules are in training mode.

    In training mode batch norm updates its running statistics on every call (the
    model would be modified) and normalises by the statistics of the batch, and
    dropout zeroes random units, so the outputs would be random and depend on the
    batch. An instance norm without running statistics behaves the same in both
    modes and is accepted; so are models without such layers, in either mode, and
    plain functions.

    Parameters
    ----------
    model : Any
        The model about to be evaluated.
    when : str
        Completes "call model.eval() ..." in the message (e.g. ``"first"``).
    """
    try:
        from torch import nn
    except ImportError:  # no torch, so no torch module
        return
    batch_norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
                   nn.LazyBatchNorm1d, nn.LazyBatchNorm2d, nn.LazyBatchNorm3d)
    instance_norms = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
                      nn.LazyInstanceNorm1d, nn.LazyInstanceNorm2d, nn.LazyInstanceNorm3d)
    dropouts = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)

    if not isinstance(model, nn.Module):
        return
    for name, module in model.named_modules():
        if not module.training:
            continue
        if isinstance(module, instance_norms) and not module.track_running_stats:
            continue
        if isinstance(module, batch_norms + instance_norms + dropouts):
            where = f"submodule {name!r}" if name else "the model itself"
            effect = (
                "zeroes random units, so the outputs are random" if isinstance(module, dropouts)
                else "updates its running statistics on every call and normalises by batch statistics"
            )
            raise ValueError(f"model is in training mode: {where} ({type(module).__name__}) {effect}; "
                             f"call model.eval() {when}")
