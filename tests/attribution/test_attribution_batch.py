"""Batched attribution: equal to the per-example loop, to Captum's batched IG, per-example targets and baselines."""

import numpy as np
import pytest
import torch

import sparsesel as ss
from sparsesel.attribution import attribute
from sparsesel.attribution.paths.quadrature import CAPTUM_METHODS

captum_attr = pytest.importorskip("captum.attr")


def small_cnn(seed=0, classes=5):
    generator = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, classes)
    )
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
    return net.eval()


@pytest.fixture(scope="module")
def batch():
    x = torch.rand(5, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return small_cnn().double(), x, [0, 3, 1, 4, 3]


SOLVERS = [
    ("integrated_gradients", {"steps": 16}),
    ("integrated_gradients", {"steps": 16, "method": "riemann_middle", "batch_size": 7, "absolute": True}),
    ("gradient", {}),
    ("gradient_x_input", {"absolute": True}),
    ("greedy_pig", {"steps": 4, "rounds": 3}),
    ("greedy_pig", {"steps": 4, "rounds": 2, "ranked": 20, "schedule": "geometric", "batch_size": 5}),
    ("greedy_pig", {"steps": 4, "path": "imputed", "schedule": "sic", "ranked": 0.75, "anchor_draws": 4}),
    ("brute_force", {}),
]


@pytest.mark.parametrize(("solver", "options"), SOLVERS, ids=[f"{s}-{i}" for i, (s, _) in enumerate(SOLVERS)])
def test_batched_results_equal_the_per_example_loop(batch, solver, options):
    net, x, targets = batch
    k = 2 if solver == "brute_force" else 5
    baselines = ["blurred", torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)]
    for baseline in baselines:
        problem = ss.Attribution(net, x, baseline=baseline, target=targets, k=k, groups="pixels", output="softmax",
                                 batched=True)
        batched = ss.solve(problem, solver, **options)
        assert len(batched.selected) == len(x) and batched.info["attribution"].shape == (len(x), 6, 6)
        for b in range(len(x)):
            single_baseline = baseline if isinstance(baseline, str) else baseline[b]
            single = ss.Attribution(net, x[b], baseline=single_baseline, target=targets[b], k=k, groups="pixels",
                                    output="softmax")
            expected = ss.solve(single, solver, **options)
            assert batched.selected[b] == expected.selected
            np.testing.assert_allclose(batched.info["attribution"][b], expected.info["attribution"], rtol=0, atol=1e-6)
            if "rank_scores" in expected.info:
                np.testing.assert_array_equal(batched.info["rank_scores"][b], expected.info["rank_scores"])
            assert batched.info["objectives"][b] == pytest.approx(expected.objective, abs=1e-6)
            for key in ("convergence_delta", "f_x", "f_baseline"):
                if key in expected.info:
                    assert batched.info[key][b] == pytest.approx(expected.info[key], abs=1e-6)
            if solver == "greedy_pig":
                np.testing.assert_array_equal(batched.info["round_of"][b], expected.info["round_of"])
                for record, single_record in zip(batched.trace, expected.trace):
                    assert record["picked"][b] == single_record["picked"]
                    assert record["objectives"][b] == pytest.approx(single_record["objective"], abs=1e-6)
        assert batched.objective == pytest.approx(float(np.sum(batched.info["objectives"])), abs=1e-12)


def test_random_solver_batch_row_zero_is_the_single_ranking(batch):
    net, x, targets = batch
    problem = ss.Attribution(net, x, target=targets, k=4, batched=True)
    result = ss.solve(problem, "random", seed=3)
    assert result.selected[0] == ss.solve(problem.example(0), "random", seed=3).selected
    assert len(set(result.selected)) == len(x)  # rows are distinct draws


@pytest.mark.parametrize("method", CAPTUM_METHODS)
def test_attribute_equals_captum_batched_integrated_gradients(method):
    net = small_cnn(4)
    x = torch.rand(6, 3, 6, 6, generator=torch.Generator().manual_seed(5))
    baselines = torch.rand(6, 3, 6, 6, generator=torch.Generator().manual_seed(6)) * 0.3
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    ours = attribute(net, x, baselines=baselines, target=targets, quadrature=method, n_steps=24)
    theirs = captum_attr.IntegratedGradients(net).attribute(x, baselines=baselines, target=targets, n_steps=24,
                                                            method=method)
    assert ours.shape == theirs.shape == x.shape and ours.dtype == x.dtype
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    # Captum's internal_batch_size, not aligned with the examples' 24 points
    chunked = attribute(net, x, baselines=baselines, target=targets, quadrature=method, n_steps=24,
                        internal_batch_size=10)
    torch.testing.assert_close(chunked, ours, rtol=0, atol=1e-6)


