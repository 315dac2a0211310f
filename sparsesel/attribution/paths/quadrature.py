"""Quadrature rules for the path integral of integrated gradients.

Integrated gradients approximates ``∫_0^1 ∂f(b + α(x − b))/∂x dα`` by a weighted
sum ``Σ_i w_i ∂f(b + α_i(x − b))/∂x``. The first five rules carry Captum's names
and are Captum's rules exactly (nodes and weights of Captum 0.9's
``captum.attr._utils.approximation_methods``), so a user moving between the two
libraries gets the same attributions; ``trapezoid`` is the textbook trapezoid rule:

==================== ============================================== ===================================
method               nodes ``α_i`` (``i = 0..n−1``)                  weights ``w_i``
==================== ============================================== ===================================
riemann_left         ``i/n``                                        ``1/n``
riemann_right        ``(i+1)/n``                                    ``1/n``
riemann_middle       ``(i+½)/n``                                    ``1/n``
riemann_trapezoid    ``i/(n−1)``                                    ``1/n``, halved at both ends
gausslegendre        Gauss–Legendre nodes mapped to ``[0, 1]``      Gauss–Legendre weights / 2
trapezoid            ``i/(n−1)``                                    ``1/(n−1)``, halved at both ends
==================== ============================================== ===================================

``riemann_trapezoid`` is Captum's rule, not the trapezoid rule: its nodes are the
trapezoid nodes (spacing ``1/(n−1)``) but its weights use the step ``1/n``, so they
sum to ``(n−1)/n`` and its attributions are ``(n−1)/n`` times the trapezoid
rule's (a linear model's attributions come out ``(n−1)/n`` times the exact ones).
Every other rule's weights sum to 1, so a linear model's attributions are exact;
``riemann_middle``, ``trapezoid`` and ``gausslegendre`` are also exact for a
quadratic model (the gradient is linear along the path).

Captum computes its Riemann nodes in float32 (``torch.linspace``); ours are
float64, so the two differ by at most ~6e-8 relative in ``α``. Captum refuses
``n = 1`` for its Riemann rules; here ``riemann_left``, ``riemann_right`` and
``riemann_middle`` accept it (one node), and the two trapezoid rules need ``n >= 2``.
"""

from __future__ import annotations

import functools

import numpy as np

from sparsesel.validation import check_choice, check_int

#: Captum's names (``captum.attr.IntegratedGradients(method=...)``), equal to Captum's rules.
CAPTUM_METHODS: tuple[str, ...] = (
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
    "gausslegendre",
)

#: Every rule: Captum's five and the exact trapezoid rule.
METHODS: tuple[str, ...] = (*CAPTUM_METHODS, "trapezoid")

_TWO_OR_MORE = ("riemann_trapezoid", "trapezoid")


def quadrature(method: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a quadrature rule on ``[0, 1]``.

    Parameters
    ----------
    method : str
        One of :data:`METHODS` (Captum's names, or ``"trapezoid"``).
    steps : int
        Number of nodes ``n`` (gradient evaluations); ``n >= 1``, and ``n >= 2``
        for ``riemann_trapezoid`` and ``trapezoid``.

    Returns
    -------
    alphas : ndarray, shape (steps,)
        Path positions in ``[0, 1]``, ascending.
    weights : ndarray, shape (steps,)
        Quadrature weights; they sum to 1, except ``riemann_trapezoid``'s, which
        sum to ``(n−1)/n`` as in Captum.
    """
    method = check_choice(method, "method", METHODS)
    n = check_int(steps, "steps", low=2 if method in _TWO_OR_MORE else 1)
    alphas, weights = _rule(method, n)
    return alphas.copy(), weights.copy()


@functools.lru_cache(maxsize=64)
def _rule(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cached nodes and weights (``leggauss`` costs milliseconds); callers get copies."""
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1.0), 0.5 * weights
    if method in _TWO_OR_MORE:
        alphas = np.linspace(0.0, 1.0, n)
        step = 1.0 / n if method == "riemann_trapezoid" else 1.0 / (n - 1)
        weights = np.full(n, step)
        weights[[0, -1]] /= 2.0
        return alphas, weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[method]
    return (np.arange(n) + offset) / n, np.full(n, 1.0 / n)
