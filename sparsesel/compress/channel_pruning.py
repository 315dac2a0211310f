"""Structured L2-magnitude channel pruning of UHDformer's block-internal channels.

Torch-Pruning cannot build its dependency graph for UHDformer (the matching modules
concatenate channels picked with data-dependent indices, and tracing the tiled network
recurses too deeply), so this module prunes, by hand, every channel whose removal changes
layers inside one block only (a *channel group*):

* ``convnext`` -- ConvNeXt-lite ``fc1`` (Linear, out) -> ``fc2`` (Linear, in), per channel;
* ``gate`` -- DualCMT ``gate_in`` (out) -> ``gate_dw`` (depthwise) -> ``gate_out`` (in), per channel;
* ``ffn_expand`` -- CMT FFN ``expand`` (out) -> grouped 3x3 ``squeeze`` (in), evenly per conv group;
* ``ffn_unsqueeze`` -- CMT FFN grouped 3x3 ``unsqueeze`` (out) -> ``project`` (in), evenly per conv group;
* ``gdfn`` -- Restormer FFN ``project_in`` (rows ``i`` and ``hidden + i``) -> ``dw`` (same rows)
  -> ``project_out`` (in ``i``), per channel;
* ``upsample`` -- ``up`` (the ``s*s`` outputs that pixel-shuffle into up-sampled channel ``j``)
  -> ``fusion`` (input ``j``), per channel;
* ``candidates`` -- a DualCMT's ``reduce`` (out): the pooled perception channels its matching
  chooses from, per channel (each costs ``3C`` multiply-adds per *full-resolution* pixel: the
  reductions are the largest part of the perception path);
* ``heads`` -- an attention's heads: the head's query/key/value rows of ``qkv`` and ``qkv_dw``, its
  temperature, its columns of ``proj`` and (with attention matching) its rows of the DualCMT's
  ``fuse``, per head (a unit of ``C / heads`` channels);
* ``trunk_encoder``, ``trunk_lowres``, ``trunk_tail`` -- the trunk's three residual spaces
  (:mod:`sparsesel.compress.trunk_widths`; the encoder in channel pairs).

The first six (:data:`MASKABLE_KINDS`) compute exactly what the network computes with the
removed channels' producing weights zeroed.  Without the trunk, heads and candidates the paper
configuration (339,323 parameters) cannot go below 109,898 (32.4%); with them it reaches 25%.

Importance
----------
Torch-Pruning's ``MagnitudeImportance(p=2, group_reduction="mean", normalizer="mean",
bias=False)``: for channel ``i`` of a group whose layers are ``L_1 .. L_m``,

.. math::

    I_i = \\frac{1}{m} \\sum_{l=1}^{m} \\lVert W_l[i] \\rVert_2^2 ,\\qquad
    \\hat I_i = I_i / \\operatorname{mean}_j I_j ,

where the layers are the group's producing and consuming layers and ``W_l[i]`` is every
weight of layer ``l`` that touches channel ``i``: its output row(s) for a producing layer
(``fc1``, ``gate_in``, ``expand``, ``unsqueeze``, rows ``i`` and ``hidden + i`` of
``project_in``, the ``s*s`` rows of ``up`` that pixel-shuffle into channel ``i``), its input
column for a consuming layer (``fc2``, ``gate_out``, ``project``, ``project_out``, the
up-sampled half of ``fusion``), and for the grouped ``squeeze`` only the kernel of the one
conv group that reads ``i``.  Biases are not counted, and neither are the depthwise convs in
between (``gate_dw``, ``dw``): Torch-Pruning 1.6.1 skips them too (their pruning function is
``prune_depthwise_conv_out_channels``, which its importance does not score), so for the
DualCMT gate this equals Torch-Pruning's score exactly (tested).  The one deliberate
difference: for a grouped consumer Torch-Pruning tiles the per-group input norms over the
groups (``local_imp.repeat(groups)``), mixing the groups' kernels; we score the kernel that
actually reads the channel.  The squared norm is what Torch-Pruning sums (``|w|^p`` with
``p = 2``, no root).

Selection: one global threshold
-------------------------------
Channels are removed in increasing order of the normalised importance ``\\hat I`` across all
groups of the network -- the "global magnitude" criterion (Torch-Pruning's
``global_pruning=True``) -- until the network has at most the budget's parameters.  The
threshold is thus the smallest one that meets the budget; it is found by bisection over the
sorted scores, counting the parameters of each candidate network (built on the ``meta`` device:
a trunk channel's cost depends on the other trunk widths).  Groups that must stay even over their
``g`` convolution groups are pruned in *slices*: slice ``r`` removes the ``r``-th least
important channel of every conv group, with score the mean of their ``\\hat I``; heads and the
encoder's channel pairs are removed whole (score: the mean over their channels).  Every group
keeps at least one unit (per conv group).

The pruned network is an ordinary :class:`~sparsesel.nets.uhdformer.UHDformer` whose layers
are physically smaller ``nn.Conv2d`` / ``nn.Linear`` (the network reads its widths from its
layers, :attr:`~sparsesel.nets.uhdformer.UHDformer.widths`, so a narrower up-sampled branch is a
plain smaller ``up`` and ``fusion`` and stays on the folded fast path; files written before kept
``up`` and ``fusion`` at full width behind :class:`ScatterOutputConv` / :class:`GatherInputConv`,
the ``form="scatter"`` of their edits, which still load).  Each pruned group is recorded in
the network's edit log (:mod:`sparsesel.nets.edits`) as ``{"kind": "prune_channels", "args":
{"kind", "module", "channels"[, "form"]}}``, replayed on load by :func:`replay_channel_pruning` (the
loader knows the kind; nothing needs importing first).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsesel.compress.trunk_widths import TRUNK_SPACES, shrink_trunk, trunk_is_plain, trunk_norms, trunk_unit
from sparsesel.nets.edits import record_edit

__all__ = [
    "ALL_KINDS",
    "EDIT_KIND",
    "KINDS",
    "MASKABLE_KINDS",
    "ChannelGroup",
    "GatherInputConv",
    "ScatterOutputConv",
    "channel_groups",
    "magnitude_prune_uhdformer",
    "min_params",
    "prune_channels",
    "replay_channel_pruning",
    "select_channels",
]

EDIT_KIND = "prune_channels"
#: Block-internal groups whose pruning equals masking (the producing weights zeroed).
MASKABLE_KINDS = ("convnext", "gate", "ffn_expand", "ffn_unsqueeze", "gdfn", "upsample")
#: Every block-internal group kind (replayed by :data:`EDIT_KIND` edits).
KINDS = MASKABLE_KINDS + ("candidates", "heads")
#: The trunk spaces (:mod:`sparsesel.compress.trunk_widths`), as channel groups of module ``""``.
TRUNK_KINDS = tuple(f"trunk_{space}" for space in TRUNK_SPACES)
ALL_KINDS = KINDS + TRUNK_KINDS


# ---------------------------------------------------------------------------
# wrappers for the up-sampling branch
# ---------------------------------------------------------------------------


class _IndexedConv(nn.Module):
    """A smaller convolution ``conv`` standing for a wider one; ``index`` (a saved buffer, int64,
    shape (k,)) maps each of its kept channels to the wide layer's channel."""

    def __init__(self, conv: nn.Conv2d, index: torch.Tensor) -> None:
        super().__init__()
        self.conv = conv
        self.register_buffer("index", torch.as_tensor(index, dtype=torch.long).clone())


