"""Small models to explain, trained in seconds on bundled data (no downloads).

* :func:`digits_cnn` — a CNN on scikit-learn's 8×8 digits (10 classes).
* :func:`crops_cnn` — a CNN on 32×32 RGB crops of five bundled scikit-image
  photographs; the class is the photograph a crop comes from
  (:data:`CROP_CLASSES`).
* :func:`motif_gnn` — a dense graph convolutional network on synthetic graphs:
  a Barabási–Albert tree with a planted *house* (class 1) or *5-cycle* (class 0)
  motif, whose nodes are the known ground truth.
* :func:`tabular_mlp` — an MLP on scikit-learn's breast cancer, wine or diabetes data.

Each builder is seeded and cached in memory (same arguments → same object);
treat the returned models as read-only. Training uses only local tensors and
``torch.Generator`` objects, never global random state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

#: Source images of the crop classes (all shipped inside scikit-image).
CROP_CLASSES: tuple[str, ...] = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")

#: Tabular datasets of :func:`tabular_mlp` and their task.
TABULAR_TASKS = {"breast_cancer": "classification", "wine": "classification", "diabetes": "regression"}


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """A trained model with its held-out data.

    Attributes
    ----------
    model : nn.Module
        In ``eval()`` mode.
    x_train, y_train, x_test, y_test : Tensor
        Inputs as the model takes them (images ``(N, C, H, W)`` in ``[0, 1]``).
    class_names : tuple of str
    test_accuracy : float
        Accuracy on the test split (R² for regression).
    extra : dict
        Builder-specific data (graph adjacencies and motif nodes, scalers, ...).
    """

    model: nn.Module
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]
    test_accuracy: float
    extra: dict[str, Any] = field(default_factory=dict)


def _fit(model: nn.Module, forward, y: torch.Tensor, n: int, *, epochs: int, batch: int, lr: float, seed: int,
         loss_fn=nn.functional.cross_entropy, weight_decay: float = 0.0) -> None:
    """Mini-batch Adam; ``forward(idx)`` returns the model outputs of the rows ``idx``."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            idx = perm[start : start + batch]
            optimizer.zero_grad()
            loss_fn(forward(idx), y[idx]).backward()
            optimizer.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)


def _init(module: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.ndim > 1:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
            else:
                p.zero_()


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


# --------------------------------------------------------------------- digits
class DigitsCNN(nn.Module):
    """Conv(1→16) → Conv(16→32) → 2×2 pool → Linear(512→64) → Linear(64→10), ReLU; input (B, 1, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@functools.lru_cache(maxsize=4)
def digits_cnn(seed: int = 0) -> TrainedModel:
    """The digits CNN; inputs are ``(B, 1, 8, 8)`` pixel values ``/16`` in ``[0, 1]``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)[:, None]
    x_tr, x_te, y_tr, y_te = train_test_split(images, data.target, test_size=0.25, random_state=seed, stratify=data.target)
    x_tr, x_te = torch.from_numpy(x_tr), torch.from_numpy(x_te)
    y_tr, y_te = torch.from_numpy(y_tr).long(), torch.from_numpy(y_te).long()
    model = DigitsCNN()
    _init(model, seed)
    _fit(model, lambda idx: model(x_tr[idx]), y_tr, len(y_tr), epochs=15, batch=64, lr=3e-3, seed=seed)
    return TrainedModel(model, x_tr, y_tr, x_te, y_te, tuple(map(str, range(10))), _accuracy(model, x_te, y_te))


# ---------------------------------------------------------------------- crops
class CropsCNN(nn.Module):
    """Three conv blocks (16, 32, 64 channels, 2×2 pooling after the first two), global average pool, Linear."""

    def __init__(self, n_classes: int = len(CROP_CLASSES)) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
        )
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3)))


def crop_sources(short_side: int = 96) -> list[np.ndarray]:
    """The :data:`CROP_CLASSES` photographs as float ``(H, W, 3)`` in ``[0, 1]``, short side ``short_side`` px."""
    import skimage.data
    from skimage.transform import rescale

    sources = []
    for name in CROP_CLASSES:
        image = getattr(skimage.data, name)()[..., :3].astype(np.float64) / 255.0
        factor = short_side / min(image.shape[:2])
        sources.append(np.clip(rescale(image, factor, channel_axis=2, anti_aliasing=True), 0.0, 1.0))
    return sources


