"""Image quality metrics as the official restoration evaluations compute them.

* :func:`psnr`, :func:`ssim` follow BasicSR's ``calculate_psnr`` / ``calculate_ssim`` used by
  UHDformer's ``comput_psnr_ssim.py`` (``crop_border=1, test_y_channel=True``): the images are
  converted to the ITU-R BT.601 luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` on a 0–255
  scale, ``crop_border`` pixels are removed from every side, and SSIM uses an 11×11 Gaussian
  window (σ = 1.5) in "valid" mode with ``C1 = (0.01·255)²``, ``C2 = (0.03·255)²``.
  The official script reads 8-bit files; here the inputs are floats (no rounding to 8 bits
  unless you do it).
* :func:`fmse`, :func:`fpsnr` are the foreground-masked harmonization metrics (as in iS²AM /
  DoveNet evaluations): the mean squared error over the pixels of the foreground mask on a
  0–255 scale, and the PSNR of that error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

__all__ = ["fmse", "fpsnr", "psnr", "rgb_to_y", "ssim"]

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def _as_image(value: Any, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value, dtype=np.float64)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3)):
        raise ValueError(f"{name} must have shape (H, W) or (H, W, 3) (channels last), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _pair(pred: Any, target: Any, crop_border: int, y_channel: bool, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    pred = _as_image(pred, "pred")
    target = _as_image(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if isinstance(crop_border, bool) or int(crop_border) != crop_border or crop_border < 0:
        raise ValueError(f"crop_border must be a non-negative integer, got {crop_border!r}")
    crop_border = int(crop_border)
    if 2 * crop_border >= min(pred.shape[:2]):
        raise ValueError(f"crop_border={crop_border} removes the whole {pred.shape[0]}x{pred.shape[1]} image")
    # work on a 0-255 scale, like the official code
    pred = pred * (255.0 / data_range)
    target = target * (255.0 / data_range)
    if y_channel and pred.ndim == 3 and pred.shape[2] == 3:
        pred = rgb_to_y(pred / 255.0) * 255.0
        target = rgb_to_y(target / 255.0) * 255.0
    if pred.ndim == 3 and pred.shape[2] == 1:
        pred, target = pred[..., 0], target[..., 0]
    if crop_border:
        pred = pred[crop_border:-crop_border, crop_border:-crop_border]
        target = target[crop_border:-crop_border, crop_border:-crop_border]
    return pred, target


def rgb_to_y(image: Any) -> np.ndarray:
    """BT.601 luma of an RGB image in ``[0, 1]``: ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255``.

    Parameters
    ----------
    image : array_like, shape (..., 3)
        RGB values in ``[0, 1]``.

    Returns
    -------
    numpy.ndarray, shape (...)
        Luma in ``[16/255, 235/255]``.
    """
    array = np.asarray(image, dtype=np.float64)
    if array.shape[-1:] != (3,):
        raise ValueError(f"image must have 3 channels in its last axis, got shape {array.shape}")
    return (array @ _Y_WEIGHTS + 16.0) / 255.0


def psnr(pred: Any, target: Any, *, crop_border: int = 1, y_channel: bool = True, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB.

    Parameters
    ----------
    pred, target : array_like, shape (H, W, 3) or (H, W)
        Images with values in ``[0, data_range]`` (channels last; torch tensors are accepted).
    crop_border : int
        Pixels removed from each side before the comparison (official default 1).
    y_channel : bool
        Compare the BT.601 luma instead of the RGB channels (official default True).
    data_range : float
        The images' maximum value (1 for floats in ``[0, 1]``, 255 for 8-bit values).

    Returns
    -------
    float
        ``10 log10(255² / MSE)`` on the 0–255 scale; ``inf`` for identical images.
    """
    pred, target = _pair(pred, target, crop_border, y_channel, data_range)
    mse = float(np.mean((pred - target) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def _gaussian_valid(image: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Correlate with a normalised (2r+1)² Gaussian and keep the fully overlapped ("valid") part."""
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = ndimage.correlate1d(image, taps, axis=0, mode="constant")
    out = ndimage.correlate1d(out, taps, axis=1, mode="constant")
    return out[radius:-radius, radius:-radius]


def _ssim_plane(x: np.ndarray, y: np.ndarray) -> float:
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    mu_x, mu_y = _gaussian_valid(x), _gaussian_valid(y)
    var_x = _gaussian_valid(x * x) - mu_x**2
    var_y = _gaussian_valid(y * y) - mu_y**2
    cov = _gaussian_valid(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def ssim(pred: Any, target: Any, *, crop_border: int = 1, y_channel: bool = True, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004) with an 11×11 Gaussian window, σ = 1.5.

    Same arguments as :func:`psnr`; RGB inputs with ``y_channel=False`` give the mean of the
    per-channel SSIMs. Each side must keep at least 11 pixels after the crop.
    """
    pred, target = _pair(pred, target, crop_border, y_channel, data_range)
    if min(pred.shape[:2]) < 11:
        raise ValueError(f"ssim needs at least 11x11 pixels after the border crop, got {pred.shape[:2]}")
    if pred.ndim == 2:
        return _ssim_plane(pred, target)
    return float(np.mean([_ssim_plane(pred[..., c], target[..., c]) for c in range(pred.shape[2])]))


def _masked(pred: Any, target: Any, mask: Any, data_range: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = _as_image(pred, "pred")
    target = _as_image(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {pred.shape} and {target.shape}")
    if hasattr(mask, "detach"):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask, dtype=np.float64)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask must have shape {pred.shape[:2]} (H, W), got {mask.shape}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    keep = mask > 0.5
    if not keep.any():
        raise ValueError("mask selects no pixel (the foreground is empty)")
    scale = 255.0 / data_range
    return pred[keep] * scale, target[keep] * scale, keep


def fmse(pred: Any, target: Any, mask: Any, *, data_range: float = 1.0) -> float:
    """Foreground MSE: mean squared error over the pixels where ``mask > 0.5``, on a 0–255 scale.

    Parameters
    ----------
    pred, target : array_like, shape (H, W, 3) or (H, W)
        Images in ``[0, data_range]``.
    mask : array_like, shape (H, W)
        Foreground mask (1 = foreground).
    """
    p, t, _ = _masked(pred, target, mask, data_range)
    return float(np.mean((p - t) ** 2))


def fpsnr(pred: Any, target: Any, mask: Any, *, data_range: float = 1.0) -> float:
    """Foreground PSNR in dB: ``10 log10(255² / fMSE)`` (``inf`` when the foregrounds are equal)."""
    error = fmse(pred, target, mask, data_range=data_range)
    if error == 0.0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / error))
