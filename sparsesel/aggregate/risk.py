"""Risk of learning from aggregate responses in the proportional regime.

Model (Javanmard et al., ICLR 2024, Sec. 2 as summarised by its reviewers):
``y_i = x_iᵀθ₀ + ε_i`` with ``x_i ~ N(0, I_d)``, ``ε_i ~ N(0, σ²)``, ``‖θ₀‖² = r²``
(the *signal*), rows split uniformly at random into ``m = n/k`` bags of size
``k``; only bag means ``ȳ_a`` are observed. The interpolating estimator minimises

    L_int(θ) + λ‖θ‖² = (1-ρ)·L_bag(θ) + ρ·L_ins(θ) + λ‖θ‖²
                      = L_bag(θ) + ρ·(1/n)Σ_a Σ_{i∈a} (x_iᵀθ - x̄_aᵀθ)² + λ‖θ‖²

(ρ = 0: bag-level, ρ = 1: instance-level). Its excess risk on a fresh point is
``E(xᵀθ̂ - xᵀθ₀)² = ‖θ̂ - θ₀‖²``.

The paper's Theorem 2.5 characterises this risk by fixed-point equations which
we could not read (full text unreachable). The equations below are **our own
derivation** (Gaussian min-max theorem; see below) and are checked against Monte
Carlo in ``tests/aggregate/test_aggregate_risk.py`` and ``benchmarks/aggregate.py``.

Derivation sketch. Rotating the rows by an orthonormal basis of the bag-mean
space (``P = block averaging``, rank ``m``) and its complement turns the problem
into ``θ̂ = (ZᵀZ + ρWᵀW + nλI)⁻¹ Zᵀ(Zθ₀ + ξ)`` with independent Gaussian
``Z`` (m×d), ``W`` ((n-m)×d) and ``ξ ~ N(0, σ²I_m)``. Applying Gordon's comparison
to both blocks and scalarising gives, with ``π = 1/k``, ``ν = 1 - π``,
``γ = d/n``, unknowns ``b, v, R, T > 0`` and

    c₁ = b√π / √(σ² + R),   c₂ = √(ρν)·v/√T + λ,   c = c₁ + c₂,

the equations

    b = √π·√(σ² + R) - bγ/c,        v = √(ρν)·√T - ρvγ/c,
    R = ((b² + ρv²)γ + c₂²r²)/c²,   T = (c₁²r² + (b² + ρv²)γ)/c²,

where ``R`` is the limiting excess risk ``‖θ̂-θ₀‖²`` and ``T = ‖θ̂‖²``. At ``ρ = λ = 0``
they reduce to ``R = σ²γk/(1 - γk)``, the OLS risk with ``m`` samples.

Private aggregates (our derivation): Laplace noise of variance ``v`` on each bag
mean enters the rotated model as extra response noise of variance ``k·v``; with
clipping to an interval of width ``w`` (clipping bias neglected) ``k·v = 2w²/(kε²)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import fsolve, minimize_scalar

from sparsesel.aggregate.privacy import check_clip, check_privacy, noise_scale

ESTIMATORS = ("bag", "instance", "interpolating")


@dataclass(frozen=True)
class RiskPrediction:
    """Limiting risk of the interpolating estimator.

    Attributes
    ----------
    excess_risk : float
        ``lim ‖θ̂ - θ₀‖²`` (``inf`` where the estimator is not unique: ridgeless with
        fewer equations than unknowns).
    bias2, variance : float
        The noise-free part and the rest: ``excess_risk = bias2 + variance``.
    prediction_error : float
        ``excess_risk + noise`` (expected squared error on a fresh response).
    rho, bag_size, gamma, signal, noise, ridge : float
        The inputs (``noise`` here is the model noise σ², without privacy noise).
    privacy_noise : float
        The extra response-noise variance caused by the DP mechanism (0 without).
    """

    excess_risk: float
    bias2: float
    variance: float
    prediction_error: float
    rho: float
    bag_size: float
    gamma: float
    signal: float
    noise: float
    ridge: float = 0.0
    privacy_noise: float = 0.0


def _check_nonneg(value: Any, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return value


def _check_inputs(gamma: Any, bag_size: Any, rho: Any, signal: Any, noise: Any, ridge: Any) -> tuple[float, ...]:
    gamma = _check_nonneg(gamma, "gamma")
    if gamma == 0:
        raise ValueError("gamma = d/n must be > 0")
    bag_size = _check_nonneg(bag_size, "bag_size")
    if bag_size < 1:
        raise ValueError(f"bag_size must be >= 1, got {bag_size!r}")
    rho = _check_nonneg(rho, "rho")
    if rho > 1:
        raise ValueError(f"rho must be in [0, 1], got {rho!r}")
    return gamma, bag_size, rho, _check_nonneg(signal, "signal"), _check_nonneg(noise, "noise"), _check_nonneg(ridge, "ridge")


def _solve_excess(gamma: float, k: float, rho: float, r2: float, s2: float, lam: float) -> float:
    """``lim ‖θ̂ - θ₀‖²`` from the fixed-point equations (module docstring)."""
    pi = 1.0 / k
    nu = 1.0 - pi
    if nu == 0.0:
        rho = 0.0
    if r2 == 0.0 and s2 == 0.0:
        return 0.0
    if lam == 0.0:
        if rho == 0.0:
            if gamma * k >= 1.0:
                return math.inf
            return s2 * gamma * k / (1.0 - gamma * k)
        if gamma >= 1.0:
            return math.inf
    srn = math.sqrt(rho * nu)

    def equations(u: np.ndarray) -> np.ndarray:
        b, v, R, T = np.exp(np.clip(u, -300.0, 300.0))
        tau1 = math.sqrt(s2 + R)
        c1 = b * math.sqrt(pi) / tau1
        c2 = srn * v / math.sqrt(T) + lam
        c = c1 + c2
        q = (b * b + rho * v * v) * gamma
        return np.array(
            [
                b - (math.sqrt(pi) * tau1 - b * gamma / c),
                v - (srn * math.sqrt(T) - rho * v * gamma / c) if srn > 0 else v - 1.0,
                R - (q + c2 * c2 * r2) / c**2,
                T - (c1 * c1 * r2 + q) / c**2,
            ]
        )

    scale = max(r2, s2, 1e-300)
    starts = []
    for shrink in (1.0, 0.5, 2.0, 0.1):
        c1, c2 = pi, rho * nu + lam
        R0 = max((c2 * c2 * r2 + gamma * (s2 + r2)) / (c1 + c2) ** 2 * shrink, 1e-6 * scale)
        T0 = max((c1 * c1 * r2 + gamma * (s2 + r2)) / (c1 + c2) ** 2, 1e-6 * scale)
        b0 = max(math.sqrt(pi * (s2 + R0)), 1e-8)
        v0 = max(srn * math.sqrt(T0), 1e-8) if srn > 0 else 1.0
        starts.append(np.log([b0, v0, R0, T0]))
    best = None
    for start in starts:
        with np.errstate(all="ignore"):
            solution, _info, _ier, _msg = fsolve(equations, start, full_output=True, xtol=1e-13, maxfev=4000)
            values = np.exp(np.clip(solution, -300.0, 300.0))
            residual = float(np.max(np.abs(equations(solution)) / np.maximum(1.0, np.abs(values))))
        if not math.isfinite(residual):
            continue
        if best is None or residual < best[0]:
            best = (residual, values[2])
        if residual < 1e-10:
            return float(values[2])
    if best is not None and best[0] < 1e-6:
        return float(best[1])
    raise RuntimeError(
        f"the risk equations did not converge (gamma={gamma}, bag_size={k}, rho={rho}, signal={r2}, "
        f"noise={s2}, ridge={lam}); residual {best[0] if best else 'n/a'}"
    )


def asymptotic_risk(
    gamma: float,
    bag_size: float,
    rho: float,
    signal: float,
    noise: float,
    ridge: float = 0.0,
    privacy_noise: float = 0.0,
) -> RiskPrediction:
    """Limiting excess risk of the interpolating estimator (proportional regime).

    Parameters
    ----------
    gamma : float
        ``d / n`` (features per individual row), > 0.
    bag_size : float
        ``k >= 1`` (rows per bag; ``m = n/k`` bags).
    rho : float
        Mixing weight in ``[0, 1]`` (0 bag-level, 1 instance-level).
    signal : float
        ``‖θ₀‖²`` (with isotropic features, the variance of ``xᵀθ₀``).
    noise : float
        ``σ²``, the variance of the individual response noise.
    ridge : float
        ``λ`` of the penalty ``λ‖θ‖²`` added to ``L_int`` (losses averaged over ``n`` rows).
    privacy_noise : float
        Extra response-noise variance from a DP mechanism (see :func:`privacy_noise_variance`).

    Returns
    -------
    RiskPrediction
    """
    gamma, k, rho, r2, s2, lam = _check_inputs(gamma, bag_size, rho, signal, noise, ridge)
    extra = _check_nonneg(privacy_noise, "privacy_noise")
    total_noise = s2 + extra
    risk = _solve_excess(gamma, k, rho, r2, total_noise, lam)
    bias2 = _solve_excess(gamma, k, rho, r2, 0.0, lam) if math.isfinite(risk) else math.inf
    variance = risk - bias2 if math.isfinite(risk) else math.inf
    return RiskPrediction(
        excess_risk=risk,
        bias2=bias2,
        variance=max(variance, 0.0) if math.isfinite(variance) else variance,
        prediction_error=risk + s2,
        rho=rho,
        bag_size=k,
        gamma=gamma,
        signal=r2,
        noise=s2,
        ridge=lam,
        privacy_noise=extra,
    )


def bag_level_risk_finite_sample(n_bags: int, n_features: int, noise: float) -> float:
    """Exact ``E‖θ̂_bag - θ₀‖²`` of bag-level least squares with Gaussian features.

    The rotated bag-level problem is OLS with ``m`` standard Gaussian rows and noise
    σ², so ``E‖θ̂ - θ₀‖² = σ²·d/(m - d - 1)`` for ``m > d + 1`` (inverse-Wishart mean).
    """
    if n_bags <= n_features + 1:
        return math.inf
    return noise * n_features / (n_bags - n_features - 1)


def optimal_rho(
    gamma: float,
    bag_size: float,
    signal: float,
    noise: float,
    ridge: float = 0.0,
    privacy_noise: float = 0.0,
    grid_size: int = 21,
) -> RiskPrediction:
    """The mixing weight ``ρ ∈ [0, 1]`` that minimises :func:`asymptotic_risk`.

    A grid of ``grid_size`` values is refined by a bounded scalar search around the
    best grid point. Returns the :class:`RiskPrediction` at the optimum (its ``rho``).
    """

    def risk(rho: float) -> float:
        return asymptotic_risk(gamma, bag_size, rho, signal, noise, ridge, privacy_noise).excess_risk

    grid = np.linspace(0.0, 1.0, max(int(grid_size), 3))
    values = np.array([risk(r) for r in grid])
    i = int(np.argmin(values))
    best_rho, best = float(grid[i]), float(values[i])
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    if math.isfinite(best) and hi > lo:
        found = minimize_scalar(risk, bounds=(lo, hi), method="bounded", options={"xatol": 1e-6})
        if found.success and found.fun < best:
            best_rho = float(found.x)
    return asymptotic_risk(gamma, bag_size, best_rho, signal, noise, ridge, privacy_noise)


def privacy_noise_variance(
    bag_size: float, epsilon: float, clip: Any, delta: float = 0.0, mechanism: str = "laplace"
) -> float:
    """Extra response-noise variance caused by privatising bag means.

    The bag mean of size ``k`` gets noise of variance ``v`` (Laplace: ``2(w/(kε))²``,
    Gaussian: ``(w√(2 ln(1.25/δ))/(kε))²`` with ``w = hi - lo``); in the rotated
    model this is response noise of variance ``k·v``.
    """
    epsilon, delta, mechanism = check_privacy(epsilon, delta, mechanism)
    lo, hi = check_clip(clip)
    k = float(bag_size)
    scale = float(noise_scale(np.array([(hi - lo) / k]), epsilon, delta, mechanism)[0])
    variance = 2.0 * scale**2 if mechanism == "laplace" else scale**2
    return k * variance


def predicted_risk(
    estimator: str,
    gamma: float,
    bag_size: float,
    signal: float,
    noise: float,
    *,
    ridge: float = 0.0,
    epsilon: float | None = None,
    clip: Any = None,
    delta: float = 0.0,
    mechanism: str = "laplace",
    rho: float | None = None,
) -> RiskPrediction:
    """Limiting risk of ``estimator`` ("bag", "instance" or "interpolating") with optional DP.

    For "interpolating", ``rho=None`` uses :func:`optimal_rho`.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    extra = 0.0 if epsilon is None else privacy_noise_variance(bag_size, epsilon, clip, delta, mechanism)
    if estimator == "bag":
        return asymptotic_risk(gamma, bag_size, 0.0, signal, noise, ridge, extra)
    if estimator == "instance":
        return asymptotic_risk(gamma, bag_size, 1.0, signal, noise, ridge, extra)
    if rho is not None:
        return asymptotic_risk(gamma, bag_size, rho, signal, noise, ridge, extra)
    return optimal_rho(gamma, bag_size, signal, noise, ridge, extra)


