"""The log of structural edits a network carries, and the table of every edit kind.

A network built from its configuration may be changed afterwards: a layer factorized, a
channel group made narrower, some weight blocks zeroed. Each change is one *edit*, plain data::

    {"kind": "factorize", "args": {"name": "stem", "factorization": "tucker2", "ranks": [4, 3]}}

appended to the network's edit log (:func:`edit_log`, the list ``model.structure``). A checkpoint
stores the log beside the configuration and the state dict; loading builds the network from
its configuration, replays the log in order (:func:`replay_edits`; on PyTorch's ``meta`` device
first, so that the stored tensors are checked before anything is allocated) and loads the
weights strictly.

Edit kinds
----------
:data:`EDIT_KINDS` is a declarative table, ``kind -> "module:function"``: the loader knows every
kind without the caller importing anything, and imports a kind's module only when a log holds
it (as the solver registry does with solvers). ``function(model, **args)`` changes ``model``
in place, building uninitialised layers of the right shapes (the weights come from the state
dict afterwards); it must work on the ``meta`` device.

=================  ======================================================  ==========================
kind               replayed by                                             written by
=================  ======================================================  ==========================
``factorize``      :func:`sparsesel.compress.apply.replay_factorization`     ``compress`` (``apply``)
``prune_channels`` :func:`sparsesel.compress.channel_pruning.replay_channel_pruning`  channel pruning
``block_mask``     :func:`sparsesel.blocks.replay_block_mask`                ``prune``
``shrink_trunk``   :func:`sparsesel.compress.trunk_widths.replay_trunk`      latency plans, channel pruning
``block_pack``     :func:`sparsesel.block_layers.replay_pack`                ``prune --kernel`` (block-sparse layers)
=================  ======================================================  ==========================

Logs written by earlier versions name the first two ``sparsesel.compress.factorize`` and
``sparsesel.compress.prune_channels``; they are read under their current names
(:data:`LEGACY_KINDS`). Other kinds (tests, third-party code) are added with
:func:`register_edit_kind`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "EDIT_KINDS",
    "EDIT_LOG_ATTRIBUTE",
    "LEGACY_KINDS",
    "checked_edits",
    "drop_edits",
    "edit_kinds",
    "edit_log",
    "record_edit",
    "register_edit_kind",
    "replay_edits",
]

#: kind -> "module:function" replaying it (imported when a log first holds the kind)
EDIT_KINDS: Mapping[str, str] = {
    "factorize": "sparsesel.compress.apply:replay_factorization",
    "prune_channels": "sparsesel.compress.channel_pruning:replay_channel_pruning",
    "block_mask": "sparsesel.blocks:replay_block_mask",
    "shrink_trunk": "sparsesel.compress.trunk_widths:replay_trunk",
    "block_pack": "sparsesel.block_layers:replay_pack",
}
#: names of the kinds in files written before the table existed
LEGACY_KINDS: Mapping[str, str] = {
    "sparsesel.compress.factorize": "factorize",
    "sparsesel.compress.prune_channels": "prune_channels",
}
#: the attribute of a network that holds its edit log
EDIT_LOG_ATTRIBUTE = "structure"

_REGISTERED: dict[str, Callable[..., None]] = {}


def edit_kinds() -> tuple[str, ...]:
    """Every edit kind the loader knows: the table's and those registered at run time."""
    return tuple(sorted({*EDIT_KINDS, *_REGISTERED}))


