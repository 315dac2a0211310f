"""A registry of the restoration networks by name, and their checkpoint file format.

======================  ============================================  =========================
name                    class (module)                                tasks
======================  ============================================  =========================
``uhdformer``           ``UHDformer`` (:mod:`sparsesel.nets.uhdformer`)  lowlight, haze, blur
``csattn``              :class:`~sparsesel.nets.csattn.CSAttn`            lowlight, haze, blur
``tshrnet``             :class:`~sparsesel.nets.tshrnet.TSHRNet`          specular
``harmonizer``          :class:`~sparsesel.nets.harmonization.Harmonizer` harmonize
======================  ============================================  =========================

Every network is built from a configuration dataclass (``small()`` and ``paper()``
presets, or a plain dict of its fields). :func:`save_net` writes the file that
:func:`load_net` reads back::

    {"format": "sparsesel.nets", "version": 1, "net": name,
     "config": {field: value, ...}, "params": state_dict, "meta": {...},
     "structure": [{"kind": str, "args": {...}}, ...]}   # only when the network has structural edits

UHDformer files use that network's own format (``"format": "sparsesel.uhdformer"``, see
:mod:`sparsesel.nets.checkpoints`), and :func:`load_net` also reads official UHDformer
releases (``{"params": ...}`` wrappers, ``restoration_network.`` prefixes). Files are loaded with
``torch.load(..., weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsesel.atomic import write_atomic
from sparsesel.nets.checkpoint_checks import build_checked, read_checkpoint_file

__all__ = [
    "FORMAT",
    "NetEntry",
    "build_from_checkpoint",
    "build_net",
    "config_dict",
    "load_checkpoint_file",
    "load_net",
    "net_entry",
    "net_names",
    "save_net",
]

FORMAT = "sparsesel.nets"
PRESETS = ("small", "paper")

# presets for config classes that do not define them (fields of the config dataclass)
_FALLBACK_PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    ("uhdformer", "small"): {
        "width": 8, "number_block": 1, "unit_num": 2, "num_heads": 2,
        "match_factor": 2, "ffn_expansion_factor": 2, "scale_factor": 4,
    },
}


@dataclass(frozen=True)
class NetEntry:
    """How to build one network: its module, class and config class names, and its tasks."""

    name: str
    module: str
    model_class: str
    config_class: str
    tasks: tuple[str, ...]
    description: str

    def classes(self) -> tuple[type, type]:
        """``(model class, config class)``, imported on first use."""
        module = importlib.import_module(self.module)
        return getattr(module, self.model_class), getattr(module, self.config_class)


_NETS: dict[str, NetEntry] = {
    entry.name: entry
    for entry in (
        NetEntry("uhdformer", "sparsesel.nets.uhdformer", "UHDformer", "UHDformerConfig", ("lowlight", "haze", "blur"),
                 "UHDformer (AAAI 2024): correlation-matching transformer for UHD restoration"),
        NetEntry("csattn", "sparsesel.nets.csattn", "CSAttn", "CSAttnConfig", ("lowlight", "haze", "blur"),
                 "CSAttn (arXiv 2403.10336): FFN-free continuous scaling attention, 3-level encoder-decoder"),
        NetEntry("tshrnet", "sparsesel.nets.tshrnet", "TSHRNet", "TSHRNetConfig", ("specular",),
                 "TSHRNet (ICCV 2023): three-stage specular highlight removal"),
        NetEntry("harmonizer", "sparsesel.nets.harmonization", "Harmonizer", "HarmonizerConfig", ("harmonize",),
                 "SI-GAN / DIH-GAN (CVPR 2022): illumination harmonization with cast shadow"),
    )
}


def net_names() -> tuple[str, ...]:
    """Names of the registered networks."""
    return tuple(_NETS)


def net_entry(name: str) -> NetEntry:
    """The :class:`NetEntry` of ``name``; unknown names list the valid ones."""
    if name not in _NETS:
        raise ValueError(f"unknown network {name!r}; choose one of {net_names()}")
    return _NETS[name]


def _config_from_dict(config_class: type, data: dict) -> Any:
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} options {unknown}; valid: {sorted(fields)}")
    return config_class(**data)


def build_net(name: str, config: str | dict | Any = "small", **overrides: Any) -> nn.Module:
    """Build network ``name``.

    Parameters
    ----------
    name : str
        One of :func:`net_names`.
    config : {"small", "paper"}, dict or config dataclass
        A preset, a dict of config fields, or the config object itself.
    **overrides
        Config fields replacing the preset's / dict's values.
    """
    entry = net_entry(name)
    model_class, config_class = entry.classes()
    if isinstance(config, str):
        if config not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}, got {config!r}")
        factory = getattr(config_class, config, None)
        if factory is not None:
            config = factory()
        elif (name, config) in _FALLBACK_PRESETS:
            config = _config_from_dict(config_class, _FALLBACK_PRESETS[(name, config)])
        else:
            raise ValueError(f"{config_class.__name__} has no {config!r} preset")
    elif isinstance(config, dict):
        config = _config_from_dict(config_class, config)
    elif not isinstance(config, config_class):
        raise TypeError(f"config must be a preset name, a dict or a {config_class.__name__}, got {type(config).__name__}")
    if overrides:
        config = _config_from_dict(config_class, {**config_dict(config), **overrides})
    return model_class(config)


def config_dict(config_or_model: Any) -> dict:
    """The configuration of a model (or a config dataclass) as plain data (lists, not tuples)."""
    config = getattr(config_or_model, "config", config_or_model)
    if not dataclasses.is_dataclass(config):
        raise TypeError(f"expected a model with a dataclass .config or a config dataclass, got {type(config).__name__}")
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in dataclasses.asdict(config).items()
    }


def _atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` to ``path`` atomically, replacing an existing file (the caller decides)."""
    write_atomic(path, lambda stream: torch.save(obj, stream), force=True)


