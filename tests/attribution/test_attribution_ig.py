"""Integrated gradients against closed forms, the completeness identity and Captum."""

import numpy as np
import pytest
import torch

import sparsesel as ss
from sparsesel.attribution.paths.quadrature import CAPTUM_METHODS, METHODS, quadrature

captum_attr = pytest.importorskip("captum.attr")



def smooth_mlp(seed=0, d=12, outputs=3):
    generator = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, 16), torch.nn.Tanh(), torch.nn.Linear(16, outputs))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    return net.eval()


@pytest.mark.parametrize("method", METHODS)
def test_quadrature_integrates_polynomials(method):
    alphas, weights = quadrature(method, 40)
    # every rule's weights sum to 1 except Captum's riemann_trapezoid: step 1/n on n nodes, ends halved
    total = 39 / 40 if method == "riemann_trapezoid" else 1.0
    assert weights.sum() == pytest.approx(total, abs=1e-12)
    # ∫_0^1 3a^2 da = 1; error O(1/n) for left/right, O(1/n^2) for middle/trapezoid, exact for GL
    tol = {"riemann_left": 0.05, "riemann_right": 0.05, "riemann_middle": 1e-3, "trapezoid": 1e-3, "gausslegendre": 1e-12}
    if method == "riemann_trapezoid":  # (n−1)/n times the trapezoid rule
        assert np.sum(weights * 3 * alphas**2) == pytest.approx(39 / 40 * (1 + 1 / (2 * 39**2)), rel=1e-12)
    else:
        assert abs(np.sum(weights * 3 * alphas**2) - 1.0) < tol[method]


@pytest.mark.parametrize("method", METHODS)
def test_completeness_error_shrinks_with_steps(method):
    net = smooth_mlp(1)
    x = torch.randn(2, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    problem = ss.Attribution(net.double(), x, baseline="zeros", target=2, k=3)
    with torch.no_grad():
        f_x, f_b = net(torch.stack([x, torch.zeros_like(x)]))[:, 2].tolist()
    errors = []
    for steps in (4, 16, 64):
        result = ss.solve(problem, "integrated_gradients", steps=steps, method=method)
        total = np.sum(result.info["attribution"])
        errors.append(abs(total - (f_x - f_b)))
        assert result.info["convergence_delta"] == pytest.approx(total - (f_x - f_b), abs=1e-10)
    # Captum's riemann_trapezoid weights sum to (n−1)/n: its completeness error is ~|f(x) − f(b)|/n
    assert errors[2] < 1e-2 + (abs(f_x - f_b) / 64 if method == "riemann_trapezoid" else 0.0)
    if method == "gausslegendre":
        assert errors[2] < 1e-10
    else:
        assert errors[2] < errors[1] < errors[0]


@pytest.mark.parametrize("method", METHODS)
def test_linear_model_ig_is_exact(method):
    generator = torch.Generator().manual_seed(3)
    w, c = torch.randn(5, 7, generator=generator, dtype=torch.float64), 0.7
    x = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    b = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    problem = ss.Attribution(lambda z: (z * w).sum(dim=(1, 2)) + c, x, baseline=b, k=4)
    result = ss.solve(problem, "integrated_gradients", steps=3, method=method)
    expected = ((x - b) * w).numpy()
    if method == "riemann_trapezoid":  # Captum's rule: weights sum to (n−1)/n
        expected = expected * 2 / 3
    np.testing.assert_allclose(result.info["attribution"], expected, rtol=0, atol=1e-12)
    assert result.selected == tuple(np.argsort(-expected.ravel(), kind="stable")[:4])


@pytest.mark.parametrize("method", CAPTUM_METHODS)
@pytest.mark.parametrize("steps", [2, 3, 5, 25])
@pytest.mark.parametrize("baseline", ["zeros", "blurred"])
def test_captum_names_equal_captum_integrated_gradients(method, steps, baseline):
    """Each of Captum's quadrature names gives Captum's IG to 1e-6 (relative), small n included."""
    generator = torch.Generator().manual_seed(4)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5)
    ).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float64) * 0.5)
    x = torch.rand(3, 6, 6, generator=generator, dtype=torch.float64)
    problem = ss.Attribution(net, x, baseline=baseline, target=3, k=5)
    ours = ss.solve(problem, "integrated_gradients", steps=steps, method=method).info["attribution"]
    theirs = captum_attr.IntegratedGradients(net).attribute(
        x[None], baselines=problem.baseline[None], target=3, n_steps=steps, method=method
    )[0].numpy()
    scale = np.max(np.abs(theirs))
    assert scale > 1e-3
    # Captum's Riemann nodes are float32 (torch.linspace): ~6e-8 relative in α
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * scale)


