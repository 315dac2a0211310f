"""Differentiable imputation of absent pixels from present ones (inverse-distance weighting).

Greedy PIG (Axiotis et al. 2023) scores features by integrated gradients of a
continuous extension ``g(w)`` of the set function ``G(S)`` along a path in the
hypercube ``w ∈ [0, 1]^n``. With a fixed baseline, ``g(w) = f(b + w ⊙ (x − b))``:
an absent pixel sits at its baseline value whatever its neighbours show. The SIC
metric instead fills absent pixels by interpolating the present ones, so
revealing a pixel also changes its neighbourhood. :class:`ShepardImputer` gives
a differentiable extension of that second kind,

    img(w) = u ⊙ x + (1 − u) ⊙ (K ∗ (u ⊙ x) + λ·b) / (K ∗ u + λ),     u = max(w, anchors),

where ``K(d) = d^−p`` (``K(0) = 0``) is Shepard's inverse-distance kernel over
the whole image, ``b`` a prior image (the problem's baseline) that fills
regions far from every present pixel, and ``anchors`` a few always-present
pixels (by default 1% chosen at random by the method's own seed, plus the four
corners, as in the "fully blurred" start image of SIC — never the metric's own
random pixels). At ``w = 1`` the image is ``x``; at ``w = 1_S`` the pixels of
``S`` (and the anchors) are exact and every other pixel is a weighted mean of
them. Convolutions run through an FFT, so a ``(2H−1)×(2W−1)`` kernel costs the
same as a small one.
"""

from __future__ import annotations

import numpy as np
import torch

from sparsesel.validation import check_int


