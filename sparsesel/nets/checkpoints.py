"""Checkpoint input/output for the restoration networks.

Files are always read with ``torch.load(..., weights_only=True)``: a checkpoint
can hold tensors and plain containers only, never code.  Every problem (a file
that is missing, truncated, corrupt, holds other objects, or whose tensors do
not fit the network) raises an error naming the file and, where it applies,
the offending keys.

Layouts
-------
``sparsesel`` (:func:`save_checkpoint`): the one format of every network,
``{"format": "sparsesel.network", ...}`` (see :mod:`sparsesel.nets.zoo`). Files written by earlier
versions in UHDformer's own format are still read::

    {"format": "sparsesel.uhdformer", "version": 1,
     "config": {...UHDformerConfig fields...},
     "structure": [{"kind": str, "args": {...}}, ...],   # structural edits, replayed in order
     "meta": {...}, "state_dict": {our parameter names: tensors}}

``official`` (the UHDformer release, BasicSR): ``{"params": state_dict}``
(``params_ema`` is accepted too) or a plain state dict, with keys of the official
module names, optionally prefixed by ``restoration_network.`` (and
``module.``).  The configuration is inferred from the tensors' names and shapes
(:func:`infer_uhdformer_config`).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from sparsesel.atomic import write_atomic
from sparsesel.nets import zoo
from sparsesel.nets.checkpoint_checks import build_checked, read_checkpoint_file, short_list
from sparsesel.nets.edits import checked_edits, register_edit_kind, replay_edits
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig

__all__ = [
    "FORMAT_VERSION",
    "load_checkpoint",
    "save_checkpoint",
    "load_uhdformer",
    "uhdformer_from_checkpoint",
    "infer_uhdformer_config",
    "official_to_ours",
    "ours_to_official",
    "register_structure_op",
]

FORMAT_VERSION = 1
#: UHDformer's own format, written by earlier versions
LEGACY_FORMAT = "sparsesel.uhdformer"
OFFICIAL_PREFIX = "restoration_network."

# ---------------------------------------------------------------------------
# reading and writing files
# ---------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike) -> Any:
    """Read a checkpoint file safely (``weights_only=True``) onto the CPU.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        The file is a directory, empty, not a torch file, truncated or corrupt, or holds objects
        other than tensors and plain containers (a pickle that could run code is refused unread);
        see :func:`sparsesel.nets.checkpoint_checks.read_checkpoint_file`.
    """
    return read_checkpoint_file(path)


def save_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike,
    *,
    layout: str = "sparsesel",
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file, then rename).

    Parameters
    ----------
    model : torch.nn.Module
        A network (``layout="sparsesel"``: any network :func:`sparsesel.nets.zoo.save_net` writes).
    path : path-like
    layout : {"sparsesel", "official"}
        ``"sparsesel"``: the one format of every network (:mod:`sparsesel.nets.zoo`).
        ``"official"``: ``{"params": {"restoration_network.<official name>": tensor}}``
        as the UHDformer release (UHDformer only, no structural edits).
    meta : mapping, optional
        Plain values (str, numbers, bools, None, lists, dicts) stored with our format.
    overwrite : bool
        Replace an existing file; otherwise ``FileExistsError``.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if layout == "sparsesel":
        return zoo.save_net(model, path, meta=meta, force=overwrite)
    if layout != "official":
        raise ValueError(f"layout must be 'sparsesel' or 'official', got {layout!r}")
    if not isinstance(model, UHDformer):
        raise ValueError(f"layout='official' exists only for UHDformer, not {type(model).__name__}")
    if model.structure:
        raise ValueError("a network with structural edits cannot be written in the official layout; use layout='sparsesel'")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    official = {"params": {OFFICIAL_PREFIX + k: v for k, v in ours_to_official(state).items()}}
    write_atomic(path, lambda stream: torch.save(official, stream), force=overwrite)
    return path


# ---------------------------------------------------------------------------
# structural edits
# ---------------------------------------------------------------------------

def register_structure_op(kind: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Register a replayable structural edit ``fn(model, **args)`` under ``kind``
    (:func:`sparsesel.nets.edits.register_edit_kind`; the bundled kinds need no registration)."""
    return register_edit_kind(kind)


# ---------------------------------------------------------------------------
# official <-> our parameter names
# ---------------------------------------------------------------------------

