"""Greedy PIG on the imputed path: the Shepard imputer against its formula, weight-space IG against Captum."""

import itertools

import numpy as np
import pytest
import torch

import sparsesel as ss
from sparsesel.attribution.imputation import ShepardImputer, anchor_mask


def direct_shepard(x, prior, anchors, w, power, lam):
    """The imputed image by the formula, pixel by pixel (numpy loops, no FFT)."""
    channels, height, width = x.shape
    u = np.maximum(w.reshape(height, width), anchors)
    out = np.empty_like(x)
    for i, j in itertools.product(range(height), range(width)):
        num, den = np.zeros(channels), 0.0
        for p, q in itertools.product(range(height), range(width)):
            if (p, q) != (i, j):
                kernel = np.hypot(p - i, q - j) ** (-power)
                num += kernel * u[p, q] * x[:, p, q]
                den += kernel * u[p, q]
        background = (num + lam * prior[:, i, j]) / (den + lam)
        out[:, i, j] = u[i, j] * x[:, i, j] + (1 - u[i, j]) * background
    return out


@pytest.mark.parametrize("power", [2.0, 3.0])
def test_imputer_matches_the_formula(power):
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 4))
    prior = rng.random((2, 5, 4))
    anchors = np.zeros((5, 4), dtype=bool)
    anchors[1, 2] = True
    weights = rng.random((3, 20))
    imputer = ShepardImputer(torch.from_numpy(x), torch.from_numpy(prior), anchors, power=power, prior_weight=0.01)
    got = imputer(torch.from_numpy(weights)).numpy()
    for row in range(3):
        np.testing.assert_allclose(got[row], direct_shepard(x, prior, anchors, weights[row], power, 0.01), atol=1e-10)


def test_stacked_anchor_sets_match_the_formula_row_by_row():
    rng = np.random.default_rng(2)
    x, prior = rng.random((2, 5, 4)), rng.random((2, 5, 4))
    sets = np.zeros((3, 5, 4), dtype=bool)
    sets[0, 1, 2] = sets[1, 4, 0] = sets[2, 0, 3] = True
    weights = rng.random((4, 20))
    draws = torch.tensor([2, 0, 1, 2])
    imputer = ShepardImputer(torch.from_numpy(x), torch.from_numpy(prior), sets, prior_weight=0.01)
    got = imputer(torch.from_numpy(weights), draws).numpy()
    for row, d in enumerate(draws.tolist()):
        np.testing.assert_allclose(got[row], direct_shepard(x, prior, sets[d], weights[row], 2.0, 0.01), atol=1e-10)
    for bad in (torch.tensor([0, 1, 3, 0]), torch.tensor([0, 1]), torch.tensor([0.0, 1.0, 2.0, 0.0]),
                torch.tensor([-1, 0, 0, 0])):
        with pytest.raises(ValueError, match=r"draws must be 4 integers in \[0, 3\)"):
            imputer(torch.from_numpy(weights), bad)
    with pytest.raises(ValueError, match=r"anchors must be \(H, W\) or \(D, H, W\)"):
        ShepardImputer(torch.from_numpy(x), torch.from_numpy(prior), np.zeros((5, 5), dtype=bool))


def test_imputer_end_points_and_constants():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.random((3, 6, 6)))
    anchors = anchor_mask(6, 6, 0.1, seed=3)
    assert anchors.sum() == 3 + 4 and anchors[0, 0] and anchors[5, 5]  # int(36·0.1) random pixels and the corners
    imputer = ShepardImputer(x, torch.zeros_like(x), anchors)
    full, empty = imputer(torch.stack([torch.ones(36), torch.zeros(36)]))
    torch.testing.assert_close(full, x)  # w = 1: the input itself
    keep = torch.from_numpy(anchors)
    torch.testing.assert_close(empty[:, keep], x[:, keep])  # anchors are always exact
    # a constant image with a prior of the same constant is reproduced exactly
    flat = torch.full((1, 6, 6), 0.3, dtype=torch.float64)
    torch.testing.assert_close(ShepardImputer(flat, flat.clone(), anchors)(torch.rand(4, 36, dtype=torch.float64)),
                               flat.expand(4, 1, 6, 6))


