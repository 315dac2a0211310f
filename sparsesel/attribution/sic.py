"""Performance Information Curves: SIC and AIC (XRAI, Kapishnikov et al. 2019, arXiv 1906.02825).

The definitions follow the PAIR saliency library (``saliency/metrics/pic.py``)
step for step, so that numbers are comparable with published ones:

1. Information ``H(img)`` is the byte length of the image saved as lossless WebP
   (Pillow, ``quality=100``).
2. The "fully blurred" image keeps a random ``1%`` of the pixels (and the four
   corners) and fills the others by linear interpolation (scipy's Delaunay
   ``griddata``; the mean colour outside the hull).
3. For each threshold ``q`` in :data:`SIC_THRESHOLDS`, the pixels with saliency
   ``>= quantile(saliency, 1 − q)``, together with the random pixels, are kept
   and the rest re-interpolated.
4. ``x = clip((H_q − H_blur)/(H_orig − H_blur), 0, 1)``, ``y = clip((p_q − p_blur)/(p_orig − p_blur), 0, 1)``
   with ``p`` the target softmax (SIC) or 0/1 correctness (AIC); ``y`` is the
   running maximum (``keep_monotonous``).
5. The points ``(0, 0)`` and ``(1, 1)`` are added, the curve is interpolated
   linearly onto ``0, 0.001, …, 0.999`` plus ``1.0`` and integrated by the
   trapezoid rule.
6. An image is skipped (:class:`PicSkipped`) when ``p_orig < min_pred_value``,
   ``H_blur >= H_orig`` or ``p_blur >= p_orig``, checked in that order.
7. Over images, the curve is the element-wise median (or mean) of the
   per-image curves, and its AUC the aggregate score.

Differences from the PAIR code, none of which changes a number: the random mask
comes from a seeded numpy ``Generator`` (PAIR uses global state), one Delaunay
triangulation serves all colour channels, and the model is called on batches.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from scipy.interpolate import LinearNDInterpolator, interp1d
from threadpoolctl import ThreadpoolController

#: The saliency fractions revealed by the PAIR library's SIC/AIC examples.
SIC_THRESHOLDS: tuple[float, ...] = (0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75)

Predictor = Callable[[np.ndarray], Sequence[float]]


class PicSkipped(ValueError):
    """The image cannot be scored and is excluded (one of the three PAIR skip rules)."""


@dataclass(frozen=True)
class PicCurve:
    """The performance information curve of one image and saliency map.

    Attributes
    ----------
    curve_x, curve_y : ndarray, shape (num_data_points + 1,)
        Normalised information and normalised prediction.
    auc : float
        Trapezoid area under the curve, in ``[0, 1]``.
    predictions : ndarray, shape (len(thresholds) + 2,)
        Model scores of the blurred image, each threshold image and the original.
    information : ndarray, shape (len(thresholds) + 2,)
        WebP sizes (bytes) of the same images.
    thresholds : tuple of float
        ``0``, the thresholds used, ``1``.
    images : tuple of ndarray
        The images scored (only if ``keep_images=True``).
    """

    curve_x: np.ndarray
    curve_y: np.ndarray
    auc: float
    predictions: np.ndarray
    information: np.ndarray
    thresholds: tuple[float, ...]
    images: tuple = field(default=(), repr=False)


@functools.lru_cache(maxsize=1)
def _blas_controller() -> ThreadpoolController:
    """The loaded BLAS libraries, found once (a fresh search reads /proc/self/maps: ~15 ms)."""
    return ThreadpoolController()


def webp_size(image: np.ndarray) -> int:
    """Information estimate: bytes of ``image`` (uint8, ``(H, W)`` or ``(H, W, C)``) as lossless WebP."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="webp", lossless=True, quality=100)
    return buffer.getbuffer().nbytes