_CONVNEXT = [("dwconv.", "conv."), ("pwconv1.", "fc1."), ("pwconv2.", "fc2."), ("gamma", "gamma")]
_TOP: list[tuple[str, str]] = [
    ("enter.0.", "stem."),
    ("perception_fusion.conv11.", "acm.mix."),
    ("perception_fusion.dwconv.", "acm.spread."),
    ("downsample.body.0.", "down."),
    ("upsample.body.0.", "up."),
    ("fusion.", "fusion."),
    ("out.2.", "head."),
]
for _off, _ours in [("shallow.", "shallow."), ("middle.", "middle."), ("deep.", "deep."), ("out.0.", "tail.0."), ("out.1.", "tail.1.")]:
    _TOP += [(_off + a, _ours + b) for a, b in _CONVNEXT]
_MATCH = [("perception.", "reduce."), ("dwconv.0.", "gate_in."), ("dwconv.1.", "gate_dw."), ("dwconv.3.", "gate_out."), ("conv12.", "fuse.")]
_UNIT: list[tuple[str, str]] = [
    ("norm1.body.", "norm1."),
    ("norm2.body.", "norm2."),
    ("LayerNorm.body.", "norm_acm."),
    ("attn.temperature", "attn.temperature"),
    ("attn.qkv.", "attn.qkv."),
    ("attn.qkv_dwconv.", "attn.qkv_dw."),
    ("attn.project_out.", "attn.proj."),
    ("ffn.project_in.0.", "ffn.expand."),
    ("ffn.project_in.1.", "ffn.squeeze."),
    ("ffn.project_out.0.", "ffn.unsqueeze."),
    ("ffn.project_out.1.", "ffn.project."),
    # Restormer's gated feed-forward network (ffn_restormer=True)
    ("ffn.project_in.", "ffn.project_in."),
    ("ffn.dwconv.", "ffn.dw."),
    ("ffn.project_out.", "ffn.project_out."),
]
for _off, _ours in [("attn.matching_transformation.", "attn.match."), ("ffn.matching_transformation.", "ffn.match.")]:
    _UNIT += [(_off + a, _ours + b) for a, b in _MATCH]

_UNIT_RE = {"official": re.compile(r"^block\.(\d+)\.TransformerBlock\.(\d+)\.(.+)$"), "ours": re.compile(r"^groups\.(\d+)\.units\.(\d+)\.(.+)$")}
_UNIT_FMT = {"official": "block.{}.TransformerBlock.{}.", "ours": "groups.{}.units.{}."}


def _map_rest(rest: str, table: list[tuple[str, str]], reverse: bool) -> str | None:
    best: tuple[str, str] | None = None
    for official, ours in table:
        src, dst = (ours, official) if reverse else (official, ours)
        if rest.startswith(src) and (best is None or len(src) > len(best[0])):
            best = (src, dst)
    if best is None:
        return None
    remainder = rest[len(best[0]) :]
    if best[0].endswith("."):
        if remainder not in ("weight", "bias"):
            return None
    elif remainder:
        return None
    return best[1] + remainder


def _map_key(key: str, to: str) -> str | None:
    source = "official" if to == "ours" else "ours"
    reverse = to == "official"
    match = _UNIT_RE[source].match(key)
    if match:
        rest = _map_rest(match.group(3), _UNIT, reverse)
        return None if rest is None else _UNIT_FMT[to].format(match.group(1), match.group(2)) + rest
    return _map_rest(key, _TOP, reverse)


