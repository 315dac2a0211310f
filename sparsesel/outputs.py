"""Output paths, checked before any work, and a lock that keeps two runs out of one output folder.

Every command that writes files calls :func:`check_output_file` (one file) or
:func:`check_output_folder` (a folder it writes named files into) before it reads its inputs or
computes anything, so that a path it could not write, or should not write, is refused at once
with a message that names the flag and the problem:

* the path is a folder where a file is expected, or a file where a folder is expected;
* a part of the path is an existing file (``out.pt/x``: nothing can be created under a file);
* a name in the path is longer than the file system allows (``NAME_MAX``, usually 255 bytes);
* the folder that would receive the output cannot be written (``PermissionError``);
* the path is an input of the command, or (for a folder) holds one: a command never writes over,
  or into the folder of, what it reads (symbolic and hard links are followed);
* the output exists and ``force`` is false (``FileExistsError``).

:class:`OutputLock` is a lock file in an output folder (``.sparsesel.lock``, holding the pid,
host and start time of its holder, and the command). A second run that finds it held fails with
:class:`OutputLockedError` naming the holder. The lock is an ``flock`` on that file, which the
kernel releases when its holder dies (also after ``kill -9``), so a lock left by a killed run
never blocks; where ``flock`` is unavailable the recorded pid is checked instead (a process that
no longer exists, or a pid reused by a younger process, is a stale lock).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

try:  # POSIX only; elsewhere the lock relies on the recorded pid
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK_NAME",
    "OutputLock",
    "OutputLockedError",
    "check_not_an_input",
    "check_output_file",
    "check_output_folder",
    "describe_os_error",
    "first_missing",
    "remove_if_empty",
    "remove_leftover_temporaries",
    "same_file",
]

#: Name of the lock file a run holds in its output folder.
LOCK_NAME = ".sparsesel.lock"
_NAME_MAX_FALLBACK = 255
_PATH_MAX_FALLBACK = 4096


def _resolve(path: Path) -> Path:
    """``path.resolve()``; a symbolic-link loop is a ``ValueError`` naming the path."""
    try:
        return path.resolve()
    except RuntimeError:  # Python < 3.13: "Symlink loop from ..."
        raise ValueError(f"{path}: a loop of symbolic links") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ValueError(f"{path}: a loop of symbolic links") from None
        raise


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file: equal after resolving links, or one inode (hard links)."""
    a, b = Path(a), Path(b)
    if _resolve(a) == _resolve(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _nearest_existing(path: Path) -> Path:
    """``path`` itself if it exists, else its closest existing ancestor (``path`` is absolute)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return Path(path.anchor)


def _limits(folder: Path) -> tuple[int, int]:
    """``(NAME_MAX, PATH_MAX)`` of the file system holding ``folder`` (255, 4096 where unknown)."""
    limits = []
    for key, fallback in (("PC_NAME_MAX", _NAME_MAX_FALLBACK), ("PC_PATH_MAX", _PATH_MAX_FALLBACK)):
        try:
            limits.append(int(os.pathconf(folder, key)))
        except (OSError, ValueError, AttributeError):
            limits.append(fallback)
    return limits[0], limits[1]


def _check_shape(path: Path, label: str) -> Path:
    """The checks shared by files and folders: no part is a file, no name too long, the place writable.

    Returns the absolute path.
    """
    absolute = Path(os.path.abspath(path))
    existing = _nearest_existing(absolute)
    name_max, path_max = _limits(existing if existing.is_dir() else existing.parent)
    for part in absolute.parts[1:]:
        size = len(os.fsencode(part))
        if size > name_max:
            shown = part if len(part) <= 40 else part[:37] + "..."
            raise ValueError(f"{label} {path}: the name {shown!r} is {size} bytes long; this file system allows at most {name_max}")
    if len(os.fsencode(str(absolute))) >= path_max:
        raise ValueError(f"{label} {path}: the path is {len(os.fsencode(str(absolute)))} bytes long; this system allows at most {path_max - 1}")
    for ancestor in absolute.parents:
        if os.path.lexists(ancestor) and not ancestor.is_dir():
            what = "a broken link" if ancestor.is_symlink() and not ancestor.exists() else "a file"
            raise ValueError(f"{label} {path}: {ancestor} is not a folder (it is {what}), so nothing can be written under it")
        if ancestor.is_dir():
            break
    return absolute


def _check_writable(folder: Path, path: Path, label: str) -> None:
    """Refuse ``path`` when ``folder`` (its nearest existing folder) cannot receive new files."""
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        raise PermissionError(f"{label} {path}: {folder} is on a read-only file system; choose a place you can write to")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{label} {path}: cannot write into {folder} (permission denied); choose a place you can write to")


def check_not_an_input(path: str | os.PathLike, inputs: Mapping[str, str | os.PathLike | None], label: str, *,
                       folder: bool = False) -> None:
    """Refuse an output ``path`` that is one of ``inputs`` or, if ``folder``, holds one of them.

    Parameters
    ----------
    path : path-like
        The output (a file, or a folder the command writes into when ``folder``).
    inputs : mapping of str to path-like or None
        The files the command reads, by what they are (``{"checkpoint": path}``); ``None`` values
        (e.g. built-in data sets) are skipped.
    label : str
        The flag named in the message, e.g. ``"--out"``.
    folder : bool
        ``path`` is a folder: an input anywhere under it is refused too.

    Raises
    ------
    ValueError
        The output is an input, or holds one.
    """
    path = Path(path)
    for name, source in inputs.items():
        if source is None:
            continue
        source = Path(source)
        if same_file(path, source):
            raise ValueError(f"{label} {path} is the input {name} {source}; an input is never overwritten, choose another path")
        if folder and source.exists() and _resolve(source).is_relative_to(_resolve(path)):
            raise ValueError(
                f"{label} {path} holds the input {name} {source}; write the outputs to a folder that holds no input "
                "(an output folder is never the home of what the command reads)"
            )


def check_output_file(path: str | os.PathLike, *, label: str = "--out",
                      inputs: Mapping[str, str | os.PathLike | None] | None = None, force: bool = False) -> Path:
    """Refuse, before any work, an output file that could not or should not be written.

    Parameters
    ----------
    path : path-like
        The file the command will write (atomically).
    label : str
        The flag named in messages.
    inputs : mapping of str to path-like or None, optional
        The files the command reads, by what they are; the output may not be one of them.
    force : bool
        Allow replacing an existing file (never an input).

    Returns
    -------
    Path
        ``path`` as given (not resolved).

    Raises
    ------
    ValueError
        ``path`` is a folder, lies under a file, has a name too long, or is an input.
    PermissionError
        Its folder cannot be written.
    FileExistsError
        It exists and ``force`` is false.
    """
    path = Path(path)
    if str(path) in ("", "."):
        raise ValueError(f"{label}: an empty path is not a file name")
    absolute = _check_shape(path, label)
    check_not_an_input(path, inputs or {}, label)
    if absolute.is_dir():
        raise ValueError(f"{label} {path} is a folder; give a file name (a path inside it, for example)")
    if os.path.lexists(absolute) and not absolute.is_symlink() and not absolute.is_file():
        # a device (/dev/null), a pipe or a socket: the atomic rename would replace the node itself
        raise ValueError(f"{label} {path} is a special file (a device, pipe or socket), not a regular file; give a file name")
    _check_writable(_nearest_existing(absolute.parent), path, label)
    if os.path.lexists(absolute) and not force:
        raise FileExistsError(f"{label} {path} exists; pass --force to overwrite it")
    return path


def check_output_folder(path: str | os.PathLike, *, label: str = "--out",
                        inputs: Mapping[str, str | os.PathLike | None] | None = None, files: Iterable[str] = (),
                        force: bool = False) -> Path:
    """Refuse, before any work, an output folder that could not or should not be written into.

    Parameters
    ----------
    path : path-like
        The folder (created if missing) that receives the command's files.
    label : str
        The flag named in messages.
    inputs : mapping of str to path-like or None, optional
        The files the command reads, by what they are; the folder may not be one of them nor hold one.
    files : iterable of str
        Names of the files the command writes into the folder: any that exists is refused unless
        ``force``, and each must not be a folder.
    force : bool
        Allow replacing those files (nothing else in the folder is touched).

    Returns
    -------
    Path
        ``path`` as given.

    Raises
    ------
    ValueError
        ``path`` is a file, lies under a file, has a name too long, is or holds an input, or one of
        ``files`` is a folder in it.
    PermissionError
        The folder (or the closest existing folder above it) cannot be written.
    FileExistsError
        One of ``files`` exists and ``force`` is false.
    """
    path = Path(path)
    absolute = _check_shape(path, label)
    check_not_an_input(path, inputs or {}, label, folder=True)
    if os.path.lexists(absolute) and not absolute.is_dir():
        raise ValueError(f"{label} {path} is a file; give a folder (it is created if missing)")
    _check_writable(_nearest_existing(absolute), path, label)
    names = list(files)
    for name in names:
        _check_shape(path / name, label)
    clashes = [name for name in names if (absolute / name).is_dir()]
    if clashes:
        raise ValueError(f"{label} {path}: {', '.join(clashes)} is a folder there, where the command writes a file")
    existing = [name for name in names if os.path.lexists(absolute / name)]
    if existing and not force:
        raise FileExistsError(f"{label} {path} already holds {', '.join(existing)}; pass --force to replace them")
    return path


def first_missing(path: str | os.PathLike) -> Path | None:
    """The outermost folder of ``path`` (or ``path`` itself) that does not exist yet; None if it exists.

    What a command creates for ``path``, to be removed again (:func:`remove_if_empty`) when it fails
    before writing anything.
    """
    absolute = Path(os.path.abspath(path))
    if os.path.lexists(absolute):
        return None
    missing = absolute
    for ancestor in absolute.parents:
        if os.path.lexists(ancestor):
            return missing
        missing = ancestor
    return missing


def remove_if_empty(path: str | os.PathLike, up_to: str | os.PathLike) -> None:
    """Remove ``path`` and its parents up to ``up_to`` (included) as long as they are empty folders."""
    path, up_to = Path(os.path.abspath(path)), Path(os.path.abspath(up_to))
    for folder in (path, *path.parents):
        if not folder.is_relative_to(up_to):
            return
        try:
            folder.rmdir()
        except OSError:  # not empty (or gone): stop there
            return
        if folder == up_to:
            return


def remove_leftover_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files a killed run left while writing ``names`` in ``folder``.

    :func:`sparsesel.atomic.write_atomic` writes ``NAME`` through ``.NAME.<random>.tmp``; a process
    killed mid-write leaves that file. Only those names are touched. Returns the deleted paths.
    """
    from sparsesel.atomic import temporary_prefix

    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    prefixes = [temporary_prefix(name) for name in names]
    for entry in folder.iterdir():
        if entry.name.endswith(".tmp") and any(entry.name.startswith(p) for p in prefixes) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


# ------------------------------------------------------------------------------------------- lock
class OutputLockedError(FileExistsError):
    """Another live run holds the lock of an output folder."""


def _process_start(pid: int) -> str | None:
    """A token for when process ``pid`` started (Linux ``/proc``; None elsewhere or if unreadable)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            fields = stream.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()  # field 22 of stat(5), counted after the command name
    except (OSError, IndexError):
        return None


def _alive(record: dict[str, Any]) -> bool:
    """Whether the process a lock record names still runs (records of another host count as alive)."""
    if record.get("host") != socket.gethostname():
        return True
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    started = record.get("started")
    return started is None or _process_start(pid) in (None, started)


class OutputLock:
    """The lock of one output folder, held from :meth:`acquire` to :meth:`release` (or a ``with`` block).

    Parameters
    ----------
    folder : path-like
        The output folder (created if missing).
    command : str
        What holds the lock, shown to a run that finds it held (e.g. ``"sparsesel compress"``).
    label : str
        The flag named in the message (``"--out"``).
    """

    def __init__(self, folder: str | os.PathLike, command: str, *, label: str = "--out") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command
        self.label = label
        self._fd: int | None = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def _record(self) -> dict[str, Any]:
        pid = os.getpid()
        return {"pid": pid, "host": socket.gethostname(), "started": _process_start(pid), "command": self.command,
                "since": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv}

    def _refuse(self, record: dict[str, Any]) -> OutputLockedError:
        holder = f"pid {record.get('pid', '?')} on host {record.get('host', '?')}, since {record.get('since', '?')}"
        return OutputLockedError(
            f"{self.label} {self.folder} is in use by another run ({record.get('command', 'sparsesel')}, {holder}); "
            f"wait for it to finish or choose another {self.label}. If no such run is going on, delete {self.path}"
        )

    def holder(self) -> dict[str, Any] | None:
        """The record of the live run that holds this lock, read without locking; None if none does.

        A quick look (the lock file's record and whether its process lives) for a clearer message
        before other checks; :meth:`acquire` remains the only authority.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            record = _read_record(fd)
        finally:
            os.close(fd)
        return record if record and record.get("pid") != os.getpid() and _alive(record) else None

    def refuse_if_held(self) -> None:
        """Raise :class:`OutputLockedError` if :meth:`holder` finds a live holder."""
        record = self.holder()
        if record is not None:
            raise self._refuse(record)

    def acquire(self) -> None:
        """Take the lock, or raise :class:`OutputLockedError` naming the live holder."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this OutputLock")
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                flocked = self._flock(fd)
                if flocked is False:
                    raise self._refuse(_read_record(fd))
                try:  # the holder may have removed the file between our open and our flock: retry
                    if os.fstat(fd).st_ino != os.stat(self.path).st_ino:
                        os.close(fd)
                        continue
                except FileNotFoundError:
                    os.close(fd)
                    continue
                record = _read_record(fd)
                if record and record.get("pid") != os.getpid() and _alive(record):
                    # a live process recorded without holding the flock: a file system without flock
                    # (or a lock written by hand); refuse rather than share the folder
                    raise self._refuse(record)
                data = json.dumps(self._record()).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return

    @staticmethod
    def _flock(fd: int) -> bool | None:
        """True: locked; False: held by another open file; None: no flock on this system or file system."""
        if fcntl is None:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            return None  # ENOLCK, EINVAL ...: flock not supported here

    def release(self) -> None:
        """Give the lock back and remove the lock file (a no-op if not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


def _read_record(fd: int) -> dict[str, Any]:
    """The JSON record of a lock file ({} when empty or unreadable: a holder still writing it)."""
    try:
        data = os.pread(fd, 65536, 0)
        record = json.loads(data.decode()) if data.strip() else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


# ------------------------------------------------------------------------------------------- errors
_HINTS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "a name in the path is longer than the file system allows (usually 255 bytes)",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder, where a file is expected",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EDQUOT: "disk quota exceeded",
    errno.ELOOP: "too many levels of symbolic links",
}


def describe_os_error(exc: OSError) -> str:
    """One line for an ``OSError``: the path(s) and what went wrong, in words.

    Errors raised with a message of their own (no ``errno``) are returned as they are.
    """
    if exc.errno is None or not exc.strerror:
        return str(exc)
    where = " -> ".join(str(name) for name in (exc.filename, exc.filename2) if name is not None)
    what = _HINTS.get(exc.errno, exc.strerror[0].lower() + exc.strerror[1:])
    return f"{where}: {what}" if where else what
