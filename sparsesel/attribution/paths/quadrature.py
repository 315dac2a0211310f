"""Quadrature rules for the path integral of integrated gradients.

Integrated gradients approximates ``∫_0^1 ∂f(b + α(x − b))/∂x dα`` by a weighted
sum ``Σ_i w_i ∂f(b + α_i(x − b))/∂x``. The rules carry Captum's names so that a
user can move between the two libraries:

==================== ============================================== ==========================
method               nodes ``α_i`` (``i = 0..n−1``)                  weights ``w_i``
==================== ============================================== ==========================
riemann_left         ``i/n``                                        ``1/n``
riemann_right        ``(i+1)/n``                                    ``1/n``
riemann_middle       ``(i+½)/n``                                    ``1/n``
riemann_trapezoid    ``i/(n−1)``                                    ``1/(n−1)``, halved at ends
gausslegendre        Gauss–Legendre nodes mapped to ``[0, 1]``      Gauss–Legendre weights / 2
==================== ============================================== ==========================

Every rule's weights sum to 1, so a linear model's attributions are exact.

.. note::
   Captum 0.7–0.9 uses the step ``1/n`` (not ``1/(n−1)``) in ``riemann_trapezoid``,
   so its weights sum to ``(n−1)/n``; its trapezoid attributions are ours times
   ``(n−1)/n``. The other four rules agree with Captum's.
"""

from __future__ import annotations

import functools

import numpy as np

from sparsesel.validation import check_choice, check_int

METHODS: tuple[str, ...] = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a quadrature rule on ``[0, 1]``.

    Parameters
    ----------
    method : str
        One of :data:`METHODS` (Captum's names).
    steps : int
        Number of nodes ``n`` (gradient evaluations); ``n >= 1``, and ``n >= 2``
        for ``riemann_trapezoid``.

    Returns
    -------
    alphas : ndarray, shape (steps,)
        Path positions in ``[0, 1]``, ascending.
    weights : ndarray, shape (steps,)
        Quadrature weights; they sum to 1.
    """
    method = check_choice(method, "method", METHODS)
    n = check_int(steps, "steps", low=2 if method == "riemann_trapezoid" else 1)
    alphas, weights = _rule(method, n)
    return alphas.copy(), weights.copy()


@functools.lru_cache(maxsize=64)
def _rule(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached nodes and weights (``leggauss`` costs milliseconds); callers get copies."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method == "riemann_trapezoid":
        alphas = np.linspace(0.0, 1.0, n)
        weights = np.full(n, 1.0 / (n - 1))
        weights[[0, -1]] /= 2.0
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (np.arange(n) + offset) / n, np.full(n, 1.0 / n)
