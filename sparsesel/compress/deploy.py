"""Prepare a compressed network for inference: choose, per factorized layer, its fastest form.

A factorized layer (:mod:`sparsesel.compress.factorized`) computes the same function as one
dense layer whose weight is its :attr:`weight` property.  Fewer multiply-adds are not always
faster: a Tucker-2 convolution whose ranks are near full runs three kernels (two 1x1 products
and a ``k x k`` convolution) where one dense convolution would do, and a small-channel
convolution is bound by memory traffic, not arithmetic.  :func:`deploy` *refolds* a layer into
that dense layer where this is faster:

* ``refold="always"`` -- every factorized layer becomes a plain ``nn.Conv2d`` / ``nn.Linear``;
* ``refold="never"`` -- every layer stays factorized (except :class:`BlockSparseLinear`, below);
* ``refold="auto"`` -- each layer is timed in both forms on the inputs it receives in the
  network (recorded by one forward pass at ``example_size``), interleaved, best of ``repeats``,
  and the faster form is kept.  The decision and the timings are in ``model.deploy_report``.

A :class:`~sparsesel.compress.factorized.BlockSparseLinear` is always refolded: it multiplies
by its dense weight anyway (rebuilt on every call), and no CPU kernel makes a block-sparse product
of these sizes faster than the dense one.

The result computes the same function (up to float rounding) and is in eval mode on ``device``.
Refolded layers (and any edit inside them) are removed from the network's structural edit log
(:func:`sparsesel.nets.edits.drop_edits`), so a deployed network saves and loads like any other.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from sparsesel.compress.factorized import BlockSparseLinear, LowRankConv, LowRankLinear, Tucker2Conv
from sparsesel.compress.network_io import example_input, network_output, size_multiple
from sparsesel.nets.edits import drop_edits

__all__ = ["REFOLD_CHOICES", "default_device", "deploy", "recorded_inputs", "refolded", "resolve_device", "time_calls"]

REFOLD_CHOICES = ("auto", "always", "never")
FACTORIZED_TYPES = (Tucker2Conv, LowRankConv, LowRankLinear, BlockSparseLinear)


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device`` (``None``: :func:`default_device`).

    Raises
    ------
    ValueError
        For a string torch does not parse, or a CUDA device while CUDA is unavailable.
    """
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device ({str(error).splitlines()[0][:120]})") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    return resolved


def refolded(layer: nn.Module) -> nn.Module:
    """The plain ``nn.Conv2d`` / ``nn.Linear`` computing what the factorized ``layer`` computes.

    Parameters
    ----------
    layer : Tucker2Conv, LowRankConv, LowRankLinear or BlockSparseLinear

    Returns
    -------
    torch.nn.Module
        Weight ``layer.weight`` (detached), bias ``layer.bias``; same dtype and device.
    """
    if not isinstance(layer, FACTORIZED_TYPES):
        raise TypeError(f"refolded() takes a factorized layer {[t.__name__ for t in FACTORIZED_TYPES]}, got {type(layer).__name__}")
    weight = layer.weight.detach()
    bias = None if layer.bias is None else layer.bias.detach()
    factory = dict(dtype=weight.dtype, device=weight.device)
    if isinstance(layer, (LowRankLinear, BlockSparseLinear)):
        dense: nn.Module = nn.Linear(layer.in_features, layer.out_features, bias=bias is not None, **factory)
    elif isinstance(layer, Tucker2Conv):
        core = layer.core
        dense = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=core.stride, padding=core.padding,
                          dilation=core.dilation, bias=bias is not None, padding_mode=core.padding_mode, **factory)
    else:
        dense = nn.Conv2d(layer.in_channels, layer.out_channels, 1, stride=layer.first.stride, bias=bias is not None, **factory)
    with torch.no_grad():
        dense.weight.copy_(weight)
        if bias is not None:
            dense.bias.copy_(bias)
    return dense