@dataclass(frozen=True)
class BagSizeChoice:
    """The predicted best bag size and the curve it was chosen from."""

    bag_size: int
    prediction: RiskPrediction
    bag_sizes: tuple[int, ...]
    risks: tuple[float, ...]
    rhos: tuple[float, ...]


def optimal_bag_size(
    n_samples: int,
    n_features: int,
    signal: float,
    noise: float,
    *,
    epsilon: float | None = None,
    clip: Any = None,
    delta: float = 0.0,
    mechanism: str = "laplace",
    estimator: str = "interpolating",
    ridge: float = 0.0,
    bag_sizes: Sequence[int] | None = None,
) -> BagSizeChoice:
    """The bag size minimising the predicted excess risk (privacy–utility trade-off).

    Larger bags shrink the privacy noise on each mean (sensitivity ``w/k``) but
    lose information by aggregation. Each candidate ``k`` is scored by
    :func:`predicted_risk` with ``γ = d/n``; ties go to the larger bag.

    Parameters
    ----------
    n_samples, n_features : int
    signal, noise : float
        ``‖θ₀‖²`` and σ².
    epsilon, clip, delta, mechanism
        The DP mechanism (``epsilon=None``: no privacy noise).
    estimator : {"bag", "instance", "interpolating"}
    ridge : float
    bag_sizes : sequence of int, optional
        Candidates (default ``1 .. min(n_samples // 2, 200)``).
    """
    if bag_sizes is None:
        bag_sizes = range(1, max(2, min(n_samples // 2, 200)) + 1)
    sizes = tuple(int(k) for k in bag_sizes)
    if not sizes:
        raise ValueError("bag_sizes is empty")
    gamma = n_features / n_samples
    risks, rhos, preds = [], [], []
    for k in sizes:
        p = predicted_risk(estimator, gamma, k, signal, noise, ridge=ridge, epsilon=epsilon, clip=clip, delta=delta, mechanism=mechanism)
        preds.append(p)
        risks.append(p.excess_risk)
        rhos.append(p.rho)
    values = np.array(risks)
    best = max((i for i in range(len(sizes)) if values[i] <= values.min() * (1 + 1e-12)), key=lambda i: sizes[i])
    return BagSizeChoice(sizes[best], preds[best], sizes, tuple(risks), tuple(rhos))


def simulate_risk(
    n_samples: int,
    n_features: int,
    bag_size: int,
    signal: float,
    noise: float,
    *,
    rho: float = 0.0,
    ridge: float = 0.0,
    epsilon: float | None = None,
    clip: Any = None,
    delta: float = 0.0,
    mechanism: str = "laplace",
    n_reps: int = 20,
    seed: int = 0,
) -> tuple[float, float, np.ndarray]:
    """Monte Carlo excess risk ``‖θ̂ - θ₀‖²`` on synthetic Gaussian designs.

    Each repetition draws ``X ~ N(0, I)``, ``θ₀`` uniform on the sphere of radius
    ``√signal``, ``y = Xθ₀ + N(0, noise)``, random bags of ``bag_size``, (optionally
    privatised) bag means, and fits :class:`~sparsesel.aggregate.InterpolatingRegressor`
    without intercept.

    Returns
    -------
    mean, standard_error : float
    values : ndarray, shape (n_reps,)
    """
    from sparsesel.aggregate.bags import aggregate_responses, random_bags
    from sparsesel.aggregate.estimators import InterpolatingRegressor
    from sparsesel.aggregate.privacy import private_aggregates

    from sparsesel.validation import as_generator, check_int

    n_samples = check_int(n_samples, "n_samples", low=2)
    n_features = check_int(n_features, "n_features", low=1)
    bag_size = check_int(bag_size, "bag_size", low=1, high=n_samples)
    signal, noise = _check_nonneg(signal, "signal"), _check_nonneg(noise, "noise")
    n_reps = check_int(n_reps, "n_reps", low=1)
    rng = as_generator(seed)
    values = np.empty(n_reps)
    for rep in range(n_reps):
        X = rng.standard_normal((n_samples, n_features))
        theta = rng.standard_normal(n_features)
        theta *= math.sqrt(signal) / max(np.linalg.norm(theta), 1e-300)
        y = X @ theta + math.sqrt(noise) * rng.standard_normal(n_samples)
        bags = random_bags(n_samples, bag_size, rng)
        if epsilon is None:
            y_agg = aggregate_responses(y, bags)
        else:
            y_agg = private_aggregates(y, bags, epsilon=epsilon, clip=clip, delta=delta, mechanism=mechanism, seed=rng).values
        model = InterpolatingRegressor(rho=rho, alpha=ridge, fit_intercept=False).fit(X, y_agg, bags)
        values[rep] = float(np.sum((model.coef_ - theta) ** 2))
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n_reps)) if n_reps > 1 else math.nan, values
