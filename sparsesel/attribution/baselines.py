"""Baselines: the "absent" input that integrated gradients starts from.

Every function takes the input ``x`` (a torch tensor without batch dimension)
and returns a new tensor of the same shape, dtype and device. Images are laid
out ``(C, H, W)`` or ``(H, W)``.
"""

from __future__ import annotations

import numpy as np
import torch

BASELINES: tuple[str, ...] = ("zeros", "black", "blurred", "mean")


def zeros(x: torch.Tensor) -> torch.Tensor:
    """All zeros."""
    return torch.zeros_like(x)


def black(x: torch.Tensor) -> torch.Tensor:
    """Every element at the darkest value of ``x`` (``x.min()``).

    For images scaled to ``[0, 1]`` that contain a black pixel this is the
    all-zero image; for standardised inputs it is the lowest value present,
    which keeps the baseline inside the data's range.
    """
    return torch.full_like(x, float(x.min()))


def mean(x: torch.Tensor) -> torch.Tensor:
    """The mean colour: per channel for ``(C, H, W)`` inputs, else the mean of all entries."""
    if x.ndim == 3:
        return x.mean(dim=(1, 2), keepdim=True).expand_as(x).clone()
    return torch.full_like(x, float(x.mean()))


def blurred(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """A Gaussian blur over the two spatial (last) axes.

    Parameters
    ----------
    x : Tensor, shape (C, H, W) or (H, W)
    sigma : float, optional
        Standard deviation in pixels; default ``max(H, W) / 8`` (4 px for 32×32).
        Borders are reflected (scipy's ``mode="reflect"``).
    """
    if x.ndim not in (2, 3):
        raise ValueError(f"the blurred baseline needs an image (H, W) or (C, H, W), got shape {tuple(x.shape)}")
    from scipy.ndimage import gaussian_filter

    height, width = x.shape[-2:]
    sigma = max(height, width) / 8.0 if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    array = x.detach().cpu().numpy().astype(np.float64)
    sigmas = (0.0,) * (array.ndim - 2) + (sigma, sigma)
    smooth = gaussian_filter(array, sigma=sigmas, mode="reflect")
    return torch.as_tensor(smooth, dtype=x.dtype, device=x.device)


def make_baseline(name: str, x: torch.Tensor) -> torch.Tensor:
    """The baseline called ``name`` (one of :data:`BASELINES`) for the input ``x``."""
    functions = {"zeros": zeros, "black": black, "blurred": blurred, "mean": mean}
    if name not in functions:
        raise ValueError(f"baseline must be one of {BASELINES} or an array shaped like x, got {name!r}")
    return functions[name](x)
