"""Greedy PIG against IG (one round) and against brute force on linear and redundant models."""

import numpy as np
import pytest
import torch

import sparsesel as ss



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


def test_rank_scores_put_earlier_rounds_first_and_rank_the_rest_by_the_last_round():
    """The saliency map for SIC: round-1 picks > round-2 picks > the rest, ordered by the last round's IG.

    Closed form on the redundant model from ``x = 1``, baseline 0: round 1 ties features 0 and 1 at
    ``(1 − e^−6)/2`` and picks 0; round 2 starts at ``(1, 0, 0, 0)``, where ``IG_2 = 0.45``,
    ``IG_3 = 0.05`` and ``IG_1 = e^−3 − e^−6 ≈ 0.047``; so the order is 0, 2, 3, 1 although plain IG
    ranks feature 1 second.
    """
    problem = ss.Attribution(redundant_model, torch.ones(4, dtype=torch.float64), baseline="zeros", k=2)
    pig = ss.solve(problem, "greedy_pig", rounds=2, steps=32)
    assert list(pig.info["order"]) == [0, 2, 3, 1]
    np.testing.assert_array_equal(pig.info["rank_scores"], [4.0, 1.0, 3.0, 2.0])
    np.testing.assert_array_equal(pig.info["round_of"], [0, -1, 1, -1])
    # the remainder carries its last-round IG, in closed form
    np.testing.assert_allclose(pig.info["attribution"][[1, 3]], [np.exp(-3) - np.exp(-6), 0.05], rtol=1e-6)
    # a round-2 pick may score below a remaining feature's round-1 score: the ranking, not the scores, orders SIC
    ig = ss.solve(problem, "integrated_gradients", steps=64)
    assert list(ig.info["order"][:2]) == [0, 1]


def test_ranked_continues_rounds_past_k():
    problem = ss.Attribution(redundant_model, torch.ones(4, dtype=torch.float64), baseline="zeros", k=2)
    pig = ss.solve(problem, "greedy_pig", rounds=3, steps=32, ranked=3)
    assert [t["picked"] for t in pig.trace] == [[0], [2], [3]]
    assert pig.selected == (0, 2)
    assert list(pig.info["order"]) == [0, 2, 3, 1]
    assert pig.info["gradient_evaluations"] == 96
    # objective is G(selected), the first k, in closed form
    assert pig.objective == pytest.approx(1 - np.exp(-3) + 0.45)
    # a fraction of the features, rounded up
    assert ss.solve(problem, "greedy_pig", rounds=2, steps=4, ranked=0.6).info["ranked"] == 3
    with pytest.raises(ValueError, match=r"ranked must be between k \(2\) and the number of features \(4\), got 5"):
        ss.solve(problem, "greedy_pig", ranked=5)
    with pytest.raises(ValueError, match=r"ranked as a fraction must be in \(0, 1\], got 1.5"):
        ss.solve(problem, "greedy_pig", ranked=1.5)
    with pytest.raises(ValueError, match=r"rounds must be <= ranked \(3\), got 4"):
        ss.solve(problem, "greedy_pig", rounds=4, ranked=3)


def test_geometric_schedule_sizes():
    from solvers.attribution_greedy_pig import round_sizes

    # cumulative counts round(768^(r/8)), r = 1..8, computed independently
    cumulative = np.round(768.0 ** (np.arange(1, 9) / 8)).astype(int)
    assert round_sizes(768, 8, "geometric") == list(np.diff(np.concatenate([[0], cumulative])))
    assert round_sizes(5, 5, "geometric") == [1, 1, 1, 1, 1]  # every round fixes at least one
    assert round_sizes(10, 3, "uniform") == [4, 3, 3]
    problem = ss.Attribution(lambda z: (z**2).sum(1), torch.arange(1.0, 11.0), k=3)
    pig = ss.solve(problem, "greedy_pig", rounds=3, steps=2, ranked=10, schedule="geometric")
    assert [len(t["picked"]) for t in pig.trace] == [2, 3, 5]  # round(10^(1/3)), round(10^(2/3)), 10
    assert pig.selected == (9, 8, 7)
    with pytest.raises(ValueError, match="schedule"):
        ss.solve(problem, "greedy_pig", schedule="linear")


@pytest.mark.parametrize("n", [64, 100, 1024, 3 * 37])
def test_revealed_count_matches_the_sic_quantile_rule(n):
    """SIC reveals the scores >= numpy's quantile(1 - q): count it directly on a shuffled ranking."""
    from solvers.attribution_greedy_pig import revealed_count
    from sparsesel.attribution.sic import SIC_THRESHOLDS

    scores = np.random.default_rng(n).permutation(n).astype(float) + 1.0
    for q in SIC_THRESHOLDS:
        assert revealed_count(n, q) == int(np.sum(scores >= np.quantile(scores, 1.0 - q))), q


def test_sic_round_boundaries_are_the_bands_sic_reveals():
    """With ``schedule="sic"`` the pixels fixed by the end of round r are exactly those SIC reveals at f_r."""
    from solvers.attribution_greedy_pig import SIC_ROUNDS

    generator = torch.Generator().manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Softplus(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 12 * 12, 3))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
    x = torch.rand(1, 12, 12, generator=generator)
    problem = ss.Attribution(net, x, baseline="blurred", target=1, k=20, groups="pixels", output="softmax")
    pig = ss.solve(problem, "greedy_pig", path="imputed", steps=2, ranked=0.75, schedule="sic")
    assert pig.info["rounds"] == len(SIC_ROUNDS)  # rounds defaults to the number of boundaries
    saliency = np.asarray(pig.info["rank_scores"])
    round_of = np.asarray(pig.info["round_of"])
    for r, q in enumerate(SIC_ROUNDS):
        revealed = saliency >= np.quantile(saliency, 1.0 - q)  # the rule of sic.pic_curves
        fixed = (round_of >= 0) & (round_of <= r)
        np.testing.assert_array_equal(fixed, revealed, err_msg=f"round {r}, fraction {q}")
    assert pig.info["gradient_evaluations"] == 2 * len(SIC_ROUNDS)


def test_schedule_boundaries_validation():
    from solvers.attribution_greedy_pig import round_sizes

    assert round_sizes(10, 3, (0.1, 0.3, 1.0), 10) == [1, 2, 7]  # counts 10 - ceil(0.9*9) = 1 and 10 - ceil(0.7*9) = 3, then k
    assert round_sizes(3, 3, (0.01, 0.02, 0.03), 100) == [1, 1, 1]  # at least one per round
    problem = ss.Attribution(lambda z: (z**2).sum(1), torch.arange(1.0, 11.0), k=3)
    with pytest.raises(ValueError, match="schedule has 2 round boundaries but rounds is 3"):
        ss.solve(problem, "greedy_pig", rounds=3, schedule=(0.1, 0.3))
    with pytest.raises(ValueError, match=r"increase strictly within \(0, 1\]"):
        ss.solve(problem, "greedy_pig", rounds=2, schedule=(0.3, 0.3))
    with pytest.raises(ValueError, match="sequence of fractions"):
        ss.solve(problem, "greedy_pig", rounds=2, schedule=("a", "b"))
