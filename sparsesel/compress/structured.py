"""Structured (channel) options of a network as units of the layer-allocation knapsack.

A *structured unit* is one channel group of :mod:`sparsesel.compress.channel_pruning` -- a trunk
space (:mod:`sparsesel.compress.trunk_widths`), a block's hidden width, a DualCMT's matching
candidates, an attention's heads -- with a small menu of kept channel counts.  The knapsack
(:mod:`sparsesel.compress.latency_plan`) decides *how many* channels each unit keeps; a
*selector* decides *which*:

``selector(model, group) -> order``: every channel index of ``group``
(:class:`~sparsesel.compress.channel_pruning.ChannelGroup`), most important first.  The default,
:func:`magnitude_selector`, orders by the group's L2 importance (Torch-Pruning's
``MagnitudeImportance``, as the magnitude baseline scores channels); the others (``sa++``, ``taylor``,
``random``) are in :mod:`sparsesel.compress.selectors`.  :func:`kept_channels` turns an order and a count into kept indices that respect
the group's units (heads, encoder pairs) and conv groups (kept evenly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from sparsesel.compress.channel_pruning import ALL_KINDS, ChannelGroup, channel_groups, prune_channels
from sparsesel.compress.network_io import network_output

__all__ = ["Selector", "StructuredUnit", "kept_channels", "magnitude_selector", "shrink", "structured_errors", "structured_units"]

Selector = Callable[[nn.Module, ChannelGroup], np.ndarray]

#: Kept fractions of the menus: block-internal groups and trunk spaces.
GROUP_FRACTIONS = (0.25, 0.5, 0.75)
TRUNK_FRACTIONS = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875)


def magnitude_selector(model: nn.Module, group: ChannelGroup) -> np.ndarray:
    """Channels of ``group`` by decreasing L2 importance (``group.importance``; stable)."""
    return np.argsort(-np.asarray(group.importance), kind="stable")


@dataclass
class StructuredUnit:
    """One channel group with its menu.

    Attributes
    ----------
    group : ChannelGroup
    options : list of int
        Kept channel counts; ``options[0]`` is the full width (error 0).
    """

    group: ChannelGroup
    options: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def key(self) -> tuple[str, str]:
        return self.group.module, self.group.kind

    @property
    def family(self) -> str:
        """Units timed together: the same kind at the same shape (see :mod:`~sparsesel.compress.latency`)."""
        if self.group.kind == "convnext":  # the encoder's and the tail's blocks see different widths
            return f"convnext:{'tail' if self.group.module.startswith('tail') else 'encoder'}"
        return self.group.kind


def _menu(group: ChannelGroup, fractions: Sequence[float]) -> list[int]:
    """Kept counts at ``fractions`` of the removable units, in whole units / even conv groups."""
    step = group.unit * group.subgroups
    units = group.channels // step
    counts = {max(1, int(round(f * units))) * step for f in fractions}
    return [group.channels] + sorted((c for c in counts if c < group.channels), reverse=True)


def structured_units(model: nn.Module, kinds: Sequence[str] = ALL_KINDS) -> list[StructuredUnit]:
    """Every channel group of ``kinds`` with its menu (trunk spaces at eighths, others at quarters)."""
    units = []
    for group in channel_groups(model, tuple(kinds)):
        fractions = TRUNK_FRACTIONS if group.kind.startswith("trunk_") else GROUP_FRACTIONS
        menu = _menu(group, fractions)
        if len(menu) > 1:
            units.append(StructuredUnit(group, menu))
    return units


def kept_channels(group: ChannelGroup, order: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` channels to keep given ``order`` (most important first), sorted.

    Units of ``group.unit`` adjacent channels are ranked by their best channel's position; with
    conv groups, each keeps its ``count / subgroups`` best channels.
    """
    order = np.asarray(order, dtype=np.int64)
    if sorted(order.tolist()) != list(range(group.channels)):
        raise ValueError(f"selector order for {group.name} must be a permutation of 0..{group.channels - 1}")
    step = group.unit * group.subgroups
    if count < step or count > group.channels or count % step:
        raise ValueError(f"{group.name}: cannot keep {count} of {group.channels} channels (a positive multiple of {step})")
    rank = np.empty(group.channels, dtype=np.int64)
    rank[order] = np.arange(group.channels)
    if group.unit > 1:
        unit_rank = rank.reshape(-1, group.unit).min(axis=1)
        units = np.sort(np.argsort(unit_rank, kind="stable")[: count // group.unit])
        return (units[:, None] * group.unit + np.arange(group.unit)).reshape(-1)
    per = group.channels // group.subgroups
    kept = [np.sort(np.argsort(rank[s * per:(s + 1) * per], kind="stable")[: count // group.subgroups]) + s * per
            for s in range(group.subgroups)]
    return np.concatenate(kept)


def shrink(model: nn.Module, counts: dict[tuple[str, str], int], *, selector: Selector = magnitude_selector,
           groups: Sequence[ChannelGroup] | None = None) -> nn.Module:
    """A copy of ``model`` keeping ``counts[(module, kind)]`` channels of each named group, chosen by ``selector``.

    ``groups``: the groups of ``model`` (default: :func:`~sparsesel.compress.channel_pruning.channel_groups`).
    """
    groups = {(g.module, g.kind): g for g in (channel_groups(model) if groups is None else groups)}
    keep = {}
    for key, count in counts.items():
        if key not in groups:
            raise ValueError(f"no channel group {key[0]!r}:{key[1]} in this network")
        group = groups[key]
        if int(count) != group.channels:
            keep[key] = kept_channels(group, selector(model, group), int(count))
    return prune_channels(model, keep)


def structured_errors(model: nn.Module, units: Sequence[StructuredUnit], calibration: torch.Tensor, *,
                      selector: Selector = magnitude_selector) -> list[np.ndarray]:
    """Per unit, the mean squared change of the network's output on ``calibration`` at each option
    (that unit alone shrunk, the rest of the network as it is); 0 for the full width."""
    model.eval()
    with torch.no_grad():
        reference = network_output(model, calibration)
        errors = []
        for unit in units:
            values = [0.0]
            for count in unit.options[1:]:
                small = shrink(model, {unit.key: count}, selector=selector, groups=[unit.group]).eval()
                values.append(float(((network_output(small, calibration) - reference) ** 2).mean()))
            errors.append(np.maximum.accumulate(np.asarray(values)))  # fewer channels never counted as better
    return errors


def importance_errors(units: Sequence[StructuredUnit], selector_orders: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Without calibration data: per unit and option, the fraction of the group's importance removed."""
    errors = []
    for i, unit in enumerate(units):
        importance = np.asarray(unit.group.importance, dtype=np.float64)
        order = magnitude_selector(None, unit.group) if selector_orders is None else selector_orders[i]
        total = float(importance.sum()) or 1.0
        errors.append(np.array([float(importance.sum() - importance[kept_channels(unit.group, order, c)].sum()) / total
                                for c in unit.options]))
    return errors
