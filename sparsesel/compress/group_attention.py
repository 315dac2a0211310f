"""Per-channel multipliers on UHDformer's channel groups: SA++ attention and fixed 0/1 masks.

A :class:`ChannelScale` multiplies every channel of one
:class:`~sparsesel.compress.channel_pruning.ChannelGroup` by ``mask · A`` where, with attention,
``A = n · softmax(logits / temperature)`` over the group's ``n`` removable units (one logit per
unit: a channel, a head, an encoder channel pair; so the unit attentions sum to ``n`` and average 1),
and without attention ``A = 1``.  The multiplier sits where the group's channels are produced
(:func:`attention_sites`):

* block-internal hidden widths (``convnext``, ``gate``, ``ffn_expand``, ``ffn_unsqueeze``,
  ``gdfn``) and ``heads``: the *input* channels of the layer that reads them (``fc2``,
  ``gate_out``, ``squeeze``, ``project``, ``project_out``, the attention's ``proj``), a forward
  pre-hook;
* ``upsample``: the output rows of ``up`` that pixel-shuffle into each up-sampled channel;
* ``candidates``: the output of the DualCMT's ``reduce``;
* trunk spaces: the output of every layer that writes into the residual space (role ``out`` of
  :func:`~sparsesel.compress.trunk_widths.trunk_layers`), so each stream channel is scaled as a whole.

For the :data:`~sparsesel.compress.channel_pruning.MASKABLE_KINDS` a zero mask computes what the
network with those channels removed computes (to float rounding; tested); elsewhere a zero channel
is close to a removed one but not equal (on the demo network at 64², half of each group masked vs
removed: largest output difference 0.005 for ``heads`` and ``candidates``, 0.002 for the tail trunk,
0.01-0.07 for the LayerNorm-read low-resolution and encoder trunks).  UHDformer runs every layer that carries hooks on the data (it folds only hook-free
layers), so the multipliers see every call.  :func:`remove_channel_scales` folds ``A`` (not the
mask) into the weights and removes the hooks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sparsesel.compress.channel_pruning import TRUNK_KINDS, ChannelGroup
from sparsesel.compress.trunk_widths import trunk_layers

__all__ = ["AttentionSite", "ChannelScale", "attention_sites", "install_channel_scales", "remove_channel_scales"]

#: The layer that reads each block-internal group's channels (their multiplier scales its input).
_READER = {"convnext": "fc2", "gate": "gate_out", "ffn_expand": "squeeze", "ffn_unsqueeze": "project",
           "gdfn": "project_out", "heads": "proj"}


@dataclass(frozen=True)
class AttentionSite:
    """Where a group's multiplier acts.

    Attributes
    ----------
    layer : str
        Qualified name of an ``nn.Conv2d`` or ``nn.Linear``.
    side : {"in", "out"}
        ``"in"``: the layer's input channels are scaled (forward pre-hook); ``"out"``: its output channels.
    repeat : int
        Adjacent layer channels per group channel (``up``: the pixel-shuffle's ``s²`` rows).
    """

    layer: str
    side: str
    repeat: int = 1


def _join(module: str, name: str) -> str:
    return f"{module}.{name}" if module else name


def attention_sites(model: nn.Module, group: ChannelGroup) -> list[AttentionSite]:
    """The layers whose input or output channels carry ``group``'s channels (see the module docstring)."""
    if group.kind in _READER:
        return [AttentionSite(_join(group.module, _READER[group.kind]), "in")]
    if group.kind == "candidates":
        return [AttentionSite(_join(group.module, "reduce"), "out")]
    if group.kind == "upsample":
        return [AttentionSite("up", "out", model.up.out_channels // group.channels)]
    if group.kind in TRUNK_KINDS:
        space = group.kind[len("trunk_"):]
        return [AttentionSite(name, "out") for name, role in trunk_layers(model, space) if role == "out"]
    raise ValueError(f"no attention site for channel group kind {group.kind!r}")


class ChannelScale(nn.Module):
    """The multiplier ``mask · A`` of one channel group (see the module docstring).

    Parameters
    ----------
    group : ChannelGroup
    attention : bool
        Learn ``A = n·softmax(logits / temperature)`` (logits start at 0: ``A = 1``); else ``A = 1``.
    temperature : float
        Softmax temperature (> 0).
    """

    def __init__(self, group: ChannelGroup, *, attention: bool = True, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.group = group
        self.unit = int(group.unit)
        self.units = group.channels // self.unit
        self.temperature = float(temperature)
        self.logits = nn.Parameter(torch.zeros(self.units)) if attention else None
        self.register_buffer("mask", torch.ones(self.units))
        self.handles: list = []

    def attention(self) -> torch.Tensor:
        """``A`` per unit, shape ``(n,)``; sums to ``n`` (all ones without attention)."""
        if self.logits is None:
            return torch.ones(self.units, device=self.mask.device)
        return self.units * torch.softmax(self.logits / self.temperature, dim=0)

    def channel_values(self, *, masked: bool = True) -> torch.Tensor:
        """``mask · A`` per channel, shape ``(channels,)`` (``masked=False``: ``A`` alone)."""
        values = self.attention() * self.mask if masked else self.attention()
        return values.repeat_interleave(self.unit)

    @torch.no_grad()
    def set_mask(self, kept_channels: torch.Tensor | Sequence[int] | None) -> None:
        """Keep ``kept_channels`` (whole units; ``None``: every channel)."""
        self.mask.fill_(1.0 if kept_channels is None else 0.0)
        if kept_channels is not None:
            kept = torch.as_tensor(kept_channels, dtype=torch.long)
            self.mask[torch.unique(kept // self.unit)] = 1.0


def _channel_dim(layer: nn.Module) -> int:
    return -1 if isinstance(layer, nn.Linear) else 1


def _broadcast(values: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * like.dim()
    shape[dim] = values.numel()
    return values.to(like.dtype).view(shape)


def _pre_hook(scale: ChannelScale, dim: int):
    def hook(module, args):
        x = args[0]
        return (x * _broadcast(scale.channel_values(), x, dim),) + tuple(args[1:])
    return hook


def _post_hook(scale: ChannelScale, dim: int, repeat: int):
    def hook(module, args, out):
        return out * _broadcast(scale.channel_values().repeat_interleave(repeat), out, dim)
    return hook


def install_channel_scales(model: nn.Module, groups: Sequence[ChannelGroup], *, attention: bool = True,
                           temperature: float = 1.0) -> dict[tuple[str, str], ChannelScale]:
    """Put a :class:`ChannelScale` on each of ``groups`` of ``model`` (hooks on the layers, in place).

    Returns
    -------
    dict
        ``{(module, kind): ChannelScale}``; the logits are the scales' only parameters (not
        registered in ``model``).
    """
    scales = {}
    for group in groups:
        scale = ChannelScale(group, attention=attention, temperature=temperature)
        for site in attention_sites(model, group):
            layer = model.get_submodule(site.layer)
            if type(layer) not in (nn.Conv2d, nn.Linear):
                raise ValueError(f"channel group {group.name}: layer {site.layer!r} is a {type(layer).__name__}, "
                                 "not a plain Conv2d/Linear; select channels before factorizing")
            dim = _channel_dim(layer)
            if site.side == "in":
                scale.handles.append(layer.register_forward_pre_hook(_pre_hook(scale, dim)))
            else:
                scale.handles.append(layer.register_forward_hook(_post_hook(scale, dim, site.repeat)))
        scales[(group.module, group.kind)] = scale
    return scales


@torch.no_grad()
def _fold(layer: nn.Module, values: torch.Tensor, side: str, repeat: int) -> None:
    """Multiply ``layer``'s weights by the per-channel ``values`` on ``side`` (grouped convs respected)."""
    weight = layer.weight
    values = values.to(weight.dtype)
    if side == "out":
        rows = values.repeat_interleave(repeat)
        weight.mul_(rows.view(-1, *([1] * (weight.dim() - 1))))
        if layer.bias is not None:
            layer.bias.mul_(rows)
        return
    if isinstance(layer, nn.Linear):
        weight.mul_(values.view(1, -1))
        return
    groups = layer.groups
    per_in, per_out = layer.in_channels // groups, layer.out_channels // groups
    columns = values.view(groups, 1, per_in).expand(groups, per_out, per_in).reshape(layer.out_channels, per_in)
    weight.mul_(columns.view(layer.out_channels, per_in, *([1] * (weight.dim() - 2))))


@torch.no_grad()
def remove_channel_scales(model: nn.Module, scales: dict[tuple[str, str], ChannelScale], *, fold: bool = True) -> None:
    """Remove the scales' hooks from ``model``; with ``fold``, first multiply ``A`` (not the mask)
    into the weights of their sites, so the network computes what it did with every mask at 1."""
    for scale in scales.values():
        for handle in scale.handles:
            handle.remove()
        scale.handles.clear()
        if fold and scale.logits is not None:
            values = scale.channel_values(masked=False).detach()
            for site in attention_sites(model, scale.group):
                _fold(model.get_submodule(site.layer), values, site.side, site.repeat)
