"""Group penalties: values against their formulas, proximal operators against scipy minimisation."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize, minimize_scalar

from sparsesel.penalties import GroupLasso, GroupLog, GroupLq, GroupMCP, GroupSCAD, make_penalty

PENALTIES = [
    GroupLasso(lam=0.7),
    GroupLog(lam=0.8, tau=0.3),
    GroupLog(lam=0.2, tau=2.0),
    GroupMCP(lam=0.6, gamma=3.0),
    GroupSCAD(lam=0.5, a=3.7),
    GroupLq(lam=0.5, q=0.5),
    GroupLq(lam=0.3, q=0.25),
]


def reference_scalar(pen, r):
    """The textbook formula of each penalty, written independently of the classes."""
    if isinstance(pen, GroupLasso):
        return pen.lam * r
    if isinstance(pen, GroupLog):
        return pen.lam * math.log(1 + r / pen.tau)
    if isinstance(pen, GroupMCP):
        return pen.lam * r - r * r / (2 * pen.gamma) if r <= pen.gamma * pen.lam else pen.gamma * pen.lam**2 / 2
    if isinstance(pen, GroupSCAD):
        lam, a = pen.lam, pen.a
        if r <= lam:
            return lam * r
        if r <= a * lam:
            return (2 * a * lam * r - r * r - lam * lam) / (2 * (a - 1))
        return lam * lam * (a + 1) / 2
    return pen.lam * r**pen.q


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_value_matches_formula_numpy_and_torch(pen):
    norms = np.array([0.0, 0.05, 0.4, 1.3, 2.5, 7.0])
    expected = sum(reference_scalar(pen, r) for r in norms)
    assert pen.value(norms) == pytest.approx(expected, rel=1e-12)
    assert float(pen.value(torch.tensor(norms))) == pytest.approx(expected, rel=1e-12)


def numerical_prox(pen, x, step):
    """argmin_z ½‖z − x‖² + step·p(‖z‖) by scipy: 1-D search along x (the minimiser is a
    non-negative multiple of x) from a fine grid, polished with bounded Brent, checked with
    a full-dimensional Nelder–Mead from that point."""
    r = np.linalg.norm(x)
    u = x / r

    def along(t):
        return 0.5 * (t - r) ** 2 + step * reference_scalar(pen, t)

    grid = np.linspace(0, r, 4001)
    values = [along(t) for t in grid]
    t0 = grid[int(np.argmin(values))]
    lo, hi = max(0.0, t0 - r / 4000), min(r, t0 + r / 4000)
    best = minimize_scalar(along, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    t = best.x if best.fun <= along(t0) else t0
    if along(0.0) <= along(t):
        t = 0.0

    def full(z):
        return 0.5 * np.sum((z - x) ** 2) + step * reference_scalar(pen, np.linalg.norm(z))

    polished = minimize(full, t * u, method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000})
    z = polished.x if polished.fun < full(t * u) else t * u
    return z, full


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_prox_matches_scipy(pen):
    rng = np.random.default_rng(0)
    for trial in range(12):
        x = rng.normal(size=3) * rng.choice([0.2, 0.8, 2.0, 5.0])
        step = float(rng.choice([0.3, 0.8, 1.0]))
        z = pen.prox(x, step)
        z_ref, objective = numerical_prox(pen, x, step)
        # the closed form is at least as good as scipy's minimiser, and the same point
        assert objective(z) <= objective(z_ref) + 1e-9
        assert np.allclose(z, z_ref, atol=2e-4), (trial, x, step, z, z_ref)


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_subgradient_matches_finite_differences(pen):
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.normal(size=4)
        g = pen.subgradient(x)
        h = 1e-6
        numeric = np.array([
            (reference_scalar(pen, np.linalg.norm(x + h * e)) - reference_scalar(pen, np.linalg.norm(x - h * e))) / (2 * h)
            for e in np.eye(4)
        ])
        assert np.allclose(g, numeric, atol=1e-5)
    assert np.all(pen.subgradient(np.zeros(3)) == 0)


def test_prox_of_zero_and_thresholds():
    assert np.all(GroupLasso(1.0).prox(np.zeros(4)) == 0)
    # block soft thresholding, by hand: ‖(3, 4)‖ = 5 -> 5 − 2 = 3
    assert np.allclose(GroupLasso(2.0).prox(np.array([3.0, 4.0])), [1.8, 2.4])
    # MCP keeps large groups untouched (unbiased), SCAD too
    x = np.array([30.0, 40.0])
    assert np.allclose(GroupMCP(1.0, 3.0).prox(x), x)
    assert np.allclose(GroupSCAD(1.0, 3.7).prox(x), x)


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="lam must be finite and > 0"):
        GroupLasso(lam=0)
    with pytest.raises(ValueError, match="gamma must be finite and > 1"):
        GroupMCP(lam=1, gamma=1)
    with pytest.raises(ValueError, match="a must be finite and > 2"):
        GroupSCAD(lam=1, a=2)
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\)"):
        GroupLq(lam=1, q=1.0)
    with pytest.raises(ValueError, match="penalty must be one of"):
        make_penalty("group_l0", lam=1.0)
    with pytest.raises(ValueError, match="step < gamma"):
        GroupMCP(lam=1, gamma=1.5).prox(np.ones(2), step=2.0)