def deploy(
    model: nn.Module,
    *,
    refold: str = "auto",
    example_size: Sequence[int] = (256, 256),
    device: str | torch.device | None = None,
    repeats: int = 5,
) -> nn.Module:
    """A copy of ``model`` ready for inference, each factorized layer in its fastest form.

    Parameters
    ----------
    model : torch.nn.Module
        A network, compressed or not (``model`` is not modified).
    refold : {"auto", "always", "never"}
        See the module docstring.
    example_size : (H, W)
        Input size of the forward pass that records each layer's inputs for ``"auto"``; sides
        are rounded up to the network's ``size_multiple``.
    device : str or torch.device, optional
        Where the deployed network lives (default: CUDA when present, else the CPU); the timings
        of ``"auto"`` are taken there.
    repeats : int
        Timings per form (best kept) for ``"auto"``.

    Returns
    -------
    torch.nn.Module
        In eval mode; ``deploy_report`` lists ``{"name", "kind", "form", "ms_factorized",
        "ms_dense"}`` per factorized layer (times are ``None`` unless measured).
    """
    if refold not in REFOLD_CHOICES:
        raise ValueError(f"refold must be one of {REFOLD_CHOICES}, got {refold!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"deploy() takes an nn.Module, got {type(model).__name__}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    device = resolve_device(device)
    new = copy.deepcopy(model).to(device).eval()
    layers = {name: m for name, m in new.named_modules() if isinstance(m, FACTORIZED_TYPES)}
    inputs = recorded_inputs(new, layers, example_size) if refold == "auto" and layers else {}
    report = []
    for name, layer in layers.items():
        entry: dict[str, Any] = {"name": name, "kind": type(layer).__name__, "ms_factorized": None, "ms_dense": None}
        dense = refolded(layer)
        if refold == "always" or isinstance(layer, BlockSparseLinear):
            use_dense = True
        elif refold == "never":
            use_dense = False
        else:
            times = time_calls([layer, dense], inputs.get(name, []), repeats)
            entry["ms_factorized"], entry["ms_dense"] = times if times else (None, None)
            use_dense = bool(times) and times[1] < times[0]
        entry["form"] = "dense" if use_dense else "factorized"
        if use_dense:
            _replace(new, name, dense)
        report.append(entry)
    new.deploy_report = report
    return new


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)
    drop_edits(model, "factorize", name)  # the layer is its original dense type again


def recorded_inputs(model: nn.Module, layers: dict[str, nn.Module], example_size: Sequence[int]) -> dict[str, list[tuple[torch.Tensor, int]]]:
    """``{name: [(input, calls), ...]}``: the distinct inputs (shape and strides) each of ``layers``
    (``{name: module of model}``) gets in one forward pass of ``model`` at ``example_size`` (sides
    rounded up to its ``size_multiple``), with how often each occurs.  The hooks that record them
    make the network call every layer on its data (the tiled UHDformer: once per tile)."""
    if len(example_size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in example_size):
        raise ValueError(f"example_size must be (H, W) with positive integer sides, got {example_size!r}")
    multiple = size_multiple(model)
    height, width = (-(-int(v) // multiple) * multiple for v in example_size)
    seen: dict[str, dict[tuple, list]] = {name: {} for name in layers}

    def record(name):
        def hook(module, args):
            x = args[0]
            key = (tuple(x.shape), tuple(x.stride()))
            if key in seen[name]:
                seen[name][key][1] += 1
            else:  # a copy with the same strides: a sliced view keeps its layout and its gaps
                copy_ = torch.empty_strided(x.shape, x.stride(), dtype=x.dtype, device=x.device).copy_(x.detach())
                seen[name][key] = [copy_, 1]
        return hook

    handles = [layer.register_forward_pre_hook(record(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            network_output(model, example_input(model, height, width))
    finally:
        for handle in handles:
            handle.remove()
    return {name: [(x, n) for x, n in by_key.values()] for name, by_key in seen.items()}


def time_calls(modules: Sequence[nn.Module], inputs: list[tuple[torch.Tensor, int]], repeats: int) -> list[float]:
    """Milliseconds each module spends on the recorded calls of one forward pass.

    Each distinct input is timed alone and weighted by its count; the modules are interleaved,
    best of ``repeats`` per input (CUDA synchronised around each call).  ``[]`` without inputs.
    """
    if not inputs:
        return []
    best = [[float("inf")] * len(inputs) for _ in modules]
    device = inputs[0][0].device
    with torch.no_grad():
        for module in modules:  # warm-up
            for x, _ in inputs:
                module(x)
        for _ in range(repeats):
            for i, module in enumerate(modules):
                for j, (x, _) in enumerate(inputs):
                    _synchronize(device)
                    start = time.perf_counter()
                    module(x)
                    _synchronize(device)
                    best[i][j] = min(best[i][j], time.perf_counter() - start)
    return [sum(t * n for t, (_, n) in zip(times, inputs)) * 1e3 for times in best]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
