"""Choose, per block-pruned layer, between its dense form and a block-sparse kernel, by timing it in place.

Fewer multiply-adds are not always faster: a small-channel layer is bound by memory traffic, and
the block kernels (:mod:`sparsesel.block_layers`) pay a gather of the input channels and smaller,
less efficient products. :func:`pack_model` therefore measures each layer the way
:func:`sparsesel.compress.deploy.deploy` measures factorized layers -- on the inputs the layer
receives in one forward pass of the network at ``example_size`` (:func:`~sparsesel.compress.deploy.recorded_inputs`),
dense and every applicable block kernel interleaved, best of ``repeats``
(:func:`~sparsesel.compress.deploy.time_calls`) -- and keeps the block form only where it is
faster (``kernel="auto"``), everywhere (``"block"``) or nowhere (``"dense"``). The whole network
is then timed in both forms; with ``"auto"``, if the network with block layers is slower than the
dense one (e.g. a block layer breaks a fused fast path of the network), every layer goes back
to dense and the report says so.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from sparsesel.block_layers import kernels_for, pack_layer, packable, packed_from_dense, unpack_layer

__all__ = ["KERNEL_CHOICES", "pack_model", "time_networks"]

KERNEL_CHOICES = ("auto", "dense", "block")


class _Threads:
    """``torch.set_num_threads(n)`` inside the block (``None``: unchanged)."""

    def __init__(self, threads: int | None) -> None:
        self.threads, self.before = threads, torch.get_num_threads()

    def __enter__(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(int(self.threads))

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.before)


def pack_model(
    model: nn.Module,
    block_masks: Mapping[str, torch.Tensor],
    block_shape: tuple[int, int],
    *,
    kernel: str = "auto",
    example_size: Sequence[int] = (512, 512),
    repeats: int = 5,
    threads: int | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of the block-pruned ``model`` with its pruned layers in their measured-fastest form.

    Parameters
    ----------
    model : torch.nn.Module
        A network whose pruned weights are plain, zero outside their kept blocks (masks baked);
        not modified.
    block_masks : mapping of str to bool tensor
        Parameter name (``"layer.weight"``) -> ``(R, C)`` block mask of that weight.
    block_shape : (int, int)
    kernel : {"auto", "dense", "block"}
        ``"auto"``: the block form where it is measured faster than dense; ``"block"``: everywhere
        it applies; ``"dense"``: nowhere (the timings are still reported).
    example_size : (H, W)
        Input size at which every layer and the network are timed (rounded up to the network's
        size multiple).
    repeats : int
        Timings per form (best kept), interleaved.
    threads : int, optional
        Torch threads while timing (the caller's setting is restored).

    Returns
    -------
    (torch.nn.Module, dict)
        The network (eval mode; block layers recorded in ``model.structure``) and the report:
        ``layers`` (one entry per pruned weight: ``name``, ``layer``, ``shape``, ``kept_blocks``,
        ``total_blocks``, ``ms_dense``, ``ms_block`` (best kernel), ``block_kernel``,
        ``ms_kernels``, ``speedup`` = dense / block, ``form``, ``note``), ``dense_wins``
        (layers where dense was measured faster), and ``total`` (sums over layers and whole-network
        times in both forms, ``network_ms_dense`` / ``network_ms_chosen``).
    """
    if kernel not in KERNEL_CHOICES:
        raise ValueError(f"kernel must be one of {KERNEL_CHOICES}, got {kernel!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    from sparsesel.compress.deploy import recorded_inputs, time_calls

    dense_model = copy.deepcopy(model).eval()
    layers, entries = _packable_layers(dense_model, block_masks)
    with _Threads(threads), torch.no_grad():
        inputs = recorded_inputs(dense_model, {n: m for n, (m, _) in layers.items()}, example_size) if layers else {}
        for entry in entries:
            if entry["name"] in layers:
                _time_layer(entry, *layers[entry["name"]], block_shape, inputs.get(entry["name"], []), repeats, time_calls)
        new = copy.deepcopy(dense_model)
        for entry in entries:
            if entry["block_kernel"] is not None and (kernel == "block" or (kernel == "auto" and entry["speedup"] > 1.0)):
                pack_layer(new, entry["name"], layers[entry["name"]][1], block_shape, entry["block_kernel"])
                entry["form"] = "block"
        total = _totals(entries)
        packed = [e["name"] for e in entries if e["form"] == "block"]
        if packed:
            total["network_ms_dense"], total["network_ms_chosen"] = time_networks([dense_model, new], example_size, repeats)
            if kernel == "auto" and total["network_ms_chosen"] > total["network_ms_dense"]:
                _revert_to_dense(new, entries, total)
    total["block_layers"] = sum(e["form"] == "block" for e in entries)
    report = {"kernel": kernel, "example_size": [int(v) for v in example_size], "threads": threads or torch.get_num_threads(),
              "repeats": repeats, "layers": entries, "dense_wins": [e["name"] for e in entries if e["speedup"] is not None and e["speedup"] <= 1.0],
              "total": total}
    return new.eval(), report


def _packable_layers(dense_model: nn.Module, block_masks: Mapping[str, torch.Tensor]):  # noqa: ANN202
    """The layers of ``dense_model`` that a block form can replace (name -> (module, bool block mask)), and
    one report entry per masked parameter (with a ``note`` saying why one cannot be packed)."""
    layers, entries = {}, []
    for parameter, mask in block_masks.items():
        name = parameter.rpartition(".")[0]
        module = dense_model.get_submodule(name)
        reason = packable(module)
        entry = _entry(name, module, mask)
        if reason is None and parameter.endswith(".weight"):
            layers[name] = (module, torch.as_tensor(mask, dtype=torch.bool))
        else:
            entry["note"] = reason or f"{parameter} is not a layer weight"
        entries.append(entry)
    return layers, entries


def _revert_to_dense(new: nn.Module, entries: list[dict[str, Any]], total: dict[str, Any]) -> None:
    """Put every packed layer of ``new`` back in its dense form (the whole network was slower with them)."""
    for entry in entries:
        if entry["form"] == "block":
            unpack_layer(new, entry["name"])
    for entry in entries:
        if entry["form"] == "block":
            entry["form"], entry["note"] = "dense", "block form faster alone, but the whole network was slower with it"
    total["reverted"] = True
    total["network_ms_chosen"] = total["network_ms_dense"]


def _entry(name: str, module: nn.Module, mask: Any) -> dict[str, Any]:
    weight = getattr(module, "weight", None)
    shape = [] if weight is None else [int(s) for s in weight.shape]
    kind = type(module).__name__
    if isinstance(module, nn.Conv2d):
        kind += " {}x{}".format(*module.kernel_size)
    mask = torch.as_tensor(mask)
    return {"name": name, "layer": kind, "shape": shape, "kept_blocks": int(mask.sum()), "total_blocks": int(mask.numel()),
            "ms_dense": None, "ms_block": None, "block_kernel": None, "ms_kernels": {}, "speedup": None, "form": "dense", "note": ""}


def _time_layer(entry: dict, module: nn.Module, mask: torch.Tensor, block_shape: tuple[int, int], inputs: list, repeats: int,
                time_calls: Any) -> None:
    """Fill ``entry`` with the dense and block timings of ``module`` on its recorded ``inputs``."""
    packed = packed_from_dense(module, mask, block_shape)
    kernels = kernels_for(packed)
    forms = [module] + [_with_kernel(packed, k) for k in kernels]
    times = time_calls(forms, inputs, repeats)
    if not times:
        entry["note"] = "not called in the forward pass at this size: left dense"
        return
    entry["ms_dense"] = round(times[0], 4)
    entry["ms_kernels"] = {k: round(t, 4) for k, t in zip(kernels, times[1:])}
    best = min(range(len(kernels)), key=lambda i: times[1 + i])
    entry["block_kernel"], entry["ms_block"] = kernels[best], round(times[1 + best], 4)
    entry["speedup"] = round(times[0] / times[1 + best], 4) if times[1 + best] > 0 else None
    if entry["speedup"] is not None and entry["speedup"] <= 1.0:
        entry["note"] = "dense is faster"


def _with_kernel(layer: nn.Module, kernel: str) -> nn.Module:
    twin = copy.deepcopy(layer)
    twin.set_kernel(kernel)
    return twin


def _totals(entries: list[dict]) -> dict[str, Any]:
    timed = [e for e in entries if e["ms_dense"] is not None]
    dense = sum(e["ms_dense"] for e in timed)
    chosen = sum(e["ms_block"] if e["form"] == "block" else e["ms_dense"] for e in timed)
    best_block = sum(min(e["ms_block"], e["ms_dense"]) for e in timed)
    return {"layers_ms_dense": round(dense, 4), "layers_ms_chosen": round(chosen, 4), "layers_ms_best": round(best_block, 4),
            "network_ms_dense": None, "network_ms_chosen": None, "reverted": False}


def time_networks(models: Sequence[nn.Module], example_size: Sequence[int], repeats: int) -> list[float]:
    """Milliseconds of one forward pass of each network at ``example_size``, interleaved, best of ``repeats``.

    The sides are rounded up to the first network's ``size_multiple``; every network gets the same input.
    """
    from sparsesel.compress.network_io import example_input, network_output

    multiple = int(getattr(models[0], "size_multiple", 1))
    height, width = (-(-int(v) // multiple) * multiple for v in example_size)
    x = example_input(models[0], height, width)
    best = [float("inf")] * len(models)
    with torch.no_grad():
        for model in models:  # warm-up
            network_output(model, x)
        for _ in range(repeats):
            for i, model in enumerate(models):
                start = time.perf_counter()
                network_output(model, x)
                best[i] = min(best[i], time.perf_counter() - start)
    return [round(t * 1e3, 4) for t in best]
