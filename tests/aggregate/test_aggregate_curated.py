"""Curated bags: aggregate-only gradients equal instance gradients; random-bag ERM and its bound."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sparsesel.aggregate import (
    RandomBagERM,
    aggregate_responses,
    curated_bags,
    curated_gradient,
    fit_curated,
    instance_gradient,
    is_curated,
    label_proportions,
    random_bags,
)

torch.set_num_threads(1)


def _categorical_design(seed: int, n: int = 240):
    rng = np.random.default_rng(seed)
    levels = rng.normal(size=(6, 3))
    X = levels[rng.integers(0, 6, n)] + np.array([0, 0, 1.0]) * rng.integers(0, 2, (n, 1))
    return rng, X


def _model(d: int, out: int, hidden: int | None, seed: int) -> nn.Module:
    layers = [nn.Linear(d, out, dtype=torch.float64)] if hidden is None else [
        nn.Linear(d, hidden, dtype=torch.float64), nn.Tanh(), nn.Linear(hidden, out, dtype=torch.float64)
    ]
    model = nn.Sequential(*layers)
    generator = torch.Generator().manual_seed(seed)  # reproducible without global random state
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.5)
    return model


def _reference_gradient(model: nn.Module, X: np.ndarray, y: np.ndarray, loss: str) -> list[torch.Tensor]:
    """Σ_i ∇ℓ(y_i, f(x_i)) with torch's own loss functions and the individual labels."""
    import torch.nn.functional as F

    model.zero_grad()
    z = model(torch.as_tensor(X, dtype=torch.float64))
    target = torch.as_tensor(y, dtype=torch.float64)
    if loss != "cross_entropy":
        z = z[:, 0]
    value = {
        "squared": lambda: 0.5 * F.mse_loss(z, target, reduction="sum"),
        "logistic": lambda: F.binary_cross_entropy_with_logits(z, target, reduction="sum"),
        "poisson": lambda: F.poisson_nll_loss(z, target, log_input=True, full=False, reduction="sum"),
        "cross_entropy": lambda: F.cross_entropy(z, target, reduction="sum"),
    }[loss]()
    value.backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def _labels(rng, X, loss):
    n = X.shape[0]
    if loss == "squared":
        return X @ [1.0, -1.0, 0.5] + rng.normal(size=n)
    if loss == "logistic":
        return rng.integers(0, 2, n).astype(float)
    if loss == "poisson":
        return rng.poisson(2.0, n).astype(float)
    return np.eye(3)[rng.integers(0, 3, n)]


@pytest.mark.parametrize("loss", ["squared", "logistic", "poisson", "cross_entropy"])
@pytest.mark.parametrize("hidden", [None, 8])
def test_curated_bag_gradient_equals_instance_gradient(loss, hidden):
    # Paper (b): on curated bags the summed gradient follows from the aggregate label alone.
    rng, X = _categorical_design(1)
    y = _labels(rng, X, loss)
    bags = curated_bags(X)
    assert is_curated(X, bags) and np.bincount(bags).max() > 1
    sums = np.stack([y[bags == a].sum(axis=0) for a in range(bags.max() + 1)])  # one label sum per bag
    out = 3 if loss == "cross_entropy" else 1
    model = _model(3, out, hidden, seed=0)
    reference = _reference_gradient(model, X, y, loss)  # torch's loss, every individual label
    from_aggregates = curated_gradient(model, X, sums, bags, loss, aggregate="sum")
    for ref, agg, ins in zip(reference, from_aggregates, instance_gradient(model, X, y, loss)):
        np.testing.assert_allclose(agg.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ins.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)


def test_curated_gradient_identity_fails_on_random_bags():
    # the same computation on random bags (rows differ inside a bag) is NOT the instance gradient
    rng, X = _categorical_design(2)
    y = _labels(rng, X, "squared")
    bags = random_bags(len(y), 8, 0)
    assert not is_curated(X, bags)
    model = _model(3, 1, None, seed=0)
    reference = _reference_gradient(model, X, y, "squared")
    agg = curated_gradient(model, X, aggregate_responses(y, bags), bags, "squared", aggregate="mean")
    assert not np.allclose(agg[0].numpy(), reference[0].numpy(), rtol=1e-3)


def test_curated_on_a_column_subset_is_exact_for_a_model_reading_only_those_columns():
    rng, X = _categorical_design(3)
    y = _labels(rng, X, "logistic")
    bags = curated_bags(X, by=[0, 1])
    cols = X[:, :2]
    assert is_curated(X, bags, columns=[0, 1]) and not is_curated(X, bags)
    model = _model(2, 1, 4, seed=1)
    means = label_proportions(y.astype(int), bags)[:, 1]
    for ref, agg in zip(_reference_gradient(model, cols, y, "logistic"), curated_gradient(model, cols, means, bags, "logistic", "mean")):
        np.testing.assert_allclose(agg.numpy(), ref.numpy(), rtol=1e-10, atol=1e-12)


def test_fit_curated_matches_training_on_individual_labels():
    rng, X = _categorical_design(4)
    y = _labels(rng, X, "squared")
    bags = curated_bags(X)
    sums = np.bincount(bags, y)
    model = _model(3, 1, None, seed=0)
    fit_curated(model, X, sums, bags, loss="squared", max_iter=400, learning_rate=0.05)
    from sklearn.linear_model import LinearRegression

    ref = LinearRegression().fit(X, y)
    np.testing.assert_allclose(model[0].weight.detach().numpy()[0], ref.coef_, atol=2e-3)


def test_random_bag_erm_bound_holds_and_grows_with_bag_size():
    rng = np.random.default_rng(5)
    d = 3
    theta = np.array([0.8, -0.5, 0.3])

    def draw(n):
        X = rng.uniform(-1, 1, size=(n, d))
        return X, X @ theta + rng.uniform(-0.5, 0.5, n)

    X_test, y_test = draw(20_000)
    bounds = {}
    for k in (2, 10):
        values = []
        for rep in range(3):
            X, y = draw(2000)
            bags = random_bags(2000, k, rep)
            model = RandomBagERM().fit(X, aggregate_responses(y, bags), bags)
            risk = np.mean((model.predict(X_test) - y_test) ** 2)
            assert risk <= model.bound_  # the bound holds (with probability >= 1 - delta)
            values.append(model.bound_)
        bounds[k] = np.mean(values)
    assert bounds[2] < bounds[10]  # bag size vs achievable error trade-off
