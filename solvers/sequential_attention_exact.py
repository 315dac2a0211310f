"""Sequential Attention for linear regression with its inner problem solved exactly.

The paper's linear adaptation (Yasuda et al., ICLR 2023, §3; Yasuda's thesis,
Ch. 16) is made exact here. With ``S`` the selected features, ``S̄`` the ``m``
unselected ones, attention ``a = softmax(w)`` over ``S̄`` and design ``X̃`` (the
columns centred when there is an intercept, and scaled when ``standardize``),
the model is ``X̃_S β_S + X̃_S̄ (a ⊙ β_S̄)`` and its loss

    f(w) = min_β  (1/2n)·‖y − X̃_S β_S − X̃_S̄ (a ⊙ β_S̄)‖² + (ridge/2)·‖β_S̄‖²

(selected coefficients unpenalised; the *inner problem* is the minimisation
over ``β``, a ridge regression solved in closed form). At the re-initialised
logits ``w = 0`` (uniform attention ``a_i = 1/m``) the envelope theorem gives
the logit gradient exactly:

    ∂f/∂w_j = −(c_j² − mean_{i∈S̄} c_i²) / (n²·ridge·m²),   c = X̃_S̄ᵀ r_ridge,

where ``r_ridge`` is the residual at the inner optimum: the least-squares fit on
``X̃_S`` plus a ridge fit of strength ``n·ridge·m²`` on the projected unselected
columns ``A = (I − P_S) X̃_S̄``, i.e. ``r_ridge = λ'(AAᵀ + λ'I)⁻¹ r_S`` with
``λ' = n·ridge·m²`` and ``r_S`` the least-squares residual on ``S``. So the
feature whose attention a gradient step raises most is ``argmax_j |c_j|``.
Equivalently ``c = λ'(AᵀA + λ'I)⁻¹ Aᵀ r_S``.

* **ridge → ∞** (``ridge=None``, the default): ``c → X̃_S̄ᵀ r_S``, the
  correlations of the unselected columns with the least-squares residual, and
  the pick is exactly OMP's (``argmax_j |x̃_jᵀ r_S|``, same order).
* **finite ridge**: the pick is OMP's whenever
  ``gap > 2·σ²/(σ² + λ')·‖Aᵀr_S‖₂`` with ``σ = ‖A‖₂`` and ``gap`` the distance
  between the largest and second-largest ``|x̃_jᵀ r_S|`` (because
  ``‖c − Aᵀr_S‖₂ ≤ σ²/(σ² + λ')·‖Aᵀr_S‖₂``); on correlated designs it can differ.
* **ridge → 0**: ``c/λ' → (AᵀA)⁺Aᵀ r_S``, the minimum-norm least-squares
  coefficients of the unselected columns: the pick ranks by coefficient size,
  not OMP's correlation.
* **ridge = 0** exactly: ``β`` absorbs the attention, ``f`` does not depend on
  ``w`` and its gradient is 0 — no information; refused.

Column scales: everything is computed on the columns and the response divided
by powers of two near their magnitudes (``problem.scaling``), and the
correlations are mapped back exactly. On ordinary data this rounds exactly as
the unscaled computation; columns of magnitude ``1e±200`` (all of them, or
mixed with ordinary ones) neither overflow nor underflow. Raw columns
(``standardize=False``) with a finite ridge: where ``n·ridge·m²`` exceeds the
squared column scale beyond float64's range the ridge is the limit ``ridge →
∞`` (OMP's pick), as it rounds in float64; column scales more than ~1e144
apart, or a ridge negligible next to the squared columns (below float64's
normal range: the limit ``ridge → 0``), are refused with a ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsesel.problems.column_scaling import power_of_two_scale, strongest_scaled
from sparsesel.problems.feature_selection import FeatureSelection

#: Correlations below this fraction of the largest initial one count as zero: the
#: residual is orthogonal to every remaining column (as in ``solvers/omp.py``).
CORRELATION_TOL = 1e-12

#: A column whose part orthogonal to the selected ones has squared norm below
#: this fraction of its own is linearly dependent on them (it can never be picked).
DEPENDENCE_TOL = 1e-10


@dataclass(frozen=True)
class WorkingDesign:
    """The design ``X̃`` and response the exact linear model sees, divided by powers of two.

    The model's design is ``X̃ = X·diag(column_unit)`` and its response ``ỹ = y·y_unit``
    (both factors exact powers of two).

    Attributes
    ----------
    X : ndarray, shape (n, d)
        Scaled columns: standardised (``column_unit = 1``), or the centred columns divided by
        ``problem.scaling.x_scale`` (entries in ``(-1, 1)``).
    y : ndarray, shape (n,)
        ``(y − ȳ)/y_scale`` (``ȳ = 0`` without an intercept).
    column_unit : ndarray, shape (d,)
    y_unit : float
    """

    X: np.ndarray
    y: np.ndarray
    column_unit: np.ndarray
    y_unit: float


def working_design(problem: FeatureSelection, standardize: bool) -> WorkingDesign:
    """The design ``X̃`` and response the exact linear model sees (scaled, see :class:`WorkingDesign`).

    With an intercept, ``X`` and ``y`` are centred (the unpenalised intercept,
    profiled out). With ``standardize`` the columns are then divided by their
    standard deviation (with an intercept) or root mean square (without), so
    every non-constant column has ``‖x̃_j‖² = n``; all-zero columns are left at 0.
    The centred columns are divided by powers of two first (exact), so the
    standard deviations neither overflow nor underflow at any column scale.
    """
    scaling = problem.scaling
    X = scaling.scaled_columns(problem.X, np.arange(problem.n_features))
    y = scaling.scaled_response(np.asarray(problem.y, dtype=np.float64))
    if not standardize:
        return WorkingDesign(X, y, scaling.x_scale, scaling.y_scale)
    scale = np.sqrt(np.mean(X * X, axis=0))
    scale[scale == 0] = 1.0
    X /= scale
    return WorkingDesign(X, y, np.ones(problem.n_features), scaling.y_scale)


def ridge_residual(residual: np.ndarray, projected: np.ndarray, strength: float) -> np.ndarray:
    """``λ'(AAᵀ + λ'I)⁻¹ r``: the residual of the ridge fit of ``r`` on ``A`` (strength ``λ'``).

    Parameters
    ----------
    residual : ndarray, shape (n,)
        ``r_S``, already orthogonal to the selected columns.
    projected : ndarray, shape (n, m)
        ``A``, the unselected columns projected off the selected ones.
    strength : float
        ``λ' > 0``; ``inf`` returns ``r`` unchanged.
    """
    if math.isinf(strength):
        return residual.copy()
    n, m = projected.shape
    if n <= m:
        system = projected @ projected.T
        system[np.diag_indices(n)] += strength
        return strength * np.linalg.solve(system, residual)
    system = projected.T @ projected
    system[np.diag_indices(m)] += strength
    return residual - projected @ np.linalg.solve(system, projected.T @ residual)


#: Finite ridge on raw columns: column scales further apart than ``2**MAX_RIDGE_SCALE_EXPONENT``
#: (~1e144) are refused (their squares, relative to the largest, would underflow in the ridge system).
MAX_RIDGE_SCALE_EXPONENT = 480


def _relative_strength(ridge: float, n: int, m: int, sigma: float) -> float:
    """``λ'/σ² = n·ridge·m²/σ²``: ``inf`` for ``ridge = inf`` and where it overflows.

    An overflow is the limit ``ridge → ∞`` in float64 terms: ``(I + AAᵀ/λ')⁻¹ r`` rounds to ``r``.
    """
    if math.isinf(ridge):
        return math.inf
    with np.errstate(over="ignore"):
        return float(np.float64(n * ridge * m * m) / sigma / sigma)


def _ridge_units(design: WorkingDesign, norms0: np.ndarray, ridge: float, n: int) -> tuple[float, np.ndarray]:
    """``(σ, column_unit/σ)``: the common power of two ``σ = max column_unit`` and the relative units.

    The ridge problem of the model's columns ``Â·column_unit`` is that of ``Â·(column_unit/σ)``
    with strength ``λ'/σ²`` (an exact rescaling). Refuses, for a finite ridge, relative units
    whose squares underflow, and a strength below float64's normal range (the limit
    ``ridge → 0``, which ranks by least-squares coefficients, cannot be computed from it).
    """
    unit = design.column_unit
    sigma = float(np.max(unit))
    relative = unit / sigma  # powers of two <= 1: exact
    if math.isinf(ridge) or sigma == 1.0:
        return sigma, relative
    used = norms0 > 0
    smallest = float(np.min(unit[used])) if np.any(used) else sigma
    exponent_gap = math.frexp(sigma)[1] - math.frexp(smallest)[1]  # log2(σ / smallest unit), exactly
    if exponent_gap > MAX_RIDGE_SCALE_EXPONENT or _relative_strength(ridge, n, 1, sigma) < 1e-290:
        raise ValueError(
            f"sequential_attention (inner='exact', standardize=False, ridge={ridge:g}): the columns of X spread "
            f"over scales {smallest:.1e} to {sigma:.1e}; the ridge problem in X's raw units leaves float64 "
            "(scales more than 1e144 apart, or a ridge negligible next to the squared columns): use "
            "standardize=True, ridge=None (OMP's picks, any scale), or rescale X"
        )
    return sigma, relative


def _strongest(magnitude: np.ndarray, relative: np.ndarray, floor: float) -> int:
    """Position of the largest ``|c| ∝ magnitude·relative`` among magnitudes above ``floor``; -1 if none.

    ``magnitude`` holds ``|c|`` in each column's own scaled units (``floor`` is in those units, as
    in ``solvers/omp.py``); exact ties go to the first position. Where every product underflows
    (column scales over 300 orders of magnitude apart), logarithms decide.
    """
    eligible = (magnitude > floor) & (magnitude > 0.0)
    return strongest_scaled(magnitude, eligible, relative, relative)


def _ridge_residual_scaled(
    residual: np.ndarray, projected: np.ndarray, free: np.ndarray, relative: np.ndarray, strength: float
) -> np.ndarray:
    """:func:`ridge_residual` of the free columns in the model's units divided by ``σ`` (strength ``λ'/σ²``)."""
    if math.isinf(strength):
        return residual.copy()
    return ridge_residual(residual, projected[:, free] * relative[free], strength)


def exact_linear_selection(problem: FeatureSelection, ridge: float, standardize: bool) -> dict[str, Any]:
    """Run ``problem.k`` steps of exact linear Sequential Attention (see the module docstring).

    Parameters
    ----------
    problem : FeatureSelection
        Squared loss.
    ridge : float
        ``ridge > 0``, or ``math.inf`` for the limit (OMP's picks).
    standardize : bool
        Work on standardised columns (:func:`working_design`).

    Returns
    -------
    dict
        ``selected`` (list of k ints, pick order), ``trace`` (one dict per step:
        ``step``, ``feature``, ``attention`` = ``c_pick²/Σ c²``, ``correlation`` =
        ``c_pick``, and ``padded`` when no remaining column correlates with the
        residual), ``correlations`` (ndarray ``(k, d)``: ``c`` at each step, 0 on
        selected and dependent columns; in the units of ``X̃`` and ``y``) and
        ``attention`` (ndarray ``(k, d)``: the rows ``c²/Σ c²``; the negative logit
        gradient is an affine function of this row, so its argmax is the pick).

    Raises
    ------
    ValueError
        ``standardize=False`` with a finite ridge on columns whose scales cannot share
        one float64 ridge system (see :data:`MAX_RIDGE_SCALE_EXPONENT`).
    """
    design = working_design(problem, standardize)
    X, y = design.X, design.y
    n, d = X.shape
    k = problem.k
    norms0 = np.einsum("ij,ij->j", X, X)
    sigma, relative = _ridge_units(design, norms0, ridge, n)
    basis = np.empty((n, 0))
    projected = X.copy()  # A: the columns projected off the selected ones (updated by one rank-one step per pick)
    residual = y.copy()  # r_S: least-squares residual on the selected columns
    selected: list[int] = []
    trace: list[dict[str, Any]] = []
    rows_c = np.zeros((k, d))
    rows_a = np.zeros((k, d))
    floor = None
    for step in range(k):
        free, unselected = _candidates(projected, norms0, selected)
        m = len(unselected)  # the softmax runs over every unselected feature
        if free.size:
            strength = _relative_strength(ridge, n, m, sigma)
            r_ridge = _ridge_residual_scaled(residual, projected, free, relative, strength)
            scaled = X[:, free].T @ r_ridge  # c = scaled·column_unit·y_unit
        else:
            scaled = np.zeros(0)
        magnitude = np.abs(scaled)
        if floor is None:
            floor = CORRELATION_TOL * float(np.max(magnitude, initial=0.0))
        position = _strongest(magnitude, relative[free], floor)
        if position >= 0:
            pick = int(free[position])  # exact ties: the lowest index, as in scikit-learn
            padded = False
        else:  # the residual is orthogonal to every remaining column: no pick lowers the loss
            pick = unselected[0]
            padded = True
        with np.errstate(over="ignore"):
            rows_c[step, free] = scaled * design.column_unit[free] * design.y_unit
        _fill_attention_row(rows_a[step], magnitude * relative[free], free, unselected)  # |c| / (σ·y_unit): exact
        entry: dict[str, Any] = {
            "step": step,
            "feature": pick,
            "attention": float(rows_a[step, pick]),
            "correlation": float(rows_c[step, pick]),
        }
        if padded:
            entry["padded"] = True
        trace.append(entry)
        selected.append(pick)
        if not padded:
            basis = _project_off(basis, residual, projected, pick)
    return {"selected": selected, "trace": trace, "correlations": rows_c, "attention": rows_a}


def _candidates(projected: np.ndarray, norms0: np.ndarray, selected: list[int]) -> tuple[np.ndarray, list[int]]:
    """The columns a step may pick (not selected, not dependent on the selected, not zero), and the unselected."""
    d = projected.shape[1]
    blocked = np.zeros(d, dtype=bool)
    blocked[selected] = True
    orth_norms = np.einsum("ij,ij->j", projected, projected)
    blocked |= orth_norms <= DEPENDENCE_TOL * norms0  # dependent on the selected columns (or all zero)
    return np.flatnonzero(~blocked), [j for j in range(d) if j not in selected]


def _fill_attention_row(row: np.ndarray, score: np.ndarray, free: np.ndarray, unselected: list[int]) -> None:
    """Write ``c²/Σc²`` over the ``free`` columns into ``row`` (``score = |c|`` up to one factor); uniform over
    the unselected features when every ``c`` is 0."""
    top = float(power_of_two_scale(np.array([np.max(score, initial=0.0)]))[0])
    normalised = score / top  # exact: c²/Σc² is unchanged
    energy = float(normalised @ normalised)
    if energy > 0:
        row[free] = normalised**2 / energy
    else:
        row[unselected] = 1.0 / len(unselected)


def _project_off(basis: np.ndarray, residual: np.ndarray, projected: np.ndarray, pick: int) -> np.ndarray:
    """Add column ``pick`` to the orthonormal ``basis`` (returned) and project it off ``residual`` and
    ``projected`` in place (one rank-one step)."""
    u = projected[:, pick].copy()
    for _ in range(2):  # re-orthogonalise against the basis ("twice is enough")
        u -= basis @ (basis.T @ u)
    u /= np.linalg.norm(u)
    residual -= u * float(u @ residual)
    projected -= np.outer(u, u @ projected)
    return np.column_stack([basis, u])
