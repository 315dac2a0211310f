"""The proportional-regime risk formula against Monte Carlo and against known closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from sparsesel.aggregate import InterpolatingRegressor, aggregate_responses, random_bags
from sparsesel.aggregate.risk import (
    asymptotic_risk,
    bag_level_risk_finite_sample,
    optimal_bag_size,
    optimal_rho,
    privacy_noise_variance,
    simulate_risk,
)


def _monte_carlo(n, d, k, signal, noise, rhos, reps, seed, ridge=0.0):
    """Excess risks ‖θ̂-θ₀‖² for several ρ on the same draws (written independently of simulate_risk)."""
    rng = np.random.default_rng(seed)
    out = np.empty((reps, len(rhos)))
    for r in range(reps):
        X = rng.standard_normal((n, d))
        theta = rng.standard_normal(d)
        theta *= math.sqrt(signal) / np.linalg.norm(theta)
        y = X @ theta + math.sqrt(noise) * rng.standard_normal(n)
        bags = random_bags(n, k, rng)
        y_bar = aggregate_responses(y, bags)
        for j, rho in enumerate(rhos):
            model = InterpolatingRegressor(rho=rho, alpha=ridge, fit_intercept=False).fit(X, y_bar, bags)
            out[r, j] = np.sum((model.coef_ - theta) ** 2)
    return out


@pytest.fixture(autouse=True)
def _one_blas_thread():
    # many small dense solves: one BLAS thread avoids oversubscription on a shared 2-core machine
    with threadpool_limits(1):
        yield


@pytest.mark.parametrize(
    "n, d, k, signal, noise, rho, ridge",
    [
        (500, 200, 2, 1.0, 1.0, 0.5, 0.0),
        (500, 200, 2, 1.0, 2.0, 0.2, 0.0),
        (600, 180, 3, 1.0, 1.0, 0.4, 0.0),
        (600, 180, 2, 1.0, 1.0, 0.0, 0.05),
        (600, 120, 3, 2.0, 0.5, 1.0, 0.02),
        (1200, 60, 5, 1.0, 2.0, 0.3, 0.0),
    ],
)
def test_risk_formula_matches_monte_carlo(n, d, k, signal, noise, rho, ridge):
    # proportional regime γ = d/n from 0.05 to 0.4, where the γ-dependent terms of the fixed point matter
    reps = 16
    draws = _monte_carlo(n, d, k, signal, noise, [rho], reps, seed=11 * k + d, ridge=ridge)[:, 0]
    mean, se = draws.mean(), draws.std(ddof=1) / math.sqrt(reps)
    predicted = asymptotic_risk(d / n, k, rho, signal, noise, ridge).excess_risk
    # 99.9% band of the Monte Carlo mean plus 3% for finite-size corrections (O(1/n), O(1/d))
    assert abs(mean - predicted) <= 3.3 * se + 0.03 * predicted, (mean, se, predicted)


def test_bias_plus_variance_and_noise_free_bias():
    p = asymptotic_risk(0.1, 5, 0.4, 1.0, 2.0)
    assert p.excess_risk == pytest.approx(p.bias2 + p.variance)
    assert p.bias2 == pytest.approx(asymptotic_risk(0.1, 5, 0.4, 1.0, 0.0).excess_risk)
    assert asymptotic_risk(0.1, 5, 0.0, 1.0, 2.0).bias2 == 0.0  # the bag-level estimator is unbiased
    assert asymptotic_risk(0.1, 5, 1.0, 1.0, 2.0).bias2 > 0.1  # the instance-level one is not


def test_formula_limits_match_closed_forms():
    # bag-level, solved through the fixed point (rho -> 0+): OLS with m = n/k samples, σ²γk/(1-γk)
    gamma, k = 0.05, 6
    assert asymptotic_risk(gamma, k, 1e-10, 1.0, 1.5).excess_risk == pytest.approx(1.5 * gamma * k / (1 - gamma * k), rel=1e-6)
    # instance-level in the low-dimensional limit: θ̂ → θ₀/k, so the risk → (1 - 1/k)²‖θ₀‖²
    assert asymptotic_risk(1e-7, k, 1.0, 2.0, 1.0).excess_risk == pytest.approx((1 - 1 / k) ** 2 * 2.0, rel=1e-4)
    # bags of size 1: every ρ is ordinary least squares, σ²γ/(1-γ)
    assert asymptotic_risk(0.2, 1, 0.7, 1.0, 1.0).excess_risk == pytest.approx(0.25, rel=1e-9)


def test_bag_level_finite_sample_risk_is_the_inverse_wishart_mean():
    n, d, k, noise, reps = 900, 30, 6, 1.0, 30
    draws = _monte_carlo(n, d, k, 1.0, noise, [0.0], reps, seed=5)[:, 0]
    expected = bag_level_risk_finite_sample(n // k, d, noise)
    assert abs(draws.mean() - expected) <= 3.3 * draws.std(ddof=1) / math.sqrt(reps)


def test_interpolating_at_predicted_optimum_beats_both_ends():
    n, d, k, signal, noise, reps = 1000, 100, 5, 1.0, 2.0, 12
    best = optimal_rho(d / n, k, signal, noise)
    ends = [asymptotic_risk(d / n, k, r, signal, noise).excess_risk for r in (0.0, 1.0)]
    assert 0.0 < best.rho < 1.0 and best.excess_risk < min(ends)
    draws = _monte_carlo(n, d, k, signal, noise, [best.rho, 0.0, 1.0], reps, seed=2)
    for j in (1, 2):  # paired differences on the same data sets
        diff = draws[:, 0] - draws[:, j]
        assert diff.mean() + 3.3 * diff.std(ddof=1) / math.sqrt(reps) < 0, (j, diff.mean())


def test_private_risk_matches_simulation_and_optimal_bag_size_is_interior():
    n, d, signal, noise, eps, clip = 800, 40, 1.0, 1.0, 0.5, 3.0
    choice = optimal_bag_size(n, d, signal, noise, epsilon=eps, clip=clip, bag_sizes=range(1, 21))
    assert 1 < choice.bag_size <= 20
    k = 4
    pred = optimal_rho(d / n, k, signal, noise, privacy_noise=privacy_noise_variance(k, eps, clip))
    mean, se, _ = simulate_risk(n, d, k, signal, noise, rho=pred.rho, epsilon=eps, clip=clip, n_reps=12, seed=4)
    # clipping at ±3 (≈2.1 sd of y) shrinks responses a little, which the formula ignores: 8% allowance
    assert abs(mean - pred.excess_risk) <= 3.3 * se + 0.08 * pred.excess_risk, (mean, se, pred.excess_risk)


def test_privacy_noise_variance_is_laplace_variance_times_bag_size():
    # Laplace(b) has variance 2b²; b = (hi-lo)/(kε)
    assert privacy_noise_variance(4, 0.5, (-1.0, 3.0)) == pytest.approx(4 * 2 * (4.0 / (4 * 0.5)) ** 2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gamma": 0.0}, "gamma"),
        ({"bag_size": 0.5}, "bag_size must be >= 1"),
        ({"rho": 1.5}, r"rho must be in \[0, 1\]"),
        ({"noise": -1.0}, "noise must be finite and >= 0"),
    ],
)
def test_risk_rejects_bad_inputs(kwargs, message):
    args = {"gamma": 0.1, "bag_size": 4, "rho": 0.5, "signal": 1.0, "noise": 1.0} | kwargs
    with pytest.raises(ValueError, match=message):
        asymptotic_risk(**args)


def test_ridgeless_bag_level_with_too_few_bags_has_infinite_risk():
    assert math.isinf(asymptotic_risk(0.25, 4, 0.0, 1.0, 1.0).excess_risk)
    assert math.isfinite(asymptotic_risk(0.25, 4, 0.0, 1.0, 1.0, ridge=0.1).excess_risk)
