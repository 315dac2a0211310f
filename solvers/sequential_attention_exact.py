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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sparsesel.problems.feature_selection import FeatureSelection

#: Correlations below this fraction of the largest initial one count as zero: the
#: residual is orthogonal to every remaining column (as in ``solvers/omp.py``).
CORRELATION_TOL = 1e-12

#: A column whose part orthogonal to the selected ones has squared norm below
#: this fraction of its own is linearly dependent on them (it can never be picked).
DEPENDENCE_TOL = 1e-10


def working_design(problem: FeatureSelection, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """The design ``X̃`` and response the exact linear model sees.

    With an intercept, ``X`` and ``y`` are centred (the unpenalised intercept,
    profiled out). With ``standardize`` the columns are then divided by their
    standard deviation (with an intercept) or root mean square (without), so
    every non-constant column has ``‖x̃_j‖² = n``; all-zero columns are left at 0.

    Returns
    -------
    X : ndarray, shape (n, d)
    y : ndarray, shape (n,)
    """
    X = np.array(problem.X, dtype=np.float64)
    y = np.array(problem.y, dtype=np.float64)
    if problem.fit_intercept:
        X -= X.mean(axis=0)
        y -= y.mean()
    if standardize:
        scale = np.sqrt(np.mean(X * X, axis=0))
        scale[scale == 0] = 1.0
        X /= scale
    return X, y


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
        selected and dependent columns) and ``attention`` (ndarray ``(k, d)``:
        the rows ``c²/Σ c²``; the negative logit gradient is an affine function
        of this row, so its argmax is the pick).
    """
    X, y = working_design(problem, standardize)
    n, d = X.shape
    k = problem.k
    norms0 = np.einsum("ij,ij->j", X, X)
    basis = np.empty((n, 0))
    projected = X.copy()  # A: the columns projected off the selected ones (updated by one rank-one step per pick)
    residual = y.copy()  # r_S: least-squares residual on the selected columns
    selected: list[int] = []
    trace: list[dict[str, Any]] = []
    rows_c = np.zeros((k, d))
    rows_a = np.zeros((k, d))
    floor = None
    for step in range(k):
        blocked = np.zeros(d, dtype=bool)
        blocked[selected] = True
        orth_norms = np.einsum("ij,ij->j", projected, projected)
        blocked |= orth_norms <= DEPENDENCE_TOL * norms0  # dependent on the selected columns (or all zero)
        free = np.flatnonzero(~blocked)
        unselected = [j for j in range(d) if j not in selected]
        m = len(unselected)  # the softmax runs over every unselected feature
        if free.size:
            r_ridge = ridge_residual(residual, projected[:, free], n * ridge * m * m)
            correlations = X[:, free].T @ r_ridge
        else:
            correlations = np.zeros(0)
        if floor is None:
            floor = CORRELATION_TOL * float(np.max(np.abs(correlations), initial=0.0))
        score = np.abs(correlations)
        if score.size and float(score.max()) > floor and float(score.max()) > 0.0:
            pick = int(free[int(np.argmax(score))])  # exact ties: the lowest index, as in scikit-learn
            padded = False
        else:  # the residual is orthogonal to every remaining column: no pick lowers the loss
            pick = unselected[0]
            padded = True
        rows_c[step, free] = correlations
        energy = float(correlations @ correlations)
        if energy > 0:
            rows_a[step, free] = correlations**2 / energy
        else:
            rows_a[step, unselected] = 1.0 / m
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
            u = projected[:, pick].copy()
            for _ in range(2):  # re-orthogonalise against the basis ("twice is enough")
                u -= basis @ (basis.T @ u)
            u /= np.linalg.norm(u)
            basis = np.column_stack([basis, u])
            residual -= u * float(u @ residual)
            projected -= np.outer(u, u @ projected)
    return {"selected": selected, "trace": trace, "correlations": rows_c, "attention": rows_a}
