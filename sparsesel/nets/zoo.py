"""Networks by name, and the one checkpoint format every command writes and reads.

Every network -- built-in, compressed, pruned or a user's own -- is saved by :func:`save_net` as::

    {"format": "sparsesel.network", "version": 1,
     "net": "uhdformer" | "package.module:function",   # a built-in network, or the user's factory
     "config": {...},           # the built-in's config fields, or the factory's keyword arguments
     "edits": [{"kind": str, "args": {...}}, ...],   # structural edits since it was built, in order
     "meta": {...},             # plain values: how it was made, scores, the compression plan, ...
     "state_dict": {name: tensor}}

:func:`load_net` reads it without running code (``torch.load(weights_only=True)``): it builds the
base network from ``config`` with the network's adapter (:mod:`sparsesel.nets.adapter`), replays
``edits`` (:mod:`sparsesel.nets.edits`; every kind is known to the loader, nothing needs importing
first) and loads ``state_dict`` strictly -- after the whole build, edits included, was checked on
PyTorch's ``meta`` device against the stored tensors
(:func:`sparsesel.nets.checkpoint_checks.build_checked`), so a file whose configuration or edits ask
for a network far larger than its tensors is refused before anything is allocated.

A network made by a factory ``"package.module:function"`` is rebuilt by importing that module and
calling the function: that runs the user's code, so :func:`load_net` refuses such a file unless
``trust_code=True`` or the caller names the factory (``net=``; ``--net`` on the command line).

It also reads, as before, files of earlier versions: ``"sparsesel.nets"`` (``"params"``, no edits),
``"sparsesel.compress"`` (a compression ``"plan"`` instead of edits) and ``"sparsesel.uhdformer"``
(``"structure"``), and every network's official layouts through its adapter: UHDformer releases
(``{"params": ...}``, ``restoration_network.`` prefixes, plain state dicts) and TSHRNet's folder of
``UNet1_<epoch>.pth`` … ``UNet4_<epoch>.pth``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsesel.atomic import write_atomic
from sparsesel.nets.adapter import (
    PRESETS,
    BuiltinAdapter,
    FactoryAdapter,
    NetworkAdapter,
    adapter_for,
    get_adapter,
    is_factory_spec,
)
from sparsesel.nets.adapter import net_names as adapter_net_names
from sparsesel.nets.checkpoint_checks import build_checked, check_on_meta, read_checkpoint_file, short_list
from sparsesel.nets.edits import checked_edits, edit_log, replay_edits

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LEGACY_FORMATS",
    "PRESETS",
    "build_from_checkpoint",
    "build_net",
    "check_plain",
    "check_saveable",
    "config_dict",
    "load_checkpoint_file",
    "load_net",
    "net_names",
    "read_network",
    "save_net",
]

FORMAT = "sparsesel.network"
FORMAT_VERSION = 1
#: formats written by earlier versions (still read)
LEGACY_FORMATS = ("sparsesel.nets", "sparsesel.compress", "sparsesel.uhdformer")


def net_names() -> tuple[str, ...]:
    """Names of the built-in networks (:func:`sparsesel.nets.adapter.net_names`)."""
    return adapter_net_names()


def build_net(name: str, config: str | dict | Any = "small", **overrides: Any) -> nn.Module:
    """Build network ``name``.

    Parameters
    ----------
    name : str
        One of :func:`net_names`, or a factory ``"package.module:function"`` (imported: runs its code).
    config : {"small", "paper"}, dict or config dataclass
        A preset, a dict of config fields, or the config object itself; for a factory, a dict of
        keyword arguments (the preset names mean none).
    **overrides
        Config fields (factory keyword arguments) replacing the preset's / dict's values.
    """
    adapter = get_adapter(name)
    if isinstance(adapter, FactoryAdapter) and isinstance(config, str):
        config = {}
    return adapter.build(config, **overrides)


def config_dict(config_or_model: Any) -> dict:
    """The configuration of a network (or of a config dataclass) as plain data (lists, not tuples)."""
    import dataclasses

    if isinstance(config_or_model, nn.Module):
        return adapter_for(config_or_model).config_of(config_or_model)
    if not dataclasses.is_dataclass(config_or_model):
        raise TypeError(f"expected a network or a config dataclass, got {type(config_or_model).__name__}")
    return {key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config_or_model).items()}


def check_plain(value: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``value`` holds only None, bool, int, float, str, lists and str-keyed dicts."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} keys must be strings, got {key!r}")
            check_plain(item, f"{where}[{key!r}]")
        return
    raise TypeError(f"{where} must hold only None, bool, int, float, str, lists and dicts; got {type(value).__name__}")


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------


def save_net(model: nn.Module, path: str | os.PathLike, *, net: str | None = None, config: dict | None = None,
             meta: dict | None = None, force: bool = False) -> Path:
    """Write ``model`` in the format of the module docstring, atomically; an existing file is refused unless ``force``.

    Parameters
    ----------
    model : torch.nn.Module
        A built-in network (any edits recorded in its log), or any other module.
    path : path-like
    net : str, optional
        Its built-in name or factory ``"package.module:function"``. Default: its adapter's
        (:func:`sparsesel.nets.adapter.adapter_for`: the built-in of its class, the factory that
        built it, else its own class ``"module:Class"`` called without arguments).
    config : dict, optional
        The factory's keyword arguments (default: those it was built with); built-ins: ignored,
        their config is read from the network.
    meta : dict, optional
        Plain values stored beside it.
    force : bool
        Replace an existing file.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``force`` is false.
    ValueError
        ``net`` names another network than ``model``; a network not built by a built-in or an
        importable factory; a configuration (a factory and ``config``) and edit log that do not rebuild
        ``model``'s tensors (:func:`check_saveable`: checked on the ``meta`` device, names and shapes).
    TypeError
        ``meta``, ``config`` or the edit log hold values other than plain data.
    """
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite it")
    adapter = _adapter_to_save(model, net)
    config = dict(config) if config is not None and not isinstance(adapter, BuiltinAdapter) else adapter.config_of(model)
    edits = [dict(edit) for edit in edit_log(model)]
    meta = dict(meta or {})
    for value, where in ((meta, "meta"), (config, "config"), (edits, "the network's edit log")):
        check_plain(value, where)
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    _check_rebuilds(adapter, config, edits, state, model)
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "net": adapter.name, "config": config, "edits": edits,
               "meta": meta, "state_dict": state}
    write_atomic(path, lambda stream: torch.save(payload, stream), force=force)
    return path


def _adapter_to_save(model: nn.Module, net: str | None) -> NetworkAdapter:
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_net() takes an nn.Module, got {type(model).__name__}")
    own = adapter_for(model)
    if net is None:
        if isinstance(own, FactoryAdapter) and own.factory is None:
            raise ValueError(
                f"cannot record how to rebuild this {type(model).__name__}: its class is not importable by name "
                f"(defined in __main__ or inside a function); pass net='package.module:function' (and config={{...}}, "
                "the keyword arguments that rebuild it)")
        return own
    adapter = get_adapter(net)
    if isinstance(adapter, BuiltinAdapter) and not adapter.owns(model):
        raise ValueError(f"net={net!r} but the model is a {type(model).__name__}, not {adapter.model_class}")
    return adapter


def check_saveable(model: nn.Module, *, net: str | None = None, config: dict | None = None) -> None:
    """Refuse (``ValueError``) a network that :func:`save_net` could write but :func:`load_net` could not rebuild.

    The network's base configuration (or factory and keyword arguments) and its edit log are replayed
    on the ``meta`` device (no memory) and compared with its tensors: names and shapes. A structure
    changed without a recorded edit (e.g. by Torch-Pruning) is caught here, before the file is written.
    Parameters as :func:`save_net`.
    """
    adapter = _adapter_to_save(model, net)
    config = dict(config) if config is not None and not isinstance(adapter, BuiltinAdapter) else adapter.config_of(model)
    edits = [dict(edit) for edit in edit_log(model)]
    _check_rebuilds(adapter, config, edits, model.state_dict(), model)


def _check_rebuilds(adapter: NetworkAdapter, config: dict, edits: list, state: Mapping[str, torch.Tensor], model: nn.Module) -> None:
    def build() -> nn.Module:
        rebuilt = adapter.build(config)
        replay_edits(rebuilt, edits, adapter.name)
        return rebuilt

    what = f"{adapter.name}(**{config!r})" if isinstance(adapter, FactoryAdapter) else f"{adapter.name} of its configuration"
    try:
        check_on_meta(build, state, name=what, settings={**config}, network=type(model).__name__)
    except ValueError as exc:
        if isinstance(adapter, FactoryAdapter):
            hint = "pass net='package.module:function' and config={...} (its keyword arguments) that build this network"
        else:
            hint = ("its structure was changed without a recorded edit (sparsesel.nets.edits), e.g. by Torch-Pruning, "
                    "so no file could rebuild it")
        raise ValueError(f"cannot record how to rebuild this {type(model).__name__}: {exc}; {hint}") from None


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------


def load_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` with clear errors for missing, corrupt or unsafe files
    (see :func:`sparsesel.nets.checkpoint_checks.read_checkpoint_file`)."""
    return read_checkpoint_file(path)


