"""Curated bags: exact gradients from aggregate labels (Chen, Fu, Karbasi, Mirrokni 2023).

The paper's observation (abstract): for a curated bag, the *sum* of the
per-example gradients can be computed from the aggregate label alone. Which
losses qualify is not in the abstract; the sufficient condition implemented here
is our own derivation. Write the loss as affine in the label,

    ℓ(y, z) = A(z) - yᵀb(z) + c(y)        (z = f_θ(x), the model output),

which holds for the squared loss (``A = z²/2``, ``b = z``), the logistic loss
(``A = log(1 + eᶻ)``, ``b = z``), the Poisson log-likelihood (``A = eᶻ``, ``b = z``) and
the multi-class cross-entropy (``A = logsumexp(z)``, ``b = z``, ``y`` one-hot). Then

    Σ_{i∈a} ∇_θ ℓ(y_i, z_i) = Σ_{i∈a} A'(z_i)∇z_i - Σ_{i∈a} y_iᵀ b'(z_i)∇z_i,

and when every row of the bag has the same model input (the bag is curated on
every feature the model reads) the last term is ``(Σ_{i∈a} y_i)ᵀ b'(z)∇z``: it needs
the bag sum only. The surrogate used here, ``Σ_i [A(z_i) - ȳ_{a(i)}ᵀ b(z_i)]``, has
exactly that gradient; it is the instance-level loss of :mod:`.estimators` up to
terms free of θ, so on curated bags instance-level training loses nothing.
On bags whose rows differ in the model's inputs the identity fails
(``tests/aggregate/test_aggregate_curated.py`` checks both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsesel.aggregate import torch_networks as T
from sparsesel.aggregate.bags import as_bags, check_aggregates
from sparsesel.validation import as_finite_array, check_choice

#: Label-affine losses: name -> (A, b) acting on the model outputs z.
AFFINE_LOSSES: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]] = {
    "squared": (lambda z: 0.5 * z**2, lambda z: z),
    "logistic": (torch.nn.functional.softplus, lambda z: z),
    "poisson": (torch.exp, lambda z: z),
    "cross_entropy": (lambda z: torch.logsumexp(z, dim=-1), lambda z: z),
}


def _split_terms(loss: str) -> tuple[Callable, Callable]:
    check_choice(loss, "loss", tuple(AFFINE_LOSSES))
    return AFFINE_LOSSES[loss]


def instance_loss(outputs: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    """``Σ_i ℓ(y_i, z_i)`` with individual labels (the θ-free term ``c(y)`` dropped).

    ``outputs`` has shape (n,) (or (n, C) for ``cross_entropy``, with ``y`` (n, C) one-hot).
    """
    A, b = _split_terms(loss)
    label_term = (y * b(outputs)).sum(dim=-1) if loss == "cross_entropy" else y * b(outputs)
    return (A(outputs) - label_term).sum()


def aggregate_surrogate(outputs: torch.Tensor, y_bar_rows: torch.Tensor, loss: str) -> torch.Tensor:
    """``Σ_i [A(z_i) - ȳ_{a(i)}ᵀ b(z_i)]``: needs only each row's bag mean ``ȳ_{a(i)}``."""
    return instance_loss(outputs, y_bar_rows, loss)


def is_curated(X: Any, bags: Any, columns: Sequence[int] | None = None) -> bool:
    """Whether all rows of every bag agree on ``columns`` (default: every column)."""
    X = as_finite_array(X, "X", ndim=2)
    b = as_bags(bags, X.shape[0])
    cols = list(range(X.shape[1])) if columns is None else list(columns)
    Xc = X[:, cols]
    high = np.full((b.n_bags, Xc.shape[1]), -np.inf)
    low = np.full((b.n_bags, Xc.shape[1]), np.inf)
    np.maximum.at(high, b.ids, Xc)
    np.minimum.at(low, b.ids, Xc)
    return bool(np.all(high == low))


def _bag_means_per_row(y_agg: np.ndarray, sizes: np.ndarray, ids: np.ndarray, aggregate: str) -> np.ndarray:
    if aggregate == "sum":
        y_agg = y_agg / sizes.reshape((-1,) + (1,) * (y_agg.ndim - 1))
    return y_agg[ids]


def curated_gradient(
    model: nn.Module, X: Any, y_agg: Any, bags: Any, loss: str = "squared", aggregate: str = "sum"
) -> list[torch.Tensor]:
    """Gradient of ``Σ_i ℓ(y_i, f(x_i))`` computed from per-bag aggregates only.

    Exact when every bag is curated on the model's inputs (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        Maps a float64 tensor (n, d) to outputs (n, 1), (n,) or (n, C).
    X : array_like, shape (n, d)
    y_agg : array_like, shape (n_bags,) or (n_bags, C)
        Per-bag label sums (``aggregate="sum"``) or means.
    bags : bag assignment
    loss : {"squared", "logistic", "poisson", "cross_entropy"}

    Returns
    -------
    list of torch.Tensor
        One gradient per parameter of ``model`` (in ``model.parameters()`` order).
    """
    X = as_finite_array(X, "X", ndim=2)
    b = as_bags(bags, X.shape[0])
    y_agg = check_aggregates(y_agg, b, ndim=(1, 2))
    check_choice(aggregate, "aggregate", ("mean", "sum"))
    rows = T.as_tensor(_bag_means_per_row(y_agg, b.sizes, b.ids, aggregate))
    model.zero_grad()
    outputs = _outputs(model, T.as_tensor(X), loss)
    aggregate_surrogate(outputs, rows, loss).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def instance_gradient(model: nn.Module, X: Any, y: Any, loss: str = "squared") -> list[torch.Tensor]:
    """Reference: gradient of ``Σ_i ℓ(y_i, f(x_i))`` with the individual labels."""
    X = as_finite_array(X, "X", ndim=2)
    model.zero_grad()
    outputs = _outputs(model, T.as_tensor(X), loss)
    instance_loss(outputs, T.as_tensor(np.asarray(y, dtype=np.float64)), loss).backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _outputs(model: nn.Module, X: torch.Tensor, loss: str) -> torch.Tensor:
    z = model(X)
    if loss != "cross_entropy" and z.ndim == 2 and z.shape[1] == 1:
        z = z[:, 0]
    return z


def fit_curated(
    model: nn.Module,
    X: Any,
    y_agg: Any,
    bags: Any,
    *,
    loss: str = "squared",
    aggregate: str = "sum",
    max_iter: int = 300,
    learning_rate: float = 1e-2,
    weight_decay: float = 0.0,
) -> list[float]:
    """Train ``model`` by full-batch Adam on the aggregate surrogate (mean over rows).

    On curated bags every step follows the exact instance-level gradient.

    Returns
    -------
    list of float
        The surrogate loss per step (up to the θ-free term).
    """
    X = as_finite_array(X, "X", ndim=2)
    b = as_bags(bags, X.shape[0])
    y_agg = check_aggregates(y_agg, b, ndim=(1, 2))
    check_choice(aggregate, "aggregate", ("mean", "sum"))
    rows = T.as_tensor(_bag_means_per_row(y_agg, b.sizes, b.ids, aggregate))
    Xt = T.as_tensor(X)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    history = []
    for _ in range(int(max_iter)):
        opt.zero_grad()
        value = aggregate_surrogate(_outputs(model, Xt, loss), rows, loss) / X.shape[0]
        value.backward()
        opt.step()
        history.append(float(value.detach()))
    return history
