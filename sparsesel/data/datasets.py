"""Paired patch datasets (torch) built from the bundled images and the synthetic degradations.

Sample ``i`` of a dataset is a pure function of ``(seed, i)``: a crop position, an
augmentation (one of the 8 flips/rotations) and the degradation parameters are drawn from
``numpy.random.default_rng([seed, i])``. So a training run that restarts at step ``t`` sees
exactly the batches it would have seen, and two datasets with different seeds differ.

Every sample is a dict of float32 tensors, channels first, values in ``[0, 1]``:

========== ========================================================================
task       keys
========== ========================================================================
lowlight   ``input`` (3, P, P) dark, ``target`` (3, P, P) clean
haze       ``input`` hazy, ``target`` clean
blur       ``input`` motion-blurred, ``target`` sharp
specular   ``input`` = I, ``target`` = D_tc, and ``albedo``, ``shading``, ``residue``,
           ``diffuse`` (3, P, P), ``mask`` (1, P, P)
harmonize  ``input`` = composite, ``target``, ``mask`` (1, P, P), ``shadow`` (1, P, P)
========== ========================================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from sparsesel.data import degradations
from sparsesel.data.images import IMAGE_SPLITS, load_cached, bundled_image_path

__all__ = ["TASKS", "PairedPatchDataset", "collate"]

TASKS: tuple[str, ...] = ("lowlight", "haze", "blur", "specular", "harmonize")


def _bundled_size(name: str) -> tuple[int, int]:
    """(H, W) of a bundled image, read from its header only."""
    with Image.open(bundled_image_path(name)) as handle:
        width, height = handle.size
    return height, width


def _chw(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))


def _dihedral(array: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/rotations of the first two axes."""
    if code & 4:
        array = array[:, ::-1]
    return np.rot90(array, k=code & 3, axes=(0, 1))


class PairedPatchDataset(Dataset):
    """Random degraded/clean patch pairs for one restoration task.

    Parameters
    ----------
    task : str
        One of :data:`TASKS`.
    split : str
        ``"train"`` or ``"test"`` (:data:`sparsesel.data.images.IMAGE_SPLITS`); ignored when
        ``images`` is given.
    patch_size : int
        Side P of the square patches (≥ 16; no larger than the smallest image).
    length : int
        Number of samples (``len(dataset)``).
    seed : int
        Fixes every sample.
    augment : bool
        Apply a random flip/rotation to each patch.
    images : sequence of array_like, optional
        Clean ``(H, W, 3)`` images in ``[0, 1]`` to use instead of a bundled split.
    """

    def __init__(
        self,
        task: str,
        *,
        split: str = "train",
        patch_size: int = 128,
        length: int = 1000,
        seed: int = 0,
        augment: bool = True,
        images: Sequence[np.ndarray] | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        for name, value, low in (("patch_size", patch_size, 16), ("length", length, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if images is None:
            if split not in IMAGE_SPLITS:
                raise ValueError(f"split must be one of {tuple(IMAGE_SPLITS)}, got {split!r}")
            images = list(IMAGE_SPLITS[split])  # names, decoded on first use
            sizes = [_bundled_size(name) for name in images]
        else:
            images = [degradations._clean(image, f"images[{i}]").astype(np.float32) for i, image in enumerate(images)]
            if not images:
                raise ValueError("images is empty")
            sizes = [image.shape[:2] for image in images]
        smallest = min(min(size) for size in sizes)
        if patch_size > smallest:
            raise ValueError(f"patch_size={patch_size} is larger than the smallest image side ({smallest})")
        if task == "harmonize" and len(images) < 2:
            raise ValueError("the harmonize task needs at least 2 images (background and foreground)")
        self.task = task
        self.patch_size = int(patch_size)
        self.length = int(length)
        self.seed = int(seed)
        self.augment = bool(augment)
        self._images = images

    def __len__(self) -> int:
        return self.length

    def _crop(self, rng: np.random.Generator, index: int | None = None) -> np.ndarray:
        if index is None:
            index = int(rng.integers(len(self._images)))
        image = self._images[index]
        if isinstance(image, str):
            image = load_cached(image)  # read-only, shared; the crop below copies
        p = self.patch_size
        top = int(rng.integers(image.shape[0] - p + 1))
        left = int(rng.integers(image.shape[1] - p + 1))
        patch = image[top : top + p, left : left + p]
        if self.augment:
            patch = _dihedral(patch, int(rng.integers(8)))
        return np.ascontiguousarray(patch)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        index %= self.length
        rng = np.random.default_rng([self.seed, index])
        if self.task == "harmonize":
            first, second = rng.choice(len(self._images), size=2, replace=False)
            background = self._crop(rng, int(first))
            foreground = self._crop(rng, int(second))
            sample = degradations.harmonization_sample(background, foreground, rng)
            return {
                "input": _chw(sample.composite),
                "target": _chw(sample.target),
                "mask": _chw(sample.mask),
                "shadow": _chw(sample.shadow),
            }
        clean = self._crop(rng)
        if self.task == "specular":
            s = degradations.specular_sample(clean, rng)
            return {
                "input": _chw(s.image),
                "target": _chw(s.diffuse_tc),
                "albedo": _chw(s.albedo),
                "shading": _chw(s.shading),
                "residue": _chw(s.residue),
                "diffuse": _chw(s.diffuse),
                "mask": _chw(s.mask),
            }
        degrade = {
            "lowlight": degradations.random_low_light,
            "haze": degradations.random_haze,
            "blur": degradations.random_blur,
        }[self.task]
        return {"input": _chw(degrade(clean, rng)), "target": _chw(clean)}

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        """The samples ``indices`` stacked into a batch (see :func:`collate`)."""
        return collate([self[int(i)] for i in indices])


def collate(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack a list of sample dicts into one dict of ``(B, ...)`` tensors."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}
