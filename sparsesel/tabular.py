"""Tabular data for feature selection: scikit-learn's bundled sets, CSV and NPZ files."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Datasets that scikit-learn ships (no download), by the name used in ``builtin:NAME``.
BUILTIN = ("digits", "diabetes", "breast_cancer", "wine", "iris")


@dataclass(frozen=True)
class Table:
    """A design matrix with its response and column names.

    Attributes
    ----------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    feature_names : tuple of str, length d
    target_name : str
    is_classification : bool
        True for class labels (builtin classification sets), False otherwise.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str
    is_classification: bool


def load_table(spec: str, target: str | None = None) -> Table:
    """Load ``builtin:NAME``, ``FILE.csv`` (header row; ``target`` names a column) or ``FILE.npz``.

    An NPZ file holds arrays ``X`` (n, d) and ``y`` (n,) — or the response under
    the key named by ``target`` — and optionally ``feature_names``.

    Raises
    ------
    ValueError
        Unknown builtin name, missing target column/key, repeated column names
        (CSV header, NPZ ``feature_names``), non-numeric cells, a
        path that is not a regular file, a CSV that is not UTF-8 text, an NPZ
        file that is not a readable NumPy archive.
    FileNotFoundError
        The file does not exist.
    """
    if spec.startswith("builtin:"):
        return _load_builtin(spec.removeprefix("builtin:"))
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"data path {path} is not a file (a folder?); give a .csv or .npz file")
    if path.suffix.lower() == ".csv":
        return _load_csv(path, target)
    if path.suffix.lower() == ".npz":
        return _load_npz(path, target)
    raise ValueError(f"cannot read {path}: expected builtin:NAME ({', '.join(BUILTIN)}), a .csv or a .npz file")


def _load_builtin(name: str) -> Table:
    import sklearn.datasets as datasets

    if name not in BUILTIN:
        raise ValueError(f"unknown builtin dataset {name!r}; choose from {', '.join(BUILTIN)}")
    bunch = getattr(datasets, f"load_{name}")()
    names = tuple(map(str, getattr(bunch, "feature_names", [f"x{i}" for i in range(bunch.data.shape[1])])))
    return Table(bunch.data.astype(float), bunch.target.astype(float), names, "target", name != "diabetes")


def _load_csv(path: Path, target: str | None) -> Table:
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            rows = list(csv.reader(stream))
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path.name} is not a UTF-8 text CSV file (undecodable byte at offset {exc.start}); "
            "is it corrupt or in another format?"
        ) from None
    except csv.Error as exc:
        raise ValueError(f"{path.name} is not a readable CSV file: {exc}") from None
    if len(rows) < 2:
        raise ValueError(f"{path} needs a header row and at least one data row")
    header, body = rows[0], rows[1:]
    _refuse_duplicate_names(header, f"{path.name}'s header")
    if target is None:
        raise ValueError(f"--target is required for CSV data; columns of {path.name}: {', '.join(header)}")
    if target not in header:
        raise ValueError(f"target column {target!r} not in {path.name}; columns: {', '.join(header)}")
    column = header.index(target)
    ragged = [i for i, row in enumerate(body, start=2) if len(row) != len(header)]
    if ragged:
        raise ValueError(
            f"{path.name}: every row must have {len(header)} cells (one per header column); "
            f"line {ragged[0]} has {len(body[ragged[0] - 2])}"
        )
    try:
        values = np.array([[float(cell) for cell in row] for row in body])
    except ValueError as exc:
        raise ValueError(f"{path.name} has a non-numeric cell ({exc}); encode categories as numbers first") from None
    if values.ndim != 2 or values.shape[1] != len(header):
        raise ValueError(f"{path.name}: every row must have {len(header)} cells")
    names = tuple(h for i, h in enumerate(header) if i != column)
    X = np.delete(values, column, axis=1)
    y = values[:, column]
    return Table(X, y, names, target, False)


def _load_npz(path: Path, target: str | None) -> Table:
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{path.name} is not a NumPy .npz archive (not a zip file: corrupt, truncated or another format); "
            "save one with numpy.savez(path, X=X, y=y)"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(
            f"{path.name} is not a readable NumPy .npz archive (corrupt, truncated or another format): {exc}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"{path.name} holds a single array, not an .npz archive with arrays 'X' and 'y'")
    with archive:
        key = target or "y"
        if "X" not in archive or key not in archive:
            raise ValueError(f"{path.name} must hold arrays 'X' and {key!r}; it holds {sorted(archive.files)}")
        try:
            X, y = archive["X"], archive[key]
            names = tuple(map(str, archive["feature_names"])) if "feature_names" in archive else None
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path.name}: cannot read its arrays (corrupt archive or object arrays): {exc}") from None
    X = np.asarray(X)
    if names is None:
        names = tuple(f"x{i}" for i in range(X.shape[1] if X.ndim == 2 else 0))
    else:
        _refuse_duplicate_names(list(names), f"{path.name}'s feature_names")
    return Table(X, np.asarray(y), names, key, False)


def _refuse_duplicate_names(names: list[str], where: str) -> None:
    """Refuse repeated column names: a name must pick one column (the target, a selected feature)."""
    seen: dict[str, int] = {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
    repeated = [name for name, count in seen.items() if count > 1]
    if repeated:
        shown = ", ".join(f"{name!r} ({seen[name]} times)" for name in repeated)
        raise ValueError(f"{where} repeats column name(s) {shown}; every column needs its own name")