def test_captum_riemann_trapezoid_is_not_the_trapezoid_rule():
    """Captum's riemann_trapezoid is (n−1)/n times the trapezoid rule (a 4.2e-2 gap at n = 25)."""
    for steps in (2, 3, 5, 25):
        _, captum_like = quadrature("riemann_trapezoid", steps)
        _, exact = quadrature("trapezoid", steps)
        np.testing.assert_allclose(captum_like, exact * (steps - 1) / steps, rtol=1e-15)


@pytest.mark.parametrize("method", ["trapezoid", "riemann_middle", "gausslegendre"])
@pytest.mark.parametrize("steps", [2, 3, 5, 25])
def test_second_order_rules_are_exact_on_a_quadratic_model(method, steps):
    """f(z) = ½ zᵀAz + cᵀz: the gradient is linear along the path, so
    IG = (x − b) ⊙ (A(b + (x − b)/2) + c) exactly (closed form), for every n >= 2."""
    generator = torch.Generator().manual_seed(11)
    M = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    A = M + M.T
    c = torch.randn(6, generator=generator, dtype=torch.float64)
    x = torch.randn(6, generator=generator, dtype=torch.float64)
    b = torch.randn(6, generator=generator, dtype=torch.float64)
    problem = ss.Attribution(lambda z: 0.5 * torch.einsum("bi,ij,bj->b", z, A, z) + z @ c, x, baseline=b, k=2)
    result = ss.solve(problem, "integrated_gradients", steps=steps, method=method)
    expected = ((x - b) * (A @ (b + (x - b) / 2) + c)).numpy()
    np.testing.assert_allclose(result.info["attribution"], expected, rtol=1e-12, atol=1e-12)
    assert abs(result.info["convergence_delta"]) < 1e-10  # completeness holds exactly


def test_gradient_baselines_match_captum():
    net = smooth_mlp(5)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(6))
    problem = ss.Attribution(net, x, target=1, k=2)
    grad = ss.solve(problem, "gradient").info["attribution"]
    gxi = ss.solve(problem, "gradient_x_input").info["attribution"]
    np.testing.assert_allclose(grad, captum_attr.Saliency(net).attribute(x[None].clone().requires_grad_(), target=1, abs=False)[0].detach().numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(gxi, captum_attr.InputXGradient(net).attribute(x[None].clone().requires_grad_(), target=1)[0].detach().numpy(), rtol=1e-5, atol=1e-7)


def test_pixel_groups_sum_channels_and_batching_agrees():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Tanh(), torch.nn.Flatten(), torch.nn.Linear(2 * 3 * 3, 4))
    x = torch.rand(3, 5, 5, generator=torch.Generator().manual_seed(7))
    elementwise = ss.Attribution(net, x, target=0, k=3)
    pixels = ss.Attribution(net, x, target=0, k=3, groups="pixels")
    a = ss.solve(elementwise, "integrated_gradients", steps=10).info["attribution"]
    p = ss.solve(pixels, "integrated_gradients", steps=10, batch_size=3)
    assert p.info["attribution"].shape == (5, 5)
    np.testing.assert_allclose(p.info["attribution"], a.sum(axis=0), rtol=1e-5, atol=1e-7)
    assert p.info["gradient_evaluations"] == 10


def test_random_ranking_is_a_seeded_uniform_permutation():
    """``random`` is the floor of every metric: a full ranking, reproducible per seed, uniform over features.

    Over 400 seeds on 4 features the first-ranked feature should be uniform (chi-square test against
    scipy's distribution), and every ranking a permutation of the features.
    """
    from scipy.stats import chisquare

    net = smooth_mlp(d=4, outputs=1)
    problem = ss.Attribution(net, torch.ones(4), k=4)
    firsts = []
    for seed in range(400):
        result = ss.solve(problem, "random", seed=seed)
        order = [int(i) for i in result.selected]
        assert sorted(order) == [0, 1, 2, 3]
        firsts.append(order[0])
    assert [int(i) for i in ss.solve(problem, "random", seed=7).selected] == [
        int(i) for i in ss.solve(problem, "random", seed=7).selected
    ]
    counts = np.bincount(firsts, minlength=4)
    assert chisquare(counts).pvalue > 1e-3, counts
