"""Plans under a latency budget: structured channel options and factorizations in one knapsack.

``plan(model, budget, cost="latency", image_size=(H, W), threads=T)`` lands here
(:func:`plan_latency`).  The units of the :class:`~sparsesel.problems.layer_allocation.LayerAllocation`
are

* every channel group of :mod:`sparsesel.compress.structured` (the low-resolution and tail trunk
  widths, block-internal widths, DualCMT candidates, attention heads), each with a menu of kept
  channel counts, and
* every factorizable layer's Tucker-2 / low-rank / block options whose measured latency is lower
  than the dense layer's (at these widths few or none are: the convolutions are memory-bound),

each option costing its latency delta, measured in place (:mod:`sparsesel.compress.latency`), and
damaging the output by its measured calibration MSE (that unit alone changed).

**The encoder width is an outer enumeration.**  The full-resolution encoder width ``E`` rescales
the cost of the units inside it (a matching candidate reads ``3E`` perception channels at every
full-resolution pixel; the encoder blocks' hidden widths read ``E``): with ``E`` halved, removing
candidates saves half as much.  Measured on the demo network at 512², 1 thread: ``E`` 16 -> 8 saves
165 ms, candidates 16 -> 4 save 151 ms, both together 242 ms, not 316 -- an additive model would be
off by a quarter of the network.  So each encoder width of the menu gets its own base network
(the encoder shrunk, measured at the target size) and its own knapsack; the units whose layers
touch the encoder (candidates, the encoder blocks' hidden widths) are re-timed in that base, the
others keep their deltas from the dense base (their layers do not change), and the factorization
options of layers whose shape changed are dropped.  The plans of all encoder widths are compared
on the calibration data (output MSE of the whole planned network, exact for the combination) or,
without data, by their summed predicted error.

Time and accuracy: see ``benchmarks/latency_budget.py`` (predicted vs measured whole-network
latency, table build time).  A plan is applied with :func:`apply_latency_plan`.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsesel.budget import Budget
from sparsesel.compress.channel_pruning import TRUNK_KINDS
from sparsesel.compress.factorized import factorize
from sparsesel.compress.latency import LatencyCache, cache_file, network_fingerprint, time_deltas
from sparsesel.compress.network_io import network_output
from sparsesel.compress.structured import (
    Selector,
    StructuredUnit,
    importance_errors,
    magnitude_selector,
    shrink,
    structured_errors,
    structured_units,
)
from sparsesel.compress.trunk_widths import trunk_layers

__all__ = ["LatencyAnalysis", "analyze_latency", "apply_latency_plan", "fastest_ms", "plan_latency"]

#: Knapsack costs are integers in this many milliseconds (10 µs).
COST_STEP_MS = 0.01
#: A factorization option is offered only if it saves at least this fraction of the dense network's time.
MIN_SAVING = 0.002
#: A family's measured saving counts only beyond this multiple of the network's noise floor (see ``_Timer``).
NOISE_FLOOR = 3.0
ENCODER = ("", "trunk_encoder")


@dataclass
class LatencyAnalysis:
    """Everything the latency knapsacks need, per encoder width (see the module docstring).

    Attributes
    ----------
    units : list of StructuredUnit
        The structured units other than the encoder width.
    encoder : StructuredUnit or None
        The encoder width's menu (the outer enumeration); ``None`` when it cannot be shrunk.
    unit_errors, encoder_errors : per-option errors (calibration MSE, or removed importance)
    layers : list of LayerAnalysis
        Factorizable layers with the options that save time in the dense network.
    layer_deltas : list of ndarray
        Milliseconds (at the target size) each of those options adds (negative: saves).
    bases : dict
        Per encoder width: ``{"ms": float, "unit_deltas": [ndarray per unit], "layers": [indices usable]}``.
    info : dict
        Timings count, cache hits, build seconds, sizes.
    """

    units: list[StructuredUnit]
    encoder: StructuredUnit | None
    unit_errors: list[np.ndarray]
    encoder_errors: np.ndarray
    layers: list[Any]
    layer_errors: list[np.ndarray]
    layer_deltas: list[np.ndarray]
    bases: dict[int, dict[str, Any]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# timing families
# ---------------------------------------------------------------------------


class _Timer:
    """Measures (or reads from the cache) per-member deltas of families at ``measure_size``.

    The noise floor of a network (:meth:`noise`: the largest |delta| of copies of it against it,
    timed as the options are) is measured once per base network; a family's total saving smaller
    than ``NOISE_FLOOR`` times it counts as no saving (an exact knapsack would otherwise pick the
    options whose noise flatters them).
    """

    def __init__(self, cache: LatencyCache, measure_size, image_size, repeats: int, clock: str) -> None:
        self.cache, self.measure_size, self.repeats, self.clock = cache, tuple(measure_size), repeats, clock
        self.scale = (image_size[0] * image_size[1]) / (measure_size[0] * measure_size[1])
        self.timings = 0
        self.seconds = 0.0
        self.floors: dict[str, float] = {}

    def noise(self, base: nn.Module, fingerprint: str) -> float:
        """Milliseconds (at the measure size) below which a family's delta is not told from noise."""
        key = f"{fingerprint}|null"
        value = self.cache.get(key)
        if value is None:
            began = time.perf_counter()
            _, deltas = time_deltas(base, [copy.deepcopy(base) for _ in range(3)], self.measure_size, self.repeats, clock=self.clock)
            value = max(abs(d) for d in deltas)
            self.cache.put(key, value)
            self.seconds += time.perf_counter() - began
        self.floors[fingerprint] = value
        return value

    def deltas(self, base: nn.Module, fingerprint: str, keys: Sequence[str], members: int, builds) -> list[float]:
        """Milliseconds at the target size one member adds when all ``members`` take each option
        (``builds[i]()`` makes the network of option ``keys[i]``); the options missing from the cache
        are timed side by side with ``base`` in one interleaved run.  Savings of the whole family
        within the noise floor count as 0."""
        floor = NOISE_FLOOR * self.noise(base, fingerprint)
        full = [f"{fingerprint}|{key}" for key in keys]
        values = [self.cache.get(key) for key in full]
        missing = [i for i, value in enumerate(values) if value is None]
        if missing:
            began = time.perf_counter()
            variants = [builds[i]().eval() for i in missing]
            _, deltas = time_deltas(base, variants, self.measure_size, self.repeats, clock=self.clock)
            for i, delta in zip(missing, deltas):
                values[i] = delta / members
                self.cache.put(full[i], values[i])
            self.timings += len(missing)
            self.seconds += time.perf_counter() - began
        return [0.0 if -floor < value * members < 0 else value * self.scale for value in values]


