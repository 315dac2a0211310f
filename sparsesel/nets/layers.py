"""Small building blocks shared by the restoration networks.

Everything here works on ``(B, C, H, W)`` tensors and normalises or mixes
along the channel axis ``C``; none of it depends on a particular network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYERNORM_TYPES = ("WithBias", "BiasFree")


class ChannelLayerNorm(nn.Module):
    """Layer normalisation over the channel axis of a ``(B, C, H, W)`` tensor.

    Each pixel's ``C`` values are normalised to zero mean and unit variance
    (population variance, ``eps`` added inside the square root), then scaled by
    ``weight`` and shifted by ``bias``.  The ``"BiasFree"`` variant (Restormer)
    neither subtracts the mean nor adds a bias: ``x / sqrt(var + eps) * weight``,
    where ``var`` is still taken about the mean.

    Parameters
    ----------
    channels : int
        Number of channels ``C``.
    layernorm_type : {"WithBias", "BiasFree"}
        Variant, as named in Restormer / UHDformer.
    eps : float
        Added to the variance.
    """

    def __init__(self, channels: int, layernorm_type: str = "WithBias", eps: float = 1e-5) -> None:
        super().__init__()
        if layernorm_type not in LAYERNORM_TYPES:
            raise ValueError(f"layernorm_type must be one of {LAYERNORM_TYPES}, got {layernorm_type!r}")
        self.channels = int(channels)
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels)) if layernorm_type == "WithBias" else None

    @property
    def layernorm_type(self) -> str:
        return "WithBias" if self.bias is not None else "BiasFree"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape ``(B, C, H, W)``; returns the same shape."""
        if self.bias is not None and x.is_contiguous(memory_format=torch.channels_last):
            # channels-last: the channel axis is the innermost one, F.layer_norm is a single fast pass
            out = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias, self.eps)
            return out.permute(0, 3, 1, 2)
        var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
        scale = torch.rsqrt(var + self.eps)
        weight = self.weight.view(1, -1, 1, 1)
        if self.bias is None:
            return x * scale * weight
        return (x - mean) * scale * weight + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.channels}, layernorm_type={self.layernorm_type!r}, eps={self.eps}"


def normalize_channels(x_nhwc: torch.Tensor, eps: float = 1e-5, channels: int | None = None) -> torch.Tensor:
    """Zero-mean, unit-variance normalisation of the last axis, no affine part.

    Parameters
    ----------
    x_nhwc : torch.Tensor, shape (..., C)
    eps : float
    channels : int, optional
        ``C`` when the caller knows it: a constant, so a traced graph (ONNX) holds a static
        normalised shape instead of one read from the input.

    Returns
    -------
    torch.Tensor, same shape
    """
    return F.layer_norm(x_nhwc, (x_nhwc.shape[-1] if channels is None else int(channels),), None, None, eps)


def reflect_pad_to_multiple(image: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the bottom and right of ``image`` by reflection up to a multiple of ``multiple``.

    Images smaller than the padding are reflected repeatedly (a one-pixel side
    is replicated), so any size works.

    Parameters
    ----------
    image : torch.Tensor, shape (B, C, H, W)
    multiple : int

    Returns
    -------
    padded : torch.Tensor, shape (B, C, H', W') with H', W' multiples of ``multiple``
    original_size : (H, W)
    """
    height, width = image.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    out = image
    while pad_h > 0 or pad_w > 0:
        cur_h, cur_w = out.shape[-2:]
        step_h = min(pad_h, cur_h - 1)
        step_w = min(pad_w, cur_w - 1)
        if (pad_h > 0 and step_h == 0) or (pad_w > 0 and step_w == 0):
            # a side of one pixel cannot be reflected; replicate it once
            out = F.pad(out, (0, 1 if pad_w > 0 and step_w == 0 else 0, 0, 1 if pad_h > 0 and step_h == 0 else 0), mode="replicate")
            pad_h -= 1 if pad_h > 0 and step_h == 0 else 0
            pad_w -= 1 if pad_w > 0 and step_w == 0 else 0
            continue
        out = F.pad(out, (0, step_w, 0, step_h), mode="reflect")
        pad_h -= step_h
        pad_w -= step_w
    return out, (height, width)


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A ``1x1``, stride-1, ungrouped convolution as one matrix product in ``x``'s memory format.

    ``torch.nn.functional.conv2d`` sends 1x1 convolutions to its im2col path
    (``_slow_conv2d_forward``) on one CPU thread and converts a channels-last input to the
    contiguous format and back (two copies).  Here a channels-last input ``(B, C, H, W)`` (the
    channel axis innermost) is read as the ``(B*H*W, C)`` matrix it is and multiplied once
    (``F.linear``), giving a channels-last output; any other input is read as ``(B, C, H*W)``
    (``torch.baddbmm``), giving a contiguous output.  Same result as ``F.conv2d``, on any device,
    differentiable.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C_in, H, W)
    weight : torch.Tensor, shape (C_out, C_in) or (C_out, C_in, 1, 1)
    bias : torch.Tensor of shape (C_out,), optional

    Returns
    -------
    torch.Tensor, shape (B, C_out, H, W)
    """
    matrix = weight.flatten(1)
    if x.stride(1) == 1 and x.shape[1] > 1:  # channels innermost: (B, H, W, C) is the matrix
        return F.linear(x.permute(0, 2, 3, 1), matrix, bias).permute(0, 3, 1, 2)
    batch, channels, height, width = x.shape
    flat = x.reshape(batch, channels, height * width)
    if bias is None:
        out = torch.matmul(matrix, flat)
    else:
        out = torch.baddbmm(bias[None, :, None], matrix.expand(batch, -1, -1), flat)
    return out.view(batch, matrix.shape[0], height, width)
