"""TSHRNet's tone-correction target: the affine fit recovers a known colour map exactly."""

from __future__ import annotations

import numpy as np
import pytest

from sparsesel.data.tone_correction import apply_tone_map, fit_tone_map, highlight_mask, tone_corrected_target


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    diffuse = rng.uniform(0.05, 0.7, size=(32, 40, 3))
    tone = np.array([[0.02, 0.9, 0.05, 0.0], [0.01, 0.0, 1.1, 0.03], [0.04, 0.02, 0.0, 0.8]])
    residue = np.zeros_like(diffuse)
    residue[10:16, 12:20] = 0.6  # a highlight
    residue[2:4, 2:4] = 0.55
    image = diffuse @ tone[:, 1:].T + tone[:, 0] + residue
    return diffuse, image, residue, tone


def test_fit_recovers_a_known_affine_map_exactly():
    diffuse, image, residue, tone = _scene()
    calm = residue.max(axis=2) == 0
    np.testing.assert_allclose(fit_tone_map(diffuse, image, pixels=calm), tone, atol=1e-10)


def test_highlight_mask_finds_the_highlights():
    _, _, residue, _ = _scene()
    expected = residue.max(axis=2) > 0
    np.testing.assert_array_equal(highlight_mask(residue), expected)
    assert not highlight_mask(np.zeros_like(residue)).any()


def test_target_equals_the_mapped_diffuse_image():
    diffuse, image, residue, tone = _scene(1)
    corrected, highlights = tone_corrected_target(image, diffuse, residue, clip=False)
    np.testing.assert_array_equal(highlights, residue.max(axis=2) > 0)
    reference = np.einsum("hwc,kc->hwk", diffuse, tone[:, 1:]) + tone[:, 0]
    np.testing.assert_allclose(corrected, reference, atol=1e-10)
    np.testing.assert_allclose(apply_tone_map(diffuse, tone), reference, atol=1e-12)


def test_object_mask_limits_the_fit():
    diffuse, image, residue, tone = _scene(2)
    obj = np.zeros(diffuse.shape[:2])
    obj[:, :20] = 1
    image = image.copy()
    image[:, 20:] = 0.0  # garbage outside the object must not matter
    corrected, _ = tone_corrected_target(image, diffuse, residue, object_mask=obj, clip=False)
    np.testing.assert_allclose(corrected[:, :20], (diffuse @ tone[:, 1:].T + tone[:, 0])[:, :20], atol=1e-10)


def test_errors_name_the_argument():
    diffuse, image, residue, _ = _scene()
    with pytest.raises(ValueError, match="diffuse must have shape"):
        fit_tone_map(diffuse[..., 0], image)
    with pytest.raises(ValueError, match="at least 4 pixels"):
        fit_tone_map(diffuse, image, pixels=np.zeros(diffuse.shape[:2]))
    with pytest.raises(ValueError, match=r"tone_map must have shape \(3, 4\)"):
        apply_tone_map(diffuse, np.eye(3))
    with pytest.raises(ValueError, match="object_mask must have shape"):
        highlight_mask(residue, object_mask=np.ones((2, 2)))