def save_net(model: nn.Module, path: str | os.PathLike, *, net: str, meta: dict | None = None, force: bool = False) -> Path:
    """Write ``model`` atomically; an existing file is refused unless ``force``.

    UHDformer is written in its own self-describing format
    (:func:`sparsesel.nets.checkpoints.save_checkpoint`, readable by
    :func:`sparsesel.nets.load_uhdformer`); the other networks in the ``sparsesel.nets``
    format of the module docstring.
    """
    net_entry(net)
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists; pass force=True (--force) to overwrite it")
    if net == "uhdformer":
        from sparsesel.nets.checkpoints import save_checkpoint

        save_checkpoint(model, path, layout="sparsesel", meta=dict(meta or {}), overwrite=force)
        return path
    payload = {
        "format": FORMAT,
        "version": 1,
        "net": net,
        "config": config_dict(model),
        "params": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if getattr(model, "structure", None):  # structural edits (e.g. block-sparse layers), replayed by load_net
        payload["structure"] = [dict(op) for op in model.structure]
    _atomic_torch_save(payload, path)
    return path


def load_checkpoint_file(path: str | os.PathLike) -> Any:
    """``torch.load(path, weights_only=True)`` with clear errors for missing, corrupt or unsafe files
    (see :func:`sparsesel.nets.checkpoint_checks.read_checkpoint_file`)."""
    return read_checkpoint_file(path)


def _payload_dict(value: Any, field: str, path: str | os.PathLike) -> dict:
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise ValueError(f"{path}: {field!r} must be a dict with string keys, got {type(value).__name__}")
    return value


def build_from_checkpoint(
    path: str | os.PathLike,
    net: Any,
    config: Any,
    state: Any,
    *,
    edits: Callable[[nn.Module], None] | None = None,
    settings: dict | None = None,
    state_field: str = "params",
) -> nn.Module:
    """Network ``net`` of ``config`` (then ``edits(model)``) holding the tensors ``state``, all read from ``path``.

    The configuration is checked against the stored tensors before the network is built
    (:func:`sparsesel.nets.checkpoint_checks.build_checked`: a meta-device build first, shapes,
    dtypes and values compared), so a file whose configuration asks for a network far larger than
    its tensors is refused without allocating it.

    Parameters
    ----------
    path : path-like
        The file the pieces come from (named in every message).
    net : str
        A name of :func:`net_names`.
    config : dict
        Config fields of that network.
    state : dict of str to torch.Tensor
        The stored parameters and buffers.
    edits : callable, optional
        Structural edits replayed on the built network before the weights are loaded.
    settings : dict, optional
        What to show (and search for suspect sizes) in messages; default ``config``.
    state_field : str
        The file's key of ``state``, for messages.

    Returns
    -------
    torch.nn.Module
        In eval mode.
    """
    if not isinstance(net, str) or net not in _NETS:
        raise ValueError(f"{path}: unknown network {net!r}; this code reads {net_names()}")
    config = _payload_dict(config, "config", path)
    state = _payload_dict(state, state_field, path)

    def build() -> nn.Module:
        model = build_net(net, dict(config))
        if edits is not None:
            edits(model)
        return model

    model = build_checked(build, state, name=str(path), settings=settings or config, network=net)
    return model.eval()


def load_net(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """Load a network file written by :func:`save_net`, or an official UHDformer checkpoint.

    Every file is read without running code, and its configuration is checked against its
    tensors before the network is built (see :func:`build_from_checkpoint`).

    Returns
    -------
    model : torch.nn.Module
        In eval mode.
    info : dict
        ``{"net": name, "config": dict, "meta": dict}``.

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file and what is wrong with it.
    """
    payload = load_checkpoint_file(path)
    if isinstance(payload, dict) and payload.get("format") == "sparsesel.compress":
        raise ValueError(f"{path} holds a compressed network (format 'sparsesel.compress'); load it with "
                         "sparsesel.compress.load_compressed")
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        missing = [key for key in ("net", "config", "params") if key not in payload]
        if missing:
            raise ValueError(f"{path}: sparsesel.nets checkpoint lacks the keys {missing}")
        meta = _payload_dict(payload.get("meta", {}), "meta", path)
        config = _payload_dict(payload["config"], "config", path)
        if payload["net"] == "tshrnet":
            config = {"value_space": "unit", **config}  # written before TSHRNet had the official value space
        structure = payload.get("structure", [])
        edits = None
        if structure:
            from sparsesel.nets.checkpoints import apply_structure

            def edits(model: nn.Module) -> None:
                apply_structure(model, structure, str(path))

        model = build_from_checkpoint(path, payload["net"], config, payload["params"], edits=edits)
        return model, {"net": payload["net"], "config": dict(config), "meta": dict(meta)}
    if isinstance(payload, dict) and any(str(k).removeprefix("module.") == "Cv0.conv.weight" for k in payload):
        raise ValueError(
            f"{path} is one U-Net of an official TSHRNet checkpoint (UNet<n>_<epoch>.pth); load the four files "
            "with sparsesel.nets.load_tshrnet(folder)"
        )
    # anything else: UHDformer (our format, the official release or a plain state dict);
    # its loader checks the keys and infers the configuration from the tensors
    from sparsesel.nets.checkpoints import uhdformer_from_checkpoint

    model = uhdformer_from_checkpoint(payload, name=str(path))
    meta = _payload_dict(payload.get("meta", {}), "meta", path) if isinstance(payload, dict) else {}
    return model, {"net": "uhdformer", "config": config_dict(model), "meta": dict(meta)}