def _unit_families(units: Sequence[StructuredUnit]) -> dict[str, list[int]]:
    families: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        families.setdefault(f"{unit.family}:{unit.group.channels}:{tuple(unit.options)}", []).append(i)
    return families


def _timed_counts(unit: StructuredUnit) -> list[int]:
    """The options measured (the others are interpolated in the kept count): at most quarters."""
    options = unit.options[1:]
    if len(options) <= 3:
        return options
    picks = {options[int(round(q * (len(options) - 1)))] for q in (0.0, 0.5, 1.0)}
    return sorted(picks, reverse=True)


def _structured_deltas(timer: _Timer, base: nn.Module, units: Sequence[StructuredUnit], selector: Selector,
                       only: set[int] | None = None) -> dict[int, np.ndarray]:
    fingerprint = network_fingerprint(base)
    out: dict[int, np.ndarray] = {}
    for key, members in _unit_families(units).items():
        if only is not None and not set(members) & only:
            continue
        unit = units[members[0]]
        counts = _timed_counts(unit)
        builds = [lambda count=count: shrink(base, {units[i].key: count for i in members}, selector=selector,
                                             groups=[units[i].group for i in members]) for count in counts]
        values = timer.deltas(base, fingerprint, [f"{key}@{count}" for count in counts], len(members), builds)
        measured = {unit.group.channels: 0.0, **dict(zip(counts, values))}
        xs = np.array(sorted(measured))
        deltas = np.interp(unit.options, xs, [measured[x] for x in xs])
        for i in members:
            out[i] = deltas
    return out


def _layer_families(layers) -> dict[str, list[int]]:
    families: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        if len(layer.options) > 1:
            families.setdefault(f"{layer.module}:{tuple(layer.shape)}:{tuple(layer.pixels)}:{len(layer.options)}", []).append(i)
    return families


