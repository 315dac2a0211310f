"""UHDformer: an image in, an image out (restored in tiles of any size); its official checkpoints; its
own channel pruning; the official training recipe."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sparsesel.nets.adapter import BuiltinAdapter

if TYPE_CHECKING:
    import torch
    from torch import nn

    from sparsesel.training.losses import TrainingRecipe

#: where official UHDformer parameter names start (after the ``restoration_network.``/``module.`` prefixes)
_OFFICIAL_STARTS = ("enter.", "stem.", "restoration_network.", "module.")


class UHDformerAdapter(BuiltinAdapter):
    """:class:`~sparsesel.nets.uhdformer.UHDformer` (sides multiples of ``config.scale_factor``)."""

    name = "uhdformer"
    description = "UHDformer (AAAI 2024): correlation-matching transformer for UHD restoration"
    tasks = ("lowlight", "haze", "blur")
    model_class = "sparsesel.nets.uhdformer:UHDformer"
    config_class = "sparsesel.nets.uhdformer:UHDformerConfig"
    fallback_presets = {"small": {"width": 8, "number_block": 1, "unit_num": 2, "num_heads": 2, "match_factor": 2,
                                  "ffn_expansion_factor": 2, "scale_factor": 4}}
    channel_pruner = "sparsesel.compress.channel_pruning:magnitude_prune_uhdformer"

    def restore(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`UHDformer.restore <sparsesel.nets.uhdformer.UHDformer.restore>` (tiled, padded, clamped to [0, 1])."""
        return model.restore(batch["input"])

    def training_recipe(self) -> TrainingRecipe:
        from sparsesel.training.losses import restoration_recipe

        return restoration_recipe(self, source="UHDformer (AAAI 2024) official options")

    def read_official(self, payload: Any, name: str) -> nn.Module | None:
        """Our earlier ``sparsesel.uhdformer`` files, the official release (``{"params": ...}`` or
        ``{"params_ema": ...}``) and plain state dicts of official or our names (see
        :func:`sparsesel.nets.checkpoints.uhdformer_from_checkpoint`)."""
        from sparsesel.nets.checkpoints import uhdformer_from_checkpoint

        if not isinstance(payload, dict):
            return None
        if payload.get("format") == "sparsesel.uhdformer":
            return uhdformer_from_checkpoint(payload, name=name)
        state = payload
        if isinstance(payload.get("params"), dict):
            state = payload["params"]
        elif isinstance(payload.get("params_ema"), dict):
            state = payload["params_ema"]
        if not any(isinstance(key, str) and key.startswith(_OFFICIAL_STARTS) for key in state):
            return None
        return uhdformer_from_checkpoint(payload, name=name)


ADAPTER = UHDformerAdapter()