def register_edit_kind(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorator: make ``fn(model, **args)`` the replay of edit ``kind`` (a kind not in :data:`EDIT_KINDS`).

    Raises
    ------
    ValueError
        When ``kind`` is a kind of the table, or already registered to another function.
    """

    def decorator(fn: Callable[..., None]) -> Callable[..., None]:
        if kind in EDIT_KINDS or kind in LEGACY_KINDS:
            raise ValueError(f"structural edit {kind!r} is one of the bundled kinds {sorted(EDIT_KINDS)}")
        if kind in _REGISTERED and _REGISTERED[kind] is not fn:
            raise ValueError(f"structural edit {kind!r} is already registered")
        _REGISTERED[kind] = fn
        return fn

    return decorator


def edit_log(model: nn.Module) -> list[dict[str, Any]]:
    """The edit log of ``model`` (the list ``model.structure``), created empty when it has none.

    Raises
    ------
    TypeError
        When ``model.structure`` exists and is not a list (a module of the user's named so).
    """
    log = getattr(model, EDIT_LOG_ATTRIBUTE, None)
    if log is None:
        log = []
        setattr(model, EDIT_LOG_ATTRIBUTE, log)
    if not isinstance(log, list):
        raise TypeError(
            f"{type(model).__name__}.{EDIT_LOG_ATTRIBUTE} is a {type(log).__name__}; sparsesel keeps a network's log of "
            f"structural edits in that attribute, so it must be a list (rename the network's own attribute)"
        )
    return log


def record_edit(model: nn.Module, kind: str, args: Mapping[str, Any]) -> None:
    """Append the edit ``{"kind": kind, "args": args}`` (plain values only) to ``model``'s log."""
    if kind not in EDIT_KINDS and kind not in _REGISTERED:
        raise ValueError(f"unknown structural edit {kind!r}; known: {list(edit_kinds())}")
    edit_log(model).append({"kind": kind, "args": dict(args)})


def drop_edits(model: nn.Module, kind: str, name: str) -> None:
    """Remove from ``model``'s log the edits of ``kind`` on layer ``name`` or inside it
    (``args["name"]`` equal to ``name`` or starting with ``name + "."``): that layer is its
    original dense type again (e.g. refolded by :func:`sparsesel.compress.deploy`)."""
    log = edit_log(model)

    def inside(edit: Mapping[str, Any]) -> bool:
        target = edit.get("args", {}).get("name")
        return isinstance(target, str) and (target == name or target.startswith(name + "."))

    log[:] = [edit for edit in log if not (LEGACY_KINDS.get(edit.get("kind"), edit.get("kind")) == kind and inside(edit))]


def checked_edits(edits: Any, name: str, field: str = "edits") -> list[dict[str, Any]]:
    """``edits`` as a list of ``{"kind": str, "args": dict}`` under their current kind names.

    Parameters
    ----------
    edits : object
        What a file holds under ``field``.
    name : str
        The file, for messages.
    field : str
        The file's key of the log (``"edits"``; ``"structure"`` in earlier UHDformer files).

    Raises
    ------
    ValueError
        Not a list, an entry that is not such a dict, or an unknown kind (the known ones listed).
    """
    if not isinstance(edits, list):
        raise ValueError(f"{name}: {field!r} must be a list of edits, got {type(edits).__name__}")
    out = []
    for i, edit in enumerate(edits):
        if not isinstance(edit, dict) or not isinstance(edit.get("kind"), str) or not isinstance(edit.get("args", {}), dict):
            raise ValueError(f"{name}: {field}[{i}] must be a dict with a str 'kind' and a dict 'args', got {edit!r}")
        kind = LEGACY_KINDS.get(edit["kind"], edit["kind"])
        if kind not in EDIT_KINDS and kind not in _REGISTERED:
            raise ValueError(f"{name}: unknown structural edit {edit['kind']!r} ({field}[{i}]); known: {list(edit_kinds())}")
        out.append({"kind": kind, "args": dict(edit.get("args", {}))})
    return out


def _replay_function(kind: str) -> Callable[..., None]:
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    module_name, _, function = EDIT_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module_name), function)


def replay_edits(model: nn.Module, edits: Iterable[Mapping[str, Any]], name: str = "checkpoint") -> None:
    """Apply ``edits`` to ``model`` in order and append them to its log.

    Parameters
    ----------
    model : torch.nn.Module
        Freshly built from its configuration (on any device, ``meta`` included).
    edits : iterable of dict
        As :func:`checked_edits` returns them (checked here again).
    name : str
        The file, for messages.

    Raises
    ------
    ValueError
        A malformed or unknown edit, or one that does not fit the network (its replay's message,
        prefixed with the file and the edit's position).
    """
    log = edit_log(model)
    for i, edit in enumerate(checked_edits(list(edits), name)):
        try:
            _replay_function(edit["kind"])(model, **edit["args"])
        except TypeError as exc:
            raise ValueError(f"{name}: edits[{i}] ({edit['kind']}): bad arguments {sorted(edit['args'])}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{name}: edits[{i}] ({edit['kind']}): {exc}") from None
        log.append(edit)
