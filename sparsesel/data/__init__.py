"""Images, degradations, paired patch datasets and quality metrics for restoration networks.

Everything here works offline: the images are the ones scikit-image and scikit-learn ship
inside their wheels (:mod:`sparsesel.data.images`), the degradations are generated
(:mod:`sparsesel.data.degradations`), and the metrics follow the official UHDformer
evaluation (:mod:`sparsesel.data.metrics`).
"""

from __future__ import annotations

from sparsesel.data.image_files import read_image, write_image
from sparsesel.data.images import IMAGE_SPLITS, bundled_image_names, load_bundled_image, load_split
from sparsesel.data.metrics import fmse, fpsnr, psnr, rgb_to_y, ssim

__all__ = [
    "IMAGE_SPLITS",
    "bundled_image_names",
    "fmse",
    "fpsnr",
    "load_bundled_image",
    "load_split",
    "psnr",
    "read_image",
    "rgb_to_y",
    "ssim",
    "write_image",
]
