"""Illumination harmonization with cast shadow: SI-GAN / DIH-GAN (Bao et al., CVPR 2022).

No code was released. What the abstract states (verified): a GAN whose generator uses
**multi-scale attention** and an **illumination-exchange** strategy to map the foreground
directly to the background's illumination, refined by adversarial learning, producing the
harmonized foreground **and its cast shadow**. Everything below the abstract's level is our
design (unverified against the paper):

* Generator (:class:`HarmonizationGenerator`): a U-Net on ``concat(composite, mask)``.
  At every encoder scale an **illumination exchange** (:class:`IlluminationExchange`)
  normalises the foreground features by their masked mean and standard deviation and
  re-scales them with the *background's* masked statistics, passed through a learned affine
  correction initialised to the identity (a region-aware AdaIN). Decoder skips pass through
  a **multi-scale attention** gate (:class:`ScaleAttention`: channel squeeze-excitation and a
  spatial sigmoid map computed from the skip and the upsampled features).
* Heads: a residual colour change for the foreground and a shadow map in ``[0, 1)`` for the
  background; the output is ``m · (composite + Δ) + (1 − m) · composite · (1 − shadow)``.
* Discriminator (:class:`PatchDiscriminator`): pix2pix PatchGAN (4×4 stride-2 convs,
  BatchNorm, LeakyReLU 0.2) on ``concat(image, mask)``.
* Losses (:func:`generator_loss`, :func:`discriminator_loss`): L1 to the target +
  ``shadow_weight`` · L1 on the shadow map + ``adv_weight`` · non-saturating GAN loss; the
  discriminator uses binary cross-entropy on real targets vs generated images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.nets.layers import reflect_pad_to_multiple

__all__ = [
    "Harmonizer",
    "HarmonizerConfig",
    "HarmonizationGenerator",
    "IlluminationExchange",
    "PatchDiscriminator",
    "ScaleAttention",
    "discriminator_loss",
    "generator_loss",
]


@dataclass(frozen=True)
class HarmonizerConfig:
    """Options of :class:`Harmonizer`.

    Attributes
    ----------
    width : int
        Generator channels at full resolution (doubling per level).
    levels : int
        Generator scales (inputs must be multiples of ``2**(levels − 1)``).
    disc_width : int
        First discriminator layer's channels.
    disc_layers : int
        Stride-2 layers of the discriminator.
    adv_weight : float
        Weight of the adversarial term in the generator loss.
    shadow_weight : float
        Weight of the L1 loss on the shadow map.
    """

    width: int = 32
    levels: int = 4
    disc_width: int = 64
    disc_layers: int = 3
    adv_weight: float = 0.01
    shadow_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("width", "levels", "disc_width", "disc_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("adv_weight", "shadow_weight"):
            if not float(getattr(self, name)) >= 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")

    @classmethod
    def small(cls) -> HarmonizerConfig:
        return cls(width=8, levels=3, disc_width=8, disc_layers=2)

    @classmethod
    def paper(cls) -> HarmonizerConfig:
        """Our default size (the paper's was not readable)."""
        return cls()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HarmonizerConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)


