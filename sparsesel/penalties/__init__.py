"""Group penalties for block sparsity, skglm style: one small class per penalty.

Every penalty acts on groups of coefficients through their Euclidean norms
``r_g = ‖w_g‖₂`` and exposes the same few methods:

``value(norms)``
    ``Σ_g p(r_g)`` for an array (numpy or torch) of group norms.
``scalar(r)``
    The per-group function ``p(r)`` (numpy or torch, element-wise).
``prox(x, step)``
    ``argmin_z ½‖z − x‖² + step·p(‖z‖)`` for one group vector ``x`` (numpy).
``subgradient(x)``
    An element of the (Clarke) subdifferential of ``p(‖·‖)`` at ``x``: the
    minimum-norm one (the zero vector) at ``x = 0``.

Closed-form proximal operators: group lasso (block soft thresholding), group
MCP (firm thresholding), group SCAD, group log (root of a quadratic). Group
ℓq has no closed form for general ``q``; its prox is the largest root of a
one-dimensional stationarity equation found by a bracketed root search, compared
with ``z = 0`` (exact to machine precision).
"""

from sparsesel.penalties.base import GroupPenalty
from sparsesel.penalties.group_lasso import GroupLasso
from sparsesel.penalties.group_log import GroupLog
from sparsesel.penalties.group_lq import GroupLq
from sparsesel.penalties.group_mcp import GroupMCP
from sparsesel.penalties.group_scad import GroupSCAD

PENALTIES = {
    "group_lasso": GroupLasso,
    "group_log": GroupLog,
    "group_mcp": GroupMCP,
    "group_scad": GroupSCAD,
    "group_lq": GroupLq,
}

__all__ = ["GroupPenalty", "GroupLasso", "GroupLog", "GroupMCP", "GroupSCAD", "GroupLq", "PENALTIES", "make_penalty"]


def make_penalty(name: str, **params: float) -> GroupPenalty:
    """Build a penalty by name (a key of :data:`PENALTIES`) with its parameters."""
    if name not in PENALTIES:
        raise ValueError(f"penalty must be one of {tuple(PENALTIES)}, got {name!r}")
    return PENALTIES[name](**params)
