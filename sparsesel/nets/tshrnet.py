"""Three-stage specular highlight removal (TSHRNet; Fu et al., ICCV 2023).

Four encoder–decoders of the same pix2pix-style U-Net (:class:`HighlightUNet`):

1. physics-based removal: ``A = U1(I)`` (albedo), ``S = U2(I)`` (shading), coarse diffuse
   ``A·S`` and specular residue ``R = I − A·S`` (image model ``I = A·S + R``);
2. refinement: ``D = U3(A·S, I)``;
3. tone correction: ``D_tc = U4(D, R, I)``.

``TSHRNetConfig.stage_one="direct"`` is the stage 1 of the official ``train_4_networks_mix.py``
(for data without albedo and shading: SHIQ, PSD, the mixed release): ``D₁ = U1(I)`` is the
coarse diffuse image and ``R = U2(I)`` the residue, then ``D = U3(D₁, I)`` and
``D_tc = U4(D, R, I)``; the modules keep their names (``albedo_net`` predicts ``D₁``,
``shading_net`` predicts ``R``) and there is no ``albedo``/``shading`` output.

Value spaces (``TSHRNetConfig.value_space``):

* ``"official"`` (default) — the computation of the official ``test_4_networks.py``: the image
  is normalised to ``[−1, 1]`` (``(x − 0.5) / 0.5``, its ``Normalize(0.5, 0.5)``), the four
  U-Nets and the products and differences between the stages (``A·S``, ``I − A·S``) are
  computed on those normalised tensors, and every stage's result is mapped back with
  ``x · 0.5 + 0.5`` (its ``unnormalize``). Official checkpoints
  (:mod:`sparsesel.nets.tshrnet_checkpoints`) reproduce the official outputs in this space.
  ``diffuse_coarse`` and ``residue`` are then the official tensors mapped back to ``[0, 1]``:
  ``diffuse_coarse ≠ albedo · shading`` and ``residue ≠ image − diffuse_coarse`` in ``[0, 1]``.
* ``"unit"`` — a physical variant: each U-Net sees its inputs mapped to ``[−1, 1]`` and its
  tanh output is mapped back to ``[0, 1]`` before the stages combine them, so ``A·S`` is the
  product of physical quantities. Not the official network; files saved by sparsesel before
  the value spaces existed load in this space.

Either way the public API takes and returns images in ``[0, 1]``.

Losses (all MSE, weight 1, as the official ``train_4_networks.py``; :data:`TSHRNET_LOSS_WEIGHTS`):
``MSE(A) + MSE(S) + MSE(R) + MSE(D, D_gt) + MSE(D_tc, D_tc_gt)``; with ``stage_one="direct"``
(``train_4_networks_mix.py``; :data:`TSHRNET_MIX_LOSS_WEIGHTS`)
``MSE(D₁, D_gt) + MSE(R) + MSE(D, D_gt) + MSE(D_tc, D_tc_gt)``. Each in the network's value space
(the official one: 4 × the MSE of the ``[0, 1]`` images, since all targets are normalised too).

:class:`HighlightUNet` generalises the official ``UNet``: 4×4 stride-2 convolutions,
LeakyReLU(0.2) before, BatchNorm after every encoder convolution but the first and the
innermost; a middle convolution applied ``shared_repeats`` times **with shared weights**
(and its mirror in the decoder); ReLU → transposed conv → BatchNorm in the decoder with
concatenated skips, tanh at the end. (The official encoder's in-place LeakyReLU also changes
the skip tensors, but every skip enters a concatenation followed by a ReLU and
``ReLU(LeakyReLU(x)) = ReLU(x)``, so both compute the same function.) ``TSHRNetConfig.paper()``
(width 64, 4 levels, 3 shared repeats) reproduces the official layer shapes: 29,245,507
parameters for a 3→3 U-Net, about 117.0 M for the four. Inputs must be multiples of
``2**(levels + shared_repeats + 1)`` (256 for the paper's configuration; :meth:`TSHRNet.restore`
pads, where the official test script resizes to 256).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.nets.layers import reflect_pad_to_multiple

__all__ = [
    "STAGE_ONE_KINDS",
    "TSHRNET_LOSS_WEIGHTS",
    "TSHRNET_MIX_LOSS_WEIGHTS",
    "VALUE_SPACES",
    "HighlightUNet",
    "SpecularRemoval",
    "TSHRNet",
    "TSHRNetConfig",
    "from_official_range",
    "to_official_range",
    "tshrnet_loss",
    "tshrnet_loss_terms",
]

#: ``"official"``: stages computed on ``[−1, 1]`` tensors as the official code; ``"unit"``: on ``[0, 1]``
VALUE_SPACES = ("official", "unit")

#: ``"intrinsic"``: U1, U2 predict albedo and shading (``train_4_networks.py``); ``"direct"``: the
#: coarse diffuse image and the residue (``train_4_networks_mix.py``)
STAGE_ONE_KINDS = ("intrinsic", "direct")

#: weights of the five MSE terms of the official ``train_4_networks.py`` (its ``L_total``), by output
TSHRNET_LOSS_WEIGHTS: dict[str, float] = {"albedo": 1.0, "shading": 1.0, "residue": 1.0, "diffuse": 1.0, "diffuse_tc": 1.0}
#: weights of the four MSE terms of ``train_4_networks_mix.py`` (``stage_one="direct"``), by output
TSHRNET_MIX_LOSS_WEIGHTS: dict[str, float] = {"diffuse_coarse": 1.0, "residue": 1.0, "diffuse": 1.0, "diffuse_tc": 1.0}


def to_official_range(image: torch.Tensor) -> torch.Tensor:
    """``(x − 0.5) / 0.5``: a ``[0, 1]`` image in the official ``[−1, 1]`` value space (any shape)."""
    return (image - 0.5) / 0.5


def from_official_range(tensor: torch.Tensor) -> torch.Tensor:
    """``x · 0.5 + 0.5``: the official ``unnormalize``, from ``[−1, 1]`` back to ``[0, 1]`` (any shape)."""
    return tensor * 0.5 + 0.5


@dataclass(frozen=True)
class TSHRNetConfig:
    """Options of :class:`TSHRNet`.

    Attributes
    ----------
    width : int
        Channels of the first encoder convolution (official 64).
    levels : int
        Encoder convolutions before the shared middle; level ``i`` has
        ``width · min(2**i, max_width_mult)`` channels (official 4: 64, 128, 256, 512).
    shared_repeats : int
        Times the shared middle convolution (and its decoder mirror) is applied (official 3).
    max_width_mult : int
        Cap of the width multiplier (official 8).
    value_space : {"official", "unit"}
        Where the stages compute (see the module docstring); the official network is ``"official"``.
    stage_one : {"intrinsic", "direct"}
        What the first two U-Nets predict: albedo and shading (official SSHR training, the
        default) or the coarse diffuse image and the residue (official mixed-data training).
    """

    width: int = 64
    levels: int = 4
    shared_repeats: int = 3
    max_width_mult: int = 8
    value_space: str = "official"
    stage_one: str = "intrinsic"

    def __post_init__(self) -> None:
        for name in ("width", "levels", "max_width_mult"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.shared_repeats, bool) or not isinstance(self.shared_repeats, int) or self.shared_repeats < 0:
            raise ValueError(f"shared_repeats must be a non-negative integer, got {self.shared_repeats!r}")
        if self.value_space not in VALUE_SPACES:
            raise ValueError(f"value_space must be one of {VALUE_SPACES}, got {self.value_space!r}")
        if self.stage_one not in STAGE_ONE_KINDS:
            raise ValueError(f"stage_one must be one of {STAGE_ONE_KINDS}, got {self.stage_one!r}")

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (one factor 2 per stride-2 convolution)."""
        return 2 ** (self.levels + self.shared_repeats + 1)

    @classmethod
    def small(cls) -> TSHRNetConfig:
        """A tiny configuration (width 8, 3 levels, 1 shared repeat; inputs multiples of 32)."""
        return cls(width=8, levels=3, shared_repeats=1, max_width_mult=4)

    @classmethod
    def paper(cls) -> TSHRNetConfig:
        """The official layer sizes (about 117.0 M parameters for the four U-Nets)."""
        return cls()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TSHRNetConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


