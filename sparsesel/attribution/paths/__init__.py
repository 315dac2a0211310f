"""Paths from a baseline to the input and the quadrature rules along them."""

from sparsesel.attribution.paths.quadrature import METHODS, quadrature

__all__ = ["METHODS", "quadrature"]
