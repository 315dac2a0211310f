"""UHDformer: correlation-matching transformers for UHD image restoration.

Wang et al., "Correlation Matching Transformation Transformers for UHD Image
Restoration", AAAI 2024 (arXiv 2406.00629).  This is a re-implementation of the
network of the official code (``supersupercong/UHDformer``,
``basicsr/archs/femasr_arch.py``, class ``Net``); it computes the same function
(see ``tests/nets/test_nets_uhdformer.py``), loads the official checkpoints
(:func:`sparsesel.nets.checkpoints.load_uhdformer`), and is organised for CPU
speed and memory.

Structure (``C = width``, ``s = scale_factor``, ``H x W`` the input size)::

    x ─ stem 3x3 ─ e ─ shallow ─ middle ─ deep        (ConvNeXt-like blocks, full resolution)
                   │      └──────┴─────────┴─ ACM ─ P  (3C channels, full resolution)
                   └ down (s x s conv, stride s) ─ groups of CMT blocks (H/s x W/s) ─ + ─ up (3x3, pixel shuffle)
    out = head(tail(fusion(up, deep))) + x

Each CMT block is ``x += attn(LN(x), P); x += ffn(LN(x), P)``.  Inside the
attention (on the query) and the feed-forward network, a *dual correlation
matching* module (DualCMT) reduces ``LN_acm(P)`` to ``C`` channels (1x1 conv),
max- and average-pools it by ``s`` and, for each low-resolution channel, picks
the pooled channel at the smallest Euclidean distance; the ``C / match_factor``
best-matched pooled channels of each pooling feed a gated refinement.

What differs from the official code (the function computed does not, up to
float rounding):

* The full-resolution perception path is fused.  ``P`` is normalised once
  (the per-block LayerNorms differ only by their affine part), and the affine
  part and the DualCMT 1x1 reductions of *all* blocks are folded into a single
  ``3C -> (number of DualCMTs) * C`` matrix.  Only its max-pooled result is
  kept; the average-pooled branch is computed at low resolution (pooling is
  linear).  The official code runs a LayerNorm on the 3C-channel full-resolution
  map in every block.
* The full-resolution parts run on tiles (with a halo for the 3x3
  convolutions), so temporaries stay small and in cache; a 3840x2160 image
  needs about 2 GiB.
* The fusion 1x1 convolution's weights for the upsampled branch are folded into
  the upsampling convolution; ConvNeXt's layer scale ``gamma`` into its second
  linear layer.  The full-resolution tensors are channels-last.
* While traced, exported or compiled (or with ``single_pass = True``) the
  full-resolution parts run on the whole image with tensor operations only, so
  the captured graph serves any size; the result is the same.
* With ``ffn_matching=False`` (and ``ffn_restormer=False``) the official
  ``FeedForward.forward`` fails (it calls a matching module it did not build);
  here the feed-forward network then simply skips the matching.
* ``unit_num`` is honoured; the official wrapper ``FeMaSRNet`` ignores it
  (always 3), while the inner ``Net`` accepts it.

The folds above use the weights of ``up``, ``fusion``, ``acm.mix``,
``acm.spread``, every DualCMT's ``reduce`` and the ConvNeXt blocks' ``fc2``.
They read ``.weight`` only of a plain, hook-free ``nn.Conv2d`` / ``nn.Linear``
(:func:`is_plain_layer`).  A replaced ``up`` or ConvNeXt ``conv`` runs its own
(cheaper) forward; when it ends in a per-pixel affine map it declares
(:func:`output_affine_split`: a Tucker-2 layer's last 1x1 factor, a channel-pruned
``up``'s scatter) that map is folded into the per-pixel layer after it (the fusion,
``fc1``).  The per-pixel (1x1) layers stay folded when their replacement declares
itself affine (``pointwise_affine``, the factorized layers do): its matrix is
obtained by calling it once on unit vectors (:func:`pointwise_affine_map`) --
at width 16 one fused dense product beats several small factorized ones.  Any
other replacement, and any layer carrying forward hooks (tracers, profilers,
Torch-Pruning), is called on the data of every tile, so hooks see every call.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.nets.layers import LAYERNORM_TYPES, ChannelLayerNorm, normalize_channels, pointwise_conv, reflect_pad_to_multiple

__all__ = ["UHDformer", "UHDformerConfig", "is_plain_layer", "match_channels", "output_affine_split", "pointwise_affine_map"]


def is_plain_layer(module: nn.Module, kind: type[nn.Module]) -> bool:
    """Whether the fast paths may read ``module``'s weights instead of calling it.

    True only for an instance of exactly ``kind`` (``nn.Conv2d`` or ``nn.Linear``;
    not a subclass, not a parametrized or factorized replacement) without forward
    (pre-)hooks, and while no global module hook is registered.  Otherwise the
    network calls the module, so replacements run their own (cheaper) forward and
    hooks see every call.
    """
    return type(module) is kind and not _has_hooks(module)


def _has_hooks(module: nn.Module) -> bool:
    """Forward (pre-)hooks on ``module`` or global module hooks."""
    hooks = nn.modules.module
    return bool(module._forward_hooks or module._forward_pre_hooks or hooks._global_forward_hooks or hooks._global_forward_pre_hooks)


def pointwise_affine_map(module: nn.Module, kind: type[nn.Module], in_features: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """The ``(out, in)`` matrix and ``(out,)`` bias of a per-pixel affine layer, or ``None``.

    A plain, hook-free ``nn.Linear`` or 1x1 ``nn.Conv2d`` (stride 1, no groups)
    gives its weight and bias.  A module that declares ``pointwise_affine = True``
    (the factorized layers of :mod:`sparsesel.compress.factorized`) and has no
    hooks is *called* once on the ``in_features`` unit vectors and the zero
    vector, which gives its map exactly and differentiably without reading any
    ``.weight`` (a few hundred multiply-adds, then the caller's fused dense
    product is the fastest form at these widths).  Any other module gives
    ``None``: the caller must run it on the data.

    Parameters
    ----------
    module : torch.nn.Module
        The layer, or what replaces it.
    kind : {torch.nn.Linear, torch.nn.Conv2d}
        The layer's original type: an ``nn.Linear`` (input ``(..., in)``) or a 1x1
        ``nn.Conv2d`` (input ``(B, in, H, W)``).
    in_features : int
    like : torch.Tensor
        Gives the dtype and device of the probe.
    """
    if kind is nn.Linear and is_plain_layer(module, nn.Linear):
        return module.weight, module.bias
    if kind is nn.Conv2d and is_plain_layer(module, nn.Conv2d):
        if tuple(module.kernel_size) != (1, 1) or tuple(module.stride) != (1, 1) or module.groups != 1 or module.padding not in ((0, 0), 0):
            return None
        return module.weight.flatten(1), module.bias
    if not getattr(module, "pointwise_affine", False) or _has_hooks(module):
        return None
    factory = dict(dtype=like.dtype, device=like.device)
    probe = torch.cat([torch.eye(in_features, **factory), torch.zeros(1, in_features, **factory)])  # (in + 1, in)
    if kind is nn.Linear:
        out = module(probe).t()  # (out, in + 1)
    else:
        out = module(probe.t()[None, :, None, :])[0, :, 0, :]
    bias = out[:, -1]
    return out[:, :-1] - bias[:, None], bias


def output_affine_split(module: nn.Module):
    """``(head, weight, bias)`` of a layer that ends in a per-pixel affine map, or ``None``.

    A module (e.g. a factorized layer of :mod:`sparsesel.compress.factorized`) may declare
    ``output_split()`` returning ``(head, weight, bias)`` such that ``module(x)`` equals ``head(x)``
    (shape ``(B, R, H, W)``) followed by the per-pixel map ``weight`` ``(C_out, R)``, ``bias``
    ``(C_out,)`` or ``None``.  The network then folds the per-pixel layer that follows
    (``fc1`` of a ConvNeXt block, the fusion of the up-sampled branch) into ``weight``: one
    matrix product fewer at full resolution.  ``None`` for any other module and for one carrying
    forward hooks (it is then called).
    """
    split = getattr(module, "output_split", None)
    if split is None or _has_hooks(module):
        return None
    return split()


def _expanded(width: int, factor: float) -> int:
    # the official code sizes every hidden layer as int(width * factor)
    return int(width * factor)


@dataclass(frozen=True)
class UHDformerConfig:
    """Every option of the official UHDformer network.

    Parameters
    ----------
    width : int
        Channel width ``C`` of the trunk (the official code hard-codes 16).
    number_block : int
        Number of residual groups in the low-resolution space.
    unit_num : int
        CMT transformer blocks per group.
    num_heads : int
        Attention heads; must divide ``width``.
    match_factor : float
        ``r``: each DualCMT keeps ``int(width / r)`` matched channels per pooling.
    ffn_expansion_factor : float
        Hidden width factor of the feed-forward network and the DualCMT gate
        (hidden width ``int(width * factor)``; the CMT feed-forward network
        needs it to be a multiple of ``width``).
    scale_factor : int
        Down-sampling factor between the full- and the low-resolution spaces;
        input sides must be multiples of it.
    bias : bool
        Biases in the transformer blocks' convolutions.
    layernorm_type : {"WithBias", "BiasFree"}
        LayerNorm variant before attention and feed-forward network (the
        perception LayerNorm always has a bias, as in the official code).
    attention_matching, ffn_matching : bool
        Use DualCMT on the attention's query / inside the feed-forward network.
    ffn_restormer : bool
        Replace the CMT feed-forward network by Restormer's gated one (GDFN).
    """

    width: int = 16
    number_block: int = 5
    unit_num: int = 3
    num_heads: int = 8
    match_factor: float = 4
    ffn_expansion_factor: float = 4
    scale_factor: int = 8
    bias: bool = True
    layernorm_type: str = "WithBias"
    attention_matching: bool = True
    ffn_matching: bool = True
    ffn_restormer: bool = False

    def __post_init__(self) -> None:
        for name in ("width", "number_block", "unit_num", "num_heads", "scale_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"UHDformerConfig.{name} must be an integer, got {value!r}")
            if value < 1:
                raise ValueError(f"UHDformerConfig.{name} must be >= 1, got {value}")
            object.__setattr__(self, name, int(value))
        for name in ("match_factor", "ffn_expansion_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"UHDformerConfig.{name} must be a positive number, got {value!r}")
            value = int(value) if float(value).is_integer() else float(value)
            object.__setattr__(self, name, value)
        for name in ("bias", "attention_matching", "ffn_matching", "ffn_restormer"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"UHDformerConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.layernorm_type not in LAYERNORM_TYPES:
            raise ValueError(f"UHDformerConfig.layernorm_type must be one of {LAYERNORM_TYPES}, got {self.layernorm_type!r}")
        if self.width % self.num_heads:
            raise ValueError(f"UHDformerConfig.num_heads ({self.num_heads}) must divide width ({self.width})")
        if self.hidden_features < 1:
            raise ValueError(
                f"UHDformerConfig.ffn_expansion_factor {self.ffn_expansion_factor} gives no hidden channel at width {self.width}"
            )
        if not self.ffn_restormer and self.hidden_features % self.width:
            raise ValueError(
                f"UHDformerConfig.ffn_expansion_factor: the CMT feed-forward network needs int(width * factor) = "
                f"{self.hidden_features} to be a multiple of width {self.width} (grouped convolution)"
            )
        if self.uses_matching and self.num_matching < 1:
            raise ValueError(
                f"UHDformerConfig.match_factor {self.match_factor} keeps no channel at width {self.width} (int(width / r) = 0)"
            )

    # -- derived sizes -------------------------------------------------
    @property
    def hidden_features(self) -> int:
        """Hidden width ``int(width * ffn_expansion_factor)``."""
        return _expanded(self.width, self.ffn_expansion_factor)

    @property
    def num_matching(self) -> int:
        """Matched channels per pooling in a DualCMT, ``int(width / match_factor)``."""
        return int(self.width / self.match_factor)

    @property
    def ffn_uses_matching(self) -> bool:
        return self.ffn_matching and not self.ffn_restormer

    @property
    def uses_matching(self) -> bool:
        """Whether any block uses the full-resolution perception map."""
        return self.attention_matching or self.ffn_uses_matching

    # -- constructors and conversions ----------------------------------
    @classmethod
    def paper(cls) -> "UHDformerConfig":
        """The released model (``inference_uhdformer.py``): 339,323 parameters."""
        return cls()

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields (JSON- and ``weights_only``-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "UHDformerConfig":
        """Build from :meth:`to_dict` output; unknown keys raise ``ValueError`` naming them."""
        if not isinstance(values, dict):
            raise TypeError(f"UHDformer config must be a dict, got {type(values).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown UHDformer config field(s) {unknown}; valid: {sorted(names)}")
        return cls(**values)

    def canonical(self) -> "UHDformerConfig":
        """The same network with the options that change nothing set to their defaults.

        ``ffn_matching`` is irrelevant with ``ffn_restormer`` and ``match_factor``
        without any matching; checkpoints cannot record them, so
        :func:`~sparsesel.nets.checkpoints.infer_uhdformer_config` returns this form.
        """
        changes: dict[str, Any] = {}
        if self.ffn_restormer:
            changes["ffn_matching"] = False
        if not (self.attention_matching or (self.ffn_matching and not self.ffn_restormer)):
            changes["match_factor"] = UHDformerConfig.match_factor
        return dataclasses.replace(self, **changes)


# ---------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------


class ConvNeXtLiteBlock(nn.Module):
    """The official "ConvNeXtBlock": a full 3x3 conv, Linear-GELU-Linear, layer scale, residual.

    Unlike ConvNeXt there is no LayerNorm, no expansion, and the 3x3 conv is
    dense (not depthwise).  Input and output ``(B, C, H, W)``; channels-last
    input keeps the linear layers copy-free.
    """

    def __init__(self, dim: int, layer_scale: float = 1e-6) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = output_affine_split(self.conv) if is_plain_layer(self.fc1, nn.Linear) else None
        if split is not None:
            # a factorized conv ending in a 1x1 factor: that factor folded into fc1
            head, last_w, last_b = split
            weight = self.fc1.weight @ last_w
            bias = self.fc1.bias if last_b is None else self.fc1.weight @ last_b
            if last_b is not None and self.fc1.bias is not None:
                bias = bias + self.fc1.bias
            y = F.gelu(F.linear(head(x).permute(0, 2, 3, 1), weight, bias))
        else:
            y = self.conv(x).permute(0, 2, 3, 1)  # (B, H, W, C): a view when x is channels-last
            y = F.gelu(self.fc1(y))
        mapping = pointwise_affine_map(self.fc2, nn.Linear, y.shape[-1], y)
        if mapping is not None:
            # layer scale folded into the second linear layer
            weight, bias = mapping
            y = F.linear(y, weight * self.gamma[:, None], None if bias is None else bias * self.gamma)
        else:
            y = self.fc2(y) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class AdaptiveContextFusion(nn.Module):
    """ACM ("Perception_fusion"): fuses three feature maps into a 3C-channel perception map.

    ``cat = [a, b, c]``; ``g, h = split(dw3x3(conv1x1(cat)))``;
    ``out = softmax_channels(g) * cat + h``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3 * dim, 3 * dim, 1)
        self.spread = nn.Conv2d(3 * dim, 6 * dim, 3, padding=1, groups=3 * dim)

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Inputs ``(B, C, H, W)`` each; output ``(B, 3C, H, W)`` (channels-last)."""
        return self.forward_nhwc(a, b, c).permute(0, 3, 1, 2)

    def forward_nhwc(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """As :meth:`forward`, returning the ``(B, H, W, 3C)`` tensor."""
        cat = torch.cat([t.permute(0, 2, 3, 1) for t in (a, b, c)], dim=-1)  # (B, H, W, 3C)
        # The depthwise conv doubles the channels (output o reads input o // 2).  Doubling the
        # 1x1 conv's outputs instead makes it a plain depthwise conv, which is ~3x faster on CPU.
        plain_spread = is_plain_layer(self.spread, nn.Conv2d)
        mapping = pointwise_affine_map(self.mix, nn.Conv2d, cat.shape[-1], cat) if plain_spread else None
        if mapping is not None:
            weight, bias = mapping
            bias = None if bias is None else bias.repeat_interleave(2)
            mixed = F.linear(cat, weight.repeat_interleave(2, dim=0), bias).permute(0, 3, 1, 2)
        else:
            mixed = self.mix(cat.permute(0, 3, 1, 2))  # (B, 3C, H, W), channels-last
            if plain_spread:
                mixed = mixed.repeat_interleave(2, dim=1)
        if plain_spread:
            spread = F.conv2d(mixed, self.spread.weight, self.spread.bias, padding=1, groups=mixed.shape[1])
        else:
            spread = self.spread(mixed)
        spread = spread.permute(0, 2, 3, 1)  # (B, H, W, 6C)
        dims = cat.shape[-1]
        return torch.addcmul(spread[..., dims:], torch.softmax(spread[..., :dims], dim=-1), cat)


def match_channels(x: torch.Tensor, candidates: torch.Tensor, num_matching: int) -> torch.Tensor:
    """Nearest-channel matching ("CMT").

    For every channel of ``x`` find the candidate channel at the smallest
    Euclidean distance (``torch.cdist`` over the flattened maps); keep the
    ``num_matching`` channels of ``x`` with the smallest such distances, in their
    original order, and return their matched candidates.

    Parameters
    ----------
    x : torch.Tensor, shape (B, C, N)
    candidates : torch.Tensor, shape (B, C2, N)
    num_matching : int

    Returns
    -------
    torch.Tensor, shape (B, num_matching, N)
        Rows of ``candidates`` (gradients flow to them, not through the choice).
    """
    distances = torch.cdist(x, candidates)  # (B, C, C2): the only C x C2 intermediate
    nearest_distance, nearest_index = distances.min(dim=-1)
    kept = nearest_distance.topk(num_matching, dim=1, largest=False).indices.sort(dim=1).values
    source = nearest_index.gather(1, kept)  # (B, num_matching) candidate channels
    if candidates.shape[0] == 1 and not _capturing():  # a traced graph must serve any batch size
        return candidates.index_select(1, source[0])
    return candidates.gather(1, source.unsqueeze(-1).expand(-1, -1, candidates.shape[-1]))


class DualCMT(nn.Module):
    """Dual correlation matching transformation ("Matching_transformation").

    ``reduce`` (1x1, 3C -> C) is applied to the (LayerNorm-ed) perception map by
    the network's fused perception pass; :meth:`forward` receives its max- and
    average-pooled results.
    """

    def __init__(self, dim: int, num_matching: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.num_matching = int(num_matching)
        pair = 2 * self.num_matching
        self.reduce = nn.Conv2d(3 * dim, dim, 1, bias=bias)
        self.gate_in = nn.Conv2d(pair, hidden, 1, bias=bias)
        self.gate_dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=bias)
        self.gate_out = nn.Conv2d(hidden, pair, 1, bias=bias)
        self.fuse = nn.Conv2d(pair, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, pooled_max: torch.Tensor, pooled_avg: torch.Tensor) -> torch.Tensor:
        """``x``, ``pooled_max``, ``pooled_avg``: ``(B, C, h, w)``; returns ``(B, C, h, w)``."""
        batch, _, height, width = x.shape
        flat = x.flatten(2)
        matched = torch.cat(
            [
                match_channels(flat, pooled_max.flatten(2), self.num_matching),
                match_channels(flat, pooled_avg.flatten(2), self.num_matching),
            ],
            dim=1,
        ).view(batch, 2 * self.num_matching, height, width)
        gate = self.gate_out(F.gelu(self.gate_dw(self.gate_in(matched))))
        return self.fuse(gate * matched)


class CMTAttention(nn.Module):
    """Transposed (channel) self-attention whose query goes through DualCMT ("CMTA")."""

    def __init__(self, dim: int, num_heads: int, match: DualCMT | None, bias: bool) -> None:
        super().__init__()
        self.num_heads = int(num_heads)
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=bias)
        self.qkv_dw = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=bias)
        self.match = match
        self.proj = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, pooled: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        batch, _, height, width = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).chunk(3, dim=1)
        channels = v.shape[1]  # the attention's inner width (the trunk's unless heads were pruned)
        if self.match is not None:
            q = self.match(q, *pooled)
        shape = (batch, self.num_heads, channels // self.num_heads, height * width)
        q, k, v = q.reshape(shape), k.reshape(shape), v.reshape(shape)
        # cosine similarity of the (L2-normalised) rows, without normalised copies of q and k
        q_norm = torch.linalg.vector_norm(q, dim=-1, keepdim=True).clamp_min(1e-12)
        k_norm = torch.linalg.vector_norm(k, dim=-1, keepdim=True).clamp_min(1e-12)
        attn = (q @ k.transpose(-2, -1)) / (q_norm * k_norm.transpose(-2, -1))
        attn = torch.softmax(attn * self.temperature, dim=-1)
        out = (attn @ v).reshape(batch, channels, height, width)
        return self.proj(out)


class CMTFeedForward(nn.Module):
    """The UHDformer feed-forward network ("CMTN"): 1x1 expand, grouped 3x3 squeeze,
    DualCMT, grouped 3x3 expand, 1x1 project (no other non-linearity)."""

    def __init__(self, dim: int, hidden: int, match: DualCMT | None, bias: bool) -> None:
        super().__init__()
        self.expand = nn.Conv2d(dim, hidden, 1, bias=bias)
        self.squeeze = nn.Conv2d(hidden, dim, 3, padding=1, groups=dim, bias=bias)
        self.match = match
        self.unsqueeze = nn.Conv2d(dim, hidden, 3, padding=1, groups=dim, bias=bias)
        self.project = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, pooled: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        y = self.squeeze(self.expand(x))
        if self.match is not None:
            y = self.match(y, *pooled)
        return self.project(self.unsqueeze(y))


class GatedFeedForward(nn.Module):
    """Restormer's gated depthwise feed-forward network (GDFN)."""

    def __init__(self, dim: int, hidden: int, bias: bool) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor, pooled: Any = None) -> torch.Tensor:
        a, b = self.dw(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(a) * b)


