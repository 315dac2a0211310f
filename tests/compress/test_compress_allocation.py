"""compress.plan on the core: the uniform and energy rules of the LayerAllocation solvers equal the
rank rules written out here (the definitions the baselines had before they became solvers)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sparsesel.compress import plan
from sparsesel.compress.factorized import factorized_params
from sparsesel.compress.plan import analyze
from sparsesel.nets import zoo

torch.set_num_threads(1)


class Plain(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 12, 3, padding=1)
        self.b = nn.Conv2d(12, 16, 3, padding=1)
        self.c = nn.Conv2d(16, 3, 1)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        y = self.c(torch.relu(self.b(torch.relu(self.a(x)))))
        return self.fc(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def uniform_ranks(layer, t):
    """The same fraction t of every maximal rank: r = max(1, ceil(t·r_max))."""
    return tuple(max(1, min(m, math.ceil(t * m - 1e-9))) for m in layer.max_ranks)


def energy_ranks(layer, t):
    """Per unfolding, the fewest ranks keeping a fraction t of its spectral energy."""
    ranks = []
    for spectrum, m in zip(layer.spectra, layer.max_ranks):
        energy = np.asarray(spectrum[:m]) ** 2
        if energy.sum() <= 0:
            ranks.append(1)
            continue
        kept = np.cumsum(energy) / energy.sum()
        ranks.append(int(min(m, np.searchsorted(kept, t - 1e-12) + 1)))
    return tuple(ranks)


def reference_rule_plan(model, budget, rule):
    """The largest t (bisection to 2^-60) whose per-layer options fit the parameter budget."""
    layers, _ = analyze(model)
    total = sum(p.numel() for p in model.parameters())
    fixed = total - sum(layer.dense_params for layer in layers)
    capacity = math.floor(budget * total) - fixed

    def options(t):
        chosen = []
        for layer in layers:
            ranks = rule(layer, t)
            cheaper = factorized_params(layer.shape, layer.kind, ranks, layer.bias) < layer.dense_params
            chosen.append((layer.kind, ranks) if cheaper else ("dense", None))
        return chosen

    def cost(chosen):
        return sum(factorized_params(layer.shape, f, r, layer.bias) for layer, (f, r) in zip(layers, chosen))

    if cost(options(1.0)) <= capacity:
        return options(1.0)
    low, high, best = 0.0, 1.0, options(0.0)
    assert cost(best) <= capacity
    for _ in range(60):
        middle = 0.5 * (low + high)
        if cost(options(middle)) <= capacity:
            low, best = middle, options(middle)
        else:
            high = middle
    return best


@pytest.mark.parametrize("net", ["plain", "uhdformer"])
@pytest.mark.parametrize("method, rule", [("uniform", uniform_ranks), ("energy", energy_ranks)])
@pytest.mark.parametrize("budget", [0.3, 0.5, 0.75])
def test_rule_solvers_give_the_rank_rules_plans(net, method, rule, budget):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = Plain().eval() if net == "plain" else zoo.build_net("uhdformer", "small").eval()
    got = plan(model, budget, method=method)
    expected = reference_rule_plan(model, budget, rule)
    assert [(l.factorization, None if l.ranks is None else tuple(l.ranks)) for l in got.layers] == \
        [(f, None if r is None else tuple(r)) for f, r in expected]
    assert got.solver["name"] == method and got.solver["status"] == "feasible"
    assert got.params_after <= got.budget_cost


def test_a_budget_the_rule_cannot_meet_is_a_clear_error():
    model = Plain().eval()
    layers, _ = analyze(model)
    cheapest = plan(model, 0.3)  # the exact plan can use block-sparse or rank-1 options everywhere
    assert cheapest.solver["name"] == "dp"
    with pytest.raises(ValueError, match="too small"):
        plan(model, 0.02, method="uniform")