def _payload_dict(value: Any, field: str, name: str) -> dict:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"{name}: {field!r} must be a dict with string keys, got {type(value).__name__}")
    return value


def build_from_checkpoint(
    path: str | os.PathLike,
    net: str | NetworkAdapter,
    config: Any,
    state: Any,
    *,
    edits: list[dict] | None = None,
    settings: dict | None = None,
    state_field: str = "state_dict",
) -> nn.Module:
    """Network ``net`` of ``config``, ``edits`` replayed, holding the tensors ``state``, all read from ``path``.

    The build (configuration and edits) is checked against the stored tensors before the network
    is allocated (:func:`sparsesel.nets.checkpoint_checks.build_checked`: a meta-device build
    first, shapes, dtypes and values compared), so a file whose configuration asks for a network
    far larger than its tensors is refused without building it.

    Parameters
    ----------
    path : path-like
        The file the pieces come from (named in every message).
    net : str or NetworkAdapter
        A name of :func:`net_names`, a factory (the caller has decided to trust it) or an adapter.
    config : dict
        The network's config fields (a factory's keyword arguments).
    state : dict of str to torch.Tensor
        The stored parameters and buffers.
    edits : list of dict, optional
        Structural edits (:mod:`sparsesel.nets.edits`) replayed on the built network before the
        weights are loaded.
    settings : dict, optional
        What to show (and search for suspect sizes) in messages; default ``config`` and the edits.
    state_field : str
        The file's key of ``state``, for messages.

    Returns
    -------
    torch.nn.Module
        In eval mode, its edit log holding ``edits``.
    """
    name = str(path)
    if isinstance(net, NetworkAdapter):
        adapter = net
    else:
        try:
            adapter = get_adapter(net)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    config = _payload_dict(config, "config", name)
    state = _payload_dict(state, state_field, name)
    edits = checked_edits(edits or [], name)

    def build() -> nn.Module:
        model = adapter.build(dict(config))
        replay_edits(model, edits, name)
        return model

    shown = settings or ({**config, "edits": [{edit["kind"]: edit["args"]} for edit in edits]} if edits else config)
    return build_checked(build, state, name=name, settings=shown, network=adapter.name).eval()


