"""Greedy PIG against IG (one round) and against brute force on linear and redundant models."""

import numpy as np
import pytest
import torch

import sparsesel as ss


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run fastest (and disturb other jobs least) on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_one_round_equals_ig_top_k():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.Softplus(), torch.nn.Linear(8, 3))
    x = torch.randn(4, 4, generator=torch.Generator().manual_seed(0))
    problem = ss.Attribution(net, x, target=2, k=6, output="softmax")
    ig = ss.solve(problem, "integrated_gradients", steps=20, method="riemann_middle")
    pig = ss.solve(problem, "greedy_pig", rounds=1, steps=20, method="riemann_middle")
    assert pig.selected == ig.selected
    # an independent top-k of the IG map
    assert pig.selected == tuple(np.argsort(-ig.info["attribution"].ravel(), kind="stable")[:6])
    np.testing.assert_allclose(pig.info["attribution"], ig.info["attribution"], rtol=1e-6)
    assert pig.info["gradient_evaluations"] == ig.info["gradient_evaluations"] == 20


@pytest.mark.parametrize("seed", range(5))
def test_linear_model_greedy_equals_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(9, generator=generator, dtype=torch.float64)
    x = torch.randn(9, generator=generator, dtype=torch.float64)
    problem = ss.Attribution(lambda z: z @ w, x, baseline="mean", k=4)
    best = ss.solve(problem, "brute_force")
    pig = ss.solve(problem, "greedy_pig", rounds=4, steps=2)
    assert best.status == "optimal"
    assert sorted(pig.selected) == list(best.selected)
    assert pig.objective == pytest.approx(best.objective, abs=1e-12)


def redundant_model(z):
    """Features 0 and 1 are redundant (a saturating function of their sum); feature 2 is additive."""
    return (1.0 - torch.exp(-3.0 * (z[:, 0] + z[:, 1]))) + 0.45 * z[:, 2] + 0.05 * z[:, 3]


def test_greedy_fixes_ig_on_redundant_features():
    """Lemma 4.4's failure of IG: redundant features share credit; the greedy rounds recover the optimum."""
    problem = ss.Attribution(redundant_model, torch.ones(4, dtype=torch.float64), baseline="zeros", k=2)
    best = ss.solve(problem, "brute_force")
    ig = ss.solve(problem, "integrated_gradients", steps=64)
    pig = ss.solve(problem, "greedy_pig", rounds=2, steps=32)
    # closed form: G({0, 2}) = 1 - e^-3 + 0.45 is the optimum, IG picks the redundant pair {0, 1}
    assert best.selected == (0, 2)
    assert best.objective == pytest.approx(1 - np.exp(-3) + 0.45)
    assert sorted(ig.selected) == [0, 1]
    assert sorted(pig.selected) == [0, 2]
    assert pig.objective == pytest.approx(best.objective)
    assert [t["picked"] for t in pig.trace] == [[0], [2]]


def submodular_model(z):
    """A sum of concave functions of non-negative modular functions (monotone submodular on 0/1 masks)."""
    return torch.sqrt(1e-9 + 3 * z[:, 0] + z[:, 1] + z[:, 2]) + torch.sqrt(1e-9 + 2 * z[:, 3] + 2 * z[:, 4]) + 0.5 * z[:, 5]


@pytest.mark.parametrize("k", [1, 2, 3])
def test_greedy_with_one_feature_per_round_matches_brute_force_on_submodular_model(k):
    problem = ss.Attribution(submodular_model, torch.ones(6, dtype=torch.float64), baseline="zeros", k=k)
    best = ss.solve(problem, "brute_force")
    pig = ss.solve(problem, "greedy_pig", rounds=k, steps=64)
    assert pig.objective == pytest.approx(best.objective, rel=1e-9)


def test_rounds_split_k_and_trace_budget():
    problem = ss.Attribution(lambda z: (z**2).sum(1), torch.arange(1.0, 11.0), k=7)
    pig = ss.solve(problem, "greedy_pig", rounds=3, steps=4)
    assert [len(t["picked"]) for t in pig.trace] == [3, 2, 2]
    assert pig.selected == (9, 8, 7, 6, 5, 4, 3)
    assert pig.info["gradient_evaluations"] == 12
    assert list(pig.info["order"][:7]) == list(pig.selected)
    with pytest.raises(ValueError, match=r"rounds must be <= k \(7\)"):
        ss.solve(problem, "greedy_pig", rounds=8)


def test_brute_force_refuses_large_instances():
    problem = ss.Attribution(lambda z: z.sum(1), torch.ones(40), k=10)
    with pytest.raises(ValueError, match=r"C\(40, 10\) = 847660528 subsets > max_subsets"):
        ss.solve(problem, "brute_force")