def tiny_cnn():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Softplus(), torch.nn.Flatten(),
                              torch.nn.Linear(4 * 36, 3)).double()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def test_one_imputed_round_is_captum_ig_in_weight_space():
    from captum.attr import IntegratedGradients

    net = tiny_cnn()
    x = torch.rand(2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    problem = ss.Attribution(net, x, baseline="blurred", target=1, k=5, groups="pixels", output="softmax")
    ours = ss.solve(problem, "greedy_pig", rounds=1, steps=16, path="imputed", anchors=0.05, seed=4)
    imputer = ShepardImputer(problem.x, problem.baseline, anchor_mask(6, 6, 0.05, seed=4))
    forward = lambda w: torch.softmax(net(imputer(w)), dim=1)  # noqa: E731
    reference = IntegratedGradients(forward).attribute(torch.ones(1, 36, dtype=torch.float64),
                                                       baselines=torch.zeros(1, 36, dtype=torch.float64), target=1,
                                                       n_steps=16, method="gausslegendre")[0]
    np.testing.assert_allclose(ours.info["attribution"].ravel(), reference.numpy(), rtol=1e-7, atol=1e-12)
    assert ours.info["path"] == "imputed" and ours.info["gradient_evaluations"] == 16


def test_imputed_completeness_error_shrinks_with_steps():
    net = tiny_cnn()
    x = torch.rand(2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    problem = ss.Attribution(net, x, baseline="black", target=0, k=3, groups="pixels", output="softmax")
    imputer = ShepardImputer(problem.x, problem.baseline, anchor_mask(6, 6, 0.01, seed=0))
    with torch.no_grad():
        g_x, g_start = problem.evaluate(imputer(torch.stack([torch.ones(36), torch.zeros(36)]).double())).tolist()
    errors = [abs(ss.solve(problem, "greedy_pig", rounds=1, steps=s, path="imputed")
                  .info["attribution"].sum() - (g_x - g_start)) for s in (2, 16, 64)]
    assert errors[2] < errors[1] < errors[0] / 100  # Gauss-Legendre on a smooth path
    assert errors[2] < 1e-10


def test_adaptive_imputed_rounds_skip_a_neighbour_that_the_imputation_already_fills():
    """Lemma 4.4 on the imputed path: pixels 3 and 4 of a 1×9 strip are neighbours with equal values, so
    revealing one fills the other; pixel 6 is independent. The model reads ``1 − exp(−3(v3 + v4)) + 0.45·v6``.

    Brute force over all pairs of ``G(img(1_S))`` prefers ``{3, 6}``; one round of weight-space IG splits
    the credit of the redundant pair and ranks ``{3, 4}`` first; two adaptive rounds find ``{3, 6}``.
    """
    x = torch.zeros(1, 1, 9, dtype=torch.float64)
    x[0, 0, [3, 4, 6]] = 1.0

    def model(z):
        v = z[:, 0, 0]
        return 1.0 - torch.exp(-3.0 * (v[:, 3] + v[:, 4])) + 0.45 * v[:, 6]

    problem = ss.Attribution(model, x, baseline="zeros", k=2, groups="pixels")
    imputer = ShepardImputer(problem.x, problem.baseline, anchor_mask(1, 9, 0.0))  # the two end pixels only
    pairs = list(itertools.combinations(range(9), 2))
    weights = torch.zeros(len(pairs), 9, dtype=torch.float64)
    for row, pair in enumerate(pairs):
        weights[row, list(pair)] = 1.0
    with torch.no_grad():
        values = problem.evaluate(imputer(weights)).numpy()
    assert pairs[int(np.argmax(values))] == (3, 6)
    one_round = ss.solve(problem, "greedy_pig", rounds=1, steps=32, path="imputed", anchors=0.0)
    adaptive = ss.solve(problem, "greedy_pig", rounds=2, steps=16, path="imputed", anchors=0.0)
    scores = one_round.info["attribution"].ravel()
    assert sorted(one_round.selected) == [3, 4] and abs(scores[3] - scores[4]) < 0.02
    assert adaptive.selected == (3, 6)
    assert list(adaptive.info["order"]).index(4) > list(adaptive.info["order"]).index(6)


def test_imputed_path_errors():
    table = ss.Attribution(lambda z: z.sum(1), torch.ones(5), k=2)
    with pytest.raises(ValueError, match=r"path='imputed' needs an image x of shape \(H, W\) or \(C, H, W\), got \(5,\)"):
        ss.solve(table, "greedy_pig", path="imputed")
    image = ss.Attribution(lambda z: z.sum((1, 2, 3)), torch.ones(2, 3, 3), k=2)  # features are single channels
    with pytest.raises(ValueError, match="needs features made of whole pixels"):
        ss.solve(image, "greedy_pig", path="imputed")
    with pytest.raises(ValueError, match="path"):
        ss.solve(image, "greedy_pig", path="curved")
    with pytest.raises(ValueError, match=r"anchors must be a fraction in \[0, 1\], got 2"):
        anchor_mask(3, 3, 2)


def small_image_problem(seed=6):
    """A 10×10 two-channel image (5 random anchor pixels at ``anchors=0.05``) and a smooth float64 CNN."""
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.Softplus(), torch.nn.Flatten(),
                              torch.nn.Linear(3 * 100, 4)).double()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.rand(2, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    problem = ss.Attribution(net, x, baseline="blurred", target=2, k=4, groups="pixels", output="softmax")
    return net, problem


def test_anchor_draws_average_the_path_integral_over_draws_node_by_node():
    """Reference: node ``j`` of numpy's Gauss-Legendre rule, the gradient of ``softmax(net(img_d(w)))`` by central
    finite differences with draw ``d = j mod D`` (seed ``seed + d``), summed with the rule's weights."""
    net, problem = small_image_problem()
    steps, draws, seed, eps = 6, 3, 7, 1e-6
    ours = ss.solve(problem, "greedy_pig", rounds=1, steps=steps, path="imputed", anchors=0.05, seed=seed,
                    anchor_draws=draws).info["attribution"].ravel()
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    masks = [anchor_mask(10, 10, 0.05, seed=seed + d) for d in range(draws)]
    assert len({m.tobytes() for m in masks}) == draws  # the draws differ
    reference = np.zeros(100)
    for j, (node, weight) in enumerate(zip(0.5 * (nodes + 1.0), 0.5 * weights)):
        imputer = ShepardImputer(problem.x, problem.baseline, masks[j % draws])
        shifted = np.full((200, 100), node)
        shifted[np.arange(100), np.arange(100)] += eps
        shifted[100 + np.arange(100), np.arange(100)] -= eps
        with torch.no_grad():
            values = torch.softmax(net(imputer(torch.from_numpy(shifted))), dim=1)[:, 2].numpy()
        reference += weight * (values[:100] - values[100:]) / (2 * eps)
    np.testing.assert_allclose(ours, reference, atol=1e-8, rtol=1e-6)
    one_draw = ss.solve(problem, "greedy_pig", rounds=1, steps=steps, path="imputed", anchors=0.05, seed=seed)
    assert np.abs(one_draw.info["attribution"].ravel() - ours).max() > 1e-4  # the option changes the scores


def test_anchor_draws_keep_the_budget_of_rounds_times_steps():
    net, _ = small_image_problem()
    counted = {"rows": 0}

    def counting_model(images):
        if torch.is_grad_enabled():
            counted["rows"] += images.shape[0]
        return net(images)

    problem = ss.Attribution(counting_model, torch.rand(2, 10, 10, dtype=torch.float64), baseline="blurred", target=1,
                             k=20, groups="pixels", output="softmax")
    for draws in (1, 2, 8):
        counted["rows"] = 0
        result = ss.solve(problem, "greedy_pig", rounds=4, steps=8, path="imputed", anchors=0.05, anchor_draws=draws)
        assert counted["rows"] == 4 * 8 and result.info["gradient_evaluations"] == 32


def test_one_anchor_draw_is_the_default_and_draws_are_bounded_by_steps():
    _, problem = small_image_problem()
    default = ss.solve(problem, "greedy_pig", rounds=2, steps=4, path="imputed", anchors=0.05, seed=3)
    explicit = ss.solve(problem, "greedy_pig", rounds=2, steps=4, path="imputed", anchors=0.05, seed=3, anchor_draws=1)
    np.testing.assert_array_equal(default.info["attribution"], explicit.info["attribution"])
    for bad in (0, 5):
        with pytest.raises(ValueError, match="anchor_draws"):
            ss.solve(problem, "greedy_pig", rounds=2, steps=4, path="imputed", anchor_draws=bad)