class ScatterOutputConv(_IndexedConv):
    """A convolution computing only some output channels (``index``) of one with ``out_channels``;
    the others are zero."""

    def __init__(self, conv: nn.Conv2d, index: torch.Tensor, out_channels: int) -> None:
        super().__init__(conv, index)
        self.out_channels = int(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        out = y.new_zeros(y.shape[0], self.out_channels, *y.shape[2:])
        return out.index_copy(1, self.index, y)

    def output_split(self):
        """``(conv, scatter, None)``: the forward is ``conv`` followed by the per-pixel one-hot map
        ``scatter`` ``(out_channels, kept)``, so a network folds the layer after it into that map
        and never forms the zero channels (see :func:`sparsesel.nets.uhdformer.output_affine_split`)."""
        weight = self.conv.weight
        scatter = weight.new_zeros(self.out_channels, self.index.numel())
        scatter[self.index, torch.arange(self.index.numel(), device=self.index.device)] = 1.0
        return self.conv, scatter, None


class GatherInputConv(_IndexedConv):
    """A convolution reading only some input channels (``index``) of an input with ``in_channels``.

    Declares ``pointwise_affine`` when ``conv`` is a 1x1 stride-1 ungrouped convolution, so
    UHDformer keeps folding it (:func:`sparsesel.nets.uhdformer.pointwise_affine_map`; the
    skipped inputs get zero columns).
    """

    def __init__(self, conv: nn.Conv2d, index: torch.Tensor, in_channels: int) -> None:
        super().__init__(conv, index)
        self.in_channels = int(in_channels)
        self.pointwise_affine = (
            tuple(conv.kernel_size) == (1, 1) and tuple(conv.stride) == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), 0)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.index_select(1, self.index))


# ---------------------------------------------------------------------------
# channel groups
# ---------------------------------------------------------------------------


