"""Apply a :class:`~sparsesel.compress.plan.Plan` to a network, and save / load the result.

:func:`apply` deep-copies the network and swaps every planned layer for its factorized form
initialised from the trained weights; the input network is never modified. Each factorized layer
is recorded in the network's edit log (:mod:`sparsesel.nets.edits`) as
``{"kind": "factorize", "args": {"name", "factorization", "ranks"}}``, replayed on load by
:func:`replay_factorization`.

Checkpoints
-----------
:func:`save_compressed` and :func:`load_compressed` write and read the one format of every network
(:mod:`sparsesel.nets.zoo`: config, edit log, state dict), for the networks of :mod:`sparsesel.nets`
and for any other ``nn.Module`` (its factory ``"package.module:function"`` and keyword arguments
are stored as its config). The plan is kept in the file's ``meta`` (``compress_plan``).
:func:`load_compressed` also reads the files of earlier versions (``"sparsesel.compress"``,
``"sparsesel.uhdformer"``) and uncompressed ones.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from threadpoolctl import threadpool_limits
from torch import nn

from sparsesel.compress.factorized import HOOI_ITERATIONS, empty_factorized, factorize
from sparsesel.compress.plan import Plan
from sparsesel.nets.edits import record_edit

__all__ = ["EDIT_KIND", "apply", "count_params", "load_compressed", "replay_factorization", "save_compressed",
           "set_submodule"]

EDIT_KIND = "factorize"


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    """Replace ``model``'s submodule ``name`` (dotted) by ``module``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def _get_layer(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"the plan names layer {name!r}, which the network does not have") from None


def replay_factorization(model: nn.Module, name: str, factorization: str, ranks: list[int]) -> None:
    """Structural edit ``factorize``: replace layer ``name`` by an (uninitialised) factorized layer of ``ranks``."""
    layer = _get_layer(model, name)
    set_submodule(model, name, empty_factorized(layer, factorization, ranks))


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
        Same class as ``model``, each factorized layer recorded in its edit log
        (:func:`sparsesel.nets.edits.edit_log`), so :func:`save_compressed` saves a loadable file.
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
        set_submodule(new, entry.name, replacement)
        record_edit(new, EDIT_KIND, {"name": entry.name, "factorization": entry.factorization,
                                     "ranks": [int(r) for r in entry.ranks]})


def save_compressed(model: nn.Module, path: str | os.PathLike, *, net: str | None = None, config: dict | None = None,
                    meta: dict | None = None, force: bool = False) -> Path:
    """Write a network, compressed or not, atomically (an existing file is refused unless ``force``).

    Parameters
    ----------
    model : torch.nn.Module
        A network of :mod:`sparsesel.nets` or any other module (see :func:`sparsesel.nets.zoo.save_net`).
    path : path-like
    net : str, optional
        Its built-in name or factory ``"package.module:function"`` (default: found from the model).
    config : dict, optional
        The factory's keyword arguments (default: those it was built with, else none).
    meta : dict, optional
        Plain values stored with it; the plan (``model.compress_plan``) is added as ``compress_plan``.
    force : bool
        Replace an existing file.
    """
    from sparsesel.nets import zoo

    meta = dict(meta or {})
    plan = getattr(model, "compress_plan", None)
    if plan is not None:
        meta["compress_plan"] = plan
    return zoo.save_net(model, path, net=net, config=config, meta=meta, force=force)


def load_compressed(path: str | os.PathLike, *, trust_code: bool = False, net: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Load a network written by :func:`save_compressed` or any command (see :func:`sparsesel.nets.zoo.load_net`).

    Parameters
    ----------
    path : path-like
    trust_code : bool
        Allow a network built by a factory to import and run it.
    net : str, optional
        The network expected (naming the file's factory is the opt-in to import it).

    Returns
    -------
    model : torch.nn.Module
        In eval mode (``model.compress_plan`` holds the plan of a compressed network).
    info : dict
        ``{"net", "config", "meta", "format", "plan"}`` (``plan`` is ``None`` for an uncompressed network).
    """
    from sparsesel.nets import zoo

    model, info = zoo.load_net(path, trust_code=trust_code, net=net)
    plan = info.get("meta", {}).get("compress_plan")
    if plan is not None:
        model.compress_plan = plan
    return model, {**info, "plan": plan}
