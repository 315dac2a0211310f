"""Synthetic degradations of clean images, for training and testing restoration networks.

Every function takes clean RGB images ``(H, W, 3)`` with floats in ``[0, 1]`` and returns new
arrays (float32, never a view of the input). Randomness comes only from the
:class:`numpy.random.Generator` passed in, so a seed fixes the result.

* :func:`low_light` — exposure scaling, gamma and Poisson–Gaussian sensor noise.
* :func:`haze` — the atmospheric scattering model ``I = J t + A (1 − t)``, ``t = exp(−β d)``,
  with a smooth depth proxy from :func:`depth_proxy`.
* :func:`motion_blur` with random camera-shake kernels from :func:`motion_kernel`.
* :func:`specular_sample` — Phong-like highlights on a shaded albedo, giving TSHRNet's
  seven-tuple (I, A, S, R, D, D_tc, mask).
* :func:`harmonization_sample` — a foreground relit under another illumination pasted on a
  background, with the harmonized target and its cast shadow.

The ``random_*`` functions draw the parameters from documented ranges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from sparsesel.data.tone_correction import tone_corrected_target

__all__ = [
    "HarmonizationSample",
    "SpecularSample",
    "depth_proxy",
    "harmonization_sample",
    "haze",
    "low_light",
    "motion_blur",
    "motion_kernel",
    "object_mask",
    "random_blur",
    "random_haze",
    "random_low_light",
    "specular_sample",
]


def _clean(image: Any, name: str = "image") -> np.ndarray:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3), got {array.shape}")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(f"{name} is too small: {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if array.min() < 0.0 or array.max() > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1], got [{array.min():.3g}, {array.max():.3g}]")
    return array


def _generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value}")
    return value


def _non_negative(value: float, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative number, got {value}")
    return value


# --------------------------------------------------------------------------- low light
def low_light(
    clean: Any,
    *,
    exposure: float,
    gamma: float = 1.0,
    shot_noise: float = 0.0,
    read_noise: float = 0.0,
    rng: Any = None,
) -> np.ndarray:
    """Under-exposed version of ``clean``.

    ``dark = exposure · clean^gamma``; then Poisson–Gaussian noise of variance
    ``shot_noise · dark + read_noise²`` (approximated as Gaussian) and a clip to ``[0, 1]``.
    Without noise and with ``gamma = 1`` the mean brightness is exactly ``exposure`` times
    the clean one.

    Parameters
    ----------
    clean : array_like, shape (H, W, 3)
        Floats in ``[0, 1]``.
    exposure : float
        Exposure factor in ``(0, 1]``.
    gamma : float
        Exponent (> 0) applied before the exposure scaling; > 1 darkens mid-tones.
    shot_noise : float
        Signal-dependent noise variance per unit of signal.
    read_noise : float
        Standard deviation of the signal-independent noise.
    rng : numpy.random.Generator or int, optional
        Source of the noise.

    Returns
    -------
    numpy.ndarray, shape (H, W, 3), float32
    """
    image = _clean(clean, "clean")
    exposure = _positive(exposure, "exposure")
    if exposure > 1:
        raise ValueError(f"exposure must be in (0, 1], got {exposure}")
    gamma = _positive(gamma, "gamma")
    shot_noise = _non_negative(shot_noise, "shot_noise")
    read_noise = _non_negative(read_noise, "read_noise")
    dark = exposure * image**gamma
    if shot_noise > 0 or read_noise > 0:
        sigma = np.sqrt(shot_noise * dark + read_noise**2)
        dark = dark + sigma * _generator(rng).standard_normal(dark.shape)
    return np.clip(dark, 0.0, 1.0).astype(np.float32)


def random_low_light(clean: Any, rng: Any) -> np.ndarray:
    """:func:`low_light` with exposure ~ U(0.08, 0.3), gamma ~ U(1.0, 1.5),
    shot_noise ~ U(0, 2e-3), read_noise ~ U(0.002, 0.012)."""
    rng = _generator(rng)
    return low_light(
        clean,
        exposure=rng.uniform(0.08, 0.3),
        gamma=rng.uniform(1.0, 1.5),
        shot_noise=rng.uniform(0.0, 2e-3),
        read_noise=rng.uniform(0.002, 0.012),
        rng=rng,
    )


# --------------------------------------------------------------------------- haze
def depth_proxy(shape: tuple[int, int], rng: Any, *, smoothness: float = 0.2, ramp_weight: float = 0.6) -> np.ndarray:
    """A smooth scene-depth proxy in ``[0, 1]`` (0 near, 1 far).

    A vertical ramp (the top of a photo tends to be farther away), mixed with a random
    field low-pass filtered at ``smoothness · min(H, W)`` pixels.

    Returns
    -------
    numpy.ndarray, shape (H, W), float64
    """
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    smoothness = _positive(smoothness, "smoothness")
    if not 0.0 <= ramp_weight <= 1.0:
        raise ValueError(f"ramp_weight must be in [0, 1], got {ramp_weight}")
    rng = _generator(rng)
    ramp = np.linspace(1.0, 0.0, height)[:, None] * np.ones((1, width))
    field = ndimage.gaussian_filter(rng.standard_normal((height, width)), smoothness * min(height, width), mode="reflect")
    span = np.ptp(field)
    field = (field - field.min()) / span if span > 0 else np.zeros_like(field)
    depth = ramp_weight * ramp + (1.0 - ramp_weight) * field
    return np.clip(depth, 0.0, 1.0)


def haze(clean: Any, depth: Any, *, beta: float, airlight: Any = 1.0) -> np.ndarray:
    """Atmospheric scattering: ``I = J · t + A · (1 − t)`` with ``t = exp(−beta · depth)``.

    Parameters
    ----------
    clean : array_like, shape (H, W, 3)
        Haze-free radiance J in ``[0, 1]``.
    depth : array_like, shape (H, W) or scalar
        Scene depth (units chosen so that ``beta · depth`` is the optical thickness).
    beta : float
        Scattering coefficient (≥ 0).
    airlight : float or array_like of shape (3,)
        Atmospheric light A in ``[0, 1]``.

    Returns
    -------
    numpy.ndarray, shape (H, W, 3), float32
    """
    image = _clean(clean, "clean")
    beta = _non_negative(beta, "beta")
    depth = np.broadcast_to(np.asarray(depth, dtype=np.float64), image.shape[:2]) if np.ndim(depth) == 0 else np.asarray(depth, dtype=np.float64)
    if depth.shape != image.shape[:2]:
        raise ValueError(f"depth must have shape {image.shape[:2]} (H, W), got {depth.shape}")
    if not np.all(np.isfinite(depth)) or depth.min() < 0:
        raise ValueError("depth must be finite and non-negative")
    airlight = np.broadcast_to(np.asarray(airlight, dtype=np.float64), (3,))
    if airlight.min() < 0 or airlight.max() > 1:
        raise ValueError(f"airlight must lie in [0, 1], got {airlight}")
    transmission = np.exp(-beta * depth)[..., None]
    return (image * transmission + airlight * (1.0 - transmission)).astype(np.float32)


def random_haze(clean: Any, rng: Any) -> np.ndarray:
    """:func:`haze` on a :func:`depth_proxy`, beta ~ U(0.6, 2.0), grey airlight ~ U(0.75, 1.0)
    with a per-channel tint of ±0.03."""
    rng = _generator(rng)
    image = _clean(clean, "clean")
    depth = depth_proxy(image.shape[:2], rng)
    level = rng.uniform(0.75, 1.0)
    airlight = np.clip(level + rng.uniform(-0.03, 0.03, size=3), 0.0, 1.0)
    return haze(image, depth, beta=rng.uniform(0.6, 2.0), airlight=airlight)


# --------------------------------------------------------------------------- blur
def motion_kernel(size: int, rng: Any, *, length: float | None = None, points: int = 64) -> np.ndarray:
    """A random camera-shake blur kernel.

    A 2-D random walk with momentum (its direction drifts by small Gaussian turns) is scaled
    to ``length`` pixels, centred on its centre of mass and splatted bilinearly on a
    ``size × size`` grid.

    Parameters
    ----------
    size : int
        Odd kernel side (≥ 3).
    rng : numpy.random.Generator or int
    length : float, optional
        Trajectory extent in pixels (default uniform in ``[size/3, size − 2]``).
    points : int
        Samples along the trajectory.

    Returns
    -------
    numpy.ndarray, shape (size, size), float64
        Non-negative, sums to 1.
    """
    if isinstance(size, bool) or int(size) != size or size < 3 or size % 2 == 0:
        raise ValueError(f"size must be an odd integer >= 3, got {size!r}")
    size = int(size)
    rng = _generator(rng)
    if length is None:
        length = rng.uniform(size / 3.0, size - 2.0)
    length = _positive(length, "length")
    if length > size - 2:
        raise ValueError(f"length must be at most size - 2 = {size - 2}, got {length}")
    angle = rng.uniform(0, 2 * np.pi)
    turns = np.cumsum(rng.normal(0.0, 0.25, size=points))
    steps = np.stack([np.cos(angle + turns), np.sin(angle + turns)], axis=1)
    path = np.cumsum(steps, axis=0)
    path -= path.mean(axis=0)
    extent = np.max(np.linalg.norm(path, axis=1))
    if extent > 0:
        path *= (length / 2.0) / extent
    path += (size - 1) / 2.0
    kernel = np.zeros((size, size))
    for y, x in path[:, ::-1]:
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - y0, x - x0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= y0 + dy < size and 0 <= x0 + dx < size:
                    kernel[y0 + dy, x0 + dx] += wy * wx
    return kernel / kernel.sum()


def motion_blur(clean: Any, kernel: Any, *, noise: float = 0.0, rng: Any = None) -> np.ndarray:
    """Convolve every channel with ``kernel`` (reflecting borders), add Gaussian noise, clip.

    Parameters
    ----------
    clean : array_like, shape (H, W, 3)
    kernel : array_like, shape (k, k)
        Non-negative, summing to 1.
    noise : float
        Standard deviation of the added Gaussian noise.

    Returns
    -------
    numpy.ndarray, shape (H, W, 3), float32
    """
    image = _clean(clean, "clean")
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"kernel must be a 2-D array with odd sides, got shape {kernel.shape}")
    if kernel.min() < 0 or not np.isclose(kernel.sum(), 1.0):
        raise ValueError("kernel must be non-negative and sum to 1")
    noise = _non_negative(noise, "noise")
    out = np.stack([ndimage.convolve(image[..., c], kernel, mode="reflect") for c in range(3)], axis=2)
    if noise > 0:
        out = out + noise * _generator(rng).standard_normal(out.shape)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_blur(clean: Any, rng: Any, *, size: int = 15) -> np.ndarray:
    """:func:`motion_blur` with a :func:`motion_kernel` of side ``size`` and noise ~ U(0, 0.01)."""
    rng = _generator(rng)
    kernel = motion_kernel(size, rng)
    return motion_blur(clean, kernel, noise=rng.uniform(0.0, 0.01), rng=rng)


# --------------------------------------------------------------------------- masks
def object_mask(shape: tuple[int, int], rng: Any, *, radius: tuple[float, float] = (0.25, 0.4), wobble: float = 0.15) -> np.ndarray:
    """A random star-shaped blob: ``r < r0 (1 + Σ_k a_k cos(kθ + φ_k))`` around a random centre.

    ``radius`` is the range of ``r0`` as a fraction of ``min(H, W)``; ``wobble`` bounds
    ``Σ |a_k|``. Returns a float32 ``(H, W)`` mask with values in {0, 1}.
    """
    height, width = (int(s) for s in shape)
    rng = _generator(rng)
    side = min(height, width)
    r0 = rng.uniform(*radius) * side
    cy = rng.uniform(0.35, 0.65) * height
    cx = rng.uniform(0.35, 0.65) * width
    amplitudes = rng.dirichlet(np.ones(4)) * rng.uniform(0.0, wobble)
    phases = rng.uniform(0, 2 * np.pi, size=4)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    theta = np.arctan2(yy - cy, xx - cx)
    boundary = r0 * (1.0 + sum(a * np.cos((k + 2) * theta + p) for k, (a, p) in enumerate(zip(amplitudes, phases))))
    return (np.hypot(yy - cy, xx - cx) < boundary).astype(np.float32)


# --------------------------------------------------------------------------- specular
@dataclass(frozen=True)
class SpecularSample:
    """TSHRNet's seven-tuple (all float32; images ``(H, W, 3)`` in ``[0, 1]``, mask ``(H, W)``).

    ``image = clip(tone(albedo · shading) + residue)`` where ``tone`` is a per-channel affine
    map (the photo's tone differs from the physically shaded diffuse image, as in rendered
    data), so ``image ≠ albedo · shading + residue`` in general — the same caveat as the
    official training code's. ``diffuse = albedo · shading``; ``diffuse_tc`` is the
    tone-corrected diffuse target (:func:`sparsesel.data.tone_correction.tone_corrected_target`).
    """

    image: np.ndarray
    albedo: np.ndarray
    shading: np.ndarray
    residue: np.ndarray
    diffuse: np.ndarray
    diffuse_tc: np.ndarray
    mask: np.ndarray


def specular_sample(
    albedo: Any,
    rng: Any,
    *,
    shininess: float | None = None,
    strength: float | None = None,
    ambient: float | None = None,
) -> SpecularSample:
    """Render Phong-like highlights on a shaded object whose albedo is ``albedo``.

    The object is a random blob (:func:`object_mask`) whose height field is a dome plus
    smooth bumps; outside it lies a flat, matte floor. One distant light of a slightly
    tinted colour ``c`` from a random upper-hemisphere direction ``l``; the viewer looks
    down the z axis (``v = (0, 0, 1)``).

    * shading ``S = c · (ambient + (1 − ambient) · max(n·l, 0))``
    * residue ``R = strength · c · max(r·v, 0)^shininess`` on the object, ``r = 2 (n·l) n − l``
    * diffuse ``D = A · S``; image ``I = clip(g ⊙ D + o + R)`` with a random tone gain ``g``
      (±8 %) and offset ``o`` (0–0.04).

    Parameters
    ----------
    albedo : array_like, shape (H, W, 3)
        Reflectance in ``[0, 1]`` (e.g. a crop of a bundled photo).
    rng : numpy.random.Generator or int
    shininess, strength, ambient : float, optional
        Phong exponent (default U(8, 40)), highlight strength (default U(0.5, 1.0)) and
        ambient shading fraction (default U(0.2, 0.4)).
    """
    albedo = _clean(albedo, "albedo")
    rng = _generator(rng)
    height, width = albedo.shape[:2]
    shininess = _positive(rng.uniform(8.0, 40.0) if shininess is None else shininess, "shininess")
    strength = _non_negative(rng.uniform(0.5, 1.0) if strength is None else strength, "strength")
    ambient = float(rng.uniform(0.2, 0.4) if ambient is None else ambient)
    if not 0.0 <= ambient <= 1.0:
        raise ValueError(f"ambient must be in [0, 1], got {ambient}")

    mask = object_mask((height, width), rng)
    side = min(height, width)
    inside = ndimage.distance_transform_edt(mask)
    scale = max(inside.max(), 1.0)
    dome = np.sqrt(np.clip(1.0 - (1.0 - inside / scale) ** 2, 0.0, 1.0)) * scale
    bumps = ndimage.gaussian_filter(rng.standard_normal((height, width)), 0.06 * side, mode="reflect")
    bumps *= 0.08 * side / max(np.abs(bumps).max(), 1e-12)
    # smoothing removes the creases of the distance-transform dome along the blob's medial axis
    surface = ndimage.gaussian_filter(dome + bumps * mask, 0.04 * side) * mask
    gy, gx = np.gradient(surface)
    normal = np.stack([-gx, -gy, np.ones_like(surface)], axis=2)
    normal /= np.linalg.norm(normal, axis=2, keepdims=True)
    normal[mask < 0.5] = (0.0, 0.0, 1.0)

    elevation = rng.uniform(np.deg2rad(35), np.deg2rad(80))
    azimuth = rng.uniform(0, 2 * np.pi)
    light = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    colour = np.clip(1.0 + rng.uniform(-0.08, 0.08, size=3), 0.0, 1.0)
    n_dot_l = np.clip(normal @ light, 0.0, None)
    shading = colour * (ambient + (1.0 - ambient) * n_dot_l)[..., None]
    reflected = 2.0 * (normal @ light)[..., None] * normal - light
    lobe = np.clip(reflected[..., 2], 0.0, None) ** shininess * mask
    residue = np.clip(strength * lobe[..., None] * colour, 0.0, 1.0)
    diffuse = albedo * shading
    gain = 1.0 + rng.uniform(-0.08, 0.08, size=3)
    offset = rng.uniform(0.0, 0.04, size=3)
    image = np.clip(diffuse * gain + offset + residue, 0.0, 1.0)
    diffuse_tc, _ = tone_corrected_target(image, diffuse, residue, object_mask=mask)
    as32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return SpecularSample(
        image=as32(image),
        albedo=as32(albedo),
        shading=as32(shading),
        residue=as32(residue),
        diffuse=as32(diffuse),
        diffuse_tc=as32(diffuse_tc),
        mask=as32(mask),
    )


# --------------------------------------------------------------------------- harmonization
@dataclass(frozen=True)
class HarmonizationSample:
    """A harmonization training pair (float32).

    ``composite`` (H, W, 3): the foreground under its own illumination pasted on the
    background, without shadow — the network input. ``target`` (H, W, 3): the foreground
    relit by the background's illumination, with its cast shadow. ``mask`` (H, W): the
    foreground (1). ``shadow`` (H, W): the shadow's darkening fraction in ``[0, 1)`` (0
    inside the foreground), so that ``target = background · (1 − shadow)`` off the foreground.
    """

    composite: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    shadow: np.ndarray


def _illumination(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A random global illumination: per-channel gains (colour and intensity) and a gamma."""
    gains = np.exp(rng.normal(0.0, 0.12, size=3)) * rng.uniform(0.6, 1.25)
    return gains, float(rng.uniform(0.8, 1.25))


