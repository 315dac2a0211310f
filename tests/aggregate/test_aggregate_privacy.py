"""The DP release: empirical sensitivity within the calibrated bound, noise scale, (ε, δ) and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sparsesel.aggregate import private_aggregates, private_label_proportions, random_bags
from sparsesel.aggregate.privacy import aggregate_sensitivity


@pytest.mark.parametrize("how", ["mean", "sum"])
@pytest.mark.parametrize("mechanism, epsilon, delta", [("laplace", 0.7, 0.0), ("gaussian", 0.5, 1e-5)])
def test_empirical_sensitivity_never_exceeds_the_calibrated_bound(how, mechanism, epsilon, delta):
    # Neighbouring data sets differ in one response (replaced by anything, even far outside the clip range).
    # With the same seed both releases get identical noise, so their difference is the change of the
    # clipped aggregate: its largest value over many neighbours must stay <= the sensitivity, and the
    # bound must be attained (clip lo -> clip hi), so it is tight.
    rng = np.random.default_rng(0)
    n, clip = 60, (-2.0, 3.0)
    bags = random_bags(n, 7, 1)  # sizes 7 and 8
    sizes = np.bincount(bags)
    y = rng.normal(size=n) * 3
    worst = np.zeros(sizes.size)
    kwargs = dict(epsilon=epsilon, delta=delta, clip=clip, how=how, mechanism=mechanism)
    base = private_aggregates(y, bags, seed=9, **kwargs)
    for trial in range(300):
        i = rng.integers(n)
        other = y.copy()
        other[i] = rng.choice([clip[0] - 5, clip[1] + 5, rng.normal() * 10])
        if trial < 20:  # force extreme swaps too
            y_lo, y_hi = y.copy(), y.copy()
            y_lo[i], y_hi[i] = -1e6, 1e6
            diff = private_aggregates(y_hi, bags, seed=9, **kwargs).values - private_aggregates(y_lo, bags, seed=9, **kwargs).values
            worst = np.maximum(worst, np.abs(diff))
        diff = private_aggregates(other, bags, seed=9, **kwargs).values - base.values
        assert np.count_nonzero(np.abs(diff) > 1e-12) <= 1  # one response touches one bag only
        worst = np.maximum(worst, np.abs(diff))
    width = clip[1] - clip[0]
    expected = width / sizes if how == "mean" else np.full(sizes.size, width)
    np.testing.assert_allclose(base.sensitivity, expected)
    assert np.all(worst <= base.sensitivity + 1e-9)
    assert np.max(worst / base.sensitivity) == pytest.approx(1.0)


def test_laplace_noise_has_the_calibrated_scale_and_guarantee():
    n = 4000
    y = np.linspace(-1, 1, n)
    bags = random_bags(n, 4, 2)
    eps, clip = 0.8, 1.0
    release = private_aggregates(y, bags, epsilon=eps, clip=clip, seed=3)
    exact = np.bincount(bags, y) / np.bincount(bags)
    noise = release.values - exact
    b = 2.0 / (4 * eps)  # (hi - lo) / (k ε)
    np.testing.assert_allclose(release.noise_scale, b)
    assert np.mean(np.abs(noise)) == pytest.approx(b, rel=0.06)  # E|Laplace(b)| = b
    assert release.epsilon == eps and release.delta == 0.0
    assert "(0.8, 0)-label-DP" in release.guarantee()


def test_gaussian_noise_scale_and_reported_delta():
    y = np.zeros(4000)
    bags = random_bags(4000, 5, 0)
    eps, delta = 0.5, 1e-6
    release = private_aggregates(y, bags, epsilon=eps, delta=delta, clip=(0.0, 1.0), mechanism="gaussian", seed=1)
    sigma = (1.0 / 5) * math.sqrt(2 * math.log(1.25 / delta)) / eps
    assert np.std(release.values) == pytest.approx(sigma, rel=0.05)
    assert (release.epsilon, release.delta) == (eps, delta)


def test_label_proportion_release_is_a_probability_vector():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 300)
    bags = random_bags(300, 10, 0)
    release = private_label_proportions(y, bags, epsilon=1.0, seed=0)
    assert release.values.shape == (30, 3)
    np.testing.assert_allclose(release.values.sum(axis=1), 1.0)
    assert np.all(release.values >= 0)
    np.testing.assert_allclose(release.sensitivity, 2.0)  # one label moves two counts by one


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("nan"), float("inf")])
def test_nonpositive_epsilon_is_rejected(epsilon):
    with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
        private_aggregates(np.ones(10), np.arange(10) // 5, epsilon=epsilon, clip=1.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"clip": None}, "clip is required"),
        ({"clip": (2.0, 1.0)}, "finite lo < hi"),
        ({"clip": -1.0}, "clip must be > 0"),
        ({"clip": 1.0, "delta": 0.1}, "laplace mechanism is"),
        ({"clip": 1.0, "mechanism": "gaussian"}, "needs delta > 0"),
        ({"clip": 1.0, "mechanism": "gaussian", "delta": 1e-5, "epsilon": 2.0}, "epsilon < 1"),
        ({"clip": 1.0, "mechanism": "exponential"}, "mechanism must be one of"),
    ],
)
def test_bad_privacy_parameters_are_named(kwargs, message):
    args = {"epsilon": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        private_aggregates(np.ones(10), np.arange(10) // 5, **args)


def test_sensitivity_helper_matches_definition():
    np.testing.assert_allclose(aggregate_sensitivity((0, 4), [1, 2, 8]), [4, 2, 0.5])
    np.testing.assert_allclose(aggregate_sensitivity(2.0, [1, 2], "sum"), [4, 4])