def _layer_deltas(timer: _Timer, base: nn.Module, layers) -> list[np.ndarray]:
    """Per layer and option, the latency delta (ms at the target size), interpolated in MACs between
    two measured options (the cheapest, the one nearest half the dense MACs) and the dense layer."""
    from sparsesel.compress.apply import set_submodule

    fingerprint = network_fingerprint(base)
    deltas = [np.zeros(len(layer.options)) for layer in layers]
    for key, members in _layer_families(layers).items():
        layer = layers[members[0]]
        macs = np.asarray(layer.macs, dtype=np.float64)
        grid = sorted({int(np.argmin(macs[1:])) + 1, int(np.argmin(np.abs(macs[1:] - 0.5 * macs[0]))) + 1})
        def build(option):
            variant = copy.deepcopy(base)
            for i in members:
                name = layers[i].name
                set_submodule(variant, name, factorize(variant.get_submodule(name), *option, n_iter_max=1))
            return variant

        options = [layer.options[j] for j in grid]
        values = timer.deltas(base, fingerprint, [f"{key}@{f}{r}" for f, r in options], len(members),
                              [lambda option=option: build(option) for option in options])
        points = {float(macs[0]): 0.0, **{float(macs[j]): v for j, v in zip(grid, values)}}
        xs = np.array(sorted(points))
        for i in members:
            deltas[i] = np.interp(np.asarray(layers[i].macs, dtype=np.float64), xs, [points[x] for x in xs])
    return deltas


# ---------------------------------------------------------------------------
# analysis
# ---------------------------------------------------------------------------


def _restricted(layer, keep: np.ndarray):
    """A copy of a LayerAnalysis whose menu is the options ``keep`` (indices, 0 = dense first)."""
    new = copy.copy(layer)
    new.options = [layer.options[j] for j in keep]
    new.params, new.errors = layer.params[keep], layer.errors[keep]
    new.macs = None if layer.macs is None else layer.macs[keep]
    new.objective = None
    return new


def _encoder_coupled(model: nn.Module, units: Sequence[StructuredUnit]) -> set[int]:
    """Units whose layers read or write the encoder space (re-timed per encoder width)."""
    return {i for i, u in enumerate(units) if u.group.kind == "candidates" or u.family == "convnext:encoder"}