class CMTBlock(nn.Module):
    """One CMT transformer block: ``x += attn(norm1(x)); x += ffn(norm2(x))``.

    ``norm_acm`` is the block's LayerNorm of the 3C-channel perception map; the
    network folds it into its fused perception pass, and the block receives the
    pooled maps for its DualCMTs.
    """

    def __init__(self, config: UHDformerConfig) -> None:
        super().__init__()
        c = config
        dim, hidden = c.width, c.hidden_features

        def dual() -> DualCMT:
            return DualCMT(dim, c.num_matching, hidden, c.bias)

        self.norm1 = ChannelLayerNorm(dim, c.layernorm_type)
        self.attn = CMTAttention(dim, c.num_heads, dual() if c.attention_matching else None, c.bias)
        self.norm2 = ChannelLayerNorm(dim, c.layernorm_type)
        if c.ffn_restormer:
            self.ffn: nn.Module = GatedFeedForward(dim, hidden, c.bias)
        else:
            self.ffn = CMTFeedForward(dim, hidden, dual() if c.ffn_matching else None, c.bias)
        self.norm_acm = ChannelLayerNorm(3 * dim, "WithBias")

    def matchers(self) -> list[DualCMT]:
        """This block's DualCMT modules, attention first."""
        return [m for m in (self.attn.match, getattr(self.ffn, "match", None)) if m is not None]

    def forward(self, x: torch.Tensor, pooled: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """``pooled``: one ``(max, avg)`` pair per DualCMT of :meth:`matchers`, in order."""
        pooled_iter = iter(pooled)
        x = x + self.attn(self.norm1(x), next(pooled_iter) if self.attn.match is not None else None)
        has_ffn_match = getattr(self.ffn, "match", None) is not None
        return x + self.ffn(self.norm2(x), next(pooled_iter) if has_ffn_match else None)


class CMTGroup(nn.Module):
    """``unit_num`` CMT blocks with a scaled residual: ``out = 0.2 * blocks(x) + x``."""

    def __init__(self, config: UHDformerConfig) -> None:
        super().__init__()
        self.units = nn.ModuleList(CMTBlock(config) for _ in range(config.unit_num))

    def forward(self, x: torch.Tensor, pooled: list[list[tuple[torch.Tensor, torch.Tensor]]]) -> torch.Tensor:
        y = x
        for unit, unit_pooled in zip(self.units, pooled):
            y = unit(y, unit_pooled)
        return 0.2 * y + x


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------


def _capturing() -> bool:
    """Whether the forward pass is being traced, exported or compiled (then no shape-dependent Python)."""
    compiler = torch.compiler
    return torch.jit.is_tracing() or compiler.is_compiling() or bool(getattr(compiler, "is_exporting", lambda: False)())


def _unit_interval(image: np.ndarray) -> np.ndarray:
    """A numpy image as float32 in its own units: unsigned integers over their type's maximum, bools 0/1,
    floats as they are; signed integers are refused (no bit depth says what they mean)."""
    if image.dtype == np.bool_:
        return np.ascontiguousarray(image, dtype=np.float32)
    if image.dtype.kind == "u":
        return np.ascontiguousarray(image, dtype=np.float32) / np.float32(np.iinfo(image.dtype).max)
    if image.dtype.kind == "f":
        return np.ascontiguousarray(image, dtype=np.float32)
    raise TypeError(f"restore expects a float, unsigned-integer or boolean numpy image, got dtype {image.dtype}")


def _out_channels(module: nn.Module) -> int:
    """Output channels of a convolution or its replacement (factorized, channel-pruned, wrapped)."""
    for attribute in ("out_channels", "out_features"):
        if isinstance(getattr(module, attribute, None), int):
            return int(getattr(module, attribute))
    inner = getattr(module, "conv", None)
    if isinstance(inner, nn.Module):
        return _out_channels(inner)
    raise TypeError(f"cannot tell the output channels of a {type(module).__name__}")


def _tiles(height: int, width: int, step: int) -> list[tuple[int, int, int, int]]:
    return [
        (r0, min(r0 + step, height), c0, min(c0 + step, width))
        for r0 in range(0, height, step)
        for c0 in range(0, width, step)
    ]


class UHDformer(nn.Module):
    """UHDformer (see the module docstring).

    Parameters
    ----------
    config : UHDformerConfig, optional
        Defaults to :meth:`UHDformerConfig.paper`.

    Attributes
    ----------
    single_pass : bool
        Run the full-resolution parts on the whole image at once, with tensor operations only
        (no Python that depends on the input size): the form that ``torch.export``,
        ``torch.jit.trace`` and ONNX capture.  It computes the same function as the tiled form
        (tested) and is used automatically while tracing, exporting or compiling; its memory
        grows with ``H x W`` (the tiled form's stays bounded), so eager inference keeps the tiles.
    tile_size : int
        The full-resolution parts run on tiles of about this many pixels square
        (rounded down to a multiple of ``scale_factor``), each with the halo its
        3x3 convolutions need; small tiles keep the temporaries in cache and bound
        the memory.  It does not change the result.
    structure : list of dict
        The edit log (:mod:`sparsesel.nets.edits`): structural edits applied after construction
        (e.g. by compression), saved with the checkpoint and replayed on load; empty for the plain network.
    """

    def __init__(self, config: UHDformerConfig | None = None) -> None:
        super().__init__()
        config = UHDformerConfig.paper() if config is None else config
        if not isinstance(config, UHDformerConfig):
            raise TypeError(f"config must be a UHDformerConfig, got {type(config).__name__}")
        self.config = config
        c, s = config.width, config.scale_factor
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.shallow = ConvNeXtLiteBlock(c)
        self.middle = ConvNeXtLiteBlock(c)
        self.deep = ConvNeXtLiteBlock(c)
        self.acm = AdaptiveContextFusion(c)
        self.down = nn.Conv2d(c, c, s, stride=s, bias=False)
        self.groups = nn.ModuleList(CMTGroup(config) for _ in range(config.number_block))
        self.up = nn.Conv2d(c, c * s * s, 3, padding=1, bias=False)
        self.fusion = nn.Conv2d(2 * c, c, 1)
        self.tail = nn.ModuleList([ConvNeXtLiteBlock(c), ConvNeXtLiteBlock(c)])
        self.head = nn.Conv2d(c, 3, 3, padding=1)
        self.tile_size = 128
        self.single_pass = False
        self.structure: list[dict[str, Any]] = []

    # -- helpers ---------------------------------------------------------
    @property
    def size_multiple(self) -> int:
        """Input heights and widths must be multiples of this (the scale factor)."""
        return self.config.scale_factor

    @property
    def widths(self) -> dict[str, int]:
        """The channel widths of the network's residual spaces, as built or as pruned.

        ``encoder``: the full-resolution encoder (stem, shallow/middle/deep; the perception map
        has ``3 * encoder`` channels); ``lowres``: the low-resolution trunk of the CMT groups;
        ``upsampled``: the up-sampled branch entering the fusion; ``tail``: the fusion output,
        the tail blocks and the head's input.  All equal ``config.width`` in the plain network.
        """
        s = self.config.scale_factor
        return {"encoder": _out_channels(self.stem), "lowres": _out_channels(self.down),
                "upsampled": _out_channels(self.up) // (s * s), "tail": _out_channels(self.fusion)}

    def _matchers(self) -> list[tuple[DualCMT, ChannelLayerNorm]]:
        return [(m, unit.norm_acm) for group in self.groups for unit in group.units for m in unit.matchers()]

    @staticmethod
    def _fused_reduction(parts) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sum C_i, 3C)`` weight and bias of DualCMT reductions applied to the *un-scaled*
        normalised perception map; ``parts`` holds ``((W_i, b_i), norm_i)`` per reduction
        (``W_i`` of shape ``(C_i, 3C)``), each block's LayerNorm affine is folded in."""
        weights, biases = [], []
        for (w, bias), norm in parts:
            b = w @ norm.bias if norm.bias is not None else w.new_zeros(w.shape[0])
            if bias is not None:
                b = b + bias
            weights.append(w * norm.weight)
            biases.append(b)
        return torch.cat(weights), torch.cat(biases)

    # -- forward -----------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore a batch.

        Parameters
        ----------
        x : torch.Tensor, shape (B, 3, H, W)
            Images in [0, 1]; ``H`` and ``W`` multiples of :attr:`size_multiple`
            (use :meth:`restore` for any size).

        Returns
        -------
        torch.Tensor, shape (B, 3, H, W)
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"UHDformer expects a (B, 3, H, W) tensor, got shape {tuple(x.shape)}")
        s = self.config.scale_factor
        batch, _, height, width = x.shape
        if height % s or width % s or height == 0 or width == 0:
            raise ValueError(
                f"UHDformer input sides must be positive multiples of {s}, got {height}x{width}; "
                "use restore() to pad and crop automatically"
            )
        x = x.contiguous(memory_format=torch.channels_last)
        if self.single_pass or _capturing():
            deep, low, pooled = self._front_whole(x)
        else:
            deep, low, pooled = self._front(x)
        y = low
        position = 0
        for group in self.groups:
            per_unit = []
            for unit in group.units:
                n = len(unit.matchers())
                per_unit.append(pooled[position : position + n])
                position += n
            y = group(y, per_unit)
        if self.single_pass or _capturing():
            return self._tail_whole(x, deep, low + y)
        return self._tail(x, deep, low + y)

    def _front_whole(self, x: torch.Tensor):
        """:meth:`_front` on the whole image, with tensor operations only (see :attr:`single_pass`).

        The reductions run one DualCMT at a time (each ``(B, H, W, C)`` map is pooled and freed),
        so the peak memory is that of the ``3C``-channel perception map, not of all reductions.
        """
        c, s = self.widths["encoder"], self.config.scale_factor
        e = self.stem(x)
        f1 = self.shallow(e)
        f2 = self.middle(f1)
        f3 = self.deep(f2)
        low = self.down(e).contiguous()
        matchers = self._matchers()
        if not matchers:
            return f3, low, []
        p_hat = normalize_channels(self.acm.forward_nhwc(f1, f2, f3), channels=3 * c)  # (B, H, W, 3C)
        p_avg = None
        pooled: list[tuple[torch.Tensor, torch.Tensor]] = []
        for matcher, norm in matchers:
            mapping = pointwise_affine_map(matcher.reduce, nn.Conv2d, 3 * c, x)
            if mapping is None:  # called on the data (hooks, or not known to be affine)
                reduced = matcher.reduce(self._affine(p_hat, norm).permute(0, 3, 1, 2))
                pooled.append((F.max_pool2d(reduced, s).contiguous(), F.avg_pool2d(reduced, s).contiguous()))
                continue
            weight, bias = self._fused_reduction([(mapping, norm)])
            reduced = F.linear(p_hat, weight).permute(0, 3, 1, 2)  # (B, C, H, W), channels-last; bias after pooling
            if p_avg is None:  # average pooling commutes with the affine reduction
                p_avg = F.avg_pool2d(p_hat.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)
            pooled_max = (F.max_pool2d(reduced, s) + bias[:, None, None]).contiguous()
            pooled_avg = F.linear(p_avg, weight, bias).permute(0, 3, 1, 2).contiguous()
            pooled.append((pooled_max, pooled_avg))
        return f3, low, pooled

    def _tail_whole(self, x: torch.Tensor, deep: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """:meth:`_tail` on the whole image, with tensor operations only (see :attr:`single_pass`)."""
        widths, s = self.widths, self.config.scale_factor
        u = widths["upsampled"]
        up = F.pixel_shuffle(self.up(low), s)
        fusion_map = pointwise_affine_map(self.fusion, nn.Conv2d, u + widths["encoder"], x)
        if fusion_map is not None:
            fusion_w, fusion_b = fusion_map
            f = pointwise_conv(up, fusion_w[:, :u]) + pointwise_conv(deep, fusion_w[:, u:], fusion_b)
        else:
            f = self.fusion(torch.cat([up, deep], dim=1))
        for block in self.tail:
            f = block(f)
        return self.head(f) + x

    def _front(self, x: torch.Tensor):
        """Full-resolution encoder, tile by tile.

        Returns the deep features ``(B, C, H, W)``, the down-sampled trunk input
        ``(B, C, h, w)``, and one ``(max-pooled, average-pooled)`` pair of reduced
        perception maps ``(B, C, h, w)`` per DualCMT (in :meth:`_matchers` order).

        The reductions of plain ``reduce`` convolutions are fused into one matrix
        (only its max-pooled result is formed at full resolution); any other
        ``reduce`` module (factorized, hooked) is called on each tile's
        normalised perception map and its output pooled.
        """
        c, s = self.widths["encoder"], self.config.scale_factor
        batch, _, height, width = x.shape
        matchers = self._matchers()
        maps = [pointwise_affine_map(matcher.reduce, nn.Conv2d, 3 * c, x) for matcher, _ in matchers]
        fused = [i for i, mapping in enumerate(maps) if mapping is not None]
        called = [i for i, mapping in enumerate(maps) if mapping is None]
        use_perception = bool(matchers)
        halo = 5 if use_perception else 4  # 3x3 convs between the input and the ACM output
        factory = dict(dtype=x.dtype, device=x.device)
        deep_all = torch.empty(batch, c, height, width, **factory).contiguous(memory_format=torch.channels_last)
        low = torch.empty(batch, self.widths["lowres"], height // s, width // s, **factory)
        grad = torch.is_grad_enabled()
        if fused:
            fused_w, fused_b = self._fused_reduction([(maps[i], matchers[i][1]) for i in fused])
            fused_wt = fused_w.t()
            total = fused_w.shape[0]
            # channels-last stores; the bias is added after pooling (max(y + b) = max(y) + b)
            pooled_max = torch.empty(batch, height // s, width // s, total, **factory)
            pooled_avg = torch.empty(batch, height // s, width // s, 3 * c, **factory)
            buffer = None
        called_max: dict[int, torch.Tensor] = {}
        normed_buffer = None
        called_avg: dict[int, torch.Tensor] = {}
        tile = self._tile(height, width)
        for r0, r1, c0, c1 in _tiles(height, width, tile):
            a, b = max(0, r0 - halo), min(height, r1 + halo)
            ac, bc = max(0, c0 - halo), min(width, c1 + halo)
            top, left, n, m = r0 - a, c0 - ac, r1 - r0, c1 - c0
            e = self.stem(x[:, :, a:b, ac:bc])
            f1 = self.shallow(e)
            f2 = self.middle(f1)
            f3 = self.deep(f2)
            low[:, :, r0 // s : r1 // s, c0 // s : c1 // s] = self.down(e[:, :, top : top + n, left : left + m])
            deep_all[:, :, r0:r1, c0:c1] = f3[:, :, top : top + n, left : left + m]
            if not use_perception:
                continue
            # the ACM needs one more row/column around the tile (its 3x3 depthwise conv)
            lo, hi = max(top - 1, 0), min(top + n + 1, b - a)
            lo_c, hi_c = max(left - 1, 0), min(left + m + 1, bc - ac)
            p = self.acm.forward_nhwc(f1[:, :, lo:hi, lo_c:hi_c], f2[:, :, lo:hi, lo_c:hi_c], f3[:, :, lo:hi, lo_c:hi_c])
            p_hat = normalize_channels(p[:, top - lo : top - lo + n, left - lo_c : left - lo_c + m])  # (B, n, m, 3C)
            rows, cols = slice(r0 // s, r1 // s), slice(c0 // s, c1 // s)
            normed, normed_by = None, None
            for i in called:
                matcher, norm = matchers[i]
                if normed_by is not norm:  # a block's two DualCMTs share its LayerNorm
                    normed_by = norm
                    if grad:
                        normed = self._affine(p_hat, norm)
                    else:  # reuse one buffer: no fresh pages per call
                        if normed_buffer is None or normed_buffer.numel() < p_hat.numel():
                            normed_buffer = torch.empty(p_hat.numel(), **factory)
                        normed = self._affine(p_hat, norm, out=normed_buffer[: p_hat.numel()].view(p_hat.shape))
                reduced = matcher.reduce(normed.permute(0, 3, 1, 2))  # (B, C, n, m)
                if i not in called_max:
                    shape = (batch, reduced.shape[1], height // s, width // s)
                    called_max[i], called_avg[i] = torch.empty(shape, **factory), torch.empty(shape, **factory)
                called_max[i][:, :, rows, cols] = F.max_pool2d(reduced, s)
                called_avg[i][:, :, rows, cols] = F.avg_pool2d(reduced, s)
            if not fused:
                continue
            pooled_avg[:, rows, cols] = F.avg_pool2d(p_hat.permute(0, 3, 1, 2), s).permute(0, 2, 3, 1)
            for i in range(0, n, s):
                strip = p_hat[:, i : i + s].reshape(-1, 3 * c)
                if grad:
                    reduced = strip @ fused_wt
                else:  # reuse one small output buffer: cache-resident, no fresh pages
                    if buffer is None or buffer.shape[0] < strip.shape[0]:
                        buffer = torch.empty(strip.shape[0], total, **factory)
                    reduced = torch.mm(strip, fused_wt, out=buffer[: strip.shape[0]])
                reduced = reduced.view(batch, s, m, total).amax(dim=1).view(batch, m // s, s, total).amax(dim=2)
                pooled_max[:, (r0 + i) // s, cols] = reduced
        pooled: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(matchers)
        if fused:
            pooled_max = (pooled_max + fused_b).permute(0, 3, 1, 2).contiguous()
            # average pooling commutes with the (affine) reductions: apply them at low resolution
            pooled_avg = F.linear(pooled_avg, fused_w, fused_b).permute(0, 3, 1, 2).contiguous()
            sizes = [maps[i][0].shape[0] for i in fused]
            for i, mx, av in zip(fused, pooled_max.split(sizes, dim=1), pooled_avg.split(sizes, dim=1)):
                pooled[i] = (mx, av)
        for i in called:
            pooled[i] = (called_max[i], called_avg[i])
        return deep_all, low, pooled

    @staticmethod
    def _affine(p_hat: torch.Tensor, norm: ChannelLayerNorm, out: torch.Tensor | None = None) -> torch.Tensor:
        """``norm``'s affine part applied to the normalised channels-last map ``p_hat``."""
        if norm.bias is None:
            return torch.mul(p_hat, norm.weight, out=out)
        return torch.addcmul(norm.bias, p_hat, norm.weight, out=out)

    def _tile(self, height: int, width: int) -> int:
        s = self.config.scale_factor
        return max(s, self.tile_size // s * s)

    def _tail(self, x: torch.Tensor, deep: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """Up-sampling, fusion with the deep features and reconstruction, tile by tile.

        With a plain ``up`` convolution and a per-pixel affine ``fusion``
        (:func:`pointwise_affine_map`) the fusion's weights for the up-sampled half
        are folded into the up-sampling conv; any other ``up`` (e.g. factorized) is
        called; a ``fusion`` that is not known to be affine is called on the
        concatenation ``[up, deep]``.
        """
        widths, s = self.widths, self.config.scale_factor
        c, lowres = widths["upsampled"], widths["lowres"]
        batch, _, height, width = x.shape
        low_h, low_w = low.shape[2:]
        fusion_map = pointwise_affine_map(self.fusion, nn.Conv2d, c + widths["encoder"], x)
        fold = fusion_map is not None and is_plain_layer(self.up, nn.Conv2d)
        split = output_affine_split(self.up) if fusion_map is not None and not fold else None
        if fusion_map is not None:
            fusion_w, fusion_b = fusion_map
            up_fusion_w, deep_w = fusion_w[:, :c], fusion_w[:, c:]
        if fold:
            # pixel_shuffle(conv(y, W')) == fusion_up(pixel_shuffle(conv(y, W)))
            up_w = self.up.weight.view(c, s * s, lowres, 3, 3)
            up_w = torch.einsum("dc,ckixy->dkixy", up_fusion_w, up_w).reshape(fusion_w.shape[0] * s * s, lowres, 3, 3)
        elif split is not None:
            # a factorized up ending in a 1x1 factor: the fusion's half folded into that factor
            up_head, last_w, last_b = split
            rank = last_w.shape[1]
            split_w = torch.einsum("dc,ckr->dkr", up_fusion_w, last_w.view(c, s * s, rank)).reshape(-1, rank)
            split_b = None if last_b is None else torch.einsum("dc,ck->dk", up_fusion_w, last_b.view(c, s * s)).reshape(-1)
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        halo = 3  # 3x3 convs after the fusion
        for r0, r1, c0, c1 in _tiles(height, width, self._tile(height, width)):
            a, b = max(0, r0 - halo), min(height, r1 + halo)
            ac, bc = max(0, c0 - halo), min(width, c1 + halo)
            la, lb, lca, lcb = a // s, -(-b // s), ac // s, -(-bc // s)
            ua, ub, uca, ucb = max(0, la - 1), min(low_h, lb + 1), max(0, lca - 1), min(low_w, lcb + 1)
            low_tile = low[:, :, ua:ub, uca:ucb]
            if fold:
                up = F.conv2d(low_tile, up_w, None, padding=1)
            elif split is not None:
                up = pointwise_conv(up_head(low_tile), split_w, split_b)
            else:
                up = self.up(low_tile)
                if fusion_map is not None:  # the fusion's half for the up-sampled branch, before the shuffle
                    up = torch.einsum("dc,bckyx->bdkyx", up_fusion_w, up.view(batch, c, s * s, *up.shape[2:]))
                    up = up.reshape(batch, -1, *up.shape[3:])
            up = up[:, :, la - ua : lb - ua, lca - uca : lcb - uca]
            up = F.pixel_shuffle(up, s)[:, :, a - la * s : b - la * s, ac - lca * s : bc - lca * s]
            if fusion_map is not None:
                f = up + F.linear(deep[:, :, a:b, ac:bc].permute(0, 2, 3, 1), deep_w, fusion_b).permute(0, 3, 1, 2)
            else:
                f = self.fusion(torch.cat([up, deep[:, :, a:b, ac:bc]], dim=1))
            for block in self.tail:
                f = block(f)
            f = self.head(f)
            out[:, :, r0:r1, c0:c1] = f[:, :, r0 - a : r1 - a, c0 - ac : c1 - ac] + x[:, :, r0:r1, c0:c1]
        return out

    # -- whole images ------------------------------------------------------
    def restore(self, image: torch.Tensor | np.ndarray, *, clamp: bool = True) -> torch.Tensor | np.ndarray:
        """Restore whole images of any size in one pass.

        The image is reflect-padded at the bottom/right to multiples of
        :attr:`size_multiple`, run through the network under
        ``torch.inference_mode`` and cropped back.

        Parameters
        ----------
        image : torch.Tensor of shape (3, H, W) or (B, 3, H, W), or numpy array of shape (H, W, 3)
            Values in [0, 1]; an unsigned-integer numpy image is scaled by its type's maximum
            (``uint8`` by 1/255, ``uint16`` by 1/65535), a boolean one read as 0/1.
        clamp : bool
            Clip the result to [0, 1].

        Returns
        -------
        Same kind and layout as ``image`` (float32 for numpy input).
        """
        is_numpy = isinstance(image, np.ndarray)
        if is_numpy:
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"restore expects an (H, W, 3) numpy image, got shape {image.shape}")
            tensor = torch.from_numpy(_unit_interval(image)).permute(2, 0, 1)[None]
        elif isinstance(image, torch.Tensor):
            if image.dim() not in (3, 4) or image.shape[-3] != 3:
                raise ValueError(f"restore expects a (3, H, W) or (B, 3, H, W) tensor, got shape {tuple(image.shape)}")
            tensor = image if image.dim() == 4 else image[None]
        else:
            raise TypeError(f"restore expects a torch.Tensor or numpy array, got {type(image).__name__}")
        parameter = next(self.parameters())
        with torch.inference_mode():
            tensor = tensor.to(device=parameter.device, dtype=parameter.dtype)
            padded, (height, width) = reflect_pad_to_multiple(tensor, self.size_multiple)
            out = self(padded)[:, :, :height, :width]
            if clamp:
                out = out.clamp(0.0, 1.0)
        if is_numpy:
            return out[0].permute(1, 2, 0).contiguous().numpy()
        return out if image.dim() == 4 else out[0]