def official_to_ours(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename official UHDformer parameters (no ``restoration_network.`` prefix) to ours.

    Keys that are not official UHDformer names raise ``ValueError`` naming them.
    """
    out, unknown = {}, []
    for key, value in state_dict.items():
        new = _map_key(key, "ours")
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise ValueError(f"unexpected key(s) for UHDformer (official layout): {short_list(sorted(unknown))}")
    return out


def ours_to_official(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename our UHDformer parameters to the official module names (no prefix)."""
    out, unknown = {}, []
    for key, value in state_dict.items():
        new = _map_key(key, "official")
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    if unknown:
        raise ValueError(f"key(s) with no official UHDformer name: {short_list(sorted(unknown))}")
    return out


# ---------------------------------------------------------------------------
# configuration inference
# ---------------------------------------------------------------------------


def _factor_for(size: int, base: int, *, divide: bool) -> float | int:
    """A factor f with int(base * f) == size (divide=False) or int(base / f) == size (divide=True)."""
    if divide:
        candidates: list[float] = [base // size] if base // size >= 1 else []
        candidates += [base / size]
        check = lambda f: int(base / f) == size  # noqa: E731
    else:
        candidates = [size / base]
        check = lambda f: int(base * f) == size  # noqa: E731
    for candidate in candidates:
        value = candidate
        for _ in range(4):  # nudge past float rounding if needed
            if value > 0 and check(value):
                return int(value) if float(value).is_integer() else float(value)
            value = math.nextafter(value, math.inf if not divide else -math.inf)
    raise ValueError(f"no factor reproduces size {size} from width {base}")


def infer_uhdformer_config(state_dict: Mapping[str, torch.Tensor], name: str = "state dict") -> UHDformerConfig:
    """Infer the :class:`UHDformerConfig` from our parameter names and shapes.

    Block counts come from the keys, the width from the stem, heads from the
    attention temperature, bias and LayerNorm type from the presence of biases,
    the scale factor from the down-sampling kernel, the expansion factor from
    the feed-forward width and the match factor from the DualCMT fusion input.
    Options that leave no trace are returned as in :meth:`UHDformerConfig.canonical`.
    """

    def need(key: str) -> torch.Tensor:
        if key not in state_dict:
            raise ValueError(f"{name}: missing key {key!r}; cannot infer the UHDformer configuration")
        return state_dict[key]

    width = need("stem.weight").shape[0]
    groups = sorted({int(m.group(1)) for k in state_dict if (m := re.match(r"^groups\.(\d+)\.", k))})
    if not groups:
        raise ValueError(f"{name}: no transformer blocks (keys 'groups.<i>.units.<j>.*' / 'block.<i>.TransformerBlock.<j>.*')")
    if groups != list(range(len(groups))):
        raise ValueError(f"{name}: block indices {groups} are not 0..{len(groups) - 1}")
    units_per_group = []
    for g in groups:
        units = sorted({int(m.group(1)) for k in state_dict if (m := re.match(rf"^groups\.{g}\.units\.(\d+)\.", k))})
        if units != list(range(len(units))):
            raise ValueError(f"{name}: transformer-block indices {units} of block {g} are not 0..{len(units) - 1}")
        units_per_group.append(len(units))
    if len(set(units_per_group)) != 1:
        raise ValueError(f"{name}: blocks hold different numbers of transformer blocks {units_per_group}")
    unit = "groups.0.units.0."
    keys = set(state_dict)
    restormer = f"{unit}ffn.dw.weight" in keys
    attention_matching = f"{unit}attn.match.fuse.weight" in keys
    ffn_matching = f"{unit}ffn.match.fuse.weight" in keys
    if restormer:
        hidden = need(f"{unit}ffn.project_in.weight").shape[0] // 2
    else:
        hidden = need(f"{unit}ffn.expand.weight").shape[0]
    matcher = f"{unit}attn.match." if attention_matching else f"{unit}ffn.match." if ffn_matching else None
    match_factor: float | int = UHDformerConfig.match_factor
    if matcher is not None:
        num_matching = need(matcher + "fuse.weight").shape[1] // 2
        match_factor = _factor_for(num_matching, width, divide=True)
        if need(matcher + "gate_in.weight").shape[0] != hidden:
            raise ValueError(f"{name}: DualCMT hidden width {need(matcher + 'gate_in.weight').shape[0]} differs from the FFN's {hidden}")
    config = UHDformerConfig(
        width=width,
        number_block=len(groups),
        unit_num=units_per_group[0],
        num_heads=need(f"{unit}attn.temperature").shape[0],
        match_factor=match_factor,
        ffn_expansion_factor=_factor_for(hidden, width, divide=False),
        scale_factor=need("down.weight").shape[-1],
        bias=f"{unit}attn.qkv.bias" in keys,
        layernorm_type="WithBias" if f"{unit}norm1.bias" in keys else "BiasFree",
        attention_matching=attention_matching,
        ffn_matching=ffn_matching,
        ffn_restormer=restormer,
    )
    return config.canonical()


# ---------------------------------------------------------------------------
# loading UHDformer
# ---------------------------------------------------------------------------


def _strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if any(k.startswith(prefix) for k in state):
        return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}
    return dict(state)


def uhdformer_from_checkpoint(obj: Any, name: str = "checkpoint") -> UHDformer:
    """Build a :class:`UHDformer` in eval mode from an already loaded checkpoint object.

    Accepts our format, ``{"params": ...}`` / ``{"params_ema": ...}`` wrappers and
    plain state dicts, with or without the ``restoration_network.`` prefix.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"{name}: expected a dict of tensors, got {type(obj).__name__}")
    structure: list[Any] = []
    config: UHDformerConfig | None = None
    if obj.get("format") in (zoo.FORMAT, *zoo.LEGACY_FORMATS) and obj.get("format") != LEGACY_FORMAT:
        model, info = zoo.read_network(obj, name)
        if not isinstance(model, UHDformer):
            raise ValueError(f"{name} holds a {info['net']} network, not a UHDformer")
        return model
    if "format" in obj:
        if obj["format"] != LEGACY_FORMAT:
            raise ValueError(f"{name} is a {obj['format']!r} checkpoint, not one this code reads "
                             f"({', '.join((zoo.FORMAT, *zoo.LEGACY_FORMATS))})")
        version = obj.get("version")
        if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
            raise ValueError(f"{name}: unsupported {LEGACY_FORMAT} version {version!r} (this code reads 1..{FORMAT_VERSION})")
        for field in ("config", "state_dict"):
            if field not in obj:
                raise ValueError(f"{name}: missing field {field!r} of the {LEGACY_FORMAT} format")
        try:
            config = UHDformerConfig.from_dict(obj["config"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name}: bad config: {exc}") from None
        structure = obj.get("structure", [])
        state = obj["state_dict"]
    elif "params" in obj and isinstance(obj["params"], Mapping):
        state = obj["params"]
    elif "params_ema" in obj and isinstance(obj["params_ema"], Mapping):
        state = obj["params_ema"]
    else:
        state = obj
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{name}: no state dict found")
    not_names = [repr(k) for k in state if not isinstance(k, str)]
    if not_names:
        raise ValueError(f"{name}: tensor names must be strings, got {short_list(sorted(not_names))}")
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{name}: entries that are not tensors: {short_list(sorted(not_tensors))}")
    state = _strip_prefix(_strip_prefix(state, "module."), OFFICIAL_PREFIX)
    official = any(k.startswith("enter.") for k in state) and not any(k.startswith("stem.") for k in state)
    if official:
        state = official_to_ours(state)
    elif not any(k.startswith("stem.") for k in state):
        raise ValueError(f"{name}: no UHDformer parameters found (neither 'enter.0.weight' nor 'stem.weight'); keys: {short_list(sorted(list(state)))}")
    if config is None:
        try:
            config = infer_uhdformer_config(state, name)
        except (TypeError, IndexError, ArithmeticError) as exc:
            raise ValueError(f"{name}: cannot infer the UHDformer configuration from its tensors: {exc}") from None
        except ValueError as exc:
            raise ValueError(str(exc) if name in str(exc) else f"{name}: {exc}") from None
    structure = checked_edits(structure, name, field="structure")

    def build() -> UHDformer:
        model = UHDformer(config)
        replay_edits(model, structure, name)
        return model

    show = (lambda k: _map_key(k, "official") or k) if official else str  # noqa: E731
    settings = {**config.to_dict(), **({"structure": structure} if structure else {})}
    model = build_checked(build, state, name=name, settings=settings, show=show, network="UHDformer")
    return model.eval()


def load_uhdformer(path: str | os.PathLike) -> UHDformer:
    """Load a UHDformer checkpoint (official release or ours) as a network in eval mode.

    Parameters
    ----------
    path : path-like
        ``.pth``/``.pt`` file: ``{"params": state_dict}`` (official), a plain state
        dict (official or our names, optionally prefixed ``restoration_network.``),
        or our format (:func:`save_checkpoint`, any version).

    Returns
    -------
    UHDformer
        With the configuration recorded in the file or inferred from its tensors.

    Raises
    ------
    FileNotFoundError, ValueError
        See :func:`load_checkpoint`; keys or shapes that do not fit are named.
    """
    return uhdformer_from_checkpoint(load_checkpoint(path), name=str(path))
