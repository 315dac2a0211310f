"""Time and peak memory of one large forward pass, each network in a fresh process.

Peak memory is the peak resident set size during one forward pass above the resident set just before it
(Linux: the peak is reset to the current size first, ``/proc/self/clear_refs``, and read as ``VmHWM``; elsewhere
the growth of ``ru_maxrss``, which misses passes smaller than the loading's own peak), for a pass under
``torch.inference_mode`` of a ``(1, 3, H, W)`` random input in a fresh Python
process that has loaded only the network (so the activations of earlier passes or of other networks
in the calling process cannot hide it). The network travels as a file of the one network format
(:func:`sparsesel.nets.zoo.save_net`). The time is that of the single pass (no warm-up: at 3840x2160
one pass takes seconds, far above the first-call overhead): wall time (``ms``) and the main thread's
CPU time (``cpu_ms``; with one torch thread the pass's time, robust to other processes on a shared machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["FOUR_K", "footprints", "one_pass_footprint"]

#: 3840x2160, as (H, W).
FOUR_K: tuple[int, int] = (2160, 3840)

_SCRIPT = r"""
import json, resource, sys, time
import torch
from sparsesel.nets import zoo
from sparsesel.compress.network_io import example_input, network_output
torch.set_num_threads(int(sys.argv[2]))
model, _ = zoo.load_net(sys.argv[1], trust_code=True)
model.eval()
x = example_input(model, int(sys.argv[3]), int(sys.argv[4]))

def status_kib(field):
    with open("/proc/self/status") as stream:
        for line in stream:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(field)

try:  # Linux: reset the peak resident set to the current one, so the peak is the pass's own
    with open("/proc/self/clear_refs", "w") as stream:
        stream.write("5")
    before, how = status_kib("VmRSS"), "VmHWM"
except OSError:
    before, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "ru_maxrss"
start, cpu = time.perf_counter(), time.thread_time()
with torch.inference_mode():
    network_output(model, x)
seconds, cpu = time.perf_counter() - start, time.thread_time() - cpu
after = status_kib("VmHWM") if how == "VmHWM" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"ms": seconds * 1e3, "cpu_ms": cpu * 1e3, "peak_mib": max(0, after - before) / 1024, "peak_from": how}))
"""


def one_pass_footprint(model: nn.Module, *, size: Sequence[int] = FOUR_K, threads: int = 1, net: str | None = None,
                       config: dict | None = None, timeout: float = 600.0) -> dict[str, Any]:
    """``{"ms", "cpu_ms", "peak_mib"}`` of one ``size`` pass of ``model`` in a fresh process (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        Any network the one format saves (``net``, ``config`` as :func:`sparsesel.nets.zoo.save_net` takes them).
    size : (H, W)
    threads : int
        Torch threads of the pass.
    timeout : float
        Seconds before the process is stopped.

    Returns
    -------
    dict
        ``ms`` (wall milliseconds of the pass), ``cpu_ms`` (the main thread's CPU milliseconds), ``peak_mib``
        (growth of the peak resident set, MiB), ``size``, ``threads``; or ``{"error": message}`` when the
        process failed (e.g. out of memory).

    A network the one format cannot save gets ``{"error": ...}`` too.
    """
    return footprints({"network": model}, size=size, threads=threads, net=net, config=config, timeout=timeout)["network"]


def footprints(models: dict[str, nn.Module], *, size: Sequence[int] = FOUR_K, threads: int = 1, net: str | None = None,
               config: dict | None = None, parallel: int = 1, timeout: float = 600.0) -> dict[str, dict[str, Any]]:
    """:func:`one_pass_footprint` of every network of ``models``, ``parallel`` processes at a time.

    With ``threads=1`` and ``parallel`` at most the machine's free cores, side-by-side processes leave each
    pass's CPU time (``cpu_ms``) and its own peak memory as they are alone (each process measures
    itself), and take a fraction of the wall time.
    """
    from sparsesel.nets.zoo import save_net

    height, width = (int(s) for s in size)
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="sparsesel-footprint-") as folder:
        paths = {}
        for i, (name, model) in enumerate(models.items()):
            try:
                paths[name] = save_net(model.cpu(), Path(folder) / f"network{i}.pt", net=net, config=config)
            except ValueError as exc:  # a network the one format cannot rebuild (e.g. pruned by Torch-Pruning)
                results[name] = {"error": f"not measured: {str(exc).splitlines()[0][:300]}"}
        # the child imports what this process imports (sparsesel, a user's network module)
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in (root, *sys.path) if p and Path(p).is_dir()))}
        names = [name for name in models if name in paths]
        for start in range(0, len(names), max(1, int(parallel))):
            batch = names[start:start + max(1, int(parallel))]
            running = {name: subprocess.Popen([sys.executable, "-c", _SCRIPT, str(paths[name]), str(int(threads)), str(height), str(width)],
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for name in batch}
            for name, process in running.items():
                try:
                    stdout, stderr = process.communicate(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.communicate()
                    results[name] = {"error": f"one {width}x{height} pass took more than {timeout:.0f} s"}
                    continue
                if process.returncode != 0:
                    last = (stderr.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
                    results[name] = {"error": last[:300]}
                else:
                    results[name] = json.loads(stdout.strip().splitlines()[-1])
    for name in results:
        results[name].update(size=[height, width], threads=int(threads))
    return {name: results[name] for name in models}