def _trusted(net: str, name: str, trust_code: bool, named: str | None) -> None:
    if is_factory_spec(net) and not trust_code and named != net:
        raise ValueError(
            f"{name} holds a network built by the factory {net!r}: loading it imports that module and runs its code. "
            f"Name the factory yourself (--net {net}; net={net!r}) or pass --trust-code (trust_code=True), only for "
            "a file from a source you trust")


def _read_current(payload: dict, name: str, trust_code: bool, named: str | None) -> tuple[nn.Module, dict]:
    version = payload.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{name}: unsupported {FORMAT} version {version!r} (this code reads 1..{FORMAT_VERSION})")
    missing = [key for key in ("net", "config", "state_dict") if key not in payload]
    if missing:
        raise ValueError(f"{name}: {FORMAT} checkpoint lacks the keys {missing}")
    net = payload["net"]
    if not isinstance(net, str):
        raise ValueError(f"{name}: 'net' must be a network name or factory, got {type(net).__name__}")
    if named is not None and named != net:
        raise ValueError(f"{name} holds a {net} network, not {named}")
    _trusted(net, name, trust_code, named)
    meta = _payload_dict(payload.get("meta", {}), "meta", name)
    config = _payload_dict(payload["config"], "config", name)
    edits = checked_edits(payload.get("edits", []), name)
    model = build_from_checkpoint(name, net, config, payload["state_dict"], edits=edits)
    return model, {"net": net, "config": dict(config), "meta": dict(meta), "format": FORMAT}


def _read_legacy_nets(payload: dict, name: str) -> tuple[nn.Module, dict]:
    missing = [key for key in ("net", "config", "params") if key not in payload]
    if missing:
        raise ValueError(f"{name}: sparsesel.nets checkpoint lacks the keys {missing}")
    meta = _payload_dict(payload.get("meta", {}), "meta", name)
    config = _payload_dict(payload["config"], "config", name)
    net = payload["net"]
    if is_factory_spec(net):
        raise ValueError(f"{name}: unknown network {net!r} (sparsesel.nets files hold built-in networks only)")
    try:
        adapter = get_adapter(net)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    config = adapter.upgrade_config(config, "sparsesel.nets")
    model = build_from_checkpoint(name, adapter, config, payload["params"], state_field="params")
    return model, {"net": net, "config": dict(config), "meta": dict(meta), "format": "sparsesel.nets"}


def _plan_edits(plan: Any) -> list[dict]:
    return [
        {"kind": "factorize", "args": {"name": layer["name"], "factorization": layer["factorization"], "ranks": list(layer["ranks"])}}
        for layer in plan["layers"]
        if layer["factorization"] != "dense"
    ]


