"""Bags: partitions of the rows, and the aggregation of responses over them.

A bag assignment is given either as one integer bag id per row (ids ``0 .. m-1``,
every id used by at least one row) or as a sequence of row-index arrays, one per
bag, that together partition the rows. :func:`as_bags` checks either form and
returns a :class:`Bags`; every function of :mod:`sparsesel.aggregate` accepts both.

Aggregates are ordered by bag id: ``y_agg[a]`` belongs to bag ``a``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from sparsesel.validation import as_finite_array, as_generator, check_choice, check_index_set, check_int

AGGREGATES = ("mean", "sum")


@dataclass(frozen=True, eq=False)
class Bags:
    """A validated partition of ``n_rows`` rows into ``n_bags`` non-empty bags.

    Attributes
    ----------
    ids : ndarray of int, shape (n_rows,)
        The bag of each row, in ``0 .. n_bags-1`` (read-only).
    n_bags : int
    sizes : ndarray of int, shape (n_bags,)
        Rows per bag, all ``>= 1``.
    """

    ids: np.ndarray
    n_bags: int
    sizes: np.ndarray

    @property
    def n_rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def equal_sized(self) -> bool:
        return bool(np.all(self.sizes == self.sizes[0]))

    def members(self) -> list[np.ndarray]:
        """Row indices of every bag, in bag order."""
        order = np.argsort(self.ids, kind="stable")
        return np.split(order, np.cumsum(self.sizes)[:-1])

    def indicator(self) -> sparse.csr_matrix:
        """The ``(n_bags, n_rows)`` 0/1 membership matrix."""
        data = np.ones(self.n_rows)
        return sparse.csr_matrix((data, (self.ids, np.arange(self.n_rows))), shape=(self.n_bags, self.n_rows))

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Per-bag sums of ``values`` (shape ``(n_rows,)`` or ``(n_rows, p)``)."""
        values = np.asarray(values, dtype=np.float64)
        out = np.zeros((self.n_bags,) + values.shape[1:])
        np.add.at(out, self.ids, values)
        return out

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Per-bag means of ``values`` (shape ``(n_rows,)`` or ``(n_rows, p)``)."""
        sums = self.sum(values)
        return sums / self.sizes.reshape((-1,) + (1,) * (sums.ndim - 1))

    def broadcast(self, bag_values: np.ndarray) -> np.ndarray:
        """Give each row the value of its bag: ``bag_values[ids]``."""
        return np.asarray(bag_values)[self.ids]


def as_bags(bags: Any, n_rows: int, name: str = "bags") -> Bags:
    """Validate a bag assignment of ``n_rows`` rows.

    Parameters
    ----------
    bags : Bags, array_like of int, shape (n_rows,), or sequence of index arrays
        Bag ids per row (``0 .. m-1``, none empty), or one array of row indices per
        bag (together every row exactly once).
    n_rows : int
        Number of rows the bags must partition.

    Raises
    ------
    ValueError
        Wrong length, negative or non-integer ids, empty bags, rows in no bag or
        in several bags, indices out of range.
    """
    n_rows = check_int(n_rows, "n_rows", low=1)
    if isinstance(bags, Bags):
        if bags.n_rows != n_rows:
            raise ValueError(f"{name} cover {bags.n_rows} rows but X has {n_rows} rows; they must match")
        return bags
    if _is_index_lists(bags):
        return _from_index_lists(bags, n_rows, name)
    ids = np.asarray(bags)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be one bag id per row (1-D) or a list of row-index arrays, got shape {ids.shape}")
    if ids.shape[0] != n_rows:
        raise ValueError(
            f"{name} has {ids.shape[0]} entries but X has {n_rows} rows: the bags must partition the rows "
            "(one bag id per row)"
        )
    ids = _as_integer_ids(ids, name)
    if ids.min() < 0:
        raise ValueError(f"{name} ids must be >= 0, got {int(ids.min())}")
    n_bags = int(ids.max()) + 1
    sizes = np.bincount(ids, minlength=n_bags)
    empty = np.flatnonzero(sizes == 0)
    if empty.size:
        raise ValueError(
            f"{name} has {empty.size} empty bag(s) (ids {empty[:10].tolist()} have no rows); "
            f"bag ids must run over 0..{n_bags - 1} with every bag non-empty"
        )
    ids = ids.copy()
    ids.setflags(write=False)
    sizes.setflags(write=False)
    return Bags(ids=ids, n_bags=n_bags, sizes=sizes)


def _is_index_lists(bags: Any) -> bool:
    if isinstance(bags, np.ndarray):
        return bags.dtype == object
    if isinstance(bags, Sequence) and not isinstance(bags, (str, bytes)) and len(bags) > 0:
        return all(isinstance(b, (Sequence, np.ndarray)) and not isinstance(b, (str, bytes)) for b in bags)
    return False


def _as_integer_ids(values: np.ndarray, name: str) -> np.ndarray:
    if values.dtype == bool:
        raise TypeError(f"{name} must hold integer ids, got booleans")
    if np.issubdtype(values.dtype, np.integer):
        return values.astype(np.int64)
    try:
        floats = values.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must hold integer ids, got dtype {values.dtype}") from None
    if not np.all(np.isfinite(floats)) or not np.all(floats == np.round(floats)):
        raise TypeError(f"{name} must hold integer ids; found non-integer values")
    return floats.astype(np.int64)


def _from_index_lists(bags: Sequence, n_rows: int, name: str) -> Bags:
    ids = np.full(n_rows, -1, dtype=np.int64)
    for a, members in enumerate(bags):
        members = np.asarray(members)
        if members.size == 0:
            raise ValueError(f"{name}[{a}] is empty: every bag needs at least one row")
        members = check_index_set(_as_integer_ids(members.ravel(), f"{name}[{a}]"), f"{name}[{a}] (row indices)", n_rows)
        taken = members[ids[members] >= 0]
        if taken.size:
            row = int(taken[0])
            raise ValueError(
                f"{name} do not partition the rows: row {row} is in bag {int(ids[row])} and in bag {a}"
            )
        ids[members] = a
    missing = np.flatnonzero(ids < 0)
    if missing.size:
        raise ValueError(
            f"{name} do not partition the rows: {missing.size} row(s) are in no bag (e.g. {missing[:10].tolist()})"
        )
    return as_bags(ids, n_rows, name)


def random_bags(n: int, size: int, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Split ``n`` rows uniformly at random into ``n // size`` bags of similar size.

    Every bag gets ``size`` or ``size + 1`` rows (the ``n mod size`` left-over rows
    are spread over distinct bags), so the bags partition all the rows.

    Parameters
    ----------
    n : int
        Number of rows, ``>= size``.
    size : int
        Target bag size, ``>= 1``.
    seed : int or numpy.random.Generator

    Returns
    -------
    ndarray of int, shape (n,)
        The bag id of each row, in ``0 .. n//size - 1``.
    """
    n = check_int(n, "n", low=1)
    size = check_int(size, "size", low=1, high=n)
    rng = as_generator(seed)
    n_bags = n // size
    ids = np.empty(n, dtype=np.int64)
    ids[rng.permutation(n)] = np.arange(n) % n_bags
    return ids


