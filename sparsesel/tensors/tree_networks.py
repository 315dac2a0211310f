"""Tree tensor networks over the modes of a tensor.

A tree is a ``networkx.Graph``; each node may carry one physical mode in its ``"mode"``
attribute (an int ``0..N-1``; absent or ``None`` for a node without one). Every leaf must
carry a mode and every mode must appear at exactly one node. One rank is chosen per edge.
Removing an edge splits the modes into two sides; the edge's spectrum is that of the
matricization of the tensor across this cut.

* tensor train: the path ``0 - 1 - ... - N-1``, node ``k`` carrying mode ``k``
  (:func:`path_tree`);
* Tucker: a star, the centre (the core, no mode) joined to one leaf per mode
  (:func:`star_tree`).

The size of the network is ``sum_v I_v prod_{e ∋ v} r_e`` (``I_v = 1`` without a mode).
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import numpy as np
import tensorly as tl
from tensorly.decomposition import tensor_train

from sparsesel.tensors.size_model import SizeModel
from sparsesel.tensors.spectra import check_tensor, matricization_spectrum, matricize
from sparsesel.tensors.tucker import leading_left_singular_vectors

CORE_NODE = "core"


def path_tree(n_modes: int) -> nx.Graph:
    """The tensor-train tree: nodes ``0..n_modes-1`` in a path, node ``k`` carrying mode ``k``."""
    if n_modes < 2:
        raise ValueError(f"n_modes must be >= 2, got {n_modes}")
    tree = nx.path_graph(n_modes)
    nx.set_node_attributes(tree, {k: k for k in range(n_modes)}, "mode")
    return tree


def star_tree(n_modes: int) -> nx.Graph:
    """The Tucker tree: a centre ``"core"`` (no mode) joined to leaves ``0..n_modes-1``."""
    if n_modes < 2:
        raise ValueError(f"n_modes must be >= 2, got {n_modes}")
    tree = nx.Graph()
    tree.add_node(CORE_NODE, mode=None)
    for k in range(n_modes):
        tree.add_node(k, mode=k)
        tree.add_edge(CORE_NODE, k)
    return tree


def node_mode(tree: nx.Graph, node) -> int | None:
    """The physical mode carried by ``node`` (``None`` if none)."""
    return tree.nodes[node].get("mode")


def check_tree(tree: nx.Graph, n_modes: int) -> nx.Graph:
    """Validate ``tree`` against ``n_modes`` modes and return a copy of it.

    Raises
    ------
    TypeError
        ``tree`` is not an undirected networkx graph, or a ``mode`` attribute is not an int.
    ValueError
        The graph is not a tree, a leaf carries no mode, or the modes are not ``0..N-1``
        each exactly once.
    """
    if not isinstance(tree, nx.Graph) or tree.is_directed() or tree.is_multigraph():
        raise TypeError(f"tree must be an undirected networkx.Graph, got {type(tree).__name__}")
    if tree.number_of_nodes() < 2 or not nx.is_tree(tree):
        raise ValueError(
            f"tree must be a tree (connected and acyclic, >= 2 nodes); got {tree.number_of_nodes()} nodes, "
            f"{tree.number_of_edges()} edges, connected={tree.number_of_nodes() > 0 and nx.is_connected(tree)}"
        )
    seen: dict[int, object] = {}
    for node in tree.nodes:
        mode = node_mode(tree, node)
        if mode is None:
            if tree.degree[node] == 1:
                raise ValueError(f"tree leaf {node!r} carries no mode; every leaf must carry a mode of the tensor")
            continue
        if isinstance(mode, bool) or not isinstance(mode, (int, np.integer)):
            raise TypeError(f"tree node {node!r} has mode {mode!r}; modes must be ints")
        mode = int(mode)
        if not 0 <= mode < n_modes:
            raise ValueError(f"tree node {node!r} carries mode {mode}, but the tensor has modes 0..{n_modes - 1}")
        if mode in seen:
            raise ValueError(f"mode {mode} appears at two tree nodes ({seen[mode]!r} and {node!r})")
        seen[mode] = node
    missing = sorted(set(range(n_modes)) - set(seen))
    if missing:
        raise ValueError(f"tree leaves/nodes do not match the modes: modes {missing} appear at no node")
    return tree.copy()


def cut_modes(tree: nx.Graph, edge: tuple) -> tuple[int, ...]:
    """Sorted modes on the side of ``edge[0]`` when ``edge`` is removed."""
    u, v = edge
    pruned = tree.copy()
    pruned.remove_edge(u, v)
    side = nx.node_connected_component(pruned, u)
    return tuple(sorted(node_mode(tree, w) for w in side if node_mode(tree, w) is not None))


def edge_max_ranks(tree: nx.Graph, edges: Sequence[tuple], shape: Sequence[int]) -> tuple[int, ...]:
    """Largest meaningful rank per edge: ``min(prod I_side, prod I_other side)``."""
    total = int(np.prod(shape, dtype=object))
    out = []
    for edge in edges:
        side = int(np.prod([shape[m] for m in cut_modes(tree, edge)], dtype=object))
        out.append(min(side, total // side))
    return tuple(out)


def tree_size_model(tree: nx.Graph, edges: Sequence[tuple], shape: Sequence[int]) -> SizeModel:
    """``sum_v I_v prod_{e ∋ v} r_e`` as a :class:`SizeModel` over the edges (in ``edges`` order)."""
    index = {frozenset(e): i for i, e in enumerate(edges)}
    terms = []
    for node in tree.nodes:
        mode = node_mode(tree, node)
        coef = 1 if mode is None else int(shape[mode])
        groups = tuple(sorted(index[frozenset((node, w))] for w in tree.neighbors(node)))
        terms.append((coef, groups))
    return SizeModel(len(edges), tuple(terms))


def edge_spectra(
    X: np.ndarray, tree: nx.Graph, edges: Sequence[tuple], *, max_ranks: Sequence[int | None] | None = None, **options
) -> list[np.ndarray]:
    """Singular values of the matricization across each edge's cut (see :mod:`~sparsesel.tensors.spectra`)."""
    X = check_tensor(X)
    if max_ranks is None:
        max_ranks = [None] * len(edges)
    out = []
    for edge, k in zip(edges, max_ranks):
        side = cut_modes(tree, edge)
        out.append(matricization_spectrum(X, side, max_rank=k, **options))
    return out


