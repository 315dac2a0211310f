"""Apply a :class:`~sparsesel.compress.plan.Plan` to a network, and save / load the result.

:func:`apply` deep-copies the network and swaps every planned layer for its factorized form
initialised from the trained weights; the input network is never modified.

Checkpoints
-----------
* UHDformer: the :mod:`sparsesel.nets` format (``"format": "sparsesel.uhdformer"``), which
  records structural edits. Each factorized layer is the edit
  ``{"kind": "sparsesel.compress.factorize", "args": {"name", "factorization", "ranks"}}``
  (registered here with :func:`sparsesel.nets.checkpoints.register_structure_op`), so
  :func:`sparsesel.nets.load_uhdformer` rebuilds the network once this module is imported.
* Any other network of :mod:`sparsesel.nets.zoo`: ``{"format": "sparsesel.compress",
  "version": 1, "net": name, "config": {...}, "plan": {...}, "meta": {...}, "state_dict": {...}}``;
  loading builds the base network from its config, replays the plan's structure (no
  decomposition) and loads the weights strictly.

:func:`load_compressed` reads both (and plain uncompressed checkpoints).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits
from torch import nn

from sparsesel.compress.factorized import HOOI_ITERATIONS, empty_factorized, factorize, factorized_params
from sparsesel.compress.plan import Plan
from sparsesel.nets.checkpoints import register_structure_op

__all__ = ["EDIT_KIND", "FORMAT", "apply", "count_params", "load_compressed", "save_compressed"]

EDIT_KIND = "sparsesel.compress.factorize"
FORMAT = "sparsesel.compress"
FORMAT_VERSION = 1


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _get_layer(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"the plan names layer {name!r}, which the network does not have") from None


@register_structure_op(EDIT_KIND)
def replay_factorization(model: nn.Module, name: str, factorization: str, ranks: list[int]) -> None:
    """Structural edit: replace layer ``name`` by an (uninitialised) factorized layer of ``ranks``."""
    layer = _get_layer(model, name)
    _set_submodule(model, name, empty_factorized(layer, factorization, ranks))


def _check_layer(layer: nn.Module, entry) -> None:
    if type(layer).__name__ != entry.module:
        raise ValueError(f"plan layer {entry.name!r} is a {entry.module} in the plan but a {type(layer).__name__} in the network")
    if list(layer.weight.shape) != list(entry.shape):
        raise ValueError(f"plan layer {entry.name!r} has shape {entry.shape} in the plan but {list(layer.weight.shape)} in the network")


def apply(model: nn.Module, plan: Plan, *, n_iter_max: int = HOOI_ITERATIONS) -> nn.Module:
    """A copy of ``model`` with the plan's layers factorized (``model`` is not modified).

    Parameters
    ----------
    model : torch.nn.Module
        The network the plan was made for (or one with the same layers).
    plan : Plan
        Possibly edited by hand: each layer's ``factorization`` and ``ranks`` are validated here.
    n_iter_max : int
        HOOI sweeps of the Tucker-2 initialisation.

    Returns
    -------
    torch.nn.Module
        Same class as ``model``; for networks with a ``structure`` list (UHDformer) the edits are
        recorded there, so :func:`sparsesel.nets.save_checkpoint` saves a loadable file.
        ``compressed.compress_plan`` holds the plan as data.
    """
    if not isinstance(plan, Plan):
        raise TypeError(f"plan must be a Plan, got {type(plan).__name__}")
    new = copy.deepcopy(model)
    with threadpool_limits(1):  # small SVDs: BLAS threads only contend
        _replace_layers(new, plan, n_iter_max)
    new.compress_plan = plan.to_dict()
    return new


def _replace_layers(new: nn.Module, plan: Plan, n_iter_max: int) -> None:
    for entry in plan.layers:
        layer = _get_layer(new, entry.name)
        _check_layer(layer, entry)
        if entry.factorization == "dense":
            continue
        if entry.ranks is None:
            raise ValueError(f"plan layer {entry.name!r}: factorization {entry.factorization!r} needs ranks")
        replacement = factorize(layer, entry.factorization, entry.ranks, n_iter_max=n_iter_max)
        _set_submodule(new, entry.name, replacement)
        if isinstance(getattr(new, "structure", None), list):
            new.structure.append({"kind": EDIT_KIND, "args": {"name": entry.name, "factorization": entry.factorization,
                                                                "ranks": [int(r) for r in entry.ranks]}})


def _plan_structure(plan: dict) -> list[dict]:
    return [
        {"kind": EDIT_KIND, "args": {"name": layer["name"], "factorization": layer["factorization"], "ranks": list(layer["ranks"])}}
        for layer in plan["layers"]
        if layer["factorization"] != "dense"
    ]


def save_compressed(model: nn.Module, path: str | os.PathLike, *, net: str | None = None, meta: dict | None = None, force: bool = False) -> Path:
    """Write a compressed network atomically (an existing file is refused unless ``force``).

    UHDformer goes to the :mod:`sparsesel.nets` format (structure recorded); other networks to the
    ``sparsesel.compress`` format, for which ``net`` (the :mod:`sparsesel.nets.zoo` name) is needed.
    """
    from sparsesel.nets.checkpoints import _check_plain
    from sparsesel.nets.uhdformer import UHDformer
    from sparsesel.nets import zoo

    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite it")
    plan = getattr(model, "compress_plan", None)
    meta = dict(meta or {})
    if plan is not None:
        meta["compress_plan"] = plan
    _check_plain(meta, "meta")
    if isinstance(model, UHDformer):
        return zoo.save_net(model, path, net="uhdformer", meta=meta, force=force)
    if net is None:
        raise ValueError(f"save_compressed needs net=<name> for a {type(model).__name__} (one of {zoo.net_names()})")
    zoo.net_entry(net)
    payload = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "net": net,
        "config": zoo.config_dict(model),
        "plan": plan,
        "meta": meta,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    zoo._atomic_torch_save(payload, path)
    return path


def load_compressed(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Load a network written by :func:`save_compressed` (or any :func:`sparsesel.nets.zoo.load_net` file).

    Returns
    -------
    model : torch.nn.Module
        In eval mode.
    info : dict
        ``{"net", "config", "meta", "plan"}`` (``plan`` is ``None`` for an uncompressed network).
    """
    from sparsesel.nets import zoo

    payload = zoo.load_checkpoint_file(path)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        if payload.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported {FORMAT} version {payload.get('version')!r} (this code reads {FORMAT_VERSION})")
        missing = [k for k in ("net", "config", "plan", "state_dict") if k not in payload]
        if missing:
            raise ValueError(f"{path}: {FORMAT} checkpoint lacks the keys {missing}")
        plan = payload["plan"]
        try:
            edits = _plan_structure(plan)
        except (TypeError, KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{path}: 'plan' is not a compression plan (layers with name, factorization, ranks): {exc!r}") from None

        def replay(model: nn.Module) -> None:
            for op in edits:
                replay_factorization(model, **op["args"])

        config = payload["config"]
        settings = {**config, "plan": [op["args"] for op in edits]} if isinstance(config, dict) else config
        model = zoo.build_from_checkpoint(path, payload["net"], config, payload["state_dict"], edits=replay, settings=settings,
                                          state_field="state_dict")
        model.compress_plan = plan
        meta = payload.get("meta", {})
        if not isinstance(meta, dict):
            raise ValueError(f"{path}: 'meta' must be a dict, got {type(meta).__name__}")
        return model, {"net": payload["net"], "config": dict(config), "meta": dict(meta), "plan": plan}
    model, info = zoo.load_net(path)
    plan = info.get("meta", {}).get("compress_plan")
    if plan is not None:
        model.compress_plan = plan
    return model, {**info, "plan": plan}


def plan_params(plan: Plan) -> int:
    """Parameters of the network after ``plan``, recomputed from its layers' ranks (for edited plans)."""
    return plan.params_before - sum(l.dense_params for l in plan.layers) + sum(
        factorized_params(tuple(l.shape), l.factorization, l.ranks, l.bias) for l in plan.layers)

