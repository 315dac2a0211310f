"""The base class of every problem kind."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True, eq=False)
class Problem:
    """A subset-selection problem: data only, validated when it is built.

    Subclasses are frozen dataclasses whose ``__post_init__`` checks every field
    and raises ``ValueError``/``TypeError`` naming the offending field. Solvers
    find problems through :func:`sparsesel.solve` by their class.
    """

    #: Short human-readable name of the problem kind (used by the CLI and docs).
    kind: ClassVar[str] = "problem"
