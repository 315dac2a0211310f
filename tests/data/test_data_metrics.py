"""PSNR / SSIM (Y channel, border crop) against scikit-image; masked metrics against direct formulas."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from sparsesel.data import load_bundled_image
from sparsesel.data.metrics import fmse, fpsnr, psnr, rgb_to_y, ssim


def _pair(seed: int, shape=(40, 52, 3)):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0, 1, size=shape)
    pred = np.clip(target + rng.normal(0, 0.05, size=shape), 0, 1)
    return pred, target


def _skimage_y(image: np.ndarray, crop: int) -> np.ndarray:
    y = rgb2ycbcr(image)[..., 0]  # 0..255 scale, BT.601 studio swing
    return y[crop:-crop, crop:-crop] if crop else y


@pytest.mark.parametrize("crop", [0, 1, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_y_channel_metrics_match_skimage(crop, seed):
    pred, target = _pair(seed)
    ref_psnr = peak_signal_noise_ratio(_skimage_y(target, crop), _skimage_y(pred, crop), data_range=255)
    ref_ssim = structural_similarity(
        _skimage_y(target, crop), _skimage_y(pred, crop), data_range=255,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    assert psnr(pred, target, crop_border=crop) == pytest.approx(ref_psnr, abs=1e-9)
    assert ssim(pred, target, crop_border=crop) == pytest.approx(ref_ssim, abs=1e-9)


def test_rgb_metrics_match_skimage_on_a_real_image():
    target = load_bundled_image("astronaut")[100:228, 150:278].astype(np.float64)
    pred = np.clip(target * 0.9 + 0.03, 0, 1)
    c = 1
    t, p = target[c:-c, c:-c] * 255, pred[c:-c, c:-c] * 255
    assert psnr(pred, target, y_channel=False) == pytest.approx(peak_signal_noise_ratio(t, p, data_range=255), abs=1e-9)
    ref = structural_similarity(t, p, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(pred, target, y_channel=False) == pytest.approx(ref, abs=1e-9)


def test_data_range_255_and_torch_inputs_agree():
    torch = pytest.importorskip("torch")
    pred, target = _pair(3)
    assert psnr(pred * 255, target * 255, data_range=255) == pytest.approx(psnr(pred, target), abs=1e-9)
    assert ssim(torch.from_numpy(pred), torch.from_numpy(target)) == pytest.approx(ssim(pred, target), abs=1e-12)


def test_rgb_to_y_is_bt601():
    assert rgb_to_y([1.0, 1.0, 1.0]) * 255 == pytest.approx(235.0)
    assert rgb_to_y([0.0, 0.0, 0.0]) * 255 == pytest.approx(16.0)
    assert rgb_to_y([0.0, 1.0, 0.0]) * 255 == pytest.approx(16.0 + 128.553)


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    _, target = _pair(4)
    assert psnr(target, target) == float("inf")
    assert ssim(target, target) == pytest.approx(1.0)


def test_fmse_and_fpsnr_use_only_the_foreground():
    pred, target = _pair(5, shape=(20, 30, 3))
    mask = np.zeros((20, 30))
    mask[5:15, 8:20] = 1
    keep = mask > 0.5
    expected = mean_squared_error(target[keep] * 255, pred[keep] * 255)
    assert fmse(pred, target, mask) == pytest.approx(expected, rel=1e-12)
    assert fpsnr(pred, target, mask) == pytest.approx(
        peak_signal_noise_ratio(target[keep] * 255, pred[keep] * 255, data_range=255), abs=1e-9
    )
    # changing the background changes nothing
    other = pred.copy()
    other[~keep] = 0.0
    assert fmse(other, target, mask) == fmse(pred, target, mask)


def test_bad_inputs_raise_clear_errors():
    pred, target = _pair(6)
    with pytest.raises(ValueError, match="same shape"):
        psnr(pred, target[:-1])
    with pytest.raises(ValueError, match="channels last"):
        psnr(pred.transpose(2, 0, 1), target.transpose(2, 0, 1))
    with pytest.raises(ValueError, match="NaN"):
        psnr(np.full_like(pred, np.nan), target)
    with pytest.raises(ValueError, match="crop_border"):
        ssim(pred, target, crop_border=-1)
    with pytest.raises(ValueError, match="removes the whole"):
        psnr(pred, target, crop_border=20)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(pred[:12, :12], target[:12, :12])
    with pytest.raises(ValueError, match="selects no pixel"):
        fmse(pred, target, np.zeros(pred.shape[:2]))
    with pytest.raises(ValueError, match="mask must have shape"):
        fpsnr(pred, target, np.ones((3, 3)))
