"""Baselines at equal *measured* latency: one-number channel rules matched to a target time by bisection.

Under a latency budget the layers' factorizations hardly save time (the demo network's convolutions
are memory-bound, :mod:`sparsesel.compress.latency_plan`); what saves time is removing channels.
So the baselines of a latency plan shrink the same channel groups as the plan
(:func:`sparsesel.compress.structured.structured_units`: trunk widths with the encoder, block-internal
widths, matching candidates, heads), each group's count set by one number and a rule:

* ``uniform``: the same kept fraction ``f`` of every group;
* ``energy``: in every group, the fewest channels (best first) that keep a fraction ``f`` of the
  group's importance (Torch-Pruning's squared-L2 group importance);
* ``magnitude``: one global threshold on the mean-normalised importance of every channel of every
  group (the rule of :func:`~sparsesel.compress.channel_pruning.magnitude_prune_uhdformer`, here over
  the trunk widths too), written as the fraction ``f`` of all channels kept.

Counts are rounded up to whole units (heads, encoder pairs, even conv groups), at least one unit, and
an attention keeps at least the query channels its matching picks (:func:`minimum_channels`).
:func:`match_latency` bisects ``f`` for the largest network whose measured latency (paired,
bracketed against the original: :func:`~sparsesel.compress.latency.time_deltas`) is within the
target, so every baseline is compared with the plan at the same measured speed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsesel.compress.channel_pruning import TRUNK_KINDS
from sparsesel.compress.latency import time_deltas
from sparsesel.compress.structured import StructuredUnit, kept_channels, magnitude_selector, shrink, structured_units

__all__ = ["LATENCY_RULES", "match_latency", "minimum_channels", "rule_counts"]

#: The channel rules of the latency baselines.
LATENCY_RULES: tuple[str, ...] = ("uniform", "energy", "magnitude")


def _step(unit: StructuredUnit) -> int:
    return unit.group.unit * unit.group.subgroups


def _round_up(count: float, unit: StructuredUnit) -> int:
    step = _step(unit)
    return int(min(unit.group.channels, max(step, int(np.ceil(count / step - 1e-9)) * step)))


def minimum_channels(model: nn.Module, units: Sequence[StructuredUnit]) -> dict[tuple[str, str], int]:
    """Fewest channels a group may keep for the network to run: an attention's heads feed its matching,
    which picks ``num_matching`` of the query channels (so at least that many stay)."""
    minimums = {}
    for unit in units:
        if unit.group.kind == "heads":
            match = getattr(model.get_submodule(unit.group.module), "match", None)
            if match is not None:
                minimums[unit.key] = int(match.num_matching)
    return minimums


def rule_counts(units: Sequence[StructuredUnit], rule: str, fraction: float,
                minimums: dict[tuple[str, str], int] | None = None) -> dict[tuple[str, str], int]:
    """Kept channels per group (``{(module, kind): count}``, trunk groups first) of ``rule`` at ``fraction``.

    Parameters
    ----------
    units : sequence of StructuredUnit
    rule : {"uniform", "energy", "magnitude"}
    fraction : float
        In ``(0, 1]``: kept channels (``uniform``; ``magnitude``: of all channels together) or kept
        importance (``energy``).
    minimums : dict, optional
        Fewest channels per group (:func:`minimum_channels`), rounded up to whole units.
    """
    if rule not in LATENCY_RULES:
        raise ValueError(f"unknown latency baseline rule {rule!r}; choose one of {LATENCY_RULES}")
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    counts: dict[tuple[str, str], int] = {}
    if rule == "magnitude":
        scores = np.concatenate([np.asarray(u.group.importance, dtype=np.float64) for u in units])
        threshold = np.quantile(scores, 1.0 - float(fraction)) if fraction < 1.0 else -np.inf
    for unit in units:
        importance = np.asarray(unit.group.importance, dtype=np.float64)
        if rule == "uniform":
            count = _round_up(fraction * unit.group.channels, unit)
        elif rule == "magnitude":
            count = _round_up(float(np.sum(importance >= threshold)), unit)
        else:
            order = magnitude_selector(None, unit.group)
            total = float(importance.sum()) or 1.0
            step = _step(unit)
            count = unit.group.channels
            for candidate in range(step, unit.group.channels + 1, step):
                if importance[kept_channels(unit.group, order, candidate)].sum() / total >= fraction - 1e-12:
                    count = candidate
                    break
        floor = (minimums or {}).get(unit.key)
        if floor is not None:
            count = max(count, _round_up(floor, unit))
        counts[unit.key] = count
    return dict(sorted(counts.items(), key=lambda item: item[0][1] not in TRUNK_KINDS))


def match_latency(model: nn.Module, rule: str, target_ratio: float, *, size: Sequence[int] = (256, 256), steps: int = 6,
                  repeats: int = 2, clock: str = "auto") -> tuple[nn.Module, dict[str, Any]]:
    """The ``rule`` baseline of ``model`` (not modified) at the largest fraction whose measured latency is
    within ``target_ratio`` of the original's.

    Parameters
    ----------
    model : torch.nn.Module
        A network with channel groups (UHDformer).
    rule : {"uniform", "energy", "magnitude"}
    target_ratio : float
        Latency to reach, as a fraction of the original's measured latency (e.g. the plan's measured ratio).
    size : (H, W)
        Size of the timed passes (paired against the original: :func:`~sparsesel.compress.latency.time_deltas`).
    steps : int
        Bisection steps on the fraction.
    repeats : int
        Paired repeats per timing.
    clock : {"auto", "wall", "cpu"}

    Returns
    -------
    (network, info)
        ``info``: ``{"rule", "fraction", "measured_ratio", "probes": [[fraction, ratio], ...], "fits"}``.
        ``fits`` is False when even the smallest fraction tried measured over the target (the fastest is kept).

    Raises
    ------
    ValueError
        For a network without channel groups, or a ratio outside ``(0, 1]``.
    """
    if not 0.0 < float(target_ratio) <= 1.0:
        raise ValueError(f"target_ratio must be in (0, 1], got {target_ratio!r}")
    units = structured_units(model)
    if not units:
        raise ValueError(f"{type(model).__name__} has no removable channel groups: no latency baseline {rule!r}")
    groups = [u.group for u in units]
    minimums = minimum_channels(model, units)
    model = model.eval()
    probes: list[list[float]] = []
    best: tuple[float, nn.Module, float] | None = None
    fastest: tuple[float, nn.Module, float] | None = None
    low, high = 0.0, 1.0
    for _ in range(max(1, int(steps))):
        fraction = 0.5 * (low + high)
        network = shrink(model, rule_counts(units, rule, fraction, minimums), groups=groups).eval()
        base_ms, (delta,) = time_deltas(model, [network], tuple(size), repeats, clock=clock)
        ratio = (base_ms + delta) / base_ms
        probes.append([fraction, ratio])
        if fastest is None or ratio < fastest[2]:
            fastest = (fraction, network, ratio)
        if ratio <= target_ratio:
            best = (fraction, network, ratio) if best is None or fraction > best[0] else best
            low = fraction
        else:
            high = fraction
    chosen = best or fastest
    return chosen[1], {"rule": rule, "fraction": chosen[0], "measured_ratio": chosen[2], "probes": probes, "fits": best is not None,
                       "size": list(size)}
