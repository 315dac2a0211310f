"""Benchmark tensors from bundled data (scikit-learn, scikit-image) or generated; no downloads.

Every builder returns a float64 array and is deterministic (``seed``). :data:`DATASETS`
maps a name (used by ``sparsesel core-shape --tensor builtin:NAME``) to its builder and a
one-line description.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def digits(seed: int = 0) -> np.ndarray:
    """scikit-learn digits: 1797 × 8 × 8 grey images (values 0..16)."""
    from sklearn.datasets import load_digits

    return load_digits().images.astype(np.float64)


def sample_image(name: str = "china", factor: int = 1) -> np.ndarray:
    """scikit-learn sample image ``china`` or ``flower`` (427 × 640 × 3, values in [0, 1]),
    block-averaged by ``factor`` in both spatial axes."""
    from sklearn.datasets import load_sample_images

    images = load_sample_images()
    names = [f.rsplit("/", 1)[-1].split(".")[0] for f in images.filenames]
    if name not in names:
        raise ValueError(f"sample image must be one of {names}, got {name!r}")
    image = images.images[names.index(name)].astype(np.float64) / 255.0
    if factor > 1:
        from skimage.transform import downscale_local_mean

        image = downscale_local_mean(image, (factor, factor, 1))
    return image


def video(frames: int = 40, size: int = 96, seed: int = 0) -> np.ndarray:
    """A video-like tensor (frames × size × size): crops of scikit-image's bundled ``camera``
    image along a smooth random-walk camera path (sub-pixel shifts by linear interpolation)."""
    from scipy.ndimage import shift as subpixel_shift
    from skimage import data

    image = data.camera().astype(np.float64) / 255.0
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=1.5, size=(frames, 2)).cumsum(axis=0)
    steps -= steps.mean(axis=0)
    top = (image.shape[0] - size) // 2
    out = np.empty((frames, size, size))
    for t in range(frames):
        moved = subpixel_shift(image[top - 40 : top + size + 40, top - 40 : top + size + 40], steps[t], order=1, mode="nearest")
        out[t] = moved[40 : 40 + size, 40 : 40 + size]
    return out


def hyperspectral(size: int = 64, bands: int = 33, materials: int = 5, noise: float = 0.005, seed: int = 0) -> np.ndarray:
    """A hyperspectral-like cube (size × size × bands): smooth abundance maps (blurred random
    fields, normalised per pixel) times smooth material spectra (sums of Gaussians over the
    band axis), plus Gaussian noise of standard deviation ``noise``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    fields = np.stack([gaussian_filter(rng.random((size, size)), sigma=size / 10) for _ in range(materials)], axis=-1)
    fields = np.exp(8 * (fields - fields.mean()))
    abundance = fields / fields.sum(axis=-1, keepdims=True)
    wavelengths = np.linspace(0, 1, bands)
    spectra = np.zeros((materials, bands))
    for m in range(materials):
        for _ in range(3):
            centre, width, height = rng.random(), 0.05 + 0.2 * rng.random(), rng.random()
            spectra[m] += height * np.exp(-0.5 * ((wavelengths - centre) / width) ** 2)
    cube = abundance @ spectra
    return cube + noise * rng.standard_normal(cube.shape)


def low_rank_tucker(shape: tuple[int, ...], ranks: tuple[int, ...], noise: float = 0.01, seed: int = 1234) -> np.ndarray:
    """tensorly ``random_tucker`` of the given multilinear ranks (the authors' generator), plus
    Gaussian noise of relative Frobenius norm ``noise``."""
    from tensorly.random import random_tucker

    X = np.asarray(random_tucker(shape, ranks, full=True, random_state=seed), dtype=np.float64)
    rng = np.random.default_rng(seed)
    E = rng.standard_normal(shape)
    return X + noise * np.linalg.norm(X) / np.linalg.norm(E) * E


def cardiac_phantom(size: int = 64, slices: int = 10, frames: int = 16, noise: float = 0.01, seed: int = 0) -> np.ndarray:
    """A synthetic 4-way cardiac-MRI-like tensor (x × y × slice × time): a torso ellipse, two
    ventricles whose radii shrink towards the apex (slice) and beat periodically (time), a
    smooth coil-sensitivity shading, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    out = np.empty((size, size, slices, frames))
    shading = 0.7 + 0.3 * np.exp(-((xx - 0.3) ** 2 + (yy + 0.2) ** 2))
    for z in range(slices):
        taper = 1.0 - 0.6 * z / max(slices - 1, 1)
        for t in range(frames):
            beat = 1.0 + 0.25 * np.sin(2 * np.pi * t / frames)
            img = 0.4 * ((xx / 0.85) ** 2 + (yy / 0.65) ** 2 <= 1)
            lv = ((xx + 0.15) / (0.22 * taper * beat)) ** 2 + ((yy - 0.05) / (0.28 * taper * beat)) ** 2 <= 1
            rv = ((xx - 0.25) / (0.18 * taper * beat)) ** 2 + ((yy - 0.05) / (0.3 * taper)) ** 2 <= 1
            wall = ((xx + 0.15) / (0.3 * taper * beat)) ** 2 + ((yy - 0.05) / (0.36 * taper * beat)) ** 2 <= 1
            img = img + 0.3 * wall + 0.5 * lv + 0.35 * rv
            out[:, :, z, t] = img * shading
    return out + noise * rng.standard_normal(out.shape)


def uniform_random(shape: tuple[int, ...] = (30, 30, 30), seed: int = 0) -> np.ndarray:
    """i.i.d. uniform [0, 1) entries (the authors' ``random`` tensor, smaller)."""
    return np.random.default_rng(seed).random(shape)


DATASETS: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "digits": (digits, "scikit-learn digits, 1797×8×8"),
    "china": (lambda: sample_image("china"), "scikit-learn sample image china, 427×640×3"),
    "flower": (lambda: sample_image("flower"), "scikit-learn sample image flower, 427×640×3"),
    "china_small": (lambda: sample_image("china", 4), "china block-averaged 4×, 107×160×3"),
    "flower_small": (lambda: sample_image("flower", 4), "flower block-averaged 4×, 107×160×3"),
    "video": (video, "shifted crops of skimage camera, 40×96×96"),
    "hyperspectral": (hyperspectral, "smooth-spectra hyperspectral-like cube, 64×64×33"),
    "tucker3": (lambda: low_rank_tucker((100, 100, 100), (16, 32, 64)), "random_tucker [100]^3 ranks [16,32,64] + 1% noise"),
    "tucker3_small": (lambda: low_rank_tucker((40, 40, 40), (6, 12, 24)), "random_tucker [40]^3 ranks [6,12,24] + 1% noise"),
    "tucker4": (lambda: low_rank_tucker((10, 10, 10, 10), (2, 3, 4, 5)), "random_tucker [10]^4 ranks [2,3,4,5] + 1% noise"),
    "video_small": (lambda: video(frames=32, size=64), "shifted crops of skimage camera, 32×64×64"),
    "cardiac": (cardiac_phantom, "synthetic cardiac-MRI-like phantom, 64×64×10×16"),
    "cardiac_small": (lambda: cardiac_phantom(size=40, slices=8, frames=12), "synthetic cardiac-MRI-like phantom, 40×40×8×12"),
    "random": (uniform_random, "uniform random 30×30×30"),
}


def load_tensor(name: str) -> np.ndarray:
    """The built-in tensor ``name`` (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown built-in tensor {name!r}; choose from {sorted(DATASETS)}")
    return np.asarray(DATASETS[name][0](), dtype=np.float64)