def random_crops(sources: list[np.ndarray], per_class: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` random ``size×size`` crops of each source: images ``(N, 3, size, size)`` float32, labels ``(N,)``."""
    images, labels = [], []
    for label, source in enumerate(sources):
        height, width = source.shape[:2]
        for _ in range(per_class):
            top, left = rng.integers(0, height - size + 1), rng.integers(0, width - size + 1)
            images.append(source[top : top + size, left : left + size].transpose(2, 0, 1))
            labels.append(label)
    return np.asarray(images, dtype=np.float32), np.asarray(labels)


@functools.lru_cache(maxsize=4)
def crops_cnn(seed: int = 0) -> TrainedModel:
    """The crops CNN; inputs ``(B, 3, 32, 32)`` RGB in ``[0, 1]``, classes :data:`CROP_CLASSES`.

    Train and test crops are drawn independently (they may overlap in the photos).
    Test crops are quantised to 8 bits, as the SIC metric scores uint8 images.
    """
    sources = crop_sources()
    rng = np.random.default_rng(seed)
    x_tr, y_tr = random_crops(sources, 400, 32, rng)
    x_te, y_te = random_crops(sources, 60, 32, rng)
    x_te = np.round(x_te * 255.0) / 255.0
    x_tr, x_te = torch.from_numpy(x_tr), torch.from_numpy(x_te.astype(np.float32))
    y_tr, y_te = torch.from_numpy(y_tr).long(), torch.from_numpy(y_te).long()
    model = CropsCNN()
    _init(model, seed)
    _fit(model, lambda idx: model(x_tr[idx]), y_tr, len(y_tr), epochs=10, batch=64, lr=3e-3, seed=seed)
    return TrainedModel(model, x_tr, y_tr, x_te, y_te, CROP_CLASSES, _accuracy(model, x_te, y_te))


# ---------------------------------------------------------------------- graphs
def normalized_adjacency(adjacency: torch.Tensor) -> torch.Tensor:
    """``D^{-1/2} (A + I) D^{-1/2}`` of dense adjacencies ``(..., N, N)``."""
    a = adjacency + torch.eye(adjacency.shape[-1], dtype=adjacency.dtype)
    d = a.sum(-1).rsqrt()
    return d.unsqueeze(-1) * a * d.unsqueeze(-2)


class DenseGCN(nn.Module):
    """Three graph convolutions ``H ← ReLU(Â H W)`` (32 channels), max+mean readout, Linear → 2 classes.

    ``forward(features, norm_adjacency)`` takes ``(B, N, F)`` and ``(B, N, N)`` (or ``(N, N)``).
    """

    def __init__(self, in_features: int = 2, hidden: int = 32, n_classes: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(in_features, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)])
        self.head = nn.Linear(2 * hidden, n_classes)

    def forward(self, features: torch.Tensor, norm_adjacency: torch.Tensor) -> torch.Tensor:
        h = features
        for layer in self.layers:
            h = torch.relu(norm_adjacency @ layer(h))
        return self.head(torch.cat([h.max(dim=1).values, h.mean(dim=1)], dim=1))


class GraphInstance(nn.Module):
    """One graph's classifier as a function of its node features: ``(B, N, F) → (B, 2)``."""

    def __init__(self, gnn: DenseGCN, adjacency: torch.Tensor) -> None:
        super().__init__()
        self.gnn = gnn
        self.register_buffer("norm_adjacency", normalized_adjacency(adjacency))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.gnn(features, self.norm_adjacency)


class GraphEdgeInstance(nn.Module):
    """One graph's classifier as a function of its edge weights: ``(B, E) → (B, 2)``.

    Each undirected edge ``{u, v}`` of ``adjacency`` gets a weight ``w_e`` that fills
    both ``A[u, v]`` and ``A[v, u]``; the network then runs on the normalised
    ``D^{-1/2}(A + I)D^{-1/2}`` of that weighted adjacency with the graph's fixed
    node features. All weights 1 is the graph itself, a weight 0 removes the edge,
    so attributing ``x = 1`` against the zeros baseline scores the edges.

    Parameters
    ----------
    gnn : DenseGCN
    adjacency : Tensor, shape (N, N)
        Symmetric 0/1 adjacency without self-loops.
    features : Tensor, shape (N, F)
        The node features, held fixed.

    Attributes
    ----------
    edges : Tensor of int64, shape (E, 2)
        The edges ``(u, v)`` with ``u < v``, in row-major order: feature ``e`` is edge ``edges[e]``.
    """

    def __init__(self, gnn: DenseGCN, adjacency: torch.Tensor, features: torch.Tensor) -> None:
        super().__init__()
        adjacency = torch.as_tensor(adjacency)
        if adjacency.ndim != 2 or adjacency.shape[0] != adjacency.shape[1]:
            raise ValueError(f"adjacency must be a square (N, N) matrix, got shape {tuple(adjacency.shape)}")
        if not torch.equal(adjacency, adjacency.T):
            raise ValueError("adjacency must be symmetric (an undirected graph)")
        if features.ndim != 2 or features.shape[0] != adjacency.shape[0]:
            raise ValueError(f"features must be (N, F) with N = {adjacency.shape[0]}, got shape {tuple(features.shape)}")
        self.gnn = gnn
        self.register_buffer("edges", torch.triu(adjacency != 0, diagonal=1).nonzero())
        self.register_buffer("features", features.detach().clone())
        self.n_nodes = int(adjacency.shape[0])

    def adjacency(self, weights: torch.Tensor) -> torch.Tensor:
        """The weighted adjacencies ``(B, N, N)`` of edge weights ``(B, E)``."""
        n = self.n_nodes
        u, v = self.edges[:, 0], self.edges[:, 1]
        flat = weights.new_zeros(weights.shape[0], n * n)
        flat = flat.index_add(1, u * n + v, weights).index_add(1, v * n + u, weights)
        return flat.reshape(-1, n, n)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        features = self.features.expand(weights.shape[0], *self.features.shape)
        return self.gnn(features, normalized_adjacency(self.adjacency(weights)))


def motif_graphs(n_graphs: int, *, base_nodes: int = 20, seed: int = 0) -> dict[str, Any]:
    """Barabási–Albert trees (``m=1``) with a planted motif attached to one random node.

    Class 1 gets a *house* (a 4-cycle with a roof node), class 0 a *5-cycle*; both
    have 5 nodes (``base_nodes .. base_nodes+4``) and 6 resp. 5 edges, so node and
    edge counts hardly tell the classes apart.

    Returns
    -------
    dict
        ``adjacency`` ``(G, N, N)`` float32, ``features`` ``(G, N, 2)`` (a constant 1
        and the degree / 5), ``labels`` ``(G,)``, ``motif_nodes`` ``(G, 5)``.
    """
    import networkx as nx

    rng = np.random.default_rng(seed)
    n = base_nodes + 5
    adjacency = np.zeros((n_graphs, n, n), dtype=np.float32)
    labels = np.arange(n_graphs) % 2
    rng.shuffle(labels)
    for g in range(n_graphs):
        graph = nx.barabasi_albert_graph(base_nodes, 1, seed=int(rng.integers(2**31)))
        m = list(range(base_nodes, n))
        if labels[g] == 1:
            edges = [(m[0], m[1]), (m[1], m[2]), (m[2], m[3]), (m[3], m[0]), (m[0], m[4]), (m[1], m[4])]
        else:
            edges = [(m[i], m[(i + 1) % 5]) for i in range(5)]
        graph.add_edges_from(edges)
        graph.add_edge(int(rng.integers(base_nodes)), m[int(rng.integers(5))])
        adjacency[g] = nx.to_numpy_array(graph, nodelist=range(n), dtype=np.float32)
    degree = adjacency.sum(-1)
    features = np.stack([np.ones_like(degree), degree / 5.0], axis=-1).astype(np.float32)
    motif = np.tile(np.arange(base_nodes, n), (n_graphs, 1))
    return {"adjacency": adjacency, "features": features, "labels": labels, "motif_nodes": motif}


@functools.lru_cache(maxsize=4)
def motif_gnn(seed: int = 0) -> TrainedModel:
    """The motif GCN; ``extra`` holds ``adjacency_train/test`` and ``motif_nodes_test``."""
    train = motif_graphs(600, seed=seed)
    test = motif_graphs(200, seed=seed + 1000)
    a_tr = normalized_adjacency(torch.from_numpy(train["adjacency"]))
    a_te = normalized_adjacency(torch.from_numpy(test["adjacency"]))
    x_tr, x_te = torch.from_numpy(train["features"]), torch.from_numpy(test["features"])
    y_tr, y_te = torch.from_numpy(train["labels"]).long(), torch.from_numpy(test["labels"]).long()
    model = DenseGCN()
    _init(model, seed)
    _fit(model, lambda idx: model(x_tr[idx], a_tr[idx]), y_tr, len(y_tr), epochs=60, batch=32, lr=5e-3, seed=seed)
    with torch.no_grad():
        accuracy = float((model(x_te, a_te).argmax(1) == y_te).float().mean())
    extra = {
        "adjacency_train": torch.from_numpy(train["adjacency"]),
        "adjacency_test": torch.from_numpy(test["adjacency"]),
        "motif_nodes_test": test["motif_nodes"],
    }
    return TrainedModel(model, x_tr, y_tr, x_te, y_te, ("cycle", "house"), accuracy, extra)


# --------------------------------------------------------------------- tabular
class TabularMLP(nn.Module):
    """Linear(d→32) → ReLU → Linear(32→32) → ReLU → Linear(32→outputs)."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, n_outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TableObjective(nn.Module):
    """Score a whole table with a row model, for global feature selection.

    ``forward`` maps tables ``(B, n, d)`` to ``(B,)``: the mean log-likelihood of
    the labels ``y`` (classification) or minus the mean squared error
    (regression) of ``model`` over the ``n`` rows.
    """

    def __init__(self, model: nn.Module, y: torch.Tensor, task: str) -> None:
        super().__init__()
        if task not in ("classification", "regression"):
            raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")
        self.model, self.task = model, task
        self.register_buffer("y", torch.as_tensor(y))

    def forward(self, tables: torch.Tensor) -> torch.Tensor:
        batch, n, d = tables.shape
        out = self.model(tables.reshape(batch * n, d)).reshape(batch, n, -1)
        if self.task == "classification":
            logp = torch.log_softmax(out, dim=-1)
            return logp.gather(2, self.y.long().view(1, n, 1).expand(batch, n, 1)).squeeze(-1).mean(dim=1)
        return -((out[..., 0] - self.y.to(out.dtype)) ** 2).mean(dim=1)


@functools.lru_cache(maxsize=8)
def tabular_mlp(name: str = "breast_cancer", seed: int = 0) -> TrainedModel:
    """An MLP on a scikit-learn dataset (columns standardised with training statistics).

    ``name`` is one of :data:`TABULAR_TASKS`; for ``diabetes`` the target is
    standardised too and ``test_accuracy`` is the test R².
    """
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    if name not in TABULAR_TASKS:
        raise ValueError(f"name must be one of {tuple(TABULAR_TASKS)}, got {name!r}")
    task = TABULAR_TASKS[name]
    data = getattr(datasets, f"load_{name}")()
    X, y = data.data.astype(np.float64), data.target
    stratify = y if task == "classification" else None
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=stratify)
    mean, std = X_tr.mean(0), X_tr.std(0) + 1e-12
    X_tr, X_te = (X_tr - mean) / std, (X_te - mean) / std
    x_tr, x_te = torch.tensor(X_tr, dtype=torch.float32), torch.tensor(X_te, dtype=torch.float32)
    if task == "classification":
        n_out, loss_fn = int(y.max()) + 1, nn.functional.cross_entropy
        y_tr_t, y_te_t = torch.tensor(y_tr).long(), torch.tensor(y_te).long()
        names = tuple(map(str, data.target_names))
    else:
        y_mean, y_std = y_tr.mean(), y_tr.std()
        n_out, names = 1, ("target",)
        y_tr_t = torch.tensor((y_tr - y_mean) / y_std, dtype=torch.float32)
        y_te_t = torch.tensor((y_te - y_mean) / y_std, dtype=torch.float32)

        def loss_fn(out, target):
            return nn.functional.mse_loss(out[:, 0], target)

    model = TabularMLP(X.shape[1], n_out)
    _init(model, seed)
    _fit(model, lambda idx: model(x_tr[idx]), y_tr_t, len(y_tr_t), epochs=100, batch=64, lr=1e-3, seed=seed,
         loss_fn=loss_fn, weight_decay=1e-4)
    with torch.no_grad():
        if task == "classification":
            score = _accuracy(model, x_te, y_te_t)
        else:
            pred = model(x_te)[:, 0]
            score = float(1 - ((pred - y_te_t) ** 2).sum() / ((y_te_t - y_te_t.mean()) ** 2).sum())
    return TrainedModel(model, x_tr, y_tr_t, x_te, y_te_t, names, score, {"task": task, "feature_names": tuple(data.feature_names)})


BUILTIN = {"digits-cnn": digits_cnn, "crops-cnn": crops_cnn}
