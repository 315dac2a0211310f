"""CSAttn: an image in, an image out; trained with UHDformer's recipe at every output scale."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sparsesel.nets.adapter import BuiltinAdapter

if TYPE_CHECKING:
    from sparsesel.training.losses import TrainingRecipe


class CSAttnAdapter(BuiltinAdapter):
    """:class:`~sparsesel.nets.csattn.CSAttn` (sides multiples of its ``multiple``, 4)."""

    name = "csattn"
    description = "CSAttn (arXiv 2403.10336): FFN-free continuous scaling attention, 3-level encoder-decoder"
    tasks = ("lowlight", "haze", "blur")
    model_class = "sparsesel.nets.csattn:CSAttn"
    config_class = "sparsesel.nets.csattn:CSAttnConfig"

    def training_recipe(self) -> TrainingRecipe:
        from sparsesel.training.losses import multiscale_recipe

        return multiscale_recipe(source="UHDformer's recipe at every output scale")


ADAPTER = CSAttnAdapter()
