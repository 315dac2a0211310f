"""Measured latency: timing networks side by side, and a lookup table of option timings on disk.

Latency is a cost that only a measurement gives (at width 16 UHDformer's convolutions are
memory-bound: MACs do not predict time).  The planner (:mod:`sparsesel.compress.latency_plan`)
measures each option *in place*: the network with that option swapped in, the rest held fixed,
timed against the network without it, interleaved, best of ``repeats`` each.  The difference is
the option's latency delta; the planned network's latency is predicted as the measured latency
of its base plus the sum of its options' deltas (checked against a measurement in
``benchmarks/latency_budget.py``).

Cost control:

* **Smaller size.** Deltas are measured at ``measure_size`` (default 256x256) and scaled by the
  ratio of pixels to the target size: the work an option removes is per pixel (the fixed
  per-call overheads, which do not scale, cancel in the difference).
* **Families.** Units of one kind and shape (the 30 DualCMTs' candidates, every 16x16 3x3 conv at
  full resolution, ...) are timed *together*: all at the same option, the delta divided by their
  number -- one measurement instead of thirty, with a thirty times larger signal.
* **Cache.** Every measured delta is kept in a JSON file per machine, torch version, thread count
  and measure size (:func:`cache_file`) under ``$SPARSESEL_CACHE`` or ``~/.cache/sparsesel``
  (``latency/``), keyed by the base network's fingerprint (module types and parameter shapes),
  the family and the option; written atomically.  A second plan of the same network costs no timing.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsesel.atomic import write_text_atomic
from sparsesel.compress.network_io import example_input, network_output

__all__ = ["CLOCKS", "LatencyCache", "cache_file", "clock_function", "machine_id", "network_fingerprint", "time_delta", "time_deltas", "time_networks"]

CACHE_VERSION = 2


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


def machine_id() -> dict[str, Any]:
    """What a timing depends on besides the network: system, CPU model, core count, torch version."""
    return {"system": platform.system(), "machine": platform.machine(), "cpu": _cpu_model(), "cores": os.cpu_count(),
            "torch": torch.__version__}


def network_fingerprint(model: nn.Module) -> str:
    """A short hash of the network's module types and parameter/buffer shapes (not values)."""
    digest = hashlib.sha256(type(model).__name__.encode())
    for name, module in model.named_modules():
        digest.update(f"{name}:{type(module).__name__};".encode())
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
    return digest.hexdigest()[:16]


def cache_root() -> Path:
    """``$SPARSESEL_CACHE`` or ``~/.cache/sparsesel``."""
    root = os.environ.get("SPARSESEL_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "sparsesel"


def cache_file(threads: int, measure_size: Sequence[int], clock: str = "auto") -> Path:
    """The table file for this machine, torch version, thread count, measure size and clock."""
    key = json.dumps({**machine_id(), "threads": int(threads), "measure_size": [int(s) for s in measure_size],
                      "clock": clock, "version": CACHE_VERSION}, sort_keys=True)
    return cache_root() / "latency" / f"{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


class LatencyCache:
    """Measured milliseconds by key, read from and written (atomically) to one JSON file.

    ``path=None``: in memory only.  A file that is not a table of this version is ignored (and
    replaced on :meth:`save`), never trusted.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, float] = {}
        self.hits = self.misses = 0
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == CACHE_VERSION and isinstance(data.get("entries"), dict):
                    self.entries = {str(k): float(v) for k, v in data["entries"].items()}
            except (OSError, ValueError, TypeError, AttributeError):
                self.entries = {}

    def get(self, key: str) -> float | None:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: str, value: float) -> None:
        self.entries[key] = float(value)

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": CACHE_VERSION, "machine": machine_id(), "entries": self.entries}, indent=0, sort_keys=True)
        write_text_atomic(self.path, text + "\n", force=True)


def _input(model: nn.Module, size: Sequence[int]) -> torch.Tensor:
    multiple = int(getattr(model, "size_multiple", 1))
    height, width = (max(multiple, -(-int(v) // multiple) * multiple) for v in size)
    return example_input(model, height, width)


CLOCKS = ("auto", "wall", "cpu")


def clock_function(clock: str = "auto"):
    """The clock of the timings: ``wall`` (``time.perf_counter``) or ``cpu`` (the calling thread's
    CPU time, ``time.thread_time``).  ``auto``: ``cpu`` when torch runs on one thread (then every
    operator runs on the calling thread, and its CPU time is the wall time of an idle machine,
    but does not count the time other processes hold the core: on a shared machine it is the
    stable measure), else ``wall``."""
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    if clock == "auto":
        clock = "cpu" if torch.get_num_threads() == 1 else "wall"
    return time.thread_time if clock == "cpu" else time.perf_counter


def time_networks(networks: Sequence[nn.Module], size: Sequence[int], repeats: int, *, clock: str = "auto") -> list[float]:
    """Best-of-``repeats`` milliseconds of one forward pass of each network at ``size``, interleaved
    (one warm-up pass each first), under ``torch.inference_mode``; ``clock``: see :func:`clock_function`."""
    now = clock_function(clock)
    x = _input(networks[0], size)
    best = [float("inf")] * len(networks)
    with torch.inference_mode():
        for network in networks:
            network_output(network, x)
        for _ in range(repeats):
            for i, network in enumerate(networks):
                start = now()
                network_output(network, x)
                best[i] = min(best[i], now() - start)
    return [t * 1e3 for t in best]


def time_deltas(base: nn.Module, variants: Sequence[nn.Module], size: Sequence[int], repeats: int, *,
                clock: str = "auto") -> tuple[float, list[float]]:
    """``(base ms, [ms each variant takes more than base])`` at ``size`` (negative: faster).

    Every repeat runs ``base, variant 1, ..., variant k, base``; a variant's difference in that
    repeat is its time minus the mean of the two bracketing base runs, and its delta is the median
    over repeats.  Paired and bracketed differences cancel the slow drifts of a shared machine
    (other processes coming and going), which a difference of two best-of times does not: on the
    2-core machine at load 5, a network against its own copy gave paired medians within ±2.7 ms
    at 256x256 (180 ms), best-of differences up to 7.4 ms.  The base time is the best of its runs.
    """
    now = clock_function(clock)
    x = _input(base, size)
    base_runs: list[float] = []
    differences: list[list[float]] = [[] for _ in variants]

    def run(network: nn.Module) -> float:
        start = now()
        network_output(network, x)
        return (now() - start) * 1e3

    with torch.inference_mode():
        for network in [base, *variants]:
            network_output(network, x)
        for _ in range(repeats):
            before = run(base)
            times = [run(variant) for variant in variants]
            after = run(base)
            base_runs += [before, after]
            for i, t in enumerate(times):
                differences[i].append(t - 0.5 * (before + after))
    return min(base_runs), [float(np.median(d)) for d in differences]


def time_delta(base: nn.Module, variant: nn.Module, size: Sequence[int], repeats: int, *, clock: str = "auto") -> float:
    """Milliseconds ``variant`` takes more than ``base`` at ``size`` (negative: faster); see :func:`time_deltas`."""
    return time_deltas(base, [variant], size, repeats, clock=clock)[1][0]
