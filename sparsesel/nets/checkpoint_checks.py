"""Loading a network file without trusting it.

Three checks stand between a file and a network in memory:

1. :func:`read_checkpoint_file` unpickles with ``torch.load(weights_only=True)`` (tensors and
   plain containers only: no code runs) and turns every way a file can be wrong — missing, a
   folder, empty, text, some other zip archive, truncated, corrupt (every record of a zip checkpoint
   is read against its CRC-32, so flipped bytes inside the tensors are caught), a pickle of Python objects —
   into one ``ValueError`` (``FileNotFoundError`` when missing) that names the file.
2. :func:`build_checked` builds the network that the file's configuration describes on PyTorch's
   ``meta`` device first (shapes and dtypes, no memory), stopping that build as soon as it
   registers far more tensors than the file holds, and compares every parameter and buffer with
   the stored tensors: names, shapes and kinds of dtype. A configuration that asks for, say,
   ``width=4096`` while the tensors are 8 wide is refused with the field, the stored shape and
   the shape the configuration gives, before a single real tensor is allocated. Only then is the
   network built for real and the weights loaded strictly.
3. :func:`check_weight_values` (called by :func:`build_checked`) refuses integer, boolean or
   complex tensors where the network holds floating-point ones (they would be cast silently),
   NaN and infinite values (also those that appear when a float64 value overflows the
   network's float32), and magnitudes above :data:`WEIGHT_LIMIT`, naming the file and the tensor.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import re
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "WEIGHT_LIMIT",
    "build_checked",
    "check_on_meta",
    "check_weight_values",
    "finite_or_explain",
    "read_checkpoint_file",
    "short_list",
]

#: Largest magnitude accepted in a floating-point weight or buffer. Every network trained for this
#: package holds weights of magnitude about 1 (the shipped UHDformer: at most 1.04; the official
#: UHDformer fixture: 1.14); a value a million times larger can only come from a corrupt or
#: hostile file, and a few such values overflow float32 activations (or norms, in compression).
WEIGHT_LIMIT = 1e6

# the magic bytes of the two layouts torch.save writes: a zip archive and the legacy pickle stream
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_MAGIC = b"\x80"


def short_list(items: list[str], limit: int = 12) -> str:
    """``"a, b, c"``, or the first ``limit`` items and ``"... (N in all)"``."""
    text = ", ".join(items[:limit])
    return text + (f", ... ({len(items)} in all)" if len(items) > limit else "")


# ---------------------------------------------------------------------------
# reading the file
# ---------------------------------------------------------------------------


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise ValueError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if not head:
        raise ValueError(f"cannot read checkpoint {path}: the file is empty (0 bytes); not a torch checkpoint (corrupt or truncated?)")
    if head.startswith(_ZIP_MAGIC):
        _check_zip(path)
    elif not head.startswith(_PICKLE_MAGIC):
        kind = "text" if _looks_like_text(path) else "binary data"
        raise ValueError(
            f"cannot read checkpoint {path}: not a torch checkpoint (it holds {kind}; a file written by torch.save "
            f"starts with a zip or pickle header, this one with {head!r}); is it corrupt or truncated, or the wrong file?"
        )


def _check_zip(path: Path) -> None:
    """A zip checkpoint must have a readable directory, a ``<folder>/data.pkl`` record, and records
    whose bytes match their CRC-32 (torch.save stores one per record; a record stored without one,
    CRC 0, is not checked)."""
    bad_zip = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError, RuntimeError, UnicodeError)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            torch_layout = any(name.endswith("/data.pkl") for name in names)
            for record in archive.infolist() if torch_layout else []:
                if record.CRC or not record.file_size:
                    _read_through(archive, record)
    except bad_zip as exc:
        raise ValueError(f"cannot read checkpoint {path}: corrupt or truncated ({_first_line(exc)})") from None
    if not torch_layout:
        raise ValueError(
            f"cannot read checkpoint {path}: a zip archive, but not a torch checkpoint (no '<name>/data.pkl' "
            f"record among its {len(names)} entries: {short_list(names, 5)})"
        )


def _read_through(archive: zipfile.ZipFile, record: zipfile.ZipInfo) -> None:
    """Read a record to its end; zipfile compares its CRC-32 there (``BadZipFile`` if it differs)."""
    with archive.open(record) as stream:
        while stream.read(1 << 24):
            pass


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as handle:
        sample = handle.read(512)
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_checkpoint_file(path: str | os.PathLike) -> Any:
    """Read a torch checkpoint safely (``weights_only=True``) onto the CPU.

    Parameters
    ----------
    path : path-like
        A file written by ``torch.save`` (zip layout, or the legacy pickle layout).

    Returns
    -------
    object
        Tensors and plain containers (dicts, lists, str, numbers) only.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        A directory, an empty, text or foreign file, a corrupt or truncated checkpoint, or one
        holding objects other than tensors and plain containers (refused unread: unpickling them
        could run code). The message names the file.
    """
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on pickle protocols and storages
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        blocked = re.search(r"GLOBAL ([\w.]+)", text)
        detail = re.search(r"(Unsupported [^\n]*)", text)
        reason = (f"it references the Python object {blocked.group(1)}" if blocked else
                  f"torch: {detail.group(1) if detail else _first_line(exc)}")
        raise ValueError(
            f"cannot read checkpoint {path} safely: it is not a plain tensor checkpoint (corrupt, or holding Python "
            f"objects whose unpickling could run code; it was not unpickled): {reason}; only tensors and plain "
            "containers are allowed"
        ) from None
    except MemoryError:
        raise ValueError(f"cannot read checkpoint {path}: not enough memory to load it (corrupt sizes, or too large)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError, EOFError, KeyError, OSError, ... for bad files
        raise ValueError(
            f"cannot read checkpoint {path}: not a valid torch checkpoint (corrupt or truncated?): {_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# ---------------------------------------------------------------------------
# building on the meta device, with a bound on what the build may register
# ---------------------------------------------------------------------------


class _BuildTooLarge(Exception):
    """Raised from a registration hook when a build registers more than the file can fill."""


@contextlib.contextmanager
def _registration_budget(tensors: int, modules: int) -> Iterator[None]:
    """Stop a module build (in this thread) once it registers more than ``tensors`` parameters and
    buffers or ``modules`` submodules: a configuration that asks for far more than the file holds."""
    from torch.nn.modules import module as module_api

    thread = threading.get_ident()
    counts = {"tensors": 0, "modules": 0}

    def count(kind: str, limit: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _name: str, value: Any) -> None:
            if value is None or threading.get_ident() != thread:
                return None
            counts[kind] += 1
            if counts[kind] > limit:
                raise _BuildTooLarge(kind)
            return None

        return hook

    handles = [
        module_api.register_module_parameter_registration_hook(count("tensors", tensors)),
        module_api.register_module_buffer_registration_hook(count("tensors", tensors)),
        module_api.register_module_module_registration_hook(count("modules", modules)),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _settings_text(settings: Mapping[str, Any], limit: int = 400) -> str:
    text = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _build_on_meta(build: Callable[[], nn.Module], n_stored: int, name: str, settings: Mapping[str, Any]) -> nn.Module:
    tensor_limit, module_limit = 2 * n_stored + 64, 8 * n_stored + 256
    try:
        with torch.device("meta"), _registration_budget(tensor_limit, module_limit):
            return build()
    except _BuildTooLarge as exc:
        what = "parameters and buffers" if str(exc) == "tensors" else "submodules"
        limit = tensor_limit if str(exc) == "tensors" else module_limit
        counts = [f"{field}={value}" for field, value in _flat_integers(settings).items() if value > n_stored]
        hint = f" ({', '.join(counts)} is more than there are tensors in the file)" if counts else ""
        raise ValueError(
            f"{name}: its configuration asks for a network with more than {limit} {what}, but the file holds "
            f"{n_stored} tensors{hint}; refused before building it (configuration: {_settings_text(settings)})"
        ) from None
    except (TypeError, ValueError, RuntimeError, ArithmeticError, IndexError, KeyError, MemoryError, RecursionError) as exc:
        raise ValueError(f"{name}: bad configuration ({_settings_text(settings)}): {_first_line(exc)}") from None


# ---------------------------------------------------------------------------
# comparing the stored tensors with the network the configuration describes
# ---------------------------------------------------------------------------


def _flat_integers(settings: Mapping[str, Any], prefix: str = "") -> dict[str, int]:
    """The integer leaves of nested settings, as ``{"blocks[0]": 1, "structure[2].ranks[1]": 5, ...}``."""
    flat: dict[str, int] = {}

    def visit(value: Any, where: str) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            flat[where] = value
        elif isinstance(value, Mapping):
            for key, item in value.items():
                visit(item, f"{where}.{key}" if where else str(key))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{where}[{i}]")

    visit(settings, prefix)
    return flat


def _suspect_fields(settings: Mapping[str, Any], mismatches: list[tuple[str, tuple, tuple]]) -> list[str]:
    """Configuration fields whose value is a size that the configuration gives and the file does not."""
    flat = _flat_integers(settings)
    suspects: list[str] = []
    for _key, stored, expected in mismatches:
        differing = {e for s, e in zip(stored, expected) if s != e} if len(stored) == len(expected) else set(expected)
        for field, value in flat.items():
            if value in differing and value > 1 and field not in suspects:
                suspects.append(field)
    return [f"{field}={flat[field]}" for field in suspects]


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "boolean"
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating-point"
    return "integer"


def _compare(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], show: Callable[[str], str]
) -> tuple[list[str], list[tuple[str, tuple, tuple]]]:
    missing = [show(k) for k in expected if k not in state]
    unexpected = [show(k) for k in state if k not in expected]
    problems = []
    if missing:
        problems.append(f"missing key(s): {short_list(missing)}")
    if unexpected:
        problems.append(f"unexpected key(s): {short_list(unexpected)}")
    mismatches = [
        (show(k), tuple(v.shape), tuple(expected[k].shape))
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if mismatches:
        shown = [f"{k}: checkpoint {s} vs network {e}" for k, s, e in mismatches]
        problems.append("wrong shape(s): " + "; ".join(shown[:4]) + (f"; ... ({len(shown)} in all)" if len(shown) > 4 else ""))
    return problems, mismatches


def check_weight_values(
    state: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    name: str,
    show: Callable[[str], str] = str,
) -> None:
    """Refuse stored tensors the network could only take by a silent cast, or whose values are unusable.

    Parameters
    ----------
    state : mapping of str to torch.Tensor
        The stored tensors (keys as in ``expected``).
    expected : mapping of str to torch.Tensor
        The network's parameters and buffers (e.g. on the ``meta`` device): their dtypes.
    name : str
        The file, for the messages.
    show : callable
        Maps a key to the name shown in messages (e.g. the official name).

    Raises
    ------
    ValueError
        A tensor of another kind of dtype than the network's (integer, boolean or complex
        weights where the network holds floating-point ones, or the reverse); NaN or infinite
        values (also after the cast to the network's dtype); magnitudes above :data:`WEIGHT_LIMIT`.
    """
    for key, value in state.items():
        target = expected.get(key)
        if target is None:
            continue
        stored_kind, network_kind = _dtype_kind(value.dtype), _dtype_kind(target.dtype)
        if stored_kind != network_kind:
            raise ValueError(
                f"{name}: tensor {show(key)} holds {stored_kind} values ({value.dtype}) where the network has "
                f"{network_kind} ones ({target.dtype}); refused rather than cast silently"
            )
        if network_kind != "floating-point" or value.numel() == 0:
            continue
        low, high = value.aminmax()  # one pass; NaN propagates
        largest = max(abs(float(low)), abs(float(high)))
        if largest <= min(WEIGHT_LIMIT, torch.finfo(target.dtype).max):
            continue
        cast = value.to(target.dtype)
        finite = torch.isfinite(cast)
        if not bool(finite.all()):
            nan = int(torch.isnan(cast).sum())
            inf = int((~finite).sum()) - nan
            detail = ", ".join(part for part in (f"{nan} NaN" if nan else "", f"{inf} infinite" if inf else "") if part)
            overflow = " (after the cast to the network's {}, which the stored {} overflows)".format(target.dtype, value.dtype) if bool(
                torch.isfinite(value).all()) else ""
            raise ValueError(f"{name}: tensor {show(key)} holds {detail} value(s){overflow}; the checkpoint is corrupt")
        if largest > WEIGHT_LIMIT:
            raise ValueError(
                f"{name}: tensor {show(key)} holds values up to {largest:.3g} in magnitude, above the limit "
                f"{WEIGHT_LIMIT:.0e} of any trained restoration network (whose weights are about 1); the checkpoint is corrupt"
            )


def check_on_meta(
    build: Callable[[], nn.Module],
    state: Mapping[str, torch.Tensor],
    *,
    name: str,
    settings: Mapping[str, Any],
    show: Callable[[str], str] = str,
    network: str = "the network",
) -> nn.Module:
    """The network ``build()`` makes, built on the ``meta`` device and checked against ``state``.

    ``build`` runs on the ``meta`` device (no memory; stopped when it registers more than about
    twice the stored tensors); its parameters and buffers are compared with ``state`` (names,
    shapes, kinds of dtype) and the values of ``state`` are checked (:func:`check_weight_values`).

    Parameters
    ----------
    build : callable
        Returns a fresh network, configuration and structural edits applied (no weights).
    state : mapping of str to torch.Tensor
        The stored tensors, with the network's key names.
    name : str
        The file, for the messages.
    settings : mapping
        The configuration (and structural edits) that ``build`` follows, shown in messages;
        its integer fields equal to a size that disagrees with the file are named.
    show : callable
        Maps a key to the name shown in messages.
    network : str
        What the network is called in messages (e.g. ``"UHDformer"``).

    Returns
    -------
    torch.nn.Module
        On the ``meta`` device.

    Raises
    ------
    ValueError
        Naming the file, the keys or shapes that disagree and the suspected configuration fields.
    """
    not_tensors = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{name}: entries that are not tensors: {short_list(not_tensors)}")
    meta = _build_on_meta(build, len(state), name, settings)
    expected = meta.state_dict()
    problems, mismatches = _compare(expected, state, show)
    if problems:
        suspects = _suspect_fields(settings, mismatches)
        hint = f"the configuration's {', '.join(suspects)} disagree(s) with the stored shapes; " if suspects else ""
        raise ValueError(
            f"{name} does not fit {network}: {hint}" + "; ".join(problems) + f" (configuration: {_settings_text(settings)})"
        )
    check_weight_values(state, expected, name, show)
    return meta


def build_checked(
    build: Callable[[], nn.Module],
    state: Mapping[str, torch.Tensor],
    *,
    name: str,
    settings: Mapping[str, Any],
    show: Callable[[str], str] = str,
    network: str = "the network",
) -> nn.Module:
    """Build the network ``build()`` makes and load ``state`` into it, checking everything first.

    :func:`check_on_meta` first (no memory); only if the network and ``state`` agree is the
    network made real and ``state`` loaded strictly. The parameters are those of :func:`check_on_meta`.

    Returns
    -------
    torch.nn.Module
        On the CPU, with ``state`` loaded (training mode as built; callers set eval mode).

    Raises
    ------
    ValueError
        Naming the file, the keys or shapes that disagree and the suspected configuration fields.
    """
    meta = check_on_meta(build, state, name=name, settings=settings, show=show, network=network)
    model = _materialize(meta, state) or build()
    try:
        model.load_state_dict(dict(state), strict=True)
    except ValueError as exc:  # a layer refused its stored values (e.g. a block-sparse layer's index)
        raise ValueError(f"{name}: {exc}") from None
    return model


def _materialize(meta: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module | None:
    """``meta`` moved to uninitialised CPU memory, if loading ``state`` then defines every tensor it holds
    (no non-persistent buffer, no plain tensor attribute); else ``None`` (the caller builds it anew).
    This skips the random initialisation that loading overwrites anyway."""
    persistent = set(meta.state_dict())
    if any(name not in persistent for name, _ in meta.named_buffers()):
        return None
    for module in meta.modules():
        if any(isinstance(value, torch.Tensor) for value in vars(module).values()):
            return None
    return meta.to_empty(device="cpu")


def finite_or_explain(output: torch.Tensor, model: nn.Module, name: str) -> None:
    """Raise ``ValueError`` if ``output`` holds NaN/inf, naming ``name`` and the model's largest weight."""
    if bool(torch.isfinite(output).all()):
        return
    largest, where = 0.0, "?"
    for key, value in model.state_dict().items():
        if value.is_floating_point() and value.numel():
            magnitude = float(value.abs().max())
            if not math.isfinite(magnitude) or magnitude > largest:
                largest, where = magnitude, key
    raise ValueError(
        f"the network of {name} produced NaN or infinite values (its largest weight is {largest:.3g}, in tensor {where}); "
        "the checkpoint's weights overflow float32 on this input"
    )