def _checked_sizes(image_size: Sequence[int], threads: int, measure_size: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(image_size, measure_size)`` as int tuples (the measure size at most the image size), checked."""
    image_size = tuple(int(s) for s in image_size)
    if len(image_size) != 2 or min(image_size) < 1:
        raise ValueError(f"cost='latency' needs image_size=(H, W) with positive sides, got {image_size!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return image_size, tuple(int(min(m, s)) for m, s in zip(measure_size, image_size))


def _saving_factorizations(timer: _Timer, model: nn.Module, exclude: Sequence[str], measure_size: Sequence[int],
                           base_ms: float) -> tuple[list, list[np.ndarray]]:
    """The layers with a factorization measured to save at least ``MIN_SAVING`` of ``base_ms``, restricted to
    the dense option (0) and those, and the measured deltas (ms) of the kept options."""
    from sparsesel.compress.plan import analyze

    analysed, _ = analyze(model, exclude=exclude, cost="macs", image_size=measure_size)
    analysed = [_restricted(layer, np.array([j for j, (f, _) in enumerate(layer.options) if f != "blocks"])) for layer in analysed]
    layers, layer_deltas = [], []
    for layer, deltas in zip(analysed, _layer_deltas(timer, model, analysed)):
        keep = np.flatnonzero((deltas < -MIN_SAVING * base_ms) & np.array([f != "blocks" for f, _ in layer.options]))
        if len(keep):
            keep = np.concatenate([[0], keep])
            layers.append(_restricted(layer, keep))
            layer_deltas.append(deltas[keep])
    return layers, layer_deltas


def analyze_latency(model: nn.Module, *, image_size: Sequence[int], threads: int = 1, calibration: torch.Tensor | None = None,
                    selector: Selector = magnitude_selector, exclude: Sequence[str] = (), measure_size: Sequence[int] = (256, 256),
                    repeats: int = 4, cache: bool | LatencyCache = True, factorizations: bool = True,
                    clock: str = "auto", progress: bool = False) -> LatencyAnalysis:
    """Measure everything :func:`plan_latency` needs (the slow part; reuse it across budgets).

    Parameters
    ----------
    model : UHDformer
    image_size : (H, W)
        The size the latency is for.
    threads : int
        Torch threads during the timings (restored afterwards).
    calibration : torch.Tensor, shape (B, 3, h, w), optional
        Inputs to measure each option's output MSE; without them the error of a structured option
        is the fraction of its group's importance removed, of a factorization its weight error.
    selector : callable
        ``selector(model, group) -> channel order`` (:mod:`sparsesel.compress.structured`).
    exclude : sequence of str
        Layers never factorized (as :func:`~sparsesel.compress.plan.analyze`).
    measure_size : (h, w)
        Size of the timed passes (deltas scaled by pixels); the target size if smaller.
    repeats : int
        Best-of count of each timing (interleaved).
    cache : bool or LatencyCache
        ``True``: the on-disk table of :func:`~sparsesel.compress.latency.cache_file`; ``False``: none.
    factorizations : bool
        Offer the factorization options too.
    clock : {"auto", "wall", "cpu"}
        :func:`~sparsesel.compress.latency.clock_function` (``auto``: the thread's CPU time with one
        thread, robust to other processes on a shared machine; wall time otherwise).
    progress : bool
        A tqdm bar over the stages (timing the channel groups, the layers, the calibration errors,
        the encoder widths).
    """
    from tqdm.auto import tqdm

    began = time.perf_counter()
    image_size, measure_size = _checked_sizes(image_size, threads, measure_size)
    if not isinstance(cache, LatencyCache):
        cache = LatencyCache(cache_file(threads, measure_size, clock) if cache else None)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    bar = tqdm(total=4, desc="latency analysis", disable=not progress, leave=False, dynamic_ncols=True)
    try:
        model = copy.deepcopy(model).eval()
        timer = _Timer(cache, measure_size, image_size, repeats, clock)
        all_units = structured_units(model)
        encoder = next((u for u in all_units if u.key == ENCODER), None)
        units = [u for u in all_units if u.key != ENCODER]
        base_ms = _base_ms(model, image_size, repeats, clock)
        bar.set_postfix_str("timing channel groups")
        unit_deltas = _structured_deltas(timer, model, units, selector)
        bar.update(1)
        bar.set_postfix_str("timing factorizations")
        layers, layer_deltas = _saving_factorizations(timer, model, exclude, measure_size, base_ms) if factorizations else ([], [])
        bar.update(1)
        bar.set_postfix_str("calibration errors")
        unit_errors, encoder_errors, layer_errors = _option_errors(model, units, encoder, layers, calibration, selector)
        bar.update(1)
        bar.set_postfix_str("encoder widths")
        analysis = LatencyAnalysis(units, encoder, unit_errors, encoder_errors, layers, layer_errors, layer_deltas)
        analysis.bases[model.widths["encoder"]] = {"ms": base_ms, "unit_deltas": [unit_deltas[i] for i in range(len(units))],
                                                   "layers": list(range(len(layers)))}
        if encoder is not None:
            _encoder_bases(analysis, model, timer, selector, image_size, repeats)
        bar.update(1)
        cache.save()
        analysis.info = {"image_size": list(image_size), "measure_size": list(measure_size), "threads": threads, "repeats": repeats,
                         "clock": clock, "timing_seconds": timer.seconds, "noise_floor_ms": dict(timer.floors),
                         "timings": timer.timings, "cache_hits": cache.hits, "cache_file": None if cache.path is None else str(cache.path),
                         "seconds": time.perf_counter() - began, "pixel_scale": timer.scale}
        return analysis
    finally:
        bar.close()
        torch.set_num_threads(previous)


def _option_errors(model, units, encoder, layers, calibration, selector):
    """Per-option errors of the units, the encoder width and the layers: calibration output MSE (one
    pass per option; factorizations interpolated as :func:`~sparsesel.compress.plan.output_distortions`
    does), or without data the removed importance / the relative weight error."""
    from sparsesel.compress.plan import output_distortions

    if calibration is None:
        encoder_errors = importance_errors([encoder])[0] if encoder else np.zeros(1)
        return importance_errors(units), encoder_errors, [layer.errors for layer in layers]
    unit_errors = structured_errors(model, units, calibration, selector=selector)
    encoder_errors = structured_errors(model, [encoder], calibration, selector=selector)[0] if encoder else np.zeros(1)
    if layers:
        output_distortions(model, layers, calibration)
    return unit_errors, encoder_errors, [layer.option_objectives() for layer in layers]


def _base_ms(model: nn.Module, image_size, repeats: int, clock: str) -> float:
    """The network's measured latency at ``image_size`` (see :func:`_bases_ms`)."""
    return _bases_ms([model], image_size, repeats, clock)[0]


def _bases_ms(models: Sequence[nn.Module], image_size, repeats: int, clock: str) -> list[float]:
    """The networks' measured latencies at ``image_size``: the first one's best time, the others' as
    paired deltas to it (:func:`~sparsesel.compress.latency.time_deltas`); above 1024x1024 pixels at
    1024x1024, scaled by pixels (the tiled network's time is linear in the tiles there)."""
    pixels = image_size[0] * image_size[1]
    size, scale = (image_size, 1.0) if pixels <= 1024 * 1024 else ((1024, 1024), pixels / (1024 * 1024))
    base, deltas = time_deltas(models[0], models[1:], size, repeats, clock=clock)
    return [scale * base] + [scale * (base + d) for d in deltas]


def _encoder_bases(analysis: LatencyAnalysis, model: nn.Module, timer: _Timer, selector: Selector, image_size, repeats: int) -> None:
    """Per narrower encoder width: its base network's latency, the coupled units re-timed in it."""
    coupled = _encoder_coupled(model, analysis.units)
    dense = analysis.bases[model.widths["encoder"]]
    touched = {name for name, _ in trunk_layers(model, "encoder")}
    touched |= {f"{name}.mix" for name in touched} | {f"{name}.spread" for name in touched}
    usable = [i for i, layer in enumerate(analysis.layers) if layer.name not in touched]
    bases = {count: shrink(model, {ENCODER: count}, selector=selector, groups=[analysis.encoder.group]).eval()
             for count in analysis.encoder.options[1:]}
    times = _bases_ms([model] + list(bases.values()), image_size, repeats, timer.clock)
    dense["ms"] = times[0]
    for count, ms in zip(bases, times[1:]):
        base = bases[count]
        units = structured_units(base)
        by_key = {u.key: u for u in units}
        local = [by_key.get(u.key) for u in analysis.units]
        redone = {i for i in coupled if local[i] is not None and local[i].options == analysis.units[i].options}
        deltas = _structured_deltas(timer, base, [u if u is not None else analysis.units[i] for i, u in enumerate(local)],
                                    selector, only=redone) if redone else {}
        analysis.bases[count] = {"ms": ms,
                                 "unit_deltas": [deltas.get(i, dense["unit_deltas"][i]) for i in range(len(analysis.units))],
                                 "layers": usable}


# ---------------------------------------------------------------------------
# the knapsacks
# ---------------------------------------------------------------------------


def _solve_width(analysis: LatencyAnalysis, width: int, capacity_ms: float, factor: float = 1.0) -> dict[str, Any] | None:
    """The best choice for one encoder width: ``None`` if even the cheapest choice exceeds the budget.

    ``factor`` multiplies every option's delta (the correction of :func:`plan_latency`'s check).
    """
    import sparsesel
    from sparsesel.problems.layer_allocation import LayerAllocation

    base = analysis.bases[width]
    deltas = [factor * np.asarray(d) for d in list(base["unit_deltas"]) + [analysis.layer_deltas[i] for i in base["layers"]]]
    errors = list(analysis.unit_errors) + [analysis.layer_errors[i] for i in base["layers"]]
    names = [u.name for u in analysis.units] + [analysis.layers[i].name for i in base["layers"]]
    floor = sum(float(np.min(d)) for d in deltas)
    room = capacity_ms - base["ms"] - floor
    if room < 0:
        return None
    costs = [np.round((d - np.min(d)) / COST_STEP_MS).astype(np.int64) for d in deltas]
    capacity = int(math.floor(room / COST_STEP_MS))
    problem = LayerAllocation(costs, [np.asarray(e, dtype=np.float64) for e in errors], capacity, names=names, units=["latency (10 µs)"])
    result = sparsesel.solve(problem, "dp")
    chosen = [int(j) for j in result.selected]
    predicted = base["ms"] + sum(float(d[j]) for d, j in zip(deltas, chosen))
    error = float(sum(float(e[j]) for e, j in zip(errors, chosen)))
    encoder_j = analysis.encoder.options.index(width) if analysis.encoder is not None else 0
    return {"encoder": width, "chosen": chosen, "predicted_ms": predicted, "base_ms": base["ms"],
            "predicted_error": error + float(analysis.encoder_errors[encoder_j]),
            "solver": {"name": result.solver, "status": result.status, "objective": result.objective, "wall_time": result.wall_time}}


def _counts(analysis: LatencyAnalysis, candidate: dict[str, Any]) -> dict[tuple[str, str], int]:
    counts = {u.key: u.options[j] for u, j in zip(analysis.units, candidate["chosen"][: len(analysis.units)])}
    if analysis.encoder is not None:
        counts = {ENCODER: candidate["encoder"], **counts}
    return counts


def _factorizations(analysis: LatencyAnalysis, candidate: dict[str, Any]) -> list[tuple[Any, tuple]]:
    base = analysis.bases[candidate["encoder"]]
    picks = candidate["chosen"][len(analysis.units):]
    return [(analysis.layers[i], analysis.layers[i].options[j]) for i, j in zip(base["layers"], picks) if j != 0]


def plan_latency(model: nn.Module, budget: float, *, image_size: Sequence[int], threads: int = 1,
                 calibration: torch.Tensor | None = None, selector: Selector = magnitude_selector,
                 analysis: LatencyAnalysis | None = None, check: bool = True, check_rounds: int = 4, check_repeats: int = 3,
                 **analysis_options: Any):
    """Plan ``model`` to run within ``budget`` of its measured latency at ``image_size`` with ``threads``.

    The knapsack's prediction (the base network's measured latency plus the summed in-place deltas)
    is *checked*: the chosen network is built and timed against the dense one at ``image_size``
    (paired medians of ``check_repeats``).  Small per-option deltas are noisy, an exact solver
    prefers the options whose noise flatters them, and the deltas of units changed together do not
    add up exactly; so every delta is multiplied by one factor, adjusted on the measurements
    (:func:`_checked_choice`: down when the plan measures over the budget, up when it fits with
    much to spare; at most ``check_rounds`` solves), and the best plan that measured within the
    budget is kept.  ``Plan.latency`` records each round (``checks``) and the measured latency.

    Parameters
    ----------
    model : UHDformer
    budget : float, int or Budget
        A fraction in ``(0, 1]`` of the dense network's measured latency (a number with a decimal
        point), or milliseconds (an integer); :class:`~sparsesel.budget.Budget` rules.
    image_size, threads, calibration, selector
        See :func:`analyze_latency`.
    analysis : LatencyAnalysis, optional
        Reuse the measurements of :func:`analyze_latency` (for several budgets).
    check : bool
        Time the chosen network (and correct, see above); ``False``: trust the table.
    **analysis_options
        Passed to :func:`analyze_latency` (``measure_size``, ``repeats``, ``cache``, ``exclude``, ``factorizations``, ``clock``).

    Returns
    -------
    Plan
        ``cost="latency"``; costs in microseconds; ``structured`` lists the kept channel counts,
        ``layers`` the factorized layers; ``latency`` the prediction, the checks and how it was
        measured.  Apply it with :func:`apply_latency_plan`.
    """
    began = time.perf_counter()
    if analysis is None:
        analysis = analyze_latency(model, image_size=image_size, threads=threads, calibration=calibration, selector=selector,
                                   **analysis_options)
    dense_ms = analysis.bases[max(analysis.bases)]["ms"]
    budget = Budget.coerce(budget, "latency")
    cap_ms = float(budget.amount) * dense_ms if budget.is_fraction else float(budget.amount)
    previous = torch.get_num_threads()
    try:
        best, candidates, rounds = _checked_choice(model, analysis, cap_ms, calibration, selector, budget, dense_ms, image_size, threads,
                                                   check=check, check_rounds=check_rounds, check_repeats=check_repeats)
    finally:
        torch.set_num_threads(previous)
    return _plan_record(model, analysis, best, candidates, selector, budget=budget, cap_ms=cap_ms, dense_ms=dense_ms, threads=threads,
                        image_size=image_size, rounds=rounds, factor=best["factor"], began=began)


def _checked_choice(model, analysis, cap_ms, calibration, selector, budget, dense_ms, image_size, threads, *, check, check_rounds, check_repeats):
    """Solve, time the chosen network, and adjust the delta factor (see :func:`plan_latency`).

    A factor whose plan measures over the budget is too trusting (the next one is smaller: scaled by
    the measured share of the predicted saving, or halfway to a factor known to fit); one whose plan
    fits with more than 8 % to spare is too cautious (the next is halfway to one known not to fit, or
    scaled up by the same share).  The kept plan is the best-scoring one that fits (calibration MSE,
    else predicted error), else the last one measured (``Plan.latency["fits"]`` says which).
    """
    factor, rounds, fits, fitting, too_trusting = 1.0, [], [], None, None
    for round_ in range(max(1, int(check_rounds)) if check else 1):
        try:
            choice = _choose(model, analysis, cap_ms, factor, calibration, selector, budget, dense_ms)
        except ValueError:
            if round_ == 0:
                raise
            break  # a more cautious factor leaves no plan within the budget: keep what was measured
        best, candidates = choice
        best["factor"] = factor
        if not check:
            return best, candidates, rounds
        torch.set_num_threads(threads)
        network = _build(model, analysis, best, selector).eval()
        dense_now, (difference,) = time_deltas(model, [network], tuple(image_size), check_repeats, clock=analysis.info.get("clock", "auto"))
        measured_ms = (dense_now + difference) / dense_now * dense_ms  # on the table's scale: the machine's drift cancels
        rounds.append({"factor": factor, "encoder": best["encoder"], "predicted_ms": best["predicted_ms"], "measured_ms": measured_ms,
                       "calibration_mse": best["calibration_mse"]})
        best["measured_ms"] = measured_ms
        summed = best["predicted_ms"] - best["base_ms"]  # the summed deltas (negative: a saving)
        share = (measured_ms - best["base_ms"]) / summed if summed < 0 else 1.0
        if measured_ms <= cap_ms * 1.02:
            fits.append((best, candidates))
            fitting = factor
            if measured_ms >= 0.92 * cap_ms or summed >= 0:
                break
            factor = 0.5 * (factor + too_trusting) if too_trusting is not None else factor * float(np.clip(share, 1.0, 2.0))
        else:
            too_trusting = factor
            factor = 0.5 * (factor + fitting) if fitting is not None else factor * float(np.clip(share, 0.1, 1.0))
    if fits:
        score = lambda item: item[0]["calibration_mse"] if item[0]["calibration_mse"] is not None else item[0]["predicted_error"]  # noqa: E731
        best, candidates = min(fits, key=score)
    best["fits"] = bool(fits) if check else None
    return best, candidates, rounds


def fastest_ms(analysis: LatencyAnalysis, factor: float = 1.0) -> float:
    """The predicted latency (ms) of the fastest plan the analysis offers: every unit and layer at
    its fastest option, at the best encoder width (deltas multiplied by ``factor``)."""
    return min(analysis.bases[w]["ms"] + factor * sum(float(np.min(d)) for d in list(analysis.bases[w]["unit_deltas"])
                                                       + [analysis.layer_deltas[i] for i in analysis.bases[w]["layers"]])
               for w in analysis.bases)


def _choose(model, analysis, cap_ms, factor, calibration, selector, budget, dense_ms):
    """The knapsack of every encoder width at ``factor``, and the candidate that changes the calibration outputs least."""
    candidates = [c for c in (_solve_width(analysis, width, cap_ms, factor) for width in sorted(analysis.bases, reverse=True)) if c is not None]
    if not candidates:
        fastest = fastest_ms(analysis, factor)
        raise ValueError(f"latency budget {budget.text} ({cap_ms:.1f} ms) is too small: the fastest plan is predicted at "
                         f"{fastest:.1f} ms ({fastest / dense_ms:.3f} of {dense_ms:.1f} ms)")
    for candidate in candidates:
        candidate["calibration_mse"] = None
        if calibration is not None:
            network = _build(model, analysis, candidate, selector)
            with torch.no_grad():
                reference, out = network_output(model.eval(), calibration), network_output(network.eval(), calibration)
            candidate["calibration_mse"] = float(((out - reference) ** 2).mean())
    best = min(candidates, key=lambda c: c["calibration_mse"] if c["calibration_mse"] is not None else c["predicted_error"])
    return best, candidates


def _plan_record(model, analysis, best, candidates, selector, *, budget, cap_ms, dense_ms, threads, image_size, rounds, factor, began):
    """The :class:`~sparsesel.compress.plan.Plan` of the chosen candidate."""
    from sparsesel.compress.plan import LayerPlan, Plan

    counts = _counts(analysis, best)
    layers = [LayerPlan(name=layer.name, module=layer.module, shape=list(layer.shape), bias=layer.bias, factorization=option[0],
                        ranks=[int(r) for r in option[1]], params=int(layer.params[layer.options.index(option)]),
                        dense_params=layer.dense_params, error=layer.error_of(*option), max_ranks=list(layer.max_ranks))
              for layer, option in _factorizations(analysis, best)]
    params_before = int(sum(p.numel() for p in model.parameters()))
    params_after = int(sum(p.numel() for p in _build(model, analysis, best, selector).parameters()))
    groups = {u.key: u.group.channels for u in analysis.units + ([analysis.encoder] if analysis.encoder else [])}
    return Plan(
        method="packing", budget=budget.value, budget_cost=int(round(cap_ms * 1e3)), cost="latency", image_size=[int(s) for s in image_size],
        params_before=params_before, params_after=params_after, cost_before=int(round(dense_ms * 1e3)),
        cost_after=int(round(best["predicted_ms"] * 1e3)), layers=layers, skipped=[],
        solver={**best["solver"], "encoder_width": best["encoder"], "calibration_mse": best["calibration_mse"],
                "candidates": [{k: c[k] for k in ("encoder", "predicted_ms", "predicted_error", "calibration_mse")} for c in candidates],
                "wall_time_total": time.perf_counter() - began},
        structured=[{"module": module, "kind": kind, "channels": int(count), "of": int(groups[(module, kind)])}
                    for (module, kind), count in counts.items() if count != groups[(module, kind)]],
        latency={**analysis.info, "threads": threads, "predicted_ms": best["predicted_ms"], "dense_ms": dense_ms,
                 "base_ms": best["base_ms"], "delta_factor": factor, "checks": rounds,
                 "measured_ms": best.get("measured_ms"), "fits": best.get("fits")},
    )


def _build(model: nn.Module, analysis: LatencyAnalysis, candidate: dict[str, Any], selector: Selector) -> nn.Module:
    """The network a candidate choice describes (factorizations initialised with one HOOI sweep)."""
    from sparsesel.compress.apply import set_submodule

    network = shrink(model, _counts(analysis, candidate), selector=selector)
    for layer, (factorization, ranks) in _factorizations(analysis, candidate):
        module = network.get_submodule(layer.name)
        set_submodule(network, layer.name, factorize(module, factorization, _clip_ranks(module, factorization, ranks), n_iter_max=1))
    return network


def _clip_ranks(module: nn.Module, factorization: str, ranks) -> list[int]:
    """``ranks`` within what the (possibly channel-pruned) ``module`` allows."""
    if factorization == "tucker2":
        return [min(int(ranks[0]), module.out_channels), min(int(ranks[1]), module.in_channels)]
    if factorization == "lowrank":
        limit = min(module.out_channels, module.in_channels) if isinstance(module, nn.Conv2d) else min(module.out_features, module.in_features)
        return [min(int(ranks[0]), limit)]
    return [int(r) for r in ranks]


def apply_latency_plan(model: nn.Module, plan, *, selector: Selector = magnitude_selector) -> nn.Module:
    """A copy of ``model`` with ``plan``'s channel counts (chosen by ``selector``) and then its
    factorizations (ranks clipped to the shrunk layers) applied; edits recorded in ``structure``."""
    from sparsesel.compress.apply import apply
    from sparsesel.compress.plan import LayerPlan

    counts = {(entry["module"], entry["kind"]): int(entry["channels"]) for entry in plan.structured}
    ordered = dict(sorted(counts.items(), key=lambda item: item[0][1] not in TRUNK_KINDS))
    network = shrink(model, ordered, selector=selector) if ordered else copy.deepcopy(model)
    layers = []
    for entry in plan.layers:
        if entry.factorization == "dense":
            continue
        module = network.get_submodule(entry.name)
        layers.append(LayerPlan(**{**entry.__dict__, "shape": list(module.weight.shape),
                                   "ranks": _clip_ranks(module, entry.factorization, entry.ranks) if entry.factorization != "blocks" else entry.ranks}))
    if not layers:
        network.compress_plan = plan.to_dict()
        return network
    sub = copy.copy(plan)
    sub.layers = layers
    result = apply(network, sub)
    result.compress_plan = plan.to_dict()
    return result
