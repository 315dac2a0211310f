"""Paired patch datasets: seeded, the documented keys and shapes, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsesel.data.datasets import TASKS, PairedPatchDataset, collate


_KEYS = {
    "lowlight": {"input", "target"},
    "haze": {"input", "target"},
    "blur": {"input", "target"},
    "specular": {"input", "target", "albedo", "shading", "residue", "diffuse", "mask"},
    "harmonize": {"input", "target", "mask", "shadow"},
}


@pytest.mark.parametrize("task", TASKS)
def test_samples_have_the_documented_keys_and_are_seeded(task):
    data = PairedPatchDataset(task, patch_size=32, length=5, seed=3)
    sample = data[2]
    assert set(sample) == _KEYS[task]
    for key, value in sample.items():
        channels = 1 if key in ("mask", "shadow") else 3
        assert value.shape == (channels, 32, 32) and value.dtype == torch.float32, key
        assert 0.0 <= float(value.min()) and float(value.max()) <= 1.0, key
    again = PairedPatchDataset(task, patch_size=32, length=5, seed=3)[2]
    other = PairedPatchDataset(task, patch_size=32, length=5, seed=4)[2]
    for key in sample:
        torch.testing.assert_close(sample[key], again[key], rtol=0, atol=0)
    assert not torch.equal(sample["input"], other["input"])


def test_lowlight_targets_are_crops_of_the_clean_images():
    image = np.random.default_rng(0).uniform(size=(40, 50, 3)).astype(np.float32)
    data = PairedPatchDataset("lowlight", patch_size=16, length=4, seed=0, augment=False, images=[image])
    target = data[1]["target"].permute(1, 2, 0).numpy()
    windows = np.lib.stride_tricks.sliding_window_view(image, (16, 16, 3))[..., 0, :, :, :]
    assert np.any(np.all(np.abs(windows - target) < 1e-7, axis=(2, 3, 4)))
    assert data[1]["input"].mean() < data[1]["target"].mean()


def test_collate_and_batch_stack_samples():
    data = PairedPatchDataset("haze", patch_size=16, length=6, seed=1)
    batch = data.batch([0, 1, 2])
    assert batch["input"].shape == (3, 3, 16, 16)
    torch.testing.assert_close(batch["target"][1], data[1]["target"])
    with pytest.raises(ValueError, match="empty"):
        collate([])


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="task must be one of"):
        PairedPatchDataset("denoise")
    with pytest.raises(ValueError, match="patch_size"):
        PairedPatchDataset("haze", patch_size=8)
    with pytest.raises(ValueError, match="larger than the smallest image side"):
        PairedPatchDataset("haze", patch_size=64, images=[np.zeros((32, 80, 3))])
    with pytest.raises(ValueError, match="at least 2 images"):
        PairedPatchDataset("harmonize", patch_size=16, images=[np.zeros((32, 32, 3))])
    with pytest.raises(IndexError, match="out of range"):
        PairedPatchDataset("blur", patch_size=16, length=2)[2]