def _relight(image: np.ndarray, illumination: tuple[np.ndarray, float]) -> np.ndarray:
    gains, gamma = illumination
    return np.clip(gains * image**gamma, 0.0, 1.0)


def harmonization_sample(background: Any, foreground: Any, rng: Any) -> HarmonizationSample:
    """Build a composite/target pair for illumination harmonization.

    The background is lit by a random illumination ``L_b`` (per-channel gains ~ exp(N(0, 0.12))
    times an intensity U(0.6, 1.25), gamma U(0.8, 1.25)); the foreground (a random blob of
    ``foreground``) is shown under an independent illumination ``L_f`` in the composite and
    under ``L_b`` in the target. The cast shadow is the foreground mask shifted away from a
    random light direction by 12–30 % of the image side, blurred (σ = 1.5 % of the side) and
    scaled by an opacity U(0.3, 0.6).

    Parameters
    ----------
    background, foreground : array_like, shape (H, W, 3)
        Clean images in ``[0, 1]`` with the same shape.
    rng : numpy.random.Generator or int
    """
    background = _clean(background, "background")
    foreground = _clean(foreground, "foreground")
    if background.shape != foreground.shape:
        raise ValueError(f"background and foreground must have the same shape, got {background.shape} and {foreground.shape}")
    rng = _generator(rng)
    height, width = background.shape[:2]
    side = min(height, width)
    mask = object_mask((height, width), rng, radius=(0.18, 0.3)).astype(np.float64)
    light_b = _illumination(rng)
    light_f = _illumination(rng)
    lit_background = _relight(background, light_b)
    angle = rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(0.12, 0.3) * side
    moved = ndimage.shift(mask, (distance * np.sin(angle), distance * np.cos(angle)), order=1, mode="constant")
    soft = ndimage.gaussian_filter(moved, 0.015 * side)
    shadow = np.clip(rng.uniform(0.3, 0.6) * soft * (1.0 - mask), 0.0, 0.95)
    m = mask[..., None]
    target = (1.0 - m) * lit_background * (1.0 - shadow[..., None]) + m * _relight(foreground, light_b)
    composite = (1.0 - m) * lit_background + m * _relight(foreground, light_f)
    as32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return HarmonizationSample(composite=as32(composite), target=as32(target), mask=as32(mask), shadow=as32(shadow))