def random_pixel_mask(height: int, width: int, fraction: float = 0.01, *, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Boolean mask ``(height, width)`` with ``int(height·width·fraction)`` random pixels set."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mask = np.zeros((height, width), dtype=bool)
    chosen = rng.choice(mask.size, size=int(mask.size * fraction), replace=False)
    mask.reshape(-1)[chosen] = True
    return mask


def interpolated_image(image: np.ndarray, pixel_mask: np.ndarray) -> np.ndarray:
    """Keep the pixels of ``pixel_mask`` (and the corners) and fill the rest by linear interpolation.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (H, W, C)
    pixel_mask : ndarray of bool, shape (H, W)

    Returns
    -------
    ndarray
        Same shape and dtype as ``image`` (rounded for integer dtypes). The
        image itself is returned when every pixel is kept.
    """
    dtype = image.dtype
    gray = image.ndim == 2
    full = image[:, :, None] if gray else image
    mask = np.array(pixel_mask, dtype=bool, copy=True)
    if mask.shape != full.shape[:2]:
        raise ValueError(f"pixel_mask has shape {mask.shape}, image has {full.shape[:2]}")
    height, width = mask.shape
    mask[[0, 0, height - 1, height - 1], [0, width - 1, 0, width - 1]] = True
    if mask.all():
        return image
    mean_colour = full.mean(axis=(0, 1))
    result = full * mask[:, :, None].astype(np.float32)
    known = np.argwhere(mask)
    unknown = np.argwhere(~mask)
    values = full[tuple(known.T)].astype(np.float64)  # (n_known, C)
    # Qhull's barycentric transforms call LAPACK once per tiny simplex; a
    # multi-threaded OpenBLAS makes that ~1000x slower on a busy machine.
    with _blas_controller().limit(limits=1, user_api="blas"):
        filled = LinearNDInterpolator(known, values, fill_value=np.nan)(unknown)
    outside = np.isnan(filled)
    if outside.any():
        filled = np.where(outside, mean_colour[None, :], filled)
    result[tuple(unknown.T)] = filled
    if gray:
        result = result[:, :, 0]
    if np.issubdtype(dtype, np.integer):
        result = np.round(result)
    return result.astype(dtype)


def pic_curve(
    image: np.ndarray,
    saliency: np.ndarray,
    random_mask: np.ndarray,
    predict: Predictor,
    thresholds: Sequence[float] = SIC_THRESHOLDS,
    *,
    min_pred_value: float = 0.8,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
    keep_images: bool = False,
) -> PicCurve:
    """The SIC (softmax ``predict``) or AIC (0/1 ``predict``) curve of one image.

    Parameters
    ----------
    image : ndarray of uint8, shape (H, W) or (H, W, C)
    saliency : ndarray, shape (H, W)
        Higher means more important; signs are used as given.
    random_mask : ndarray of bool, shape (H, W)
        Seed pixels of the fully blurred image (:func:`random_pixel_mask`); use
        the same mask for every method on an image.
    predict : callable
        Maps uint8 images ``(B, H, W[, C])`` to ``B`` scores (target softmax for
        SIC, 1.0/0.0 correctness for AIC).
    thresholds : sequence of float
        Ascending fractions of the most salient pixels to reveal.
    min_pred_value, keep_monotonous, num_data_points :
        As in PAIR's ``compute_pic_metric``.
    keep_images : bool
        Keep the scored images in the result (for plots).

    Raises
    ------
    PicSkipped
        The image is excluded by one of the skip rules.
    ValueError
        ``image`` not uint8 or shapes that disagree.
    """
    outcome = pic_curves(
        image, saliency, random_mask, {"curve": predict}, thresholds, min_pred_value=min_pred_value,
        keep_monotonous=keep_monotonous, num_data_points=num_data_points, keep_images=keep_images,
    )["curve"]
    if isinstance(outcome, PicSkipped):
        raise outcome
    return outcome


def pic_curves(
    image: np.ndarray,
    saliency: np.ndarray,
    random_mask: np.ndarray,
    predictors: dict[str, Predictor],
    thresholds: Sequence[float] = SIC_THRESHOLDS,
    *,
    min_pred_value: float = 0.8,
    keep_monotonous: bool = True,
    num_data_points: int = 1000,
    keep_images: bool = False,
) -> dict[str, PicCurve | PicSkipped]:
    """Several curves (e.g. ``{"sic": softmax, "aic": accuracy}``) from one set of revealed images.

    Same arguments as :func:`pic_curve`; each value of the returned dict is a
    :class:`PicCurve`, or the :class:`PicSkipped` error when that curve's skip
    rules exclude the image. The images are interpolated and compressed once.
    """
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    saliency = np.asarray(saliency)
    if saliency.shape != image.shape[:2] or random_mask.shape != image.shape[:2]:
        raise ValueError(
            f"saliency {saliency.shape} and random_mask {random_mask.shape} must have the image's (H, W) = {image.shape[:2]}"
        )
    info_original = webp_size(image)
    blurred = interpolated_image(image, random_mask)
    info_blurred = webp_size(blurred)
    ends = {name: [float(v) for v in predict(np.stack([image, blurred]))] for name, predict in predictors.items()}
    outcomes: dict[str, PicCurve | PicSkipped] = {}
    for name, (pred_original, pred_blurred) in ends.items():
        if pred_original < min_pred_value:
            outcomes[name] = PicSkipped(f"prediction on the original image {pred_original:.4g} < min_pred_value {min_pred_value}")
        elif info_blurred >= info_original:
            outcomes[name] = PicSkipped(f"blurred image information {info_blurred} >= original {info_original}")
        elif pred_blurred >= pred_original:
            outcomes[name] = PicSkipped(f"prediction on the blurred image {pred_blurred:.4g} >= original {pred_original:.4g}")
    if len(outcomes) == len(predictors):
        return outcomes

    images, information = [], []
    for threshold in thresholds:
        keep = saliency >= np.quantile(saliency, 1.0 - threshold)
        revealed = interpolated_image(image, np.logical_or(keep, random_mask))
        images.append(revealed)
        information.append(webp_size(revealed))
    stack = np.stack(images)
    x = np.clip((np.asarray(information) - info_blurred) / (info_original - info_blurred), 0.0, 1.0)
    curve_x = np.append(np.linspace(0.0, 1.0, num=num_data_points, endpoint=False), 1.0)
    for name, predict in predictors.items():
        if name in outcomes:
            continue
        pred_original, pred_blurred = ends[name]
        predictions = np.asarray([float(v) for v in predict(stack)])
        y = np.clip((predictions - pred_blurred) / (pred_original - pred_blurred), 0.0, 1.0)
        if keep_monotonous:
            y = np.maximum.accumulate(y)
        curve = interp1d(x=np.concatenate([x, [0.0, 1.0]]), y=np.concatenate([y, [0.0, 1.0]]))
        curve_y = np.append(np.asarray(curve(curve_x[:-1]), dtype=np.float64), 1.0)
        outcomes[name] = PicCurve(
            curve_x=curve_x,
            curve_y=curve_y,
            auc=float(np.trapezoid(curve_y, curve_x)),
            predictions=np.concatenate([[pred_blurred], predictions, [pred_original]]),
            information=np.asarray([info_blurred, *information, info_original]),
            thresholds=(0.0, *map(float, thresholds), 1.0),
            images=(blurred, *images, image) if keep_images else (),
        )
    return {name: outcomes[name] for name in predictors}


def aggregate_curves(curves: Sequence[PicCurve], method: str = "median") -> tuple[np.ndarray, np.ndarray, float]:
    """The aggregate curve over images (element-wise median or mean) and its AUC.

    Returns
    -------
    curve_x, curve_y : ndarray, shape (num_data_points + 1,)
    auc : float
    """
    if not curves:
        raise ValueError("aggregate_curves needs at least one curve")
    xs = np.asarray([c.curve_x for c in curves])
    if not np.all(xs == xs[0]):
        raise ValueError("the curves have different x-axis points")
    ys = np.asarray([c.curve_y for c in curves])
    if method == "median":
        y = np.median(ys, axis=0)
    elif method == "mean":
        y = np.mean(ys, axis=0)
    else:
        raise ValueError(f"method must be 'median' or 'mean', got {method!r}")
    return xs[0], y, float(np.trapezoid(y, xs[0]))


def softmax_predictor(model, target: int, to_input: Callable[[np.ndarray], "object"]) -> Predictor:
    """SIC scores: the target class softmax of ``model`` on uint8 images converted by ``to_input``."""
    import torch

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(model(to_input(images)), dim=1)[:, target].double().cpu().numpy()

    return predict


def accuracy_predictor(model, target: int, to_input: Callable[[np.ndarray], "object"]) -> Predictor:
    """AIC scores: 1.0 where ``model``'s arg-max class is ``target``, else 0.0."""
    import torch

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return (model(to_input(images)).argmax(dim=1) == target).double().cpu().numpy()

    return predict
