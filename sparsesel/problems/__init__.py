"""Problem kinds: data classes validated on construction."""

from sparsesel.problems.base import Problem
from sparsesel.problems.feature_selection import FeatureSelection

__all__ = ["Problem", "FeatureSelection"]