def anchor_mask(height: int, width: int, fraction: float = 0.01, *, seed: int = 0) -> np.ndarray:
    """Boolean ``(height, width)`` mask: ``int(height·width·fraction)`` random pixels and the four corners."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"anchors must be a fraction in [0, 1], got {fraction}")
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    mask = np.zeros((height, width), dtype=bool)
    mask.reshape(-1)[rng.choice(mask.size, size=int(mask.size * fraction), replace=False)] = True
    mask[[0, 0, height - 1, height - 1], [0, width - 1, 0, width - 1]] = True
    return mask


class ShepardImputer:
    """``img(w)``: pixels weighted by ``w`` kept, the rest filled by inverse-distance weighting.

    Parameters
    ----------
    x : Tensor, shape (C, H, W) or (H, W), or (B, C, H, W) or (B, H, W) with ``batched=True``
        The input image, or a batch of ``B`` images.
    prior : Tensor, shape of ``x``
        What fills pixels far from every present one (the problem's baseline; one per image).
    anchors : ndarray of bool, shape (H, W) or (D, H, W)
        Pixels always present (``u = max(w, anchors)``); with ``D`` anchor sets
        (draws), each row of a call picks its own (``draws`` argument).
    power : float
        Exponent ``p`` of the kernel ``d^−p`` (distances in pixels); ``p = 2``.
    prior_weight : float
        ``λ``: weight of ``prior`` relative to a present pixel at distance 1.
    batched : bool
        ``x`` and ``prior`` hold a batch of images; each row of a call says which
        image it fills (``examples`` argument).
    """

    def __init__(self, x: torch.Tensor, prior: torch.Tensor, anchors: np.ndarray, *, power: float = 2.0,
                 prior_weight: float = 1e-3, batched: bool = False) -> None:
        image_ndim = x.ndim - int(batched)
        if image_ndim not in (2, 3):
            expected = "(B, H, W) or (B, C, H, W)" if batched else "(H, W) or (C, H, W)"
            raise ValueError(f"imputation needs an image x of shape {expected}, got {tuple(x.shape)}")
        if prior.shape != x.shape:
            raise ValueError(f"prior has shape {tuple(prior.shape)}, x has {tuple(x.shape)}; they must match")
        if not power > 0:
            raise ValueError(f"power must be > 0, got {power}")
        if not prior_weight > 0:
            raise ValueError(f"prior_weight must be > 0, got {prior_weight}")
        images = x if batched else x.unsqueeze(0)
        priors = prior if batched else prior.unsqueeze(0)
        if image_ndim == 2:
            images, priors = images.unsqueeze(1), priors.unsqueeze(1)
        self.batched = batched
        self.images = images  # (B, C, H, W)
        self.priors = priors.to(images.dtype)
        self.x = images[0]
        self.prior = self.priors[0]
        self.shape = tuple(x.shape[1:]) if batched else tuple(x.shape)
        channels, height, width = self.x.shape
        anchors = np.asarray(anchors, dtype=bool)
        if anchors.shape[-2:] != (height, width) or anchors.ndim not in (2, 3):
            raise ValueError(f"anchors has shape {anchors.shape}, the image has (H, W) = {(height, width)}; "
                             "anchors must be (H, W) or (D, H, W)")
        self.height, self.width = height, width
        self.anchors = torch.from_numpy(anchors.reshape(-1, height * width)).to(self.x.dtype)  # (D, H·W)
        self.prior_weight = float(prior_weight)
        dy, dx = np.mgrid[-(height - 1) : height, -(width - 1) : width]
        distance = np.sqrt(dy**2 + dx**2)
        kernel = np.zeros_like(distance)
        kernel[distance > 0] = distance[distance > 0] ** (-float(power))
        # a circular convolution of size >= 2H-1 leaves the central H x W block of the linear one un-aliased
        self.fft_shape = (2 * height, 2 * width)
        self.kernel_fft = torch.fft.rfft2(torch.as_tensor(kernel, dtype=self.x.dtype), s=self.fft_shape)

    def _convolve(self, images: torch.Tensor) -> torch.Tensor:
        """``K ∗ images`` over the last two axes, cropped to ``(H, W)``."""
        spectrum = torch.fft.rfft2(images, s=self.fft_shape) * self.kernel_fft
        full = torch.fft.irfft2(spectrum, s=self.fft_shape)
        return full[..., self.height - 1 : 2 * self.height - 1, self.width - 1 : 2 * self.width - 1]

    def __call__(self, weights: torch.Tensor, draws: torch.Tensor | None = None,
                 examples: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``(N, *image shape)`` for pixel weights ``(N, H·W)`` in ``[0, 1]`` (differentiable in ``weights``).

        ``draws``: int tensor ``(N,)``, the anchor set of each row (default: the first).
        ``examples``: int tensor ``(N,)``, the image of the batch each row fills (``batched=True``;
        default: the first).
        """
        if weights.ndim != 2 or weights.shape[1] != self.height * self.width:
            raise ValueError(f"weights must have shape (B, {self.height * self.width}), got {tuple(weights.shape)}")
        batch = weights.shape[0]
        if draws is not None:
            draws = torch.as_tensor(draws)
            n_sets = self.anchors.shape[0]
            if draws.shape != (batch,) or draws.dtype.is_floating_point or bool(((draws < 0) | (draws >= n_sets)).any()):
                raise ValueError(f"draws must be {batch} integers in [0, {n_sets}) (one anchor set per row), "
                                 f"got {draws.tolist()}")
        anchors = self.anchors[0] if draws is None else self.anchors[draws]
        if examples is None:
            x, prior = self.x, self.prior
        else:
            examples = torch.as_tensor(examples)
            n_images = self.images.shape[0]
            if examples.shape != (batch,) or examples.dtype.is_floating_point or bool(
                    ((examples < 0) | (examples >= n_images)).any()):
                raise ValueError(f"examples must be {batch} integers in [0, {n_images}) (one image per row)")
            x, prior = self.images[examples], self.priors[examples]
        u = torch.maximum(weights.to(self.x.dtype), anchors).reshape(batch, 1, self.height, self.width)
        numerator = self._convolve(u * x)
        denominator = self._convolve(u)
        background = (numerator + self.prior_weight * prior) / (denominator + self.prior_weight)
        images = u * x + (1.0 - u) * background
        return images.reshape((batch, *self.shape))
