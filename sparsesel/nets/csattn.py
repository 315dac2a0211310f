"""CSAttn: "How Powerful Potential of Attention on Image Restoration?" (Wang et al., arXiv 2403.10336).

No code was released; this module is our reconstruction. What the sources state and what we
inferred:

Stated (abstract, verified)
    * The network has **no feed-forward network (FFN)**: its transformer blocks are attention only.
    * "Continuous Scaling Attention" computes attention **continuously in three stages**,
      with "a series of key components within the attention".
Stated (third-party review, medium confidence)
    * Backbone: a **3-level encoder–decoder like SFNet / MIMO-UNet**, with multi-scale inputs
      and outputs (1×, ½×, ¼×); loss **L1 + frequency loss**.
    * One projection (1×1 conv, then depthwise 3×3) is split into **Q, K, V, V2, V3**.
    * Stage 1 is Restormer's MDTA: ``X1 = V · softmax(K·Q / α)`` with a learnable scaling α
      (transposed, channel-wise attention: a ``C/h × C/h`` map per head, cost linear in pixels).
    * Stage 2 includes a "value nonlinear transformation" on V2; stage 3 uses V3.
Inferred (our choices; nothing in the sources fixes them)
    * Stage 1 is implemented in Restormer's form ``X1 = softmax(n(Q)·n(K)ᵀ · α1) · V`` per
      head, ``n`` the L2 normalisation along pixels.
    * Stage 2 continues the attention from the stage-1 result:
      ``X2 = softmax(n(X1)·n(V2)ᵀ · α2) · φ(V2)`` — the stage-1 output acts as the query,
      V2 as the key, and ``φ(V2)`` as the value, ``φ`` being the value nonlinearity (GELU by
      default). Stage 3 repeats it: ``X3 = softmax(n(X2)·n(V3)ᵀ · α3) · φ(V3)``. Every stage
      has its own learnable per-head scaling (``α1, α2, α3``, initialised to 1).
    * The block output is a 1×1 projection of ``X3``; the block is ``x + attn(LN(x))``.
    * Encoder–decoder as in MIMO-UNet/SFNet: shallow convolutions inject the ½× and ¼× inputs,
      stride-2 convolutions go down, transposed convolutions go up, skips are concatenated and
      fused by 1×1 convolutions, and each level outputs a residual image at its scale.
    * The frequency loss is the UHDformer/MIMO-UNet one: L1 between the stacked real and
      imaginary parts of ``rfft2``, weight 0.1, at each of the three scales.
    * ``CSAttnConfig.paper()`` (width 32, blocks (4, 4, 8), heads (1, 2, 4)) is an
      SFNet-sized guess; the paper's sizes were not readable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.nets.layers import LAYERNORM_TYPES, ChannelLayerNorm, reflect_pad_to_multiple

__all__ = ["CSAttn", "CSAttnConfig", "ContinuousScalingAttention", "CSAttnBlock"]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "identity": nn.Identity}


@dataclass(frozen=True)
class CSAttnConfig:
    """Options of :class:`CSAttn`.

    Attributes
    ----------
    in_channels : int
        Image channels (3).
    width : int
        Channels C at full resolution; the levels have C, 2C, 4C.
    blocks : tuple of 3 int
        CSAttn blocks per level (the decoder repeats the counts of levels 1 and 2).
    heads : tuple of 3 int
        Attention heads per level; each must divide the level's width.
    bias : bool
        Biases in the attention's convolutions.
    layernorm_type : {"WithBias", "BiasFree"}
    value_activation : {"gelu", "relu", "identity"}
        The value nonlinearity φ of stages 2 and 3.
    """

    in_channels: int = 3
    width: int = 32
    blocks: tuple[int, int, int] = (4, 4, 8)
    heads: tuple[int, int, int] = (1, 2, 4)
    bias: bool = False
    layernorm_type: str = "WithBias"
    value_activation: str = "gelu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        if self.in_channels < 1 or self.width < 1:
            raise ValueError(f"in_channels and width must be positive, got {self.in_channels}, {self.width}")
        if len(self.blocks) != 3 or min(self.blocks) < 1:
            raise ValueError(f"blocks must be 3 positive integers (one per level), got {self.blocks}")
        if len(self.heads) != 3 or min(self.heads) < 1:
            raise ValueError(f"heads must be 3 positive integers (one per level), got {self.heads}")
        for level, heads in enumerate(self.heads):
            channels = self.width * 2**level
            if channels % heads:
                raise ValueError(f"heads[{level}]={heads} must divide the level's width {channels}")
        if self.layernorm_type not in LAYERNORM_TYPES:
            raise ValueError(f"layernorm_type must be one of {LAYERNORM_TYPES}, got {self.layernorm_type!r}")
        if self.value_activation not in _ACTIVATIONS:
            raise ValueError(f"value_activation must be one of {tuple(_ACTIVATIONS)}, got {self.value_activation!r}")

    @classmethod
    def small(cls) -> CSAttnConfig:
        """A tiny configuration for tests and CPU demos (width 8, one block per level)."""
        return cls(width=8, blocks=(1, 1, 1), heads=(1, 2, 2))

    @classmethod
    def paper(cls) -> CSAttnConfig:
        """An SFNet-sized configuration (our guess; see the module docstring)."""
        return cls()

    def to_dict(self) -> dict:
        """Plain-data form (lists, ints, strings) for checkpoints and JSON."""
        data = asdict(self)
        data["blocks"] = list(self.blocks)
        data["heads"] = list(self.heads)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> CSAttnConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


def _heads_view(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(B, C, H, W) -> (B, heads, C/heads, H·W)``."""
    b, c, h, w = x.shape
    return x.reshape(b, heads, c // heads, h * w)


class ContinuousScalingAttention(nn.Module):
    """Three chained channel attentions from one projection split into Q, K, V, V2, V3.

    Parameters
    ----------
    channels : int
    heads : int
    bias : bool
    value_activation : str
        φ in stages 2 and 3.
    """

    def __init__(self, channels: int, heads: int, bias: bool = False, value_activation: str = "gelu") -> None:
        super().__init__()
        self.heads = heads
        self.project = nn.Conv2d(channels, 5 * channels, 1, bias=bias)
        self.depthwise = nn.Conv2d(5 * channels, 5 * channels, 3, padding=1, groups=5 * channels, bias=bias)
        self.scaling = nn.Parameter(torch.ones(3, heads, 1, 1))
        self.value_nonlinearity = _ACTIVATIONS[value_activation]()
        self.project_out = nn.Conv2d(channels, channels, 1, bias=bias)

    @staticmethod
    def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        query = F.normalize(query, dim=-1)
        key = F.normalize(key, dim=-1)
        weights = torch.softmax(query @ key.transpose(-2, -1) * scale, dim=-1)
        return weights @ value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, C, H, W)`` -> ``(B, C, H, W)``."""
        b, c, h, w = x.shape
        q, k, v, v2, v3 = self.depthwise(self.project(x)).chunk(5, dim=1)
        q, k, v, v2, v3 = (_heads_view(t, self.heads) for t in (q, k, v, v2, v3))
        first = self._attend(q, k, v, self.scaling[0])
        second = self._attend(first, v2, self.value_nonlinearity(v2), self.scaling[1])
        third = self._attend(second, v3, self.value_nonlinearity(v3), self.scaling[2])
        return self.project_out(third.reshape(b, c, h, w))


class CSAttnBlock(nn.Module):
    """``x + CSAttention(LayerNorm(x))`` — a transformer block without FFN."""

    def __init__(self, channels: int, heads: int, config: CSAttnConfig) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(channels, config.layernorm_type)
        self.attention = ContinuousScalingAttention(channels, heads, config.bias, config.value_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.norm(x))


def _stage(channels: int, heads: int, count: int, config: CSAttnConfig) -> nn.Sequential:
    return nn.Sequential(*(CSAttnBlock(channels, heads, config) for _ in range(count)))


class CSAttn(nn.Module):
    """CSAttn restoration network: a 3-level encoder–decoder of FFN-free CSAttn blocks.

    ``forward(x)`` maps a degraded image ``(B, 3, H, W)`` in ``[0, 1]`` (H, W multiples of 4)
    to the restored full-resolution image; :meth:`forward_multiscale` also returns the ½× and
    ¼× outputs used by the multi-scale loss; :meth:`restore` takes any size.
    """

    multiple = 4

    def __init__(self, config: CSAttnConfig | None = None) -> None:
        super().__init__()
        config = CSAttnConfig() if config is None else config
        if not isinstance(config, CSAttnConfig):
            raise TypeError(f"config must be a CSAttnConfig, got {type(config).__name__}")
        self.config = config
        c, n = config.width, config.in_channels
        b, h = config.blocks, config.heads
        self.enter = nn.Conv2d(n, c, 3, padding=1)
        self.encoder1 = _stage(c, h[0], b[0], config)
        self.down1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.shallow2 = nn.Conv2d(n, 2 * c, 3, padding=1)
        self.fuse2 = nn.Conv2d(4 * c, 2 * c, 1)
        self.encoder2 = _stage(2 * c, h[1], b[1], config)
        self.down2 = nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1)
        self.shallow3 = nn.Conv2d(n, 4 * c, 3, padding=1)
        self.fuse3 = nn.Conv2d(8 * c, 4 * c, 1)
        self.bottleneck = _stage(4 * c, h[2], b[2], config)
        self.out3 = nn.Conv2d(4 * c, n, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 4, stride=2, padding=1)
        self.skip2 = nn.Conv2d(4 * c, 2 * c, 1)
        self.decoder2 = _stage(2 * c, h[1], b[1], config)
        self.out2 = nn.Conv2d(2 * c, n, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1)
        self.skip1 = nn.Conv2d(2 * c, c, 1)
        self.decoder1 = _stage(c, h[0], b[0], config)
        self.out1 = nn.Conv2d(c, n, 3, padding=1)

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"input must have shape (B, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % self.multiple or x.shape[-1] % self.multiple:
            raise ValueError(f"input sides must be multiples of {self.multiple}, got {tuple(x.shape[-2:])}; use restore()")

    def forward_multiscale(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Outputs at full, ½ and ¼ resolution, each ``(B, 3, H/s, W/s)``."""
        self._check(x)
        x2 = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
        x4 = F.interpolate(x2, scale_factor=0.5, mode="bilinear", align_corners=False)
        e1 = self.encoder1(self.enter(x))
        e2 = self.encoder2(self.fuse2(torch.cat([self.down1(e1), self.shallow2(x2)], dim=1)))
        d3 = self.bottleneck(self.fuse3(torch.cat([self.down2(e2), self.shallow3(x4)], dim=1)))
        y4 = self.out3(d3) + x4
        d2 = self.decoder2(self.skip2(torch.cat([self.up2(d3), e2], dim=1)))
        y2 = self.out2(d2) + x2
        d1 = self.decoder1(self.skip1(torch.cat([self.up1(d2), e1], dim=1)))
        y1 = self.out1(d1) + x
        return y1, y2, y4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restored image ``(B, 3, H, W)``."""
        return self.forward_multiscale(x)[0]

    @torch.no_grad()
    def restore(self, image: torch.Tensor) -> torch.Tensor:
        """Restore a whole ``(3, H, W)`` or ``(B, 3, H, W)`` image of any size (reflect-pad, run, crop)."""
        squeeze = image.ndim == 3
        x = image.unsqueeze(0) if squeeze else image
        padded, (height, width) = reflect_pad_to_multiple(x, self.multiple)
        out = self(padded)[..., :height, :width]
        return out[0] if squeeze else out
