"""Label-differentially-private release of aggregate responses.

The mechanism of Javanmard et al. (ICLR 2024), as described by its reviewers:
clip (truncate) every individual response to ``[lo, hi]``, aggregate it over its
bag, and add noise calibrated to the bag's sensitivity. A model trained on the
released aggregates is private by post-processing.

Privacy model (label DP): features and the bag assignment are public; two
datasets are neighbours when one row's response is replaced by any value. One
response enters exactly one bag, so each bag's release is calibrated alone and
the whole vector is (ε, δ)-label-DP (parallel composition).

Sensitivities (replace-one, after clipping; the derivation is ours):

* bag mean of bag ``a`` of size ``k_a``: ``Δ_a = (hi - lo) / k_a`` (L1 = L2, one coordinate);
* bag sum: ``Δ_a = hi - lo``;
* class counts of a bag: one label moves one count down and one up, L1 ``2``,
  L2 ``√2`` (proportions: divide by ``k_a``); a binary positive-class count: ``1``.

Noise: ``"laplace"`` with scale ``Δ_1/ε`` gives (ε, 0)-DP; ``"gaussian"`` with
standard deviation ``Δ_2·√(2 ln(1.25/δ))/ε`` gives (ε, δ)-DP for ``0 < ε < 1``
(Dwork & Roth 2014, Thm 3.22).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesel.aggregate.bags import AGGREGATES, as_bags
from sparsesel.validation import as_finite_array, as_generator, check_choice

MECHANISMS = ("laplace", "gaussian")


@dataclass(frozen=True, eq=False)
class PrivateRelease:
    """Privately released aggregates and their privacy accounting.

    Attributes
    ----------
    values : ndarray, shape (n_bags,) or (n_bags, n_classes)
        The noisy aggregates, ordered by bag id.
    epsilon, delta : float
        The release is (epsilon, delta)-label-DP.
    mechanism : str
        ``"laplace"`` or ``"gaussian"``.
    sensitivity : ndarray, shape (n_bags,)
        Per-bag sensitivity of the clipped aggregate (L1 for Laplace, L2 for Gaussian).
    noise_scale : ndarray, shape (n_bags,)
        Laplace scale ``b`` or Gaussian standard deviation per bag.
    clip : tuple of float
        The clipping interval ``(lo, hi)`` of individual responses.
    how : str
        ``"mean"``, ``"sum"``, ``"proportions"`` or ``"counts"``.
    """

    values: np.ndarray
    epsilon: float
    delta: float
    mechanism: str
    sensitivity: np.ndarray
    noise_scale: np.ndarray
    clip: tuple[float, float]
    how: str

    @property
    def noise_variance(self) -> np.ndarray:
        """Variance of the added noise per bag (per coordinate), shape (n_bags,)."""
        if self.mechanism == "laplace":
            return 2.0 * self.noise_scale**2
        return self.noise_scale**2

    def guarantee(self) -> str:
        """A one-line statement of the guarantee."""
        return f"({self.epsilon:g}, {self.delta:g})-label-DP, {self.mechanism} noise, responses clipped to [{self.clip[0]:g}, {self.clip[1]:g}]"


def check_privacy(epsilon: Any, delta: Any, mechanism: str) -> tuple[float, float, str]:
    """Validate (ε, δ) for ``mechanism``; return them as floats."""
    mechanism = check_choice(mechanism, "mechanism", MECHANISMS)
    try:
        epsilon = float(epsilon)
        delta = float(delta)
    except (TypeError, ValueError):
        raise TypeError(f"epsilon and delta must be numbers, got {epsilon!r}, {delta!r}") from None
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if not math.isfinite(delta) or not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta!r}")
    if mechanism == "laplace" and delta != 0:
        raise ValueError(f"the laplace mechanism is (epsilon, 0)-DP; got delta={delta!r} (use mechanism='gaussian')")
    if mechanism == "gaussian":
        if delta == 0:
            raise ValueError("the gaussian mechanism needs delta > 0")
        if epsilon >= 1:
            raise ValueError(f"the gaussian mechanism's calibration holds for epsilon < 1, got epsilon={epsilon!r}")
    return epsilon, delta, mechanism


def check_clip(clip: Any) -> tuple[float, float]:
    """``C`` -> ``(-C, C)``; ``(lo, hi)`` checked finite with ``lo < hi``."""
    if clip is None:
        raise ValueError("clip is required: the sensitivity of an aggregate is only bounded for clipped responses")
    values = np.atleast_1d(np.asarray(clip, dtype=np.float64))
    if values.shape == (1,):
        if not values[0] > 0:
            raise ValueError(f"clip must be > 0 (responses are clipped to [-clip, clip]), got {clip!r}")
        values = np.array([-values[0], values[0]])
    if values.shape != (2,) or not np.all(np.isfinite(values)) or not values[0] < values[1]:
        raise ValueError(f"clip must be C > 0 or (lo, hi) with finite lo < hi, got {clip!r}")
    return float(values[0]), float(values[1])


def noise_scale(sensitivity: np.ndarray, epsilon: float, delta: float, mechanism: str) -> np.ndarray:
    """Laplace scale ``Δ/ε`` or Gaussian standard deviation ``Δ·√(2 ln(1.25/δ))/ε``."""
    if mechanism == "laplace":
        return sensitivity / epsilon
    return sensitivity * math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


def aggregate_sensitivity(clip: Any, bag_sizes: Any, how: str = "mean") -> np.ndarray:
    """Replace-one sensitivity of each bag's clipped aggregate, shape (n_bags,)."""
    lo, hi = check_clip(clip)
    check_choice(how, "how", AGGREGATES)
    sizes = np.asarray(bag_sizes, dtype=np.float64)
    width = hi - lo
    return width / sizes if how == "mean" else np.full(sizes.shape, width)


