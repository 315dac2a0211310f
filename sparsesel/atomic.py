"""Atomic file output: write to a temporary file beside the target, then rename.

An existing output is never replaced unless the caller passes ``force=True``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


#: Longest part of the target's name kept in the temporary file's name (which adds ~14 bytes), so
#: that a target whose name is just within the file system's limit is still written.
_PREFIX_NAME_LIMIT = 200


def temporary_prefix(name: str) -> str:
    """How the temporary file of :func:`write_atomic` for a target ``name`` begins (``.NAME.``)."""
    kept = os.fsencode(name)[:_PREFIX_NAME_LIMIT]
    return f".{os.fsdecode(kept) if kept == os.fsencode(name) else kept.decode('utf-8', 'ignore')}."


def refuse_existing(path: str | os.PathLike, force: bool) -> Path:
    """Return ``path`` as a Path; raise ``FileExistsError`` if it exists and not ``force``."""
    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path} already exists; pass --force (force=True) to replace it")
    return path


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], None], *, force: bool = False) -> Path:
    """Create ``path`` by calling ``write(handle)`` on a temporary file, then renaming it.

    Parameters
    ----------
    path : path-like
        The output file. Its folder is created if missing.
    write : callable
        Receives a binary file handle and writes the whole content.
    force : bool
        Replace an existing file (otherwise ``FileExistsError``).
    """
    path = refuse_existing(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=temporary_prefix(path.name), suffix=".tmp", dir=path.parent)
    try:
        os.chmod(temporary, _default_mode())  # mkstemp creates 0600; give the file the usual umask mode
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _default_mode() -> int:
    """Permissions a new file gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`write_atomic`."""
    return write_atomic(path, lambda stream: stream.write(text.encode("utf-8")), force=force)
