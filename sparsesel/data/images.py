"""Colour images that scikit-image and scikit-learn ship inside their wheels.

No image is ever downloaded: the files are read straight from the installed packages'
data folders (``skimage/data`` holds the "legacy" images bundled with every release;
images that scikit-image fetches with pooch on first use are *not* listed here), and from
``sklearn/datasets/images`` (the two images behind :func:`sklearn.datasets.load_sample_images`).

Splits
------
``train``: astronaut, coffee, rocket, hubble_deep_field, immunohistochemistry,
motorcycle_left, motorcycle_right, retina, china (9 images).
``test``: chelsea, flower (2 images, never seen in training; the motorcycle stereo pair
stays together in ``train`` so that no near-duplicate leaks into ``test``).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from sparsesel.data.image_files import read_image, write_image  # re-exported: image file I/O lives there

__all__ = [
    "IMAGE_SPLITS",
    "bundled_image_names",
    "bundled_image_path",
    "load_bundled_image",
    "load_split",
    "read_image",
    "write_image",
]


def _skimage_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def _sklearn_dir() -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images"


# name -> (which package folder, file name)
_FILES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut.png"),
    "coffee": ("skimage", "coffee.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "hubble_deep_field": ("skimage", "hubble_deep_field.jpg"),
    "immunohistochemistry": ("skimage", "ihc.png"),
    "motorcycle_left": ("skimage", "motorcycle_left.png"),
    "motorcycle_right": ("skimage", "motorcycle_right.png"),
    "retina": ("skimage", "retina.jpg"),
    "chelsea": ("skimage", "chelsea.png"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
}

IMAGE_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "astronaut",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "motorcycle_left",
        "motorcycle_right",
        "retina",
        "china",
    ),
    "test": ("chelsea", "flower"),
}


def bundled_image_names() -> tuple[str, ...]:
    """Names accepted by :func:`load_bundled_image`, sorted."""
    return tuple(sorted(_FILES))


def bundled_image_path(name: str) -> Path:
    """The file of a bundled image inside the installed scikit-image / scikit-learn package."""
    if name not in _FILES:
        raise ValueError(f"unknown bundled image {name!r}; choose one of {bundled_image_names()}")
    package, filename = _FILES[name]
    folder = _skimage_dir() if package == "skimage" else _sklearn_dir()
    path = folder / filename
    if not path.is_file():  # pragma: no cover - a broken installation
        raise FileNotFoundError(f"bundled image {name!r} is missing from the {package} installation: {path}")
    return path


@functools.lru_cache(maxsize=32)
def load_cached(name: str) -> np.ndarray:
    """The bundled image ``name`` as a read-only array, shared between calls (copy before writing)."""
    image = read_image(bundled_image_path(name))
    image.setflags(write=False)
    return image


def load_bundled_image(name: str) -> np.ndarray:
    """Load a bundled colour image.

    Returns
    -------
    numpy.ndarray
        Shape ``(H, W, 3)``, float32 in ``[0, 1]``; a fresh, writable copy.
    """
    return load_cached(name).copy()


def load_split(split: str) -> list[np.ndarray]:
    """All images of ``split`` (``"train"`` or ``"test"``), each ``(H, W, 3)`` float32 in ``[0, 1]``."""
    if split not in IMAGE_SPLITS:
        raise ValueError(f"split must be one of {tuple(IMAGE_SPLITS)}, got {split!r}")
    return [load_bundled_image(name) for name in IMAGE_SPLITS[split]]
