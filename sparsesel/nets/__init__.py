"""Restoration networks (pure torch modules), their adapters and their checkpoint I/O.

* :class:`UHDformer` (AAAI 2024) — loads official checkpoints via :func:`load_uhdformer`.
* :class:`CSAttn` — attention without FFN, three continuous attention stages.
* :class:`TSHRNet` (alias :class:`SpecularRemoval`) — three-stage specular-highlight removal; loads
  official checkpoints via :func:`load_tshrnet`.
* :class:`Harmonizer` — SI-GAN / DIH-GAN illumination harmonization.

Each network has an adapter (:mod:`sparsesel.nets.adapter`: everything the pipeline needs to know
about it; one module per network in :mod:`sparsesel.nets.adapters`). :mod:`sparsesel.nets.zoo` builds
any of them by name and writes and reads the one checkpoint format of every network, compressed and
pruned ones included. The names below are imported on first use (``import sparsesel.nets`` imports
no torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CSAttn": "sparsesel.nets.csattn",
    "CSAttnConfig": "sparsesel.nets.csattn",
    "Harmonizer": "sparsesel.nets.harmonization",
    "HarmonizerConfig": "sparsesel.nets.harmonization",
    "SpecularRemoval": "sparsesel.nets.tshrnet",
    "TSHRNet": "sparsesel.nets.tshrnet",
    "TSHRNetConfig": "sparsesel.nets.tshrnet",
    "UHDformer": "sparsesel.nets.uhdformer",
    "UHDformerConfig": "sparsesel.nets.uhdformer",
    "adapter_for": "sparsesel.nets.adapter",
    "get_adapter": "sparsesel.nets.adapter",
    "build_net": "sparsesel.nets.zoo",
    "load_net": "sparsesel.nets.zoo",
    "net_names": "sparsesel.nets.zoo",
    "save_net": "sparsesel.nets.zoo",
    "load_checkpoint": "sparsesel.nets.checkpoints",
    "load_uhdformer": "sparsesel.nets.checkpoints",
    "save_checkpoint": "sparsesel.nets.checkpoints",
    "load_tshrnet": "sparsesel.nets.tshrnet_checkpoints",
    "save_tshrnet_official": "sparsesel.nets.tshrnet_checkpoints",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sparsesel.nets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