def curated_bags(
    X: Any,
    by: Sequence[int] | str = "all",
    *,
    n_clusters: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Curated bags: group rows that share feature values (or a cluster).

    Parameters
    ----------
    X : array_like, shape (n, d)
    by : sequence of int, "all" or "kmeans"
        Column indices whose values define a bag (rows equal on all of them share
        a bag); ``"all"`` uses every column; ``"kmeans"`` clusters the rows with
        scikit-learn's ``KMeans`` into ``n_clusters`` bags (approximately curated).
    n_clusters : int, optional
        Number of bags for ``by="kmeans"`` (required there).
    seed : int
        Seed of k-means.

    Returns
    -------
    ndarray of int, shape (n,)
        Bag ids ``0 .. m-1``, ordered by first appearance of each group's key.
    """
    X = as_finite_array(X, "X", ndim=2)
    if isinstance(by, str):
        check_choice(by, "by", ("all", "kmeans"))
        if by == "kmeans":
            if n_clusters is None:
                raise ValueError("curated_bags(by='kmeans') needs n_clusters")
            n_clusters = check_int(n_clusters, "n_clusters", low=1, high=X.shape[0])
            from sklearn.cluster import KMeans

            labels = KMeans(n_clusters=n_clusters, n_init=4, random_state=seed).fit_predict(X)
            return _first_appearance_codes(labels)
        columns = list(range(X.shape[1]))
    else:
        columns = []
        for c in by:
            column = check_int(int(c) if isinstance(c, numbers.Integral) else c, "by column")
            if not 0 <= column < X.shape[1]:
                raise ValueError(
                    f"by names column {column}, but X has {X.shape[1]} column(s) (valid indices 0..{X.shape[1] - 1})"
                )
            columns.append(column)
        if not columns:
            raise ValueError("by must name at least one column")
    _, inverse = np.unique(X[:, columns], axis=0, return_inverse=True)
    return _first_appearance_codes(inverse.ravel())


def _first_appearance_codes(labels: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    return rank[inverse.ravel()]


def aggregate_responses(y: Any, bags: Any, how: str = "mean") -> np.ndarray:
    """Aggregate individual responses over bags.

    Parameters
    ----------
    y : array_like, shape (n,)
    bags : bag assignment (see :func:`as_bags`)
    how : {"mean", "sum"}

    Returns
    -------
    ndarray, shape (n_bags,)
    """
    y = as_finite_array(y, "y", ndim=1)
    check_choice(how, "how", AGGREGATES)
    b = as_bags(bags, y.shape[0])
    return b.mean(y) if how == "mean" else b.sum(y)


def label_proportions(y: Any, bags: Any, classes: Any = None, *, counts: bool = False) -> np.ndarray:
    """Per-bag label proportions (or counts) for classification.

    Parameters
    ----------
    y : array_like, shape (n,)
        Class labels.
    bags : bag assignment
    classes : array_like, optional
        The class order (default: sorted unique labels of ``y``).
    counts : bool
        Return counts instead of proportions.

    Returns
    -------
    ndarray, shape (n_bags, n_classes)
        Row ``a`` holds the fraction (or number) of rows of bag ``a`` in each class.
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one-dimensional, got shape {y.shape}")
    b = as_bags(bags, y.shape[0])
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        bad = np.flatnonzero(~np.isfinite(y))
        raise ValueError(
            f"y (class labels) contains {bad.size} NaN or infinite value(s), e.g. at row {int(bad[0])}; "
            "drop or label those rows first"
        )
    classes = np.unique(y) if classes is None else np.asarray(classes)
    onehot = (y[:, None] == classes[None, :]).astype(np.float64)
    unknown = np.flatnonzero(onehot.sum(axis=1) == 0)
    if unknown.size:
        raise ValueError(f"y has labels not in classes, e.g. {y[unknown[0]]!r}")
    return b.sum(onehot) if counts else b.mean(onehot)


def check_aggregates(y_agg: Any, bags: Bags, name: str = "y_agg", ndim: int | tuple[int, ...] = 1) -> np.ndarray:
    """Check that there is one finite aggregate per bag; return it as float64."""
    y_agg = as_finite_array(y_agg, name, ndim=ndim)
    if y_agg.shape[0] != bags.n_bags:
        raise ValueError(
            f"{name} has {y_agg.shape[0]} aggregate(s) but there are {bags.n_bags} bags: "
            "give exactly one aggregate per bag, ordered by bag id"
        )
    return y_agg
