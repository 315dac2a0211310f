"""SIC/AIC against the PAIR saliency library's pic.py, and oracle vs random attributions."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from sparsesel.attribution import sic



def textured_image(rng, color):
    shape = (32, 32, 3) if color else (32, 32)
    ramp = np.linspace(0, 150, 32)[None, :]
    if color:
        ramp = ramp[..., None]
    image = (rng.random(shape) * 80 + ramp).astype(np.uint8)
    image[10:18, 12:20] = 255
    return image


def region_model(images):
    """Softmax-like score that rises with the brightness of the region [10:18, 12:20]."""
    region = images[:, 10:18, 12:20].reshape(len(images), -1).astype(np.float64).mean(axis=1) / 255.0
    return 1.0 / (1.0 + np.exp(-12.0 * (region - 0.7)))


@pytest.mark.parametrize("case", range(4))
def test_matches_pair_saliency_pic(case, monkeypatch):
    pic = pytest.importorskip("saliency.metrics.pic")
    if not hasattr(np, "trapz"):  # the PAIR code calls np.trapz, removed in NumPy 2.4
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    rng = np.random.default_rng(case)
    image = textured_image(rng, color=case % 2 == 1)
    saliency = rng.random((32, 32))
    saliency[10:18, 12:20] += 0.4 * case
    mask = sic.random_pixel_mask(32, 32, 0.01, seed=case)
    with threadpool_limits(limits=1, user_api="blas"):  # see sic.interpolated_image
        reference = pic.compute_pic_metric(image, saliency, mask, lambda b: list(region_model(b)), list(sic.SIC_THRESHOLDS))
    ours = sic.pic_curve(image, saliency, mask, region_model, keep_images=True)
    assert ours.auc == pytest.approx(reference.auc, abs=1e-12)
    np.testing.assert_allclose(ours.curve_x, reference.curve_x, atol=0)
    np.testing.assert_allclose(ours.curve_y, reference.curve_y, atol=1e-12)
    np.testing.assert_allclose(ours.predictions, reference.predictions, atol=1e-12)
    for mine, theirs in zip(ours.images, reference.blurred_images):
        np.testing.assert_array_equal(mine, theirs)
    assert sic.webp_size(image) == pic.estimate_image_entropy(image)
    aggregate = pic.aggregate_individual_pic_results([reference, reference], method="median")
    assert sic.aggregate_curves([ours, ours])[2] == pytest.approx(aggregate.auc, abs=1e-12)


def test_skip_rules_follow_pair():
    rng = np.random.default_rng(0)
    image = textured_image(rng, color=True)
    mask = sic.random_pixel_mask(32, 32, seed=0)
    saliency = rng.random((32, 32))
    with pytest.raises(sic.PicSkipped, match="min_pred_value"):
        sic.pic_curve(image, saliency, mask, lambda b: np.full(len(b), 0.5))
    with pytest.raises(sic.PicSkipped, match="prediction on the blurred image"):
        sic.pic_curve(image, saliency, mask, lambda b: np.full(len(b), 0.9))
    flat = np.full((32, 32), 7, dtype=np.uint8)
    with pytest.raises(sic.PicSkipped, match="blurred image information"):
        sic.pic_curve(flat, saliency, mask, lambda b: np.linspace(0.9, 0.1, len(b)))
    with pytest.raises(ValueError, match="image must be uint8"):
        sic.pic_curve(image.astype(float), saliency, mask, region_model)


def test_oracle_attribution_beats_random_on_sic_and_aic():
    rng = np.random.default_rng(1)
    curves = {"oracle": [], "random": []}
    aic = {"oracle": [], "random": []}

    def correct(images):
        return (region_model(images) > 0.5).astype(float)

    for i in range(5):
        image = textured_image(rng, color=i % 2 == 0)
        mask = sic.random_pixel_mask(32, 32, seed=100 + i)
        oracle = rng.random((32, 32)) * 0.01
        oracle[10:18, 12:20] += 1.0
        for name, saliency in (("oracle", oracle), ("random", rng.random((32, 32)))):
            out = sic.pic_curves(image, saliency, mask, {"sic": region_model, "aic": correct})
            curves[name].append(out["sic"])
            aic[name].append(out["aic"])
    sic_oracle, sic_random = sic.aggregate_curves(curves["oracle"])[2], sic.aggregate_curves(curves["random"])[2]
    assert sic_oracle >= sic_random + 0.1
    scored = [(o, r) for o, r in zip(aic["oracle"], aic["random"]) if isinstance(o, sic.PicCurve)]
    assert scored, "every image was skipped for AIC"
    assert sic.aggregate_curves([o for o, _ in scored])[2] >= sic.aggregate_curves([r for _, r in scored])[2]
    assert all(o.auc >= r.auc for o, r in zip(curves["oracle"], curves["random"]))


def test_interpolation_keeps_masked_pixels_and_corners():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    mask = sic.random_pixel_mask(16, 20, 0.2, seed=3)
    out = sic.interpolated_image(image, mask)
    assert out.dtype == np.uint8 and out.shape == image.shape
    np.testing.assert_array_equal(out[mask], image[mask])
    np.testing.assert_array_equal(out[[0, 0, -1, -1], [0, -1, 0, -1]], image[[0, 0, -1, -1], [0, -1, 0, -1]])
    assert sic.random_pixel_mask(10, 10, 0.05, seed=0).sum() == 5
