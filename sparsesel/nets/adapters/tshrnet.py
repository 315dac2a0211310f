"""TSHRNet: an image in, a dict of stages out (the image is ``diffuse_tc``); its official four-file
checkpoints; the official training recipe."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sparsesel.nets.adapter import BuiltinAdapter

if TYPE_CHECKING:
    from torch import nn

    from sparsesel.training.losses import TrainingRecipe


def tshrnet_loss(model: nn.Module, batch: dict, cache: dict) -> dict:
    """The official loss of one batch: the weighted MSEs of every stage in the official value space
    (:func:`sparsesel.nets.tshrnet.tshrnet_loss_terms`; ``stage_one="direct"``: the mixed-data four)."""
    from sparsesel.nets.tshrnet import TSHRNET_LOSS_WEIGHTS, TSHRNET_MIX_LOSS_WEIGHTS, tshrnet_loss_terms

    config = model.config
    terms = tshrnet_loss_terms(model(batch["input"]), batch, value_space=config.value_space, stage_one=config.stage_one)
    weights = TSHRNET_MIX_LOSS_WEIGHTS if config.stage_one == "direct" else TSHRNET_LOSS_WEIGHTS
    total = sum(weights[name] * value for name, value in terms.items())
    return {"loss": total, **terms}


class TSHRNetAdapter(BuiltinAdapter):
    """:class:`~sparsesel.nets.tshrnet.TSHRNet` (sides multiples of ``config.multiple``)."""

    name = "tshrnet"
    description = "TSHRNet (ICCV 2023): three-stage specular highlight removal"
    tasks = ("specular",)
    image_key = "diffuse_tc"
    model_class = "sparsesel.nets.tshrnet:TSHRNet"
    config_class = "sparsesel.nets.tshrnet:TSHRNetConfig"

    def upgrade_config(self, config: dict[str, Any], file_format: str) -> dict[str, Any]:
        """``sparsesel.nets`` files were written before TSHRNet had the official value space: ``"unit"``."""
        return {"value_space": "unit", **config} if file_format == "sparsesel.nets" else config

    def training_recipe(self) -> TrainingRecipe:
        from types import MappingProxyType

        from sparsesel.nets.tshrnet import TSHRNET_LOSS_WEIGHTS
        from sparsesel.training.losses import TSHRNET_OPTIMIZER, TrainingRecipe, TrainingStep

        return TrainingRecipe(
            (TrainingStep("main", lambda model: model.parameters(), tshrnet_loss),), TSHRNET_OPTIMIZER,
            MappingProxyType(dict(TSHRNET_LOSS_WEIGHTS)),
            "fu123456/TSHRNet train_4_networks.py (official: batch 16 of 256x256 for 100 epochs); "
            "stage_one='direct' networks use train_4_networks_mix.py's four MSEs (TSHRNET_MIX_LOSS_WEIGHTS)",
        )

    def read_official(self, payload: Any, name: str) -> nn.Module | None:
        """One file of the official layout holds one U-Net: refused with the way to load the four."""
        if isinstance(payload, dict) and any(str(key).removeprefix("module.") == "Cv0.conv.weight" for key in payload):
            raise ValueError(
                f"{name} is one U-Net of an official TSHRNet checkpoint (UNet<n>_<epoch>.pth); load the four files "
                "with sparsesel.nets.load_tshrnet(folder), or give their folder as the checkpoint"
            )
        return None

    def read_official_folder(self, folder: Path) -> nn.Module | None:
        """A folder of ``UNet1_<epoch>.pth`` … ``UNet4_<epoch>.pth`` (:func:`sparsesel.nets.load_tshrnet`)."""
        if not any(folder.glob("UNet1_*.pth")):
            return None
        from sparsesel.nets.tshrnet_checkpoints import load_tshrnet

        return load_tshrnet(folder)


ADAPTER = TSHRNetAdapter()