def _masked_stats(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of ``x`` (B, C, H, W) weighted by ``weight`` (B, 1, H, W)."""
    total = weight.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (x * weight).sum(dim=(2, 3), keepdim=True) / total
    var = ((x - mean) ** 2 * weight).sum(dim=(2, 3), keepdim=True) / total
    return mean, torch.sqrt(var + eps)


class IlluminationExchange(nn.Module):
    """Give the foreground features the background's statistics (a region-aware AdaIN).

    ``fg' = (f − μ_fg) / σ_fg · σ_bg · exp(a) + μ_bg + b`` where ``(a, b)`` is a linear function
    of ``[μ_bg, σ_bg, μ_fg, σ_fg]`` initialised to zero; background features pass unchanged.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.correction = nn.Linear(4 * channels, 2 * channels)
        nn.init.zeros_(self.correction.weight)
        nn.init.zeros_(self.correction.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mu_f, sd_f = _masked_stats(x, mask)
        mu_b, sd_b = _masked_stats(x, 1.0 - mask)
        stats = torch.cat([mu_b, sd_b, mu_f, sd_f], dim=1).flatten(1)
        log_scale, shift = self.correction(stats).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        exchanged = (x - mu_f) / sd_f * sd_b * torch.exp(log_scale) + mu_b + shift
        return mask * exchanged + (1.0 - mask) * x


class ScaleAttention(nn.Module):
    """Channel (squeeze-excitation) and spatial attention on a skip, guided by the decoder."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 4, 4)
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(2 * channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1), nn.Sigmoid()
        )
        self.spatial = nn.Sequential(nn.Conv2d(2 * channels + 1, 1, 7, padding=3), nn.Sigmoid())

    def forward(self, skip: torch.Tensor, decoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        both = torch.cat([skip, decoded], dim=1)
        return skip * self.channel(both) * self.spatial(torch.cat([both, mask], dim=1))


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2), nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2))


class HarmonizationGenerator(nn.Module):
    """U-Net generator with illumination exchange and multi-scale attention (see module docs).

    ``forward(composite, mask)`` with ``composite`` (B, 3, H, W) in ``[0, 1]`` and ``mask``
    (B, 1, H, W) returns ``{"image", "foreground", "shadow"}`` (``shadow`` is (B, 1, H, W)).
    """

    def __init__(self, config: HarmonizerConfig) -> None:
        super().__init__()
        widths = [config.width * 2**i for i in range(config.levels)]
        self.widths = widths
        self.enter = _conv_block(4, widths[0])
        self.down = nn.ModuleList([nn.Conv2d(widths[i - 1], widths[i], 3, stride=2, padding=1) for i in range(1, config.levels)])
        self.encode = nn.ModuleList([_conv_block(widths[i], widths[i]) for i in range(1, config.levels)])
        self.exchange = nn.ModuleList([IlluminationExchange(w) for w in widths])
        self.up = nn.ModuleList([nn.Conv2d(widths[i], widths[i - 1], 3, padding=1) for i in range(config.levels - 1, 0, -1)])
        self.attend = nn.ModuleList([ScaleAttention(widths[i - 1]) for i in range(config.levels - 1, 0, -1)])
        self.decode = nn.ModuleList([_conv_block(2 * widths[i - 1], widths[i - 1]) for i in range(config.levels - 1, 0, -1)])
        self.to_image = nn.Conv2d(widths[0], 3, 3, padding=1)
        self.to_shadow = nn.Conv2d(widths[0], 1, 3, padding=1)
        nn.init.zeros_(self.to_image.weight)
        nn.init.zeros_(self.to_image.bias)
        nn.init.constant_(self.to_shadow.bias, -3.0)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        masks = [mask]
        for _ in self.down:
            masks.append(F.avg_pool2d(masks[-1], 2))
        x = self.exchange[0](self.enter(torch.cat([composite, mask], dim=1)), masks[0])
        skips = [x]
        for level, (down, encode) in enumerate(zip(self.down, self.encode), start=1):
            x = self.exchange[level](encode(down(x)), masks[level])
            skips.append(x)
        for i, (up, attend, decode) in enumerate(zip(self.up, self.attend, self.decode)):
            level = len(self.widths) - 2 - i
            x = up(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
            x = decode(torch.cat([x, attend(skips[level], x, masks[level])], dim=1))
        foreground = composite + self.to_image(x)
        shadow = torch.sigmoid(self.to_shadow(x)) * (1.0 - mask)
        image = mask * foreground + (1.0 - mask) * composite * (1.0 - shadow)
        return {"image": image, "foreground": foreground, "shadow": shadow}


class PatchDiscriminator(nn.Module):
    """pix2pix PatchGAN on ``concat(image, mask)``: one real/fake logit per patch."""

    def __init__(self, config: HarmonizerConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(4, config.disc_width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        channels = config.disc_width
        for i in range(1, config.disc_layers):
            out = config.disc_width * min(2**i, 8)
            layers += [nn.Conv2d(channels, out, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([image, mask], dim=1))


class Harmonizer(nn.Module):
    """SI-GAN / DIH-GAN: :class:`HarmonizationGenerator` + :class:`PatchDiscriminator`.

    ``forward(composite, mask)`` runs the generator only; the discriminator is used by the
    losses. :meth:`restore` harmonizes a whole image of any size.
    """

    def __init__(self, config: HarmonizerConfig | None = None) -> None:
        super().__init__()
        config = HarmonizerConfig() if config is None else config
        if not isinstance(config, HarmonizerConfig):
            raise TypeError(f"config must be a HarmonizerConfig, got {type(config).__name__}")
        self.config = config
        self.multiple = 2 ** (config.levels - 1)
        self.generator = HarmonizationGenerator(config)
        self.discriminator = PatchDiscriminator(config)

    def forward(self, composite: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        if composite.ndim != 4 or composite.shape[1] != 3:
            raise ValueError(f"composite must have shape (B, 3, H, W), got {tuple(composite.shape)}")
        if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] != composite.shape[0] or mask.shape[-2:] != composite.shape[-2:]:
            raise ValueError(f"mask must have shape (B, 1, H, W) = {(composite.shape[0], 1, *composite.shape[-2:])}, got {tuple(mask.shape)}")
        if composite.shape[-2] % self.multiple or composite.shape[-1] % self.multiple:
            raise ValueError(f"input sides must be multiples of {self.multiple}, got {tuple(composite.shape[-2:])}; use restore()")
        return self.generator(composite, mask)

    @torch.no_grad()
    def restore(self, composite: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Harmonized image for ``composite`` (3, H, W) or (B, 3, H, W) and its foreground ``mask``
        ((H, W), (1, H, W) or (B, 1, H, W)) of any size."""
        squeeze = composite.ndim == 3
        x = composite.unsqueeze(0) if squeeze else composite
        m = mask
        while m.ndim < 4:
            m = m.unsqueeze(0)
        padded, (height, width) = reflect_pad_to_multiple(x, self.multiple)
        padded_mask, _ = reflect_pad_to_multiple(m.to(x.dtype), self.multiple)
        out = self(padded, padded_mask)["image"][..., :height, :width]
        return out[0] if squeeze else out


def generator_loss(model: Harmonizer, outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Generator loss terms: ``l1``, ``shadow`` (L1), ``adversarial`` and their weighted ``loss``."""
    config = model.config
    l1 = F.l1_loss(outputs["image"], batch["target"])
    shadow = F.l1_loss(outputs["shadow"], batch["shadow"])
    logits = model.discriminator(outputs["image"], batch["mask"])
    adversarial = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    loss = l1 + config.shadow_weight * shadow + config.adv_weight * adversarial
    return {"loss": loss, "l1": l1, "shadow": shadow, "adversarial": adversarial}


def discriminator_loss(model: Harmonizer, fake: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Binary cross-entropy of the PatchGAN on real targets (1) and detached fakes (0)."""
    real_logits = model.discriminator(batch["target"], batch["mask"])
    fake_logits = model.discriminator(fake.detach(), batch["mask"])
    return 0.5 * (
        F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
        + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    )
