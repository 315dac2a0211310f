"""Sparsity schedules shared by the SequentialAttention++ selectors (blocks and channel groups).

* :func:`sapp_schedule` -- SA++'s phases (dense warm-up, sparsification / sparse / dense cycles, a
  final fine-tune) built on the ACDC schedule;
* :func:`phase_lengths` -- a step budget split into whole phases;
* :func:`exponential_sparsity` -- the sparsification phase's gradual schedule;
* :func:`cubic_sparsity` -- gradual magnitude pruning's (Zhu & Gupta 2017).

Pure Python (no torch): the block solvers (:mod:`solvers.block_sequential_attention_pp`) and the
channel selector (:mod:`sparsesel.compress.sapp_channels`) both read them from here.
"""

from __future__ import annotations

import math

__all__ = ["cubic_sparsity", "exponential_sparsity", "phase_lengths", "sapp_schedule"]


def sapp_schedule(warmup_fraction: float, n_cycles: int, final_fraction: float,
                  sparsification: bool = True) -> list[tuple[str, float]]:
    """SA++ phases as ``(kind, fraction of the budget)``, built on the ACDC schedule.

    ACDC: dense warm-up, ``n_cycles`` × (sparse, dense), final sparse. SA++
    turns each (sparse, dense) pair into (sparsification, sparse, dense) — the
    ACDC sparse half split evenly between a sparsification and a sparse phase —
    and replaces the last pair by one sparsification phase; the final sparse
    phase is the fine-tune. ``sparsification=False`` gives Alg. 1's basic form
    (plain ACDC phases on the attention weights).

    Raises
    ------
    ValueError
        If ``warmup_fraction + final_fraction > 1`` or ``n_cycles < 1``.
    """
    middle = 1.0 - warmup_fraction - final_fraction
    if middle < 0:
        raise ValueError(f"warmup_fraction + final_fraction must be <= 1, got {warmup_fraction} + {final_fraction}")
    if n_cycles < 1:
        raise ValueError(f"n_cycles must be >= 1, got {n_cycles}")
    cycle = middle / n_cycles
    phases = [("dense", warmup_fraction)]
    for i in range(n_cycles):
        if not sparsification:
            phases += [("sparse", cycle / 2), ("dense", cycle / 2)]
        elif i < n_cycles - 1:
            phases += [("sparsification", cycle / 4), ("sparse", cycle / 4), ("dense", cycle / 2)]
        else:
            phases.append(("sparsification", cycle))
    phases.append(("final", final_fraction))
    return phases


def phase_lengths(total: int, fractions: list[float]) -> list[int]:
    """Split ``total`` steps by ``fractions`` (summing to 1) into integers that add up to ``total``."""
    bounds = [0]
    acc = 0.0
    for f in fractions:
        acc += f
        bounds.append(int(round(acc * total)))
    bounds[-1] = total
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


def exponential_sparsity(u: float, target: float, c: float = 4.0) -> float:
    """SA++'s sparsification schedule ``s·(1 − e^{−cu})/(1 − e^{−c})``, ``u ∈ [0, 1]`` (clipped)."""
    u = min(max(u, 0.0), 1.0)
    return target * (1.0 - math.exp(-c * u)) / (1.0 - math.exp(-c))


def cubic_sparsity(u: float, target: float) -> float:
    """Gradual magnitude pruning's schedule (Zhu & Gupta 2017): ``s·(1 − (1 − u)³)``."""
    u = min(max(u, 0.0), 1.0)
    return target * (1.0 - (1.0 - u) ** 3)
