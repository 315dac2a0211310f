"""The tone-corrected diffuse target of TSHRNet (ICCV 2023, stage 3).

The official ``tone_correction.m`` finds the highlight pixels by an Otsu threshold on the
specular residue R, then, on the remaining (non-highlight) object pixels, fits for every
colour channel ``c`` a linear regression from the diffuse colour ``[1, r, g, b]`` to the
input image's channel ``c``; applying that affine colour map to the diffuse image gives
``D_tc``, a diffuse image with the input photo's tone.

Here the Otsu threshold is a single global one (:func:`skimage.filters.threshold_otsu`) on the
per-pixel mean of R over the object; the official code uses a "rolling" variant whose details
we could not read, so the masks may differ slightly on real data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from skimage.filters import threshold_otsu

__all__ = ["apply_tone_map", "fit_tone_map", "highlight_mask", "tone_corrected_target"]


def _rgb(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _region(mask: Any, shape: tuple[int, int], name: str) -> np.ndarray:
    if mask is None:
        return np.ones(shape, dtype=bool)
    array = np.asarray(mask)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (H, W), got {array.shape}")
    return array > 0.5


def highlight_mask(residue: Any, *, object_mask: Any = None) -> np.ndarray:
    """Highlight pixels: the mean residue over channels above its Otsu threshold.

    Parameters
    ----------
    residue : array_like, shape (H, W, 3)
        Specular residue R (non-negative where there are highlights).
    object_mask : array_like, shape (H, W), optional
        Only pixels inside it can be highlights, and the threshold is computed on them.

    Returns
    -------
    numpy.ndarray of bool, shape (H, W)
    """
    residue = _rgb(residue, "residue")
    region = _region(object_mask, residue.shape[:2], "object_mask")
    level = residue.mean(axis=2)
    values = level[region]
    if values.size == 0:
        raise ValueError("object_mask selects no pixel")
    if np.ptp(values) == 0.0:  # no highlight at all
        return np.zeros(level.shape, dtype=bool)
    return (level > threshold_otsu(values)) & region


def fit_tone_map(diffuse: Any, image: Any, *, pixels: Any = None) -> np.ndarray:
    """Least-squares per-channel affine colour map from ``diffuse`` to ``image``.

    For every output channel ``c``: ``image[..., c] ≈ M[c, 0] + M[c, 1:] · diffuse[..., :]``.

    Parameters
    ----------
    diffuse, image : array_like, shape (H, W, 3)
    pixels : array_like of bool, shape (H, W), optional
        The pixels used for the fit (default all).

    Returns
    -------
    numpy.ndarray, shape (3, 4)
        Rows ``[offset, weight_r, weight_g, weight_b]`` per output channel.
    """
    diffuse = _rgb(diffuse, "diffuse")
    image = _rgb(image, "image")
    if diffuse.shape != image.shape:
        raise ValueError(f"diffuse and image must have the same shape, got {diffuse.shape} and {image.shape}")
    keep = _region(pixels, diffuse.shape[:2], "pixels")
    if keep.sum() < 4:
        raise ValueError(f"the tone fit needs at least 4 pixels, got {int(keep.sum())}")
    design = np.concatenate([np.ones((int(keep.sum()), 1)), diffuse[keep]], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, image[keep], rcond=None)
    return coefficients.T.copy()


def apply_tone_map(diffuse: Any, tone_map: Any) -> np.ndarray:
    """Apply a ``(3, 4)`` affine colour map (from :func:`fit_tone_map`) to an ``(H, W, 3)`` image."""
    diffuse = _rgb(diffuse, "diffuse")
    tone_map = np.asarray(tone_map, dtype=np.float64)
    if tone_map.shape != (3, 4):
        raise ValueError(f"tone_map must have shape (3, 4), got {tone_map.shape}")
    return diffuse @ tone_map[:, 1:].T + tone_map[:, 0]


def tone_corrected_target(
    image: Any, diffuse: Any, residue: Any, *, object_mask: Any = None, clip: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """TSHRNet's tone-corrected diffuse image ``D_tc`` and the highlight mask used for it.

    Parameters
    ----------
    image : array_like, shape (H, W, 3)
        The input photo I.
    diffuse : array_like, shape (H, W, 3)
        The diffuse image D.
    residue : array_like, shape (H, W, 3)
        The specular residue R.
    object_mask : array_like, shape (H, W), optional
        Pixels of the object (the fit uses object pixels that are not highlights).
    clip : bool
        Clip ``D_tc`` to ``[0, 1]``.

    Returns
    -------
    diffuse_tc : numpy.ndarray, shape (H, W, 3), float64
    highlights : numpy.ndarray of bool, shape (H, W)
    """
    image = _rgb(image, "image")
    region = _region(object_mask, image.shape[:2], "object_mask")
    highlights = highlight_mask(residue, object_mask=region)
    tone_map = fit_tone_map(diffuse, image, pixels=region & ~highlights)
    corrected = apply_tone_map(diffuse, tone_map)
    if clip:
        corrected = np.clip(corrected, 0.0, 1.0)
    return corrected, highlights
