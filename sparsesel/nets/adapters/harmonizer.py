"""The Harmonizer: a composite and its foreground mask in, a dict out (the image is ``image``); a GAN
recipe; its discriminator is never compressed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsesel.nets.adapter import BuiltinAdapter

if TYPE_CHECKING:
    from torch import nn

    from sparsesel.training.losses import TrainingRecipe


def generator_step(model: nn.Module, batch: dict, cache: dict) -> dict:
    """The generator's loss (:func:`sparsesel.nets.harmonization.generator_loss`); keeps its image for the discriminator."""
    from sparsesel.nets.harmonization import generator_loss

    outputs = model(batch["input"], batch["mask"])
    cache["fake"] = outputs["image"]
    return generator_loss(model, outputs, batch)


def discriminator_step(model: nn.Module, batch: dict, cache: dict) -> dict:
    """The discriminator's loss on the generator's image of this iteration."""
    from sparsesel.nets.harmonization import discriminator_loss

    return {"loss": discriminator_loss(model, cache["fake"], batch)}


class HarmonizerAdapter(BuiltinAdapter):
    """:class:`~sparsesel.nets.harmonization.Harmonizer` (sides multiples of ``2**(levels - 1)``)."""

    name = "harmonizer"
    description = "SI-GAN / DIH-GAN (CVPR 2022): illumination harmonization with cast shadow"
    tasks = ("harmonize",)
    takes_mask = True
    image_key = "image"
    compress_exclude = ("discriminator.*",)
    model_class = "sparsesel.nets.harmonization:Harmonizer"
    config_class = "sparsesel.nets.harmonization:HarmonizerConfig"

    def training_recipe(self) -> TrainingRecipe:
        from sparsesel.training.losses import UHDFORMER_OPTIMIZER, TrainingRecipe, TrainingStep

        return TrainingRecipe(
            (TrainingStep("generator", lambda model: model.generator.parameters(), generator_step),
             TrainingStep("discriminator", lambda model: model.discriminator.parameters(), discriminator_step)),
            UHDFORMER_OPTIMIZER,
            source="sparsesel.nets.harmonization generator_loss / discriminator_loss with UHDformer's optimizer",
        )


ADAPTER = HarmonizerAdapter()