def is_mode_ordered_path(tree: nx.Graph) -> bool:
    """Whether ``tree`` is the tensor-train path ``0 - 1 - ... - N-1`` with node modes in order."""
    modes = [node_mode(tree, v) for v in tree.nodes]
    if any(m is None for m in modes) or max(d for _, d in tree.degree) > 2:
        return False
    ends = [v for v in tree.nodes if tree.degree[v] == 1]
    start = min(ends, key=lambda v: node_mode(tree, v))
    order = [node_mode(tree, v) for v in nx.dfs_preorder_nodes(tree, start)]
    return order == list(range(len(order)))


def tree_truncation(X: np.ndarray, tree: nx.Graph, edges: Sequence[tuple], ranks: Sequence[int]) -> np.ndarray:
    """The tensor truncated to edge ranks ``ranks`` (a tree tensor network of those ranks).

    For the tensor-train path this is TT-SVD (``tensorly.decomposition.tensor_train``).
    For any other tree it is the hierarchical SVD (Grasedyck 2010): for each edge, the
    projector onto the leading ``r_e`` left singular vectors of the matricization across the
    edge (computed from ``X`` itself) acts on the modes of the edge's side away from the
    root; projectors are applied root-first, deepest last, so that the result has the
    tree's format with these ranks. Both satisfy ``‖X − X̂‖² ≤ Σ_e tail_e(r_e)``.

    Returns
    -------
    ndarray, same shape as ``X``
    """
    X = check_tensor(X)
    ranks = [int(r) for r in ranks]
    if is_mode_ordered_path(tree):
        ends = [v for v in tree.nodes if tree.degree[v] == 1]
        start = min(ends, key=lambda v: node_mode(tree, v))
        order = list(nx.dfs_preorder_nodes(tree, start))
        index = {frozenset(e): i for i, e in enumerate(edges)}
        tt_ranks = [1] + [ranks[index[frozenset((order[k], order[k + 1]))]] for k in range(len(order) - 1)] + [1]
        return tl.tt_to_tensor(tensor_train(X, rank=tt_ranks))
    root = next(v for v in tree.nodes if tree.degree[v] > 1)
    depth = nx.shortest_path_length(tree, root)
    projections = []
    for edge, r in zip(edges, ranks):
        u, v = edge
        child = v if depth[v] > depth[u] else u
        parent = u if child == v else v
        side = cut_modes(tree, (child, parent))
        U = leading_left_singular_vectors(matricize(X, side), r)
        projections.append((depth[child], side, U))
    Y = X
    for _, side, U in sorted(projections, key=lambda p: p[0]):
        M = matricize(Y, side)
        M = U @ (U.T @ M)
        rest = [m for m in range(X.ndim) if m not in side]
        perm = list(side) + rest
        Y = np.transpose(M.reshape([X.shape[m] for m in perm]), np.argsort(perm))
    return Y


def tree_relative_error(X: np.ndarray, tree: nx.Graph, edges: Sequence[tuple], ranks: Sequence[int]) -> float:
    """Squared relative error of :func:`tree_truncation`."""
    X = check_tensor(X)
    norm2 = float(np.vdot(X, X))
    if norm2 == 0.0:
        return 0.0
    R = X - tree_truncation(X, tree, edges, ranks)
    return float(np.vdot(R, R)) / norm2
