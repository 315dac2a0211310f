"""Scalar targets for image models, so that any image network can be explained by attribution.

Attribution explains one number per input. A classifier has one per class (pick the
target class); an image-to-image network (restoration, enhancement) returns an image,
so the number explained here is the **mean output intensity in a box** of the output
(optionally of one channel): :class:`RegionMean`. "Which input pixels make the restored
image bright in this region?" is then answered like "which pixels make this a cat?".

* :class:`RegionMean` — ``(N, C, H, W)`` images in, ``(N,)`` box means of the wrapped network's output out;
* :class:`RestorationOutput` — a restoration network (its adapter says how to run it) as a differentiable
  ``(N, 3, H, W) → (N, 3, H, W)`` function of any image size (reflect-padded to the size
  multiple it needs, run, cropped back), the image its ``restore`` returns, but with
  gradients (``restore`` and :func:`sparsesel.training.losses.predict` run without them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class RestorationOutput(nn.Module):
    """A restoration network as a differentiable function of images of any size.

    Parameters
    ----------
    net : str
        Its name in :func:`sparsesel.nets.net_names` or its factory (for messages and its adapter).
    model : nn.Module
        The network, in eval mode; its adapter (:func:`sparsesel.nets.adapter.get_adapter`) says how
        to pad, run it and read its image.

    Raises
    ------
    ValueError
        For a network that needs more than the image (the harmonizer's foreground mask).
    """

    def __init__(self, net: str, model: nn.Module) -> None:
        from sparsesel.nets.adapter import get_adapter

        super().__init__()
        adapter = get_adapter(net)
        if adapter.takes_mask:
            raise ValueError(f"network {net!r} cannot be explained image-to-image (it needs a foreground mask besides "
                             "the image); attribution supports the networks that take an image alone")
        self.net = net
        self.model = model
        self.adapter = adapter

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Output images ``(N, 3, H, W)`` for inputs ``(N, 3, H, W)`` in ``[0, 1]``."""
        from sparsesel.nets.layers import reflect_pad_to_multiple

        padded, (height, width) = reflect_pad_to_multiple(images, self.adapter.size_multiple(self.model))
        return self.adapter.output_image(self.model, padded)[..., :height, :width]


class RegionMean(nn.Module):
    """The mean of an image network's output over a box (and channels): one scalar per input.

    Parameters
    ----------
    network : callable
        Maps ``(N, C, H, W)`` inputs to ``(N, C', H', W')`` outputs (differentiably).
    box : (x0, y0, x1, y1), optional
        Output pixels ``x0 <= column < x1``, ``y0 <= row < y1`` (half-open, in output
        coordinates); ``None``: the whole output.
    channels : sequence of int, optional
        Output channels averaged (default: all).
    """

    def __init__(self, network: nn.Module, box: Sequence[int] | None = None,
                 channels: Sequence[int] | None = None) -> None:
        super().__init__()
        self.network = network
        self.box = None if box is None else tuple(int(v) for v in box)
        self.channels = None if channels is None else [int(c) for c in channels]

    def check_output(self, output_shape: Sequence[int]) -> None:
        """Raise ``ValueError`` unless the box and channels fit an output of shape ``(N, C', H', W')``."""
        if len(output_shape) != 4:
            raise ValueError(f"the network returns shape {tuple(output_shape)}, not images (N, C, H, W)")
        channels, height, width = output_shape[1:]
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
                raise ValueError(f"target region {self.box} (x0, y0, x1, y1) does not fit the network's output of "
                                 f"{width}x{height} pixels: it needs 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height}")
        if self.channels is not None and not all(0 <= c < channels for c in self.channels):
            raise ValueError(f"target channel(s) {self.channels} out of range: the output has {channels} channels")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Box means ``(N,)``."""
        out = self.network(images)
        if self.channels is not None:
            out = out[:, self.channels]
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            out = out[:, :, y0:y1, x0:x1]
        return out.mean(dim=(1, 2, 3))
