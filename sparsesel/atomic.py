"""Atomic file output: write to a temporary file beside the target, then publish it.

An existing output is never replaced unless the caller passes ``force=True``. Without it the
temporary file is published with a hard link, which fails if the target appeared meanwhile (a
second run writing the same path): of two concurrent writers exactly one succeeds and the other
gets ``FileExistsError``; nothing is silently lost. With ``force=True`` the publication is an
atomic rename that replaces the target.
"""

from __future__ import annotations

import errno
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
        if force:
            os.replace(temporary, path)
        else:
            _publish_without_replacing(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


#: ``os.link`` errors that mean "this file system has no hard links" (then a checked rename is used).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


def _publish_without_replacing(temporary: str, path: Path) -> None:
    """Give the finished ``temporary`` file the name ``path`` unless ``path`` exists (checked atomically)."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise FileExistsError(
            f"{path} was created by another process while this one was writing it; nothing was replaced "
            "(pass --force (force=True) to replace it)"
        ) from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        refuse_existing(path, False)  # no hard links here: the best check there is, then the rename
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def _default_mode() -> int:
    """Permissions a new file gets under the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_text_atomic(path: str | os.PathLike, text: str, *, force: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; see :func:`write_atomic`."""
    return write_atomic(path, lambda stream: stream.write(text.encode("utf-8")), force=force)
