"""Random small rank-selection instances shared by the tucker tests (not a test module)."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

import sparsesel as ss


def random_spectrum(rng: np.random.Generator, length: int) -> np.ndarray:
    """A random decaying spectrum: power law or exponential decay with jitter, sorted."""
    i = np.arange(1, length + 1)
    kind = rng.integers(3)
    if kind == 0:
        s = i ** (-rng.uniform(0.3, 2.0))
    elif kind == 1:
        s = np.exp(-rng.uniform(0.05, 1.0) * i)
    else:
        s = rng.exponential(size=length)
    s = s * np.exp(rng.normal(scale=0.3, size=length)) * rng.uniform(0.5, 20)
    return np.sort(s)[::-1]


def random_core_shape(rng: np.random.Generator) -> ss.CoreShape:
    n_modes = int(rng.choice([3, 4]))
    high = 12 if n_modes == 3 else 8
    shape = tuple(int(v) for v in rng.integers(2, high + 1, size=n_modes))
    total = math.prod(shape)
    spectra = [random_spectrum(rng, min(shape[n], total // shape[n])) for n in range(n_modes)]
    min_size = 1 + sum(shape)
    full = math.prod(len(s) for s in spectra) + sum(I * len(s) for I, s in zip(shape, spectra))
    budget = int(rng.integers(max(1, min_size - 3), full + 5))
    return ss.CoreShape(spectra, shape, budget)


def random_tree(rng: np.random.Generator, n_modes: int) -> nx.Graph:
    """A random tree: Prüfer sequence over mode nodes and 0-2 extra nodes without modes."""
    extra = int(rng.integers(0, 3))
    n = n_modes + extra
    while True:
        tree = nx.from_prufer_sequence(list(rng.integers(0, n, size=n - 2))) if n > 2 else nx.path_graph(2)
        leaves = [v for v in tree if tree.degree[v] == 1]
        if all(v < n_modes for v in leaves):
            break
        # relabel so that leaves get modes first
        order = leaves + [v for v in tree if v not in leaves]
        if len(leaves) <= n_modes:
            tree = nx.relabel_nodes(tree, {v: k for k, v in enumerate(order)})
            break
    for v in tree:
        tree.nodes[v]["mode"] = v if v < n_modes else None
    return tree