@dataclass
class ChannelGroup:
    """One prunable set of hidden channels.

    Attributes
    ----------
    kind : str
        One of ``convnext``, ``gate``, ``ffn_expand``, ``ffn_unsqueeze``, ``gdfn``, ``upsample``.
    module : str
        Qualified name of the module holding the group's layers (``""``: the network).
    channels : int
        Channels now.
    subgroups : int
        Convolution groups that must keep equal channel counts (1 if none).
    cost : int
        Parameters removed with one channel (weights and biases of every layer) from the full
        group; exact for every channel except in trunk spaces, whose layers are square, and for
        heads, whose temperature (one per head) is not counted (see :func:`magnitude_prune_uhdformer`,
        which counts the parameters of the pruned network).
    importance : numpy.ndarray, shape (channels,)
        Torch-Pruning's mean group squared-L2 importance, divided by its mean.
    unit : int
        Adjacent channels removed together (a head's channels, the encoder's channel pairs).
    """

    kind: str
    module: str
    channels: int
    subgroups: int
    cost: int
    importance: np.ndarray = field(repr=False)
    unit: int = 1

    @property
    def name(self) -> str:
        return f"{self.module or '<net>'}:{self.kind}"


def _sq(t: torch.Tensor) -> np.ndarray:
    """Per-row sum of squares of ``t`` (first dimension kept)."""
    return t.detach().double().flatten(1).pow(2).sum(1).cpu().numpy()


def _bias(layer: nn.Module) -> int:
    return 1 if getattr(layer, "bias", None) is not None else 0


def _layers(model: nn.Module, module: str, kind: str) -> dict[str, nn.Module]:
    owner = model.get_submodule(module) if module else model
    names = {
        "convnext": ("fc1", "fc2"),
        "gate": ("gate_in", "gate_dw", "gate_out"),
        "ffn_expand": ("expand", "squeeze"),
        "ffn_unsqueeze": ("unsqueeze", "project"),
        "gdfn": ("project_in", "dw", "project_out"),
        "upsample": ("up", "fusion"),
        "candidates": ("reduce",),
        "heads": ("qkv", "qkv_dw", "proj"),
    }[kind]
    layers = {n: getattr(owner, n) for n in names}
    if kind == "heads" and owner.match is not None:
        layers["fuse"] = owner.match.fuse
    return layers


def _group_norms_and_cost(model: nn.Module, module: str, kind: str) -> tuple[list[np.ndarray], int, int, int]:
    """Per-layer squared norms per channel, the per-channel parameter cost, channels, subgroups."""
    if kind in TRUNK_KINDS:
        space = kind[len("trunk_"):]
        before, unit = sum(p.numel() for p in model.parameters()), trunk_unit(space)
        cost = 0
        if model.widths[space] > unit:  # the parameters the first removed unit takes, per channel
            shrunk = shrink_trunk(copy.deepcopy(model), space, np.arange(unit, model.widths[space]))
            cost = (before - sum(p.numel() for p in shrunk.parameters())) // unit
        return trunk_norms(model, space), int(cost), model.widths[space], 1
    L = _layers(model, module, kind)
    if kind == "candidates":
        reduce = L["reduce"]
        return [_sq(reduce.weight)], reduce.weight[0].numel() + _bias(reduce), reduce.out_channels, 1
    if kind == "heads":
        qkv, dw, proj = L["qkv"], L["qkv_dw"], L["proj"]
        a = qkv.out_channels // 3
        rows = lambda w: sum(_sq(w[i * a:(i + 1) * a]) for i in range(3))  # noqa: E731
        norms = [rows(qkv.weight), _sq(proj.weight.transpose(0, 1))]
        cost = 3 * (qkv.weight[0].numel() + _bias(qkv) + dw.weight[0].numel() + _bias(dw)) + proj.weight[:, 0].numel()
        if "fuse" in L:
            norms.append(_sq(L["fuse"].weight))
            cost += L["fuse"].weight[0].numel() + _bias(L["fuse"])
        return norms, cost, a, 1
    if kind == "convnext":
        fc1, fc2 = L["fc1"], L["fc2"]
        norms = [_sq(fc1.weight), _sq(fc2.weight.t())]
        return norms, fc1.in_features + _bias(fc1) + fc2.out_features, fc1.out_features, 1
    if kind == "gate":
        a, dw, b = L["gate_in"], L["gate_dw"], L["gate_out"]
        norms = [_sq(a.weight), _sq(b.weight.transpose(0, 1))]  # depthwise: see the module docstring
        cost = a.weight[0].numel() + _bias(a) + dw.weight[0].numel() + _bias(dw) + b.weight[:, 0].numel()
        return norms, cost, a.out_channels, 1
    if kind == "ffn_expand":
        e, sq = L["expand"], L["squeeze"]
        g, per = sq.groups, sq.in_channels // sq.groups  # sq.weight: (out, per, kh, kw)
        out_per = sq.out_channels // g
        # input channel h = grp * per + j is read by outputs grp*out_per .. of weight[:, j]
        w = sq.weight.view(g, out_per, per, *sq.weight.shape[2:]).transpose(1, 2).reshape(g * per, -1)
        norms = [_sq(e.weight), _sq(w)]
        cost = e.weight[0].numel() + _bias(e) + out_per * sq.weight[0, 0].numel()
        return norms, cost, e.out_channels, g
    if kind == "ffn_unsqueeze":
        u, p = L["unsqueeze"], L["project"]
        norms = [_sq(u.weight), _sq(p.weight.transpose(0, 1))]
        cost = u.weight[0].numel() + _bias(u) + p.weight[:, 0].numel()
        return norms, cost, u.out_channels, u.groups
    if kind == "gdfn":
        pin, dw, pout = L["project_in"], L["dw"], L["project_out"]
        hidden = pout.in_channels
        pair = lambda w: _sq(w[:hidden]) + _sq(w[hidden:])  # noqa: E731
        norms = [pair(pin.weight), _sq(pout.weight.transpose(0, 1))]
        cost = 2 * (pin.weight[0].numel() + _bias(pin) + dw.weight[0].numel() + _bias(dw)) + pout.weight[:, 0].numel()
        return norms, cost, hidden, 1
    if kind == "upsample":
        up, fusion = L["up"], L["fusion"]
        c = model.widths["upsampled"]
        area = up.out_channels // c
        norms = [_sq(up.weight.reshape(c, -1)), _sq(fusion.weight[:, :c].transpose(0, 1))]
        cost = area * (up.weight[0].numel() + _bias(up)) + fusion.weight[:, 0].numel()
        return norms, cost, c, 1
    raise ValueError(f"unknown channel group kind {kind!r}; choose one of {KINDS}")


