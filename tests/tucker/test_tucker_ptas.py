"""ptas: within its stated factor of the brute-force optimum, feasible, faithful options."""

from __future__ import annotations

import numpy as np
import pytest
from tucker_instances import random_core_shape

import sparsesel as ss


@pytest.mark.parametrize("epsilon", [0.5, 0.25])
def test_ptas_within_stated_factor(epsilon):
    rng = np.random.default_rng(int(epsilon * 100))
    checked = 0
    for _ in range(14 if epsilon == 0.5 else 10):
        p = random_core_shape(rng)
        exact = ss.solve(p, "brute_force")
        got = ss.solve(p, "ptas", epsilon=epsilon)
        if exact.status == "infeasible":
            assert got.status == "infeasible"
            continue
        checked += 1
        assert got.status == "approximate"
        assert got.guarantee == ss.Guarantee(1 - epsilon, "kept_energy")
        assert p.size(got.selected) <= p.budget
        assert got.objective >= exact.objective - 1e-9 * p.total_energy
        assert p.kept_energy(got.selected) >= got.guarantee.factor * p.kept_energy(exact.selected) - 1e-9 * p.total_energy
    assert checked >= 6


def test_ptas_rejects_bad_epsilon():
    p = ss.CoreShape([np.ones(3), np.ones(3)], (3, 3), 20)
    for bad, message in ((0.0, "epsilon must be > 0"), (1.5, "epsilon must be <= 1"), (float("nan"), "epsilon must be a finite")):
        with pytest.raises(ValueError, match=message):
            ss.solve(p, "ptas", epsilon=bad)
    with pytest.raises(ValueError, match="unknown option"):
        ss.solve(p, "ptas", eps=0.5)


def test_ptas_counts_two_ilps_per_grid_point():
    # K = floor(log B / log 1.5) guesses, two splits each (some splits skipped when < 1).
    p = ss.CoreShape([np.linspace(3, 1, 10)] * 3, (10, 10, 10), 4000)
    r = ss.solve(p, "ptas", epsilon=0.5)
    K = int(np.floor(np.log(4000) / np.log(1.5)))
    assert r.info["ilps"] == 2 * K