def _read_legacy_compress(payload: dict, name: str) -> tuple[nn.Module, dict]:
    if payload.get("version") != 1:
        raise ValueError(f"{name}: unsupported sparsesel.compress version {payload.get('version')!r} (this code reads 1)")
    missing = [key for key in ("net", "config", "plan", "state_dict") if key not in payload]
    if missing:
        raise ValueError(f"{name}: sparsesel.compress checkpoint lacks the keys {missing}")
    plan = payload["plan"]
    try:
        edits = _plan_edits(plan)
    except (TypeError, KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"{name}: 'plan' is not a compression plan (layers with name, factorization, ranks): {exc!r}") from None
    config = payload["config"]
    settings = {**config, "plan": [edit["args"] for edit in edits]} if isinstance(config, dict) else None
    net = payload["net"]
    if is_factory_spec(net):
        raise ValueError(f"{name}: unknown network {net!r} (sparsesel.compress files hold built-in networks only)")
    model = build_from_checkpoint(name, net, config, payload["state_dict"], edits=edits, settings=settings)
    meta = _payload_dict(payload.get("meta", {}), "meta", name)
    return model, {"net": net, "config": dict(config), "meta": {**meta, "compress_plan": plan}, "format": "sparsesel.compress"}


def _read_plain_state(payload: Any, name: str, net: str) -> tuple[nn.Module, dict] | None:
    """A plain state dict (or one under ``state_dict`` / ``params``) of the factory ``net`` the caller named."""
    state = payload
    for key in ("state_dict", "params"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    model = build_from_checkpoint(name, net, {}, state)
    return model, {"net": net, "config": {}, "meta": {}, "format": "state_dict"}


def read_network(payload: Any, name: str, *, trust_code: bool = False, net: str | None = None) -> tuple[nn.Module, dict]:
    """The network held by an already read checkpoint ``payload`` (see :func:`load_net`)."""
    file_format = payload.get("format") if isinstance(payload, dict) else None
    if file_format == FORMAT:
        model, info = _read_current(payload, name, trust_code, net)
    elif file_format == "sparsesel.nets":
        model, info = _read_legacy_nets(payload, name)
    elif file_format == "sparsesel.compress":
        model, info = _read_legacy_compress(payload, name)
    elif isinstance(file_format, str) and file_format != "sparsesel.uhdformer":
        raise ValueError(f"{name}: unknown checkpoint format {file_format!r}; this code reads {(FORMAT, *LEGACY_FORMATS)}")
    else:
        found = _read_official(payload, name, net)
        if found is None:
            keys = short_list([repr(k) for k in payload]) if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(
                f"{name}: not a network file: neither the {FORMAT} format nor an official layout of {net_names()} "
                f"(it holds {keys})" + ("" if net else "; for a plain state dict of your own network, name its factory (--net)"))
        model, info = found
    if net is not None and info["net"] != net:
        raise ValueError(f"{name} holds a {info['net']} network, not {net}")
    return model, info


def _read_official(payload: Any, name: str, net: str | None) -> tuple[nn.Module, dict] | None:
    if net is not None and is_factory_spec(net):
        return _read_plain_state(payload, name, net)
    for candidate in net_names():
        adapter = get_adapter(candidate)
        model = adapter.read_official(payload, name)
        if model is not None:
            meta = payload.get("meta", {}) if isinstance(payload, dict) else {}
            meta = _payload_dict(meta, "meta", name)
            file_format = payload.get("format", "official") if isinstance(payload, dict) else "official"
            return model.eval(), {"net": candidate, "config": adapter.config_of(model), "meta": dict(meta), "format": file_format}
    return None


def load_net(path: str | os.PathLike, *, trust_code: bool = False, net: str | None = None) -> tuple[nn.Module, dict]:
    """Load a network file of any version (see the module docstring), or a network's official layout.

    Every file is read without running code, and its configuration and edits are checked against
    its tensors before the network is built (see :func:`build_from_checkpoint`).

    Parameters
    ----------
    path : path-like
        A file, or a folder in a network's official layout (TSHRNet's four files).
    trust_code : bool
        Allow a file whose network was built by a factory ``"package.module:function"`` to import
        and run it.
    net : str, optional
        The network the caller expects (a built-in name or a factory): a file holding another is
        refused; naming the file's factory is the opt-in to import it; with a factory, ``path`` may
        also be a plain state dict of the network it builds (called without arguments).

    Returns
    -------
    model : torch.nn.Module
        In eval mode; its edit log (``model.structure``) holds the file's edits.
    info : dict
        ``{"net": name or factory, "config": dict, "meta": dict, "format": str}``.

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file and what is wrong with it.
    """
    folder = Path(path)
    if folder.is_dir():
        for candidate in net_names():
            adapter = get_adapter(candidate)
            model = adapter.read_official_folder(folder)
            if model is not None:
                return model.eval(), {"net": candidate, "config": adapter.config_of(model), "meta": {}, "format": "official"}
    return read_network(load_checkpoint_file(path), str(path), trust_code=trust_code, net=net)

