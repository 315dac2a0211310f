"""Bundled images load offline; image files round-trip; outputs are never overwritten silently."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

from sparsesel.data.images import IMAGE_SPLITS, bundled_image_names, load_bundled_image, load_split, read_image, write_image


def test_every_bundled_image_loads_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a bundled image tried to use the network")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for name in bundled_image_names():
        image = load_bundled_image.__wrapped__(name) if hasattr(load_bundled_image, "__wrapped__") else load_bundled_image(name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32, name
        assert min(image.shape[:2]) >= 256, name
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.02, name


def test_bundled_pixels_equal_the_libraries_loaders():
    from skimage import data
    from sklearn.datasets import load_sample_image

    np.testing.assert_array_equal(np.round(load_bundled_image("astronaut") * 255).astype(np.uint8), data.astronaut())
    np.testing.assert_array_equal(np.round(load_bundled_image("china") * 255).astype(np.uint8), load_sample_image("china.jpg"))


def test_splits_are_disjoint_and_cover_known_names():
    train, test = set(IMAGE_SPLITS["train"]), set(IMAGE_SPLITS["test"])
    assert not train & test and train | test <= set(bundled_image_names())
    assert len(load_split("test")) == len(test)
    with pytest.raises(ValueError, match="split must be one of"):
        load_split("validation")
    with pytest.raises(ValueError, match="unknown bundled image 'lena'"):
        load_bundled_image("lena")


def test_loaded_images_are_private_copies():
    first = load_bundled_image("chelsea")
    first[:] = 0
    assert load_bundled_image("chelsea").max() > 0


def test_write_read_round_trip_and_overwrite_refusal(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(13, 17, 3)).astype(np.float32) / 255
    path = write_image(tmp_path / "x.png", image)
    np.testing.assert_array_equal(read_image(path), image)
    with pytest.raises(FileExistsError, match="exists"):
        write_image(path, image)
    write_image(path, 1 - image, force=True)
    np.testing.assert_allclose(read_image(path), 1 - image, atol=1e-6)
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "grey.png")
    assert read_image(tmp_path / "grey.png").shape == (4, 5, 3)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="image file not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "nan.png", np.full((3, 3, 3), np.nan))