class _Down(nn.Sequential):
    """[LeakyReLU(0.2)] → Conv 4×4 stride 2 (no bias) → [BatchNorm]."""

    def __init__(self, cin: int, cout: int, *, act: bool, norm: bool) -> None:
        layers: list[nn.Module] = [nn.LeakyReLU(0.2)] if act else []
        layers.append(nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False))
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        super().__init__(*layers)


class _Up(nn.Sequential):
    """ReLU → ConvTranspose 4×4 stride 2 (with bias) → [BatchNorm]."""

    def __init__(self, cin: int, cout: int, *, norm: bool) -> None:
        layers: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        super().__init__(*layers)


class HighlightUNet(nn.Module):
    """The pix2pix-style U-Net of TSHRNet with a weight-shared middle.

    ``forward`` maps ``(B, in_channels, H, W)`` in ``[−1, 1]`` to ``(B, out_channels, H, W)``
    in ``(−1, 1)`` (tanh).
    """

    def __init__(self, in_channels: int, out_channels: int, config: TSHRNetConfig) -> None:
        super().__init__()
        widths = [config.width * min(2**i, config.max_width_mult) for i in range(config.levels)]
        inner = widths[-1]
        self.config = config
        self.encoder = nn.ModuleList(
            [_Down(in_channels, widths[0], act=False, norm=False)]
            + [_Down(widths[i - 1], widths[i], act=True, norm=True) for i in range(1, config.levels)]
        )
        self.shared_down = _Down(inner, inner, act=True, norm=True) if config.shared_repeats else None
        self.innermost = _Down(inner, inner, act=True, norm=False)
        self.innermost_up = _Up(inner, inner, norm=True)
        self.shared_up = _Up(2 * inner, inner, norm=True) if config.shared_repeats else None
        self.decoder = nn.ModuleList([_Up(2 * widths[i], widths[i - 1], norm=True) for i in range(config.levels - 1, 0, -1)])
        self.out = _Up(2 * widths[0], out_channels, norm=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.encoder:
            x = layer(x)
            skips.append(x)
        shared = []
        for _ in range(self.config.shared_repeats):
            x = self.shared_down(x)
            shared.append(x)
        x = self.innermost_up(self.innermost(x))
        for skip in reversed(shared):
            x = self.shared_up(torch.cat([x, skip], dim=1))
        for layer, skip in zip(self.decoder, reversed(skips[1:])):
            x = layer(torch.cat([x, skip], dim=1))
        return torch.tanh(self.out(torch.cat([x, skips[0]], dim=1)))


class TSHRNet(nn.Module):
    """Three-stage specular highlight removal network (four :class:`HighlightUNet`).

    ``forward(image)`` takes ``(B, 3, H, W)`` in ``[0, 1]`` (sides multiples of
    ``config.multiple``) and returns a dict of ``(B, 3, H, W)`` tensors in ``[0, 1]``:
    ``albedo``, ``shading``, ``diffuse_coarse`` (A·S), ``residue`` (I − A·S), ``diffuse``
    (refined) and ``diffuse_tc`` (tone-corrected, the final output); with
    ``stage_one="direct"`` there is no ``albedo``/``shading`` and ``diffuse_coarse``,
    ``residue`` are U-Net 1's and U-Net 2's predictions. With the default
    ``value_space="official"`` the stages run on ``[−1, 1]`` tensors exactly as the official
    test script (:meth:`forward_official`) and the ``[0, 1]`` conversion happens only at the
    edges: the input is normalised once, every returned tensor is the official one mapped
    back with ``x · 0.5 + 0.5``.
    """

    def __init__(self, config: TSHRNetConfig | None = None) -> None:
        super().__init__()
        config = TSHRNetConfig() if config is None else config
        if not isinstance(config, TSHRNetConfig):
            raise TypeError(f"config must be a TSHRNetConfig, got {type(config).__name__}")
        self.config = config
        self.multiple = config.multiple
        self.albedo_net = HighlightUNet(3, 3, config)
        self.shading_net = HighlightUNet(3, 3, config)
        self.refine_net = HighlightUNet(6, 3, config)
        self.tone_net = HighlightUNet(9, 3, config)

    def _check(self, image: torch.Tensor) -> None:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
        if image.shape[-2] % self.multiple or image.shape[-1] % self.multiple:
            raise ValueError(f"image sides must be multiples of {self.multiple}, got {tuple(image.shape[-2:])}; use restore()")

    def forward_official(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The official three stages on a normalised image (``test_4_networks.py``, or
        ``test_4_networks_mix.py`` with ``stage_one="direct"``).

        Parameters
        ----------
        image : torch.Tensor, shape (B, 3, H, W)
            In the official ``[−1, 1]`` space (:func:`to_official_range` of a ``[0, 1]`` image).

        Returns
        -------
        dict of torch.Tensor, each (B, 3, H, W), in the official space
            The keys of :meth:`forward`; ``diffuse_coarse = albedo · shading`` and
            ``residue = image − albedo · shading`` hold exactly here (``"intrinsic"``).
        """
        self._check(image)
        return self._stages(image, lambda net, *inputs: net(torch.cat(inputs, dim=1)))

    def _stages(self, image: torch.Tensor, run: Callable[..., torch.Tensor]) -> dict[str, torch.Tensor]:
        """The wiring; ``run(unet, *inputs)`` applies one U-Net to its concatenated inputs."""
        out: dict[str, torch.Tensor] = {}
        if self.config.stage_one == "intrinsic":
            out["albedo"] = run(self.albedo_net, image)
            out["shading"] = run(self.shading_net, image)
            coarse = out["albedo"] * out["shading"]
            residue = image - coarse
        else:
            coarse = run(self.albedo_net, image)
            residue = run(self.shading_net, image)
        refined = run(self.refine_net, coarse, image)
        toned = run(self.tone_net, refined, residue, image)
        out.update(diffuse_coarse=coarse, residue=residue, diffuse=refined, diffuse_tc=toned)
        return out

    @staticmethod
    def _run_unit(net: HighlightUNet, *images: torch.Tensor) -> torch.Tensor:
        return from_official_range(net(to_official_range(torch.cat(images, dim=1))))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check(image)
        if self.config.value_space == "unit":
            return self._stages(image, self._run_unit)
        stages = self.forward_official(to_official_range(image))
        return {key: from_official_range(value) for key, value in stages.items()}

    @torch.no_grad()
    def restore(self, image: torch.Tensor) -> torch.Tensor:
        """Tone-corrected diffuse image of a ``(3, H, W)`` or ``(B, 3, H, W)`` image of any size.

        ``[0, 1]`` in and out; the image is reflect-padded to ``config.multiple`` and cropped back.
        """
        squeeze = image.ndim == 3
        x = image.unsqueeze(0) if squeeze else image
        padded, (height, width) = reflect_pad_to_multiple(x, self.multiple)
        out = self(padded)["diffuse_tc"][..., :height, :width]
        return out[0] if squeeze else out


SpecularRemoval = TSHRNet

# output -> batch key of its target
_LOSS_TARGETS = {
    "intrinsic": {"albedo": "albedo", "shading": "shading", "residue": "residue", "diffuse": "diffuse", "diffuse_tc": "target"},
    "direct": {"diffuse_coarse": "diffuse", "residue": "residue", "diffuse": "diffuse", "diffuse_tc": "target"},
}


def tshrnet_loss_terms(
    outputs: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    *,
    value_space: str = "official",
    stage_one: str = "intrinsic",
) -> dict[str, torch.Tensor]:
    """The unweighted MSE terms of the official loss, keyed by output name.

    Parameters
    ----------
    outputs : dict of torch.Tensor
        :meth:`TSHRNet.forward`'s dict (``[0, 1]``).
    batch : dict of torch.Tensor
        ``albedo``, ``shading``, ``residue``, ``diffuse`` and ``target`` (= D_tc), ``[0, 1]``,
        shaped as the outputs (``"direct"`` needs only the last three).
    value_space : {"official", "unit"}
        ``"official"``: each MSE is taken on the normalised tensors (``(x − 0.5) / 0.5``, as the
        official training scripts, whose targets are normalised too), i.e. 4 × the ``[0, 1]``
        MSE; ``"unit"``: on the ``[0, 1]`` images.
    stage_one : {"intrinsic", "direct"}
        ``"intrinsic"`` (``train_4_networks.py``): ``albedo``, ``shading``, ``residue``,
        ``diffuse``, ``diffuse_tc`` against albedo, shading, residue, diffuse and target;
        ``"direct"`` (``train_4_networks_mix.py``): ``diffuse_coarse``, ``residue``, ``diffuse``,
        ``diffuse_tc`` against diffuse, residue, diffuse and target.

    Returns
    -------
    dict of scalar torch.Tensor
    """
    if value_space not in VALUE_SPACES:
        raise ValueError(f"value_space must be one of {VALUE_SPACES}, got {value_space!r}")
    if stage_one not in STAGE_ONE_KINDS:
        raise ValueError(f"stage_one must be one of {STAGE_ONE_KINDS}, got {stage_one!r}")
    targets = _LOSS_TARGETS[stage_one]
    missing = sorted({k for k in targets.values() if k not in batch})
    if missing:
        raise ValueError(f"the TSHRNet loss needs batch keys {missing} (use the 'specular' task)")
    space = to_official_range if value_space == "official" else (lambda t: t)
    return {name: F.mse_loss(space(outputs[name]), space(batch[target])) for name, target in targets.items()}


def tshrnet_loss(
    outputs: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    *,
    value_space: str = "official",
    stage_one: str = "intrinsic",
    weights: dict[str, float] | None = None,
) -> torch.Tensor:
    """The official loss ``L_total``: the weighted sum of :func:`tshrnet_loss_terms`.

    ``weights`` (keyed by output name) default to :data:`TSHRNET_LOSS_WEIGHTS` (all 1, as
    ``train_4_networks.py``; its comment suggests 0.01 on ``residue`` for better albedo and
    shading), or :data:`TSHRNET_MIX_LOSS_WEIGHTS` for ``stage_one="direct"``. Returns a scalar tensor.
    """
    if weights is None:
        weights = TSHRNET_MIX_LOSS_WEIGHTS if stage_one == "direct" else TSHRNET_LOSS_WEIGHTS
    terms = tshrnet_loss_terms(outputs, batch, value_space=value_space, stage_one=stage_one)
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise ValueError(f"unknown TSHRNet loss terms {unknown}; valid: {sorted(terms)}")
    total = outputs["diffuse_tc"].new_zeros(())
    for name, value in terms.items():
        total = total + weights.get(name, 0.0) * value
    return total
