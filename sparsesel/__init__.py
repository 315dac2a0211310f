"""sparsesel: discrete subset selection behind one Problem/Solver interface.

>>> import sparsesel as ss
>>> result = ss.solve(ss.FeatureSelection(X, y, k=10), solver="omp")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from sparsesel.problems import FeatureSelection, Problem
from sparsesel.registry import all_solvers, register_solver, solve, solver_options, solvers_for
from sparsesel.result import STATUSES, Guarantee, Result

__version__ = "0.1.0"

# Problem kinds of the other modules are imported on first use, so that
# ``import sparsesel`` stays fast and does not import torch or OR-tools.
_LAZY = {
    "CoreShape": "sparsesel.problems.core_shape",
    "TreeNetworkRanks": "sparsesel.problems.tree_network_ranks",
    "BlockSparsification": "sparsesel.problems.block_sparsification",
    "Attribution": "sparsesel.problems.attribution",
    "BagDesign": "sparsesel.problems.bag_design",
    "LayerAllocation": "sparsesel.problems.layer_allocation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sparsesel' has no attribute {name!r}")


__all__ = [
    "FeatureSelection",
    "Guarantee",
    "Problem",
    "Result",
    "STATUSES",
    "all_solvers",
    "register_solver",
    "solve",
    "solver_options",
    "solvers_for",
    *_LAZY,
]