def private_aggregates(
    y: Any,
    bags: Any,
    *,
    epsilon: float,
    clip: Any,
    delta: float = 0.0,
    how: str = "mean",
    mechanism: str = "laplace",
    seed: int | np.random.Generator = 0,
) -> PrivateRelease:
    """Release the bag means (or sums) of clipped responses with calibrated noise.

    Parameters
    ----------
    y : array_like, shape (n,)
        Individual responses (never released).
    bags : bag assignment, see :func:`sparsesel.aggregate.bags.as_bags`
    epsilon : float
        Privacy budget, > 0.
    clip : float or (lo, hi)
        Responses are clipped to ``[lo, hi]`` (``C`` means ``[-C, C]``).
    delta : float
        0 for Laplace; in (0, 1) for Gaussian.
    how : {"mean", "sum"}
    mechanism : {"laplace", "gaussian"}
    seed : int or numpy.random.Generator

    Returns
    -------
    PrivateRelease
    """
    epsilon, delta, mechanism = check_privacy(epsilon, delta, mechanism)
    lo, hi = check_clip(clip)
    check_choice(how, "how", AGGREGATES)
    y = as_finite_array(y, "y", ndim=1)
    b = as_bags(bags, y.shape[0])
    clipped = np.clip(y, lo, hi)
    exact = b.mean(clipped) if how == "mean" else b.sum(clipped)
    sens = aggregate_sensitivity((lo, hi), b.sizes, how)
    scale = noise_scale(sens, epsilon, delta, mechanism)
    rng = as_generator(seed)
    noise = rng.laplace(0.0, scale) if mechanism == "laplace" else rng.normal(0.0, scale)
    return PrivateRelease(exact + noise, epsilon, delta, mechanism, sens, scale, (lo, hi), how)


def private_label_proportions(
    y: Any,
    bags: Any,
    *,
    epsilon: float,
    classes: Any = None,
    delta: float = 0.0,
    mechanism: str = "laplace",
    seed: int | np.random.Generator = 0,
) -> PrivateRelease:
    """Release per-bag class proportions with noise on the class counts.

    The noisy counts are post-processed (clipped at 0 and renormalised to
    proportions, uniform where all counts vanish), which keeps the guarantee.

    Returns
    -------
    PrivateRelease
        ``values`` has shape ``(n_bags, n_classes)``; ``sensitivity`` is that of a
        bag's count vector (L1 ``2`` for Laplace, L2 ``√2`` for Gaussian).
    """
    from sparsesel.aggregate.bags import label_proportions

    epsilon, delta, mechanism = check_privacy(epsilon, delta, mechanism)
    y = np.asarray(y)
    counts = label_proportions(y, bags, classes, counts=True)
    b = as_bags(bags, y.shape[0])
    per_bag = 2.0 if mechanism == "laplace" else math.sqrt(2.0)
    sens = np.full(b.n_bags, per_bag)
    scale = noise_scale(sens, epsilon, delta, mechanism)
    rng = as_generator(seed)
    size = counts.shape
    noise = rng.laplace(0.0, scale[:, None], size) if mechanism == "laplace" else rng.normal(0.0, scale[:, None], size)
    noisy = np.clip(counts + noise, 0.0, None)
    totals = noisy.sum(axis=1, keepdims=True)
    props = np.where(totals > 0, noisy / np.where(totals > 0, totals, 1.0), 1.0 / counts.shape[1])
    return PrivateRelease(props, epsilon, delta, mechanism, sens, scale, (0.0, 1.0), "proportions")