def _is_plain(layer: nn.Module) -> bool:
    return type(layer) in (nn.Conv2d, nn.Linear)


def _group_sites(model: nn.Module, kinds: tuple[str, ...] = ALL_KINDS) -> list[tuple[str, str]]:
    """``(module, kind)`` of every prunable group of a UHDformer whose layers are still plain
    (trunk spaces first: they must be shrunk before the groups inside them)."""
    from sparsesel.nets.uhdformer import CMTAttention, CMTFeedForward, ConvNeXtLiteBlock, DualCMT, GatedFeedForward, UHDformer

    if not isinstance(model, UHDformer):
        raise TypeError(f"channel pruning supports UHDformer only, got {type(model).__name__}")
    unknown = sorted(set(kinds) - set(ALL_KINDS))
    if unknown:
        raise ValueError(f"unknown channel group kind(s) {unknown}; choose from {ALL_KINDS}")
    sites = [("", f"trunk_{space}") for space in TRUNK_SPACES if trunk_is_plain(model, space)]
    for name, module in model.named_modules():
        if isinstance(module, ConvNeXtLiteBlock):
            sites.append((name, "convnext"))
        elif isinstance(module, DualCMT):
            sites += [(name, "gate"), (name, "candidates")]
        elif isinstance(module, CMTFeedForward):
            sites += [(name, "ffn_expand"), (name, "ffn_unsqueeze")]
        elif isinstance(module, GatedFeedForward):
            sites.append((name, "gdfn"))
        elif isinstance(module, CMTAttention):
            sites.append((name, "heads"))
    sites.append(("", "upsample"))
    return [(m, k) for m, k in sites if k in kinds and (k in TRUNK_KINDS or all(_is_plain(layer) for layer in _layers(model, m, k).values()))]


def _unit(model: nn.Module, module: str, kind: str) -> int:
    if kind in TRUNK_KINDS:
        return trunk_unit(kind[len("trunk_"):])
    if kind == "heads":
        attention = model.get_submodule(module)
        return attention.qkv.out_channels // 3 // attention.num_heads
    return 1


def channel_groups(model: nn.Module, kinds: tuple[str, ...] = ALL_KINDS) -> list[ChannelGroup]:
    """Every prunable channel group of a UHDformer of the given ``kinds``, with its importance
    (see the module docstring); trunk spaces first.

    Groups whose layers were already replaced (factorized, pruned) are left out.
    """
    groups = []
    for module, kind in _group_sites(model, tuple(kinds)):
        norms, cost, channels, subgroups = _group_norms_and_cost(model, module, kind)
        importance = np.mean(norms, axis=0)
        mean = importance.mean()
        importance = importance / mean if mean > 0 else np.ones_like(importance)
        groups.append(ChannelGroup(kind, module, channels, subgroups, int(cost), importance, _unit(model, module, kind)))
    return groups