def test_attribute_broadcasts_captum_baselines_and_defaults_to_zeros():
    net = small_cnn(7)
    x = torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(8))
    ig = captum_attr.IntegratedGradients(net)
    torch.testing.assert_close(attribute(net, x, target=2, n_steps=8), ig.attribute(x, target=2, n_steps=8),
                               rtol=1e-4, atol=1e-6)
    shared = torch.full((1, 3, 6, 6), 0.25)
    expected = ig.attribute(x, baselines=shared, target=2, n_steps=8)
    for form in (shared, shared[0], 0.25):
        torch.testing.assert_close(attribute(net, x, baselines=form, target=2, n_steps=8), expected,
                                   rtol=1e-4, atol=1e-6)


def test_swapping_targets_or_baselines_swaps_the_outputs():
    net = small_cnn(9)
    image = torch.rand(3, 6, 6, generator=torch.Generator().manual_seed(10))
    twice = torch.stack([image, image])
    first = attribute(net, twice, target=[1, 4], n_steps=16)
    swapped = attribute(net, twice, target=[4, 1], n_steps=16)
    torch.testing.assert_close(swapped, first.flip(0), rtol=0, atol=1e-6)
    assert not torch.allclose(first[0], first[1])  # the two targets give different maps
    baselines = torch.stack([torch.zeros(3, 6, 6), torch.full((3, 6, 6), 0.5)])
    first = attribute(net, twice, baselines=baselines, target=2, n_steps=16)
    swapped = attribute(net, twice, baselines=baselines.flip(0), target=2, n_steps=16)
    torch.testing.assert_close(swapped, first.flip(0), rtol=0, atol=1e-6)
    assert not torch.allclose(first[0], first[1])


def test_attribute_groups_and_rank_scores_and_greedy_pig():
    net = small_cnn(11)
    x = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(12))
    pixels = attribute(net, x, target=[0, 1], groups="pixels", n_steps=8)
    for b, target in enumerate((0, 1)):
        single = ss.solve(ss.Attribution(net, x[b], target=target, k=1, groups="pixels"), "integrated_gradients",
                          steps=8)
        expected = torch.as_tensor(single.info["attribution"], dtype=torch.float32).expand(3, 6, 6)
        torch.testing.assert_close(pixels[b], expected, rtol=0, atol=1e-6)  # every channel carries its pixel's value
    ranks = attribute(net, x, target=[0, 1], method="greedy_pig", groups="pixels", k=6, scores="rank_scores",
                      steps=4, rounds=3)
    single = ss.solve(ss.Attribution(net, x[1], target=1, k=6, groups="pixels"), "greedy_pig", steps=4, rounds=3)
    np.testing.assert_array_equal(ranks[1, 0].numpy(), single.info["rank_scores"])
    assert sorted(ranks[0, 0].reshape(-1).tolist()) == list(range(1, 37))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"target": [0, 1]}, ValueError, r"target has 2 entries but the batch has 3 examples"),
        ({"target": [0, 1, 7]}, ValueError, r"target\[2\] must be <= 4, got 7"),
        ({"target": "a"}, TypeError, r"target must be an int, None or a sequence of 3 ints"),
        ({"target": 0, "baselines": torch.zeros(2, 3, 6, 6)}, ValueError,
         r"baseline has shape \(2, 3, 6, 6\) but x has shape \(3, 3, 6, 6\); they must match or one example's shape"),
        ({"target": 0, "method": "lime"}, ValueError, r"method must be one of \('integrated_gradients'"),
        ({"target": 0, "n_steps": 4, "steps": 4}, ValueError, r"give either n_steps= or steps=, not both"),
        ({"target": 0, "scores": "order"}, ValueError, r"scores must be one of \('attribution', 'rank_scores'\)"),
    ],
)
def test_attribute_bad_arguments_name_the_field(kwargs, error, match):
    x = torch.rand(3, 3, 6, 6)
    with pytest.raises(error, match=match):
        attribute(small_cnn(), x, **kwargs)


def test_batched_problem_checks():
    net = small_cnn()
    with pytest.raises(ValueError, match=r"batched=True needs x of shape \(B, \*example_shape\)"):
        ss.Attribution(lambda z: z.sum(dim=1), torch.ones(4), batched=True)
    with pytest.raises(TypeError, match="batched must be True or False"):
        ss.Attribution(net, torch.rand(3, 6, 6), target=0, batched="yes")
    with pytest.raises(ValueError, match=r"inputs must be a batch \(B, \*example_shape\)"):
        attribute(lambda z: z.sum(dim=1), torch.ones(4))
    problem = ss.Attribution(net, torch.rand(2, 3, 6, 6), target=[0, 1], k=2, batched=True)
    assert problem.target == (0, 1) and problem.n_examples == 2 and problem.example_shape == (3, 6, 6)
    with pytest.raises(ValueError, match=r"examples is required: 4 rows for a batch of 2 examples"):
        problem.evaluate(torch.rand(4, 3, 6, 6))
    with pytest.raises(ValueError, match=r"selection must hold one subset per example \(2\), got 1"):
        problem.example_objectives([[0, 1]])
    value = problem.objective([[0], [1, 2]])
    assert value == pytest.approx(problem.example(0).objective([0]) + problem.example(1).objective([1, 2]), rel=1e-6)
