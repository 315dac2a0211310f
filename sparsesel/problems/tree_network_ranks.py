"""Tree tensor networks: choose one rank per edge of a tree over the modes within a size budget.

The surrogate objective is ``Σ_e Σ_{i > r_e} σ_{e,i}²`` where ``σ_e`` are the singular
values of the matricization across the cut of edge ``e``; it bounds the squared error of
the hierarchical (TT-/HT-) SVD truncation. The size is ``Σ_v I_v Π_{e ∋ v} r_e``.
Tensor train is the path tree, Tucker the star (see :mod:`sparsesel.tensors.tree_networks`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from sparsesel.budget import Budget
from sparsesel.problems.core_shape import SpectralRankProblem, budget_entries, check_spectrum, checked_tensor
from sparsesel.tensors.spectra import as_real_tensor
from sparsesel.tensors.tree_networks import (
    check_tree,
    edge_max_ranks,
    edge_spectra,
    path_tree,
    star_tree,
    tree_size_model,
)
from sparsesel.validation import check_tensor_shape


@dataclass(frozen=True, eq=False)
class TreeNetworkRanks(SpectralRankProblem):
    """Choose one rank per edge of a tree tensor network within a size budget.

    Parameters
    ----------
    tree : networkx.Graph
        A tree; node attribute ``"mode"`` holds the physical mode of a node (int) or is
        absent/``None``. Every leaf carries a mode; each mode ``0..N-1`` appears once.
        Copied.
    edge_singular_values : sequence or mapping of array_like
        Per edge, the non-increasing singular values of the matricization across its cut;
        a sequence aligned with ``list(tree.edges())`` or a mapping ``{(u, v): values}``.
    shape : sequence of int
        ``(I_0, ..., I_{N-1})``.
    budget : int, float or Budget
        Entries (``Σ_v I_v Π_{e ∋ v} r_e``): an int is a count, a float a fraction in ``(0, 1]`` of
        ``Π I_n`` (rounded down exactly; :class:`sparsesel.budget.Budget`, unit ``"entries"``).
    total_energy : float, optional
        ``‖X‖²_F`` (default: the largest edge energy).
    tensor : ndarray, optional
        The tensor (kept by the constructors from a tensor).

    Attributes
    ----------
    edges : tuple of (node, node)
        The edge order of ranks in ``result.selected``.
    """

    tree: nx.Graph
    edge_singular_values: Sequence[Any] | Mapping[Any, Any]
    shape: Sequence[int]
    budget: int | float | Budget
    total_energy: float | None = None
    tensor: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = check_tensor_shape(self.shape)
        tree = check_tree(self.tree, len(shape))
        edges = tuple(tree.edges())
        if isinstance(self.edge_singular_values, Mapping):
            given = {frozenset(k): v for k, v in self.edge_singular_values.items()}
            unknown = [k for k in given if k not in {frozenset(e) for e in edges}]
            if unknown:
                raise ValueError(f"edge_singular_values has keys that are not tree edges: {[tuple(k) for k in unknown]}")
            missing = [e for e in edges if frozenset(e) not in given]
            if missing:
                raise ValueError(f"edge_singular_values misses the edges {missing}")
            spectra_in = [given[frozenset(e)] for e in edges]
        else:
            spectra_in = list(self.edge_singular_values)
            if len(spectra_in) != len(edges):
                raise ValueError(f"edge_singular_values has {len(spectra_in)} spectra but the tree has {len(edges)} edges")
        caps = edge_max_ranks(tree, edges, shape)
        spectra = tuple(check_spectrum(s, f"edge_singular_values[{e}]", caps[i]) for i, (e, s) in enumerate(zip(edges, spectra_in)))
        tensor = checked_tensor(self.tensor, shape)
        object.__setattr__(self, "tree", tree)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "edge_singular_values", spectra)
        object.__setattr__(self, "tensor", tensor)
        budget = budget_entries(self.budget, math.prod(shape))
        self._finish(spectra, tree_size_model(tree, edges, shape), budget, self.total_energy)

    @classmethod
    def from_tensor(cls, X: Any, tree: nx.Graph, budget: int | float | Budget, *, method: str = "auto", seed: int = 0) -> TreeNetworkRanks:
        """Build the problem from a tensor and a tree: cut spectra, ``‖X‖²`` and the tensor.

        Only the leading ``⌊B / (c_u + c_v)⌋`` values of edge ``(u, v)`` are computed
        (``c``: the node's physical dimension or 1), as no feasible choice has more.
        """
        X = as_real_tensor(X)
        tree = check_tree(tree, X.ndim)
        edges = tuple(tree.edges())
        B = budget_entries(budget, X.size)

        def dim(v: Any) -> int:
            m = tree.nodes[v].get("mode")
            return 1 if m is None else X.shape[m]

        caps = [max(1, B // (dim(u) + dim(v))) for u, v in edges]
        spectra = edge_spectra(X, tree, edges, max_ranks=caps, method=method, seed=seed)
        return cls(tree, spectra, X.shape, B, total_energy=float(np.vdot(X, X)), tensor=X)

    @classmethod
    def tensor_train(cls, X: Any, budget: int | float | Budget, **options: Any) -> TreeNetworkRanks:
        """The tensor-train (path) problem of ``X``; ranks are ordered along the path."""
        return cls.from_tensor(X, path_tree(np.ndim(X)), budget, **options)

    @classmethod
    def tucker(cls, X: Any, budget: int | float | Budget, **options: Any) -> TreeNetworkRanks:
        """The Tucker (star) problem of ``X``; rank ``k`` belongs to the edge of mode ``k``."""
        return cls.from_tensor(X, star_tree(np.ndim(X)), budget, **options)

    def group_name(self, g: int) -> str:
        return f"edge {self.edges[g]}"