def min_params(model: nn.Module, groups: list[ChannelGroup] | None = None) -> int:
    """Fewest parameters channel pruning reaches (one channel, unit or conv-group channel left per group)."""
    groups = channel_groups(model) if groups is None else groups
    units = removal_units(groups)
    return _params_after(model, groups, units, len(units))


def removal_units(groups: list[ChannelGroup]) -> list[tuple[float, int, int, np.ndarray]]:
    """Every removable unit ``(score, group index, rank, channels)``, least important first.

    A unit is one channel; ``unit`` adjacent channels (heads, encoder pairs; score: their mean); or,
    for groups that must stay even over ``g`` conv groups, a *slice*: the ``r``-th least important
    channel of every conv group (score: their mean).  Each group keeps its most important unit.
    """
    units = []
    for gi, g in enumerate(groups):
        if g.unit > 1:
            blocks = g.importance.reshape(-1, g.unit).mean(axis=1)
            order = np.argsort(blocks, kind="stable")
            for r, b in enumerate(order[:-1]):
                units.append((float(blocks[b]), gi, r, np.arange(b * g.unit, (b + 1) * g.unit)))
            continue
        per = g.channels // g.subgroups
        blocks = g.importance.reshape(g.subgroups, per)
        order = np.argsort(blocks, axis=1, kind="stable")  # (subgroups, per)
        for r in range(per - 1):
            chans = order[:, r] + np.arange(g.subgroups) * per
            units.append((float(blocks[np.arange(g.subgroups), order[:, r]].mean()), gi, r, chans))
    units.sort(key=lambda u: (u[0], u[1], u[2]))
    return units


def _kept_after(groups: list[ChannelGroup], units, n: int) -> list[np.ndarray]:
    removed: list[list[np.ndarray]] = [[] for _ in groups]
    for _, gi, _, chans in units[:n]:
        removed[gi].append(chans)
    keep = []
    for g, rem in zip(groups, removed):
        drop = np.concatenate(rem) if rem else np.zeros(0, dtype=np.int64)
        keep.append(np.setdiff1d(np.arange(g.channels), drop))
    return keep


def _params_after(model: nn.Module, groups: list[ChannelGroup], units, n: int) -> int:
    """Parameters of the network with the ``n`` least important units removed (built on the meta device)."""
    keep = _kept_after(groups, units, n)
    meta = copy.deepcopy(model).to("meta")
    pruned = prune_channels(meta, {(g.module, g.kind): k for g, k in zip(groups, keep)}, copy_model=False)
    return int(sum(p.numel() for p in pruned.parameters()))


def select_channels(groups: list[ChannelGroup], total_params: int, budget_params: int) -> tuple[list[np.ndarray], float, int]:
    """Kept channel indices per group under one global importance threshold.

    Parameters
    ----------
    groups : list of ChannelGroup
    total_params : int
        Parameters of the network now.
    budget_params : int

    Returns
    -------
    keep : list of numpy.ndarray of int
        Sorted kept channels of each group.
    threshold : float
        Score of the last removed unit (``-inf`` when nothing is removed).
    params : int
        Parameters after pruning.

    Raises
    ------
    ValueError
        If even one channel per group exceeds the budget.
    """
    units = removal_units(groups)
    params = int(total_params)
    removed: list[list[np.ndarray]] = [[] for _ in groups]
    threshold = -np.inf
    for score, gi, _, chans in units:
        if params <= budget_params:
            break
        removed[gi].append(chans)
        params -= groups[gi].cost * len(chans)
        threshold = score
    if params > budget_params:
        raise ValueError(
            f"structured magnitude pruning cannot reach {budget_params} parameters: pruning UHDformer's "
            f"block-internal channels to one per group leaves {params} of {total_params} "
            f"({params / total_params:.1%})"
        )
    keep = []
    for g, rem in zip(groups, removed):
        drop = np.concatenate(rem) if rem else np.zeros(0, dtype=np.int64)
        keep.append(np.setdiff1d(np.arange(g.channels), drop))
    return keep, float(threshold), params


# ---------------------------------------------------------------------------
# building the smaller layers
# ---------------------------------------------------------------------------


