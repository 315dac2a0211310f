"""Synthetic degradations: determinism, the documented formulas and statistics, errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from sparsesel.data import load_bundled_image
from sparsesel.data import degradations as dg


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return load_bundled_image("coffee")[40:104, 60:124].astype(np.float64)


@pytest.mark.parametrize("degrade", [dg.random_low_light, dg.random_haze, dg.random_blur])
def test_random_degradations_are_deterministic_per_seed(clean, degrade):
    first = degrade(clean, np.random.default_rng(7))
    again = degrade(clean, np.random.default_rng(7))
    other = degrade(clean, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.dtype == np.float32 and first.shape == clean.shape
    assert 0.0 <= first.min() and first.max() <= 1.0


def test_low_light_scales_the_mean_brightness_by_the_exposure(clean):
    dark = dg.low_light(clean, exposure=0.2)
    assert dark.mean() == pytest.approx(0.2 * clean.mean(), rel=1e-6)
    np.testing.assert_allclose(dg.low_light(clean, exposure=0.5, gamma=2.0), 0.5 * clean**2, atol=1e-7)


def test_low_light_noise_has_the_documented_variance():
    flat = np.full((200, 200, 3), 0.5)
    noisy = dg.low_light(flat, exposure=0.4, shot_noise=1e-3, read_noise=0.01, rng=0).astype(np.float64)
    expected_std = np.sqrt(1e-3 * 0.2 + 0.01**2)
    assert noisy.mean() == pytest.approx(0.2, abs=1e-3)
    assert noisy.std() == pytest.approx(expected_std, rel=0.03)


def test_haze_on_constant_depth_is_the_scattering_model(clean):
    beta, depth, airlight = 1.3, 0.7, np.array([0.9, 0.85, 0.8])
    t = np.exp(-beta * depth)
    expected = clean * t + airlight * (1 - t)
    np.testing.assert_allclose(dg.haze(clean, depth, beta=beta, airlight=airlight), expected, atol=1e-6)
    np.testing.assert_allclose(dg.haze(clean, np.full(clean.shape[:2], depth), beta=beta, airlight=airlight), expected, atol=1e-6)
    np.testing.assert_allclose(dg.haze(clean, 0.5, beta=0.0), clean, atol=1e-7)


def test_depth_proxy_is_smooth_and_in_range():
    depth = dg.depth_proxy((64, 80), 3)
    assert depth.shape == (64, 80) and depth.min() >= 0 and depth.max() <= 1
    assert np.abs(np.diff(depth, axis=0)).max() < 0.1 and np.abs(np.diff(depth, axis=1)).max() < 0.1
    assert depth[:8].mean() > depth[-8:].mean()  # the top is farther


def test_motion_kernel_is_a_centred_normalised_blur():
    kernel = dg.motion_kernel(15, 11)
    assert kernel.shape == (15, 15) and kernel.min() >= 0
    assert kernel.sum() == pytest.approx(1.0)
    yy, xx = np.mgrid[0:15, 0:15]
    assert (kernel * yy).sum() == pytest.approx(7.0, abs=0.5) and (kernel * xx).sum() == pytest.approx(7.0, abs=0.5)
    assert (kernel > 0).sum() > 3  # a trajectory, not a point
    np.testing.assert_array_equal(kernel, dg.motion_kernel(15, 11))


def test_motion_blur_is_a_convolution(clean):
    kernel = dg.motion_kernel(9, 2)
    blurred = dg.motion_blur(clean, kernel)
    for c in range(3):
        reference = signal.fftconvolve(clean[..., c], kernel, mode="valid")
        np.testing.assert_allclose(blurred[4:-4, 4:-4, c], reference, atol=1e-6)
    delta = np.zeros((5, 5))
    delta[2, 2] = 1.0
    np.testing.assert_allclose(dg.motion_blur(clean, delta), clean, atol=1e-7)


def test_specular_sample_is_consistent(clean):
    s = dg.specular_sample(clean, 5)
    for name in ("image", "albedo", "shading", "residue", "diffuse", "diffuse_tc"):
        value = getattr(s, name)
        assert value.shape == clean.shape and value.dtype == np.float32, name
        assert value.min() >= 0 and value.max() <= 1, name
    assert s.mask.shape == clean.shape[:2] and set(np.unique(s.mask)) <= {0.0, 1.0}
    np.testing.assert_allclose(s.diffuse, s.albedo * s.shading, atol=1e-6)
    assert np.all(s.residue[s.mask == 0] == 0)
    assert s.residue.max() > 0.05  # there is a highlight
    # without highlights the photo is an affine colour map of the diffuse image, which the
    # tone-corrected target recovers wherever nothing was clipped
    matte = dg.specular_sample(clean, 5, strength=0.0)
    assert matte.residue.max() == 0
    fine = (matte.mask == 1) & (matte.image.max(axis=2) < 0.999)
    assert fine.sum() > 100
    np.testing.assert_allclose(matte.diffuse_tc[fine], matte.image[fine], atol=1e-5)
    again = dg.specular_sample(clean, 5)
    np.testing.assert_array_equal(s.image, again.image)


def test_harmonization_sample_follows_its_model(clean):
    other = load_bundled_image("astronaut")[:64, :64]
    h = dg.harmonization_sample(clean, other, 9)
    m = h.mask > 0.5
    assert m.any() and (~m).any()
    assert np.all(h.shadow[m] == 0) and h.shadow.max() > 0.05
    background = ~m
    # off the foreground, the target is the composite darkened by the shadow
    np.testing.assert_allclose(h.target[background], h.composite[background] * (1 - h.shadow[background, None]), atol=1e-6)
    # the foreground is relit: different from the composite
    assert np.abs(h.target[m] - h.composite[m]).mean() > 0.01


def test_degradations_reject_bad_input(clean):
    with pytest.raises(ValueError, match=r"shape \(H, W, 3\)"):
        dg.random_low_light(clean[..., 0], 0)
    with pytest.raises(ValueError, match=r"values must lie in \[0, 1\]"):
        dg.low_light(clean * 3, exposure=0.5)
    with pytest.raises(ValueError, match="exposure must be in"):
        dg.low_light(clean, exposure=1.5)
    with pytest.raises(ValueError, match="depth must have shape"):
        dg.haze(clean, np.ones((3, 3)), beta=1.0)
    with pytest.raises(ValueError, match="odd integer"):
        dg.motion_kernel(8, 0)
    with pytest.raises(ValueError, match="sum to 1"):
        dg.motion_blur(clean, np.ones((3, 3)))
    with pytest.raises(TypeError, match="rng must be"):
        dg.random_haze(clean, "seed")
    with pytest.raises(ValueError, match="same shape"):
        dg.harmonization_sample(clean, clean[:32], 0)
