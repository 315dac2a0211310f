"""Shrinking UHDformer's trunk widths: the residual channel spaces that many layers share.

The "trunk width ``C``" of UHDformer is, structurally, three separate residual spaces (nothing
adds or concatenates channels of one to channels of another; ``down`` and the fusion are the only
layers between them, and each reads one space and writes the next):

* ``encoder`` -- the full-resolution encoder: ``stem`` (output), the ``shallow`` / ``middle`` /
  ``deep`` ConvNeXt-lite blocks (residual; ``conv`` in and out, ``fc1`` in, ``fc2`` out, ``gamma``),
  the ACM (its ``3C``-channel input ``[f1, f2, f3]`` and output, the *perception path*), every
  block's ``norm_acm`` and every DualCMT's ``reduce`` (input), ``down`` (input) and the fusion's
  deep half (input).  The ACM's depthwise ``spread`` reads mixed channel ``o // 2`` for output
  ``o``; keeping encoder channels in *pairs* ``(2i, 2i + 1)`` keeps that layout, so the pruned
  ACM is an ordinary smaller one.  Encoder widths are therefore even.
* ``lowres`` -- the low-resolution trunk: ``down`` (output), every CMT block's ``norm1`` /
  ``norm2`` (LayerNorms), the attention's ``qkv`` (input) and ``proj`` (output), the feed-forward
  network's first (input) and last (output) layer, and ``up`` (input).  The attention's inner
  width (``qkv``'s outputs) stays: it is the ``heads`` group of
  :mod:`~sparsesel.compress.channel_pruning`.
* ``tail`` -- the fusion's output, the two tail blocks (as the encoder's blocks) and the head's
  input.

:func:`shrink_trunk` slices every layer of a space to the kept channels (the network stays an
ordinary :class:`~sparsesel.nets.uhdformer.UHDformer` whose layers are smaller) and records
``{"kind": "shrink_trunk", "args": {"space", "channels"}}`` in the network's edit log
(:mod:`sparsesel.nets.edits`), replayed on load.  A pruned ``tail`` computes exactly what the original does
with those channels' producing weights zeroed (no normalisation reads the tail); ``encoder`` and
``lowres`` channels are read by LayerNorms (the perception path's, the CMT blocks'), whose mean
and variance then run over the kept channels: there the pruned network is its own function.

Importance (:func:`trunk_norms`): for each channel, the squared L2 norm of every weight that
touches it, per layer (output rows of producers, input columns of consumers, the LayerNorm and
layer-scale entries), averaged over the layers -- Torch-Pruning's ``MagnitudeImportance(p=2)``
group importance, as :mod:`~sparsesel.compress.channel_pruning` scores block-internal groups.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from sparsesel.nets.edits import record_edit
from sparsesel.nets.layers import ChannelLayerNorm

__all__ = ["EDIT_KIND", "TRUNK_SPACES", "replay_trunk", "shrink_trunk", "trunk_is_plain", "trunk_layers", "trunk_norms", "trunk_unit"]

EDIT_KIND = "shrink_trunk"
TRUNK_SPACES = ("encoder", "lowres", "tail")


# ---------------------------------------------------------------------------
# which layers touch a space, and how
# ---------------------------------------------------------------------------


def _uhdformer(model: nn.Module):
    from sparsesel.nets.uhdformer import UHDformer

    if not isinstance(model, UHDformer):
        raise TypeError(f"trunk widths: UHDformer only, got {type(model).__name__}")
    return model


def _blocks(model: nn.Module):
    return [unit for group in model.groups for unit in group.units]


def trunk_unit(space: str) -> int:
    """Channels removed together in ``space`` (2 for the encoder: the ACM's channel pairs)."""
    _check_space(space)
    return 2 if space == "encoder" else 1


def _check_space(space: str) -> None:
    if space not in TRUNK_SPACES:
        raise ValueError(f"unknown trunk space {space!r}; choose one of {TRUNK_SPACES}")


def trunk_layers(model: nn.Module, space: str) -> list[tuple[str, str]]:
    """``(module name, role)`` of every layer touching ``space``.

    Roles: ``out`` (output rows), ``in`` (input columns), ``inout`` (both), ``norm`` (LayerNorm or
    layer-scale entries), ``perception_in`` (input columns of the ``3C``-channel perception map),
    ``perception_norm``, ``acm``, ``fusion_deep`` (the fusion's deep-half columns).
    """
    model = _uhdformer(model)
    _check_space(space)
    blocks = _blocks(model)
    layers: list[tuple[str, str]] = []
    if space in ("encoder", "tail"):
        names = ("shallow", "middle", "deep") if space == "encoder" else tuple(f"tail.{i}" for i in range(len(model.tail)))
        layers.append(("stem", "out") if space == "encoder" else ("fusion", "out"))
        for name in names:
            layers += [(f"{name}.conv", "inout"), (f"{name}.fc1", "in"), (f"{name}.fc2", "out"), (f"{name}.gamma", "norm")]
        if space == "tail":
            return layers + [("head", "in")]
        layers += [("acm", "acm"), ("down", "in"), ("fusion", "fusion_deep")]
        for i, unit in enumerate(blocks):
            block = _block_name(model, i)
            if unit.matchers():
                layers.append((f"{block}.norm_acm", "perception_norm"))
            for j, matcher in enumerate(unit.matchers()):
                owner = "attn" if matcher is unit.attn.match else "ffn"
                layers.append((f"{block}.{owner}.match.reduce", "perception_in"))
        return layers
    layers.append(("down", "out"))
    from sparsesel.nets.uhdformer import GatedFeedForward

    for i, unit in enumerate(blocks):
        block = _block_name(model, i)
        first, last = ("project_in", "project_out") if isinstance(unit.ffn, GatedFeedForward) else ("expand", "project")
        layers += [(f"{block}.norm1", "norm"), (f"{block}.attn.qkv", "in"), (f"{block}.attn.proj", "out"),
                   (f"{block}.norm2", "norm"), (f"{block}.ffn.{first}", "in"), (f"{block}.ffn.{last}", "out")]
    return layers + [("up", "in")]


def _block_name(model: nn.Module, index: int) -> str:
    per = len(model.groups[0].units)
    return f"groups.{index // per}.units.{index % per}"


def _get(model: nn.Module, name: str):
    owner, _, attr = name.rpartition(".")
    return getattr(model.get_submodule(owner) if owner else model, attr)


def trunk_is_plain(model: nn.Module, space: str) -> bool:
    """Whether every layer touching ``space`` is still a plain ``nn.Conv2d`` / ``nn.Linear`` (it can be shrunk)."""
    try:
        _check_plain(model, space)
    except ValueError:
        return False
    return True


def _check_plain(model: nn.Module, space: str) -> None:
    for name, role in trunk_layers(model, space):
        if role in ("norm", "perception_norm"):
            continue
        layers = [(name, _get(model, name))] if role != "acm" else [(f"{name}.mix", model.acm.mix), (f"{name}.spread", model.acm.spread)]
        for name, layer in layers:
            if type(layer) in (nn.Conv2d, nn.Linear):
                continue
            raise ValueError(f"trunk space {space!r}: layer {name!r} is a {type(layer).__name__}; shrink the trunk "
                             "before factorizing or channel-pruning its layers")


# ---------------------------------------------------------------------------
# importance
# ---------------------------------------------------------------------------


def _sq_rows(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().flatten(1).pow(2).sum(1).cpu().numpy()


def _perception_rows(c: int) -> Callable[[np.ndarray], np.ndarray]:
    """Sum a ``(3C,)`` per-perception-channel score into the ``C`` encoder channels."""
    return lambda v: v.reshape(3, c).sum(0)


def trunk_norms(model: nn.Module, space: str) -> list[np.ndarray]:
    """Per-layer squared L2 norms of every channel of ``space`` (one ``(C,)`` array per layer)."""
    _check_plain(model, space)
    c = model.widths[space]
    per_channel = _perception_rows(c)
    norms = []
    for name, role in trunk_layers(model, space):
        layer = _get(model, name)
        if role == "out":
            norms.append(_sq_rows(layer.weight))
        elif role == "in":
            norms.append(_sq_rows(layer.weight.transpose(0, 1)))
        elif role == "inout":
            norms.append(_sq_rows(layer.weight) + _sq_rows(layer.weight.transpose(0, 1)))
        elif role == "norm":
            weight = layer if isinstance(layer, torch.Tensor) else layer.weight
            norms.append(weight.detach().double().pow(2).cpu().numpy())
        elif role == "perception_norm":
            norms.append(per_channel(layer.weight.detach().double().pow(2).cpu().numpy()))
        elif role == "perception_in":
            norms.append(per_channel(_sq_rows(layer.weight.transpose(0, 1))))
        elif role == "acm":
            mix = _sq_rows(layer.mix.weight.transpose(0, 1))  # (3C,) input columns
            spread = _sq_rows(layer.spread.weight)  # (6C,): g_j and h_j of cat channel j
            norms.append(per_channel(mix + spread[: 3 * c] + spread[3 * c:]))
        elif role == "fusion_deep":
            u = model.widths["upsampled"]
            norms.append(_sq_rows(layer.weight[:, u:].transpose(0, 1)))
    return norms


# ---------------------------------------------------------------------------
# slicing
# ---------------------------------------------------------------------------


def _conv(conv: nn.Conv2d, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Conv2d:
    """``conv`` restricted to output ``rows`` and input ``cols`` (an ungrouped convolution)."""
    weight = conv.weight.detach()
    if rows is not None:
        weight = weight[rows]
    if cols is not None:
        weight = weight[:, cols]
    new = nn.Conv2d(weight.shape[1], weight.shape[0], conv.kernel_size, stride=conv.stride, padding=conv.padding, dilation=conv.dilation,
                    bias=conv.bias is not None, padding_mode=conv.padding_mode)
    new = new.to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach() if rows is None else conv.bias.detach()[rows])
    return new


def _linear(linear: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    weight = linear.weight.detach()
    weight = weight if rows is None else weight[rows]
    weight = weight if cols is None else weight[:, cols]
    new = nn.Linear(weight.shape[1], weight.shape[0], bias=linear.bias is not None).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        new.weight.copy_(weight)
        if linear.bias is not None:
            new.bias.copy_(linear.bias.detach() if rows is None else linear.bias.detach()[rows])
    return new


def _layer(layer: nn.Module, rows, cols) -> nn.Module:
    return _linear(layer, rows, cols) if isinstance(layer, nn.Linear) else _conv(layer, rows, cols)


def _norm(norm: ChannelLayerNorm, keep: torch.Tensor) -> ChannelLayerNorm:
    new = ChannelLayerNorm(len(keep), norm.layernorm_type, norm.eps).to(device=norm.weight.device, dtype=norm.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(norm.weight.detach()[keep])
        if norm.bias is not None:
            new.bias.copy_(norm.bias.detach()[keep])
    return new


def _set(model: nn.Module, name: str, value) -> None:
    owner, _, attr = name.rpartition(".")
    target = model.get_submodule(owner) if owner else model
    if isinstance(value, torch.Tensor) and not isinstance(value, nn.Parameter):
        value = nn.Parameter(value.detach().clone())
    setattr(target, attr, value)


def _acm(acm: nn.Module, keep: torch.Tensor, c: int) -> nn.Module:
    """The ACM on the kept encoder channels (pairs): mix rows of the kept channel pairs' g and h,
    columns of the kept perception channels; spread rows of their g and h."""
    from sparsesel.nets.uhdformer import AdaptiveContextFusion

    perception = torch.cat([keep, keep + c, keep + 2 * c])  # kept cat channels j
    pairs = perception[::2] // 2  # mixed channel j // 2 of every kept pair
    mix_rows = torch.cat([pairs, pairs + 3 * c // 2])
    new = AdaptiveContextFusion(len(keep)).to(device=acm.mix.weight.device, dtype=acm.mix.weight.dtype)
    new.mix = _conv(acm.mix, mix_rows, perception)
    spread = acm.spread  # (6C, 1, 3, 3), groups 3C: output o reads mixed channel o // 2
    rows = torch.cat([perception, perception + 3 * c])
    new.spread = nn.Conv2d(3 * len(keep), 6 * len(keep), spread.kernel_size, padding=spread.padding, groups=3 * len(keep),
                           bias=spread.bias is not None).to(device=spread.weight.device, dtype=spread.weight.dtype)
    with torch.no_grad():
        new.spread.weight.copy_(spread.weight.detach()[rows])
        if spread.bias is not None:
            new.spread.bias.copy_(spread.bias.detach()[rows])
    return new


def _shrink(model: nn.Module, space: str, keep: torch.Tensor) -> None:
    c = model.widths[space]
    perception = torch.cat([keep, keep + c, keep + 2 * c])
    for name, role in trunk_layers(model, space):
        layer = _get(model, name)
        if role == "out":
            _set(model, name, _layer(layer, keep, None))
        elif role == "in":
            _set(model, name, _layer(layer, None, keep))
        elif role == "inout":
            _set(model, name, _layer(layer, keep, keep))
        elif role == "norm":
            _set(model, name, layer.detach()[keep] if isinstance(layer, torch.Tensor) else _norm(layer, keep))
        elif role == "perception_norm":
            _set(model, name, _norm(layer, perception))
        elif role == "perception_in":
            _set(model, name, _layer(layer, None, perception))
        elif role == "acm":
            _set(model, name, _acm(layer, keep, c))
        elif role == "fusion_deep":
            u = model.widths["upsampled"]
            _set(model, name, _layer(layer, None, torch.cat([torch.arange(u), keep + u])))


def _kept_index(model: nn.Module, space: str, keep) -> torch.Tensor:
    c = model.widths[space]
    idx = torch.as_tensor(np.unique(np.asarray(keep, dtype=np.int64)), dtype=torch.long)
    if len(idx) == 0 or idx[0] < 0 or idx[-1] >= c:
        raise ValueError(f"trunk space {space!r}: kept channels must be a non-empty subset of 0..{c - 1}")
    unit = trunk_unit(space)
    whole = len(idx) % unit == 0 and bool((idx[::unit] % unit == 0).all()) and torch.equal(
        idx.view(-1, unit), idx[::unit, None] + torch.arange(unit)) if unit > 1 else True
    if not whole:
        raise ValueError(f"trunk space {space!r}: keep whole channel pairs (2i, 2i + 1): the ACM's depthwise spread reads them together")
    return idx


def shrink_trunk(model: nn.Module, space: str, keep) -> nn.Module:
    """Keep only the channels ``keep`` of trunk ``space`` in every layer touching it (in place).

    Parameters
    ----------
    model : UHDformer
        Its layers in ``space`` must still be plain ``nn.Conv2d`` / ``nn.Linear`` (shrink the
        trunk before factorizing or channel-pruning them).
    space : {"encoder", "lowres", "tail"}
    keep : sequence of int
        Kept channel indices; for the encoder whole pairs ``(2i, 2i + 1)``.

    Returns
    -------
    UHDformer
        ``model``, with the edit appended to ``model.structure`` (nothing is recorded when every
        channel is kept).
    """
    model = _uhdformer(model)
    _check_space(space)
    _check_plain(model, space)
    idx = _kept_index(model, space, keep)
    if len(idx) == model.widths[space]:
        return model
    _shrink(model, space, idx)
    record_edit(model, EDIT_KIND, {"space": space, "channels": int(len(idx))})
    return model


def replay_trunk(model: nn.Module, space: str, channels: int) -> None:
    """Structural edit ``shrink_trunk``: give trunk ``space`` ``channels`` channels (weights loaded afterwards;
    works on the ``meta`` device)."""
    _check_space(space)
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
        raise ValueError(f"trunk edit needs a positive channel count, got {channels!r}")
    if channels > model.widths[space] or channels % trunk_unit(space):
        raise ValueError(f"trunk edit: {channels} channels for space {space!r} of width {model.widths[space]} "
                         f"(a multiple of {trunk_unit(space)}, at most the width)")
    _check_plain(model, space)
    _shrink(model, space, torch.arange(channels))