def _conv_like(conv: nn.Conv2d, in_channels: int, out_channels: int, groups: int) -> nn.Conv2d:
    new = nn.Conv2d(in_channels, out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                    dilation=conv.dilation, groups=groups, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    return new.to(device=conv.weight.device, dtype=conv.weight.dtype)


def _linear_like(linear: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    new = nn.Linear(in_features, out_features, bias=linear.bias is not None)
    return new.to(device=linear.weight.device, dtype=linear.weight.dtype)


def _copy(dst: nn.Module, weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
    with torch.no_grad():
        if weight is not None:
            dst.weight.copy_(weight)
        if bias is not None and dst.bias is not None:
            dst.bias.copy_(bias)


def _resize(model: nn.Module, module: str, kind: str, keep: torch.Tensor | None, channels: int, form: str = "plain") -> None:
    """Replace the group's layers by ones with ``channels`` hidden channels.

    With ``keep`` (sorted kept indices, int64) the weights are sliced from the old layers;
    without it (replaying a saved structure) the new layers are left at their init.  ``form``
    (``upsample`` only): ``plain`` smaller convolutions, or ``scatter`` (:class:`ScatterOutputConv` /
    :class:`GatherInputConv` at the full width: the edits of older files).
    """
    owner = model.get_submodule(module) if module else model
    L = _layers(model, module, kind)
    k = channels
    if kind == "convnext":
        fc1, fc2 = L["fc1"], L["fc2"]
        n1, n2 = _linear_like(fc1, fc1.in_features, k), _linear_like(fc2, k, fc2.out_features)
        if keep is not None:
            _copy(n1, fc1.weight[keep], None if fc1.bias is None else fc1.bias[keep])
            _copy(n2, fc2.weight[:, keep], fc2.bias)
        owner.fc1, owner.fc2 = n1, n2
    elif kind in ("gate", "gdfn"):
        a, dw, b = (L["gate_in"], L["gate_dw"], L["gate_out"]) if kind == "gate" else (L["project_in"], L["dw"], L["project_out"])
        rows = keep
        width = k
        if kind == "gdfn":
            hidden = b.in_channels
            rows = None if keep is None else torch.cat([keep, keep + hidden])
            width = 2 * k
        na = _conv_like(a, a.in_channels, width, 1)
        ndw = _conv_like(dw, width, width, width)
        nb = _conv_like(b, k, b.out_channels, 1)
        if keep is not None:
            _copy(na, a.weight[rows], None if a.bias is None else a.bias[rows])
            _copy(ndw, dw.weight[rows], None if dw.bias is None else dw.bias[rows])
            _copy(nb, b.weight[:, keep], b.bias)
        if kind == "gate":
            owner.gate_in, owner.gate_dw, owner.gate_out = na, ndw, nb
        else:
            owner.project_in, owner.dw, owner.project_out = na, ndw, nb
    elif kind == "ffn_expand":
        e, sq = L["expand"], L["squeeze"]
        g = sq.groups
        per_old, per_new = sq.in_channels // g, k // g
        ne = _conv_like(e, e.in_channels, k, e.groups)
        nsq = _conv_like(sq, k, sq.out_channels, g)
        if keep is not None:
            _copy(ne, e.weight[keep], None if e.bias is None else e.bias[keep])
            local = (keep % per_old).view(g, per_new)  # kept channel of each conv group, in order
            out_per = sq.out_channels // g
            w = sq.weight.view(g, out_per, per_old, *sq.weight.shape[2:])
            w = torch.stack([w[i][:, local[i]] for i in range(g)]).reshape(sq.out_channels, per_new, *sq.weight.shape[2:])
            _copy(nsq, w, sq.bias)
        owner.expand, owner.squeeze = ne, nsq
    elif kind == "ffn_unsqueeze":
        u, p = L["unsqueeze"], L["project"]
        nu = _conv_like(u, u.in_channels, k, u.groups)
        np_ = _conv_like(p, k, p.out_channels, p.groups)
        if keep is not None:
            _copy(nu, u.weight[keep], None if u.bias is None else u.bias[keep])
            _copy(np_, p.weight[:, keep], p.bias)
        owner.unsqueeze, owner.project = nu, np_
    elif kind == "candidates":
        reduce = L["reduce"]
        rows = torch.arange(k) if keep is None else keep
        owner.reduce = _conv_like(reduce, reduce.in_channels, k, 1)
        _copy(owner.reduce, reduce.weight[rows], None if reduce.bias is None else reduce.bias[rows])
    elif kind == "heads":
        _resize_heads(owner, L, torch.arange(k) if keep is None else keep)
    elif kind == "upsample":
        up, fusion = L["up"], L["fusion"]
        c = model.widths["upsampled"]
        area = up.out_channels // c
        idx = torch.zeros(k, dtype=torch.long) if keep is None else keep
        rows = (idx[:, None] * area + torch.arange(area)).reshape(-1)
        cols = torch.cat([idx, torch.arange(c, fusion.in_channels)])
        nup = _conv_like(up, up.in_channels, k * area, up.groups)
        nfu = _conv_like(fusion, k + fusion.in_channels - c, fusion.out_channels, 1)
        if keep is not None:
            _copy(nup, up.weight[rows], None if up.bias is None else up.bias[rows])
            _copy(nfu, fusion.weight[:, cols], fusion.bias)
        if form == "plain":  # the network reads its up-sampled width from ``up``: smaller plain layers
            owner.up, owner.fusion = nup, nfu
        else:  # the form of files written before the network read its widths from its layers
            owner.up = ScatterOutputConv(nup, rows, up.out_channels)
            owner.fusion = GatherInputConv(nfu, cols, fusion.in_channels)
    else:
        raise ValueError(f"unknown channel group kind {kind!r}; choose one of {KINDS}")


def _resize_heads(attention: nn.Module, L: dict[str, nn.Module], keep: torch.Tensor) -> None:
    """Keep the attention channels ``keep`` (whole heads) in ``qkv``, ``qkv_dw``, ``proj``, the
    temperatures and the matching's ``fuse``."""
    qkv, dw, proj = L["qkv"], L["qkv_dw"], L["proj"]
    a = qkv.out_channels // 3
    per_head = a // attention.num_heads
    rows = torch.cat([keep, keep + a, keep + 2 * a])
    k = len(keep)
    attention.qkv = _conv_like(qkv, qkv.in_channels, 3 * k, 1)
    _copy(attention.qkv, qkv.weight[rows], None if qkv.bias is None else qkv.bias[rows])
    attention.qkv_dw = _conv_like(dw, 3 * k, 3 * k, 3 * k)
    _copy(attention.qkv_dw, dw.weight[rows], None if dw.bias is None else dw.bias[rows])
    attention.proj = _conv_like(proj, k, proj.out_channels, 1)
    _copy(attention.proj, proj.weight[:, keep], proj.bias)
    heads = keep[::per_head] // per_head
    attention.temperature = nn.Parameter(attention.temperature.detach()[heads].clone())
    attention.num_heads = int(len(heads))
    if "fuse" in L:
        fuse = L["fuse"]
        attention.match.fuse = _conv_like(fuse, fuse.in_channels, k, 1)
        _copy(attention.match.fuse, fuse.weight[keep], None if fuse.bias is None else fuse.bias[keep])


def replay_channel_pruning(model: nn.Module, kind: str, module: str, channels: int, form: str = "scatter") -> None:
    """Structural edit ``prune_channels``: give group ``kind`` of ``module`` ``channels`` hidden channels (weights loaded later).

    ``form``: how a pruned ``upsample`` group is built (edits without it were written as ``scatter``).
    """
    if form not in ("plain", "scatter"):
        raise ValueError(f"channel pruning edit form must be 'plain' or 'scatter', got {form!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown channel group kind {kind!r}; choose one of {KINDS}")
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channel pruning edit needs a positive channel count, got {channels!r}")
    try:
        layers = _layers(model, module, kind)
    except AttributeError:
        raise ValueError(f"channel pruning edit names {module!r}:{kind}, which the network does not have") from None
    if not all(_is_plain(layer) for layer in layers.values()):
        raise ValueError(f"channel pruning edit {module!r}:{kind}: its layers were already replaced")
    _resize(model, module, kind, None, channels, form)


def _group_size(model: nn.Module, module: str, kind: str) -> tuple[int, int]:
    """``(channels, subgroups)`` of a group, without computing its norms."""
    if kind in TRUNK_KINDS:
        return model.widths[kind[len("trunk_"):]], 1
    L = _layers(model, module, kind)
    if kind == "ffn_expand":
        return L["expand"].out_channels, L["squeeze"].groups
    if kind == "ffn_unsqueeze":
        return L["unsqueeze"].out_channels, L["unsqueeze"].groups
    first = {"convnext": "fc1", "gate": "gate_in", "gdfn": "project_out", "upsample": "fusion", "candidates": "reduce", "heads": "proj"}[kind]
    layer = L[first]
    if kind == "gdfn" or kind == "heads":
        return layer.in_channels, 1
    if kind == "upsample":
        return model.widths["upsampled"], 1
    return getattr(layer, "out_features", None) or layer.out_channels, 1


def prune_channels(model: nn.Module, keep: dict[tuple[str, str], Any], *, copy_model: bool = True) -> nn.Module:
    """A copy of a UHDformer with the given channels kept (``model`` is not modified).

    Parameters
    ----------
    model : UHDformer
    keep : dict
        ``{(module, kind): kept channel indices}`` for the groups to prune (see
        :func:`channel_groups`); a group whose every channel is kept is left as it is.
        Groups that must stay even over conv groups need the same count in each, heads and
        encoder pairs whole units.  Trunk spaces are shrunk first.
    copy_model : bool
        ``False``: edit ``model`` itself.

    Returns
    -------
    UHDformer
        Edits appended to its edit log.
    """
    sites = dict.fromkeys(_group_sites(model))
    for module, kind in keep:
        if (module, kind) not in sites:
            raise ValueError(f"no prunable channel group {module!r}:{kind} in this network")
    new = copy.deepcopy(model) if copy_model else model
    ordered = sorted(keep.items(), key=lambda item: item[0][1] not in TRUNK_KINDS)
    for (module, kind), indices in ordered:
        channels, subgroups = _group_size(new, module, kind)
        idx = torch.as_tensor(np.unique(np.asarray(indices, dtype=np.int64)), dtype=torch.long)
        if len(idx) == 0 or idx[0] < 0 or idx[-1] >= channels:
            raise ValueError(f"group {module!r}:{kind}: kept channels must be a non-empty subset of 0..{channels - 1}")
        if len(idx) == channels:
            continue
        if kind in TRUNK_KINDS:
            shrink_trunk(new, kind[len("trunk_"):], idx)
            continue
        unit = _unit(new, module, kind)
        if unit > 1 and not (len(idx) % unit == 0 and torch.equal(idx.view(-1, unit), (idx[::unit] // unit * unit)[:, None] + torch.arange(unit))):
            raise ValueError(f"group {module!r}:{kind}: keep whole units of {unit} channels (heads)")
        per = channels // subgroups
        if subgroups > 1 and not torch.equal(torch.bincount(idx // per, minlength=subgroups), torch.full((subgroups,), len(idx) // subgroups)):
            raise ValueError(f"group {module!r}:{kind}: keep the same number of channels in each of its {subgroups} conv groups")
        _resize(new, module, kind, idx, len(idx))
        args = {"kind": kind, "module": module, "channels": int(len(idx))}
        record_edit(new, EDIT_KIND, {**args, "form": "plain"} if kind == "upsample" else args)
    return new


def magnitude_prune_uhdformer(model: nn.Module, budget_params: int, *, kinds: tuple[str, ...] = ALL_KINDS) -> tuple[nn.Module, dict[str, Any]]:
    """Prune a UHDformer's channel groups by global L2 magnitude to at most ``budget_params``.

    Units (:func:`removal_units`) are removed in increasing order of importance across all
    groups until the network has at most ``budget_params`` parameters: the smallest such prefix,
    found by bisection over the prefix length with the parameters of each candidate counted on the
    pruned network itself (built on the ``meta`` device; the trunk spaces' costs are not constant
    per channel).

    Parameters
    ----------
    model : UHDformer
        Not modified.
    budget_params : int
        Parameter cap of the result.
    kinds : tuple of str
        Group kinds to prune (default :data:`ALL_KINDS`; :data:`MASKABLE_KINDS` gives a network that
        equals the original with the removed channels masked).

    Returns
    -------
    network : UHDformer
        In the mode of ``model``; ``network.channel_pruning`` holds the info below.
    info : dict
        ``{"params", "threshold", "min_params", "groups": {name: [kept, of]}}``.

    Raises
    ------
    ValueError
        If the budget is below what one unit per group leaves (:func:`min_params`).
    """
    groups = channel_groups(model, kinds)
    units = removal_units(groups)
    total = int(sum(p.numel() for p in model.parameters()))
    budget = int(budget_params)
    floor = _params_after(model, groups, units, len(units))
    if floor > budget:
        raise ValueError(
            f"structured magnitude pruning cannot reach {budget} parameters: pruning UHDformer's "
            f"channel groups ({', '.join(sorted({g.kind for g in groups}))}) to one per group leaves {floor} of {total} "
            f"({floor / total:.1%})"
        )
    low, high = 0, len(units)  # params(high) <= budget; find the smallest such prefix
    if total <= budget:
        high = 0
    while low < high:
        middle = (low + high) // 2
        if _params_after(model, groups, units, middle) <= budget:
            high = middle
        else:
            low = middle + 1
    keep = _kept_after(groups, units, high)
    new = prune_channels(model, {(g.module, g.kind): k for g, k in zip(groups, keep)})
    info = {
        "params": int(sum(p.numel() for p in new.parameters())),
        "threshold": float(units[high - 1][0]) if high else float("-inf"),
        "min_params": floor,
        "groups": {g.name: [int(len(k)), g.channels] for g, k in zip(groups, keep)},
    }
    new.channel_pruning = info
    return new, info
