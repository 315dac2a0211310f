"""SI-GAN / DIH-GAN harmonizer: illumination exchange statistics, output composition, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsesel.nets.harmonization import (
    Harmonizer,
    HarmonizerConfig,
    IlluminationExchange,
    discriminator_loss,
    generator_loss,
)


def _mask(batch: int, size: int) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size)
    mask[:, :, size // 4 : 3 * size // 4, size // 4 : size // 2 + 2] = 1
    return mask


def test_exchange_gives_the_foreground_the_background_statistics():
    torch.manual_seed(0)
    exchange = IlluminationExchange(5).double()  # correction starts at the identity
    x = torch.randn(2, 5, 12, 12, dtype=torch.float64) * 3 + 1
    mask = _mask(2, 12).double()
    out = exchange(x, mask).detach().numpy()
    xs, m = x.numpy(), mask.numpy()[:, 0] > 0.5
    for b in range(2):
        for c in range(5):
            fg, bg = out[b, c][m[b]], xs[b, c][~m[b]]
            assert fg.mean() == pytest.approx(bg.mean(), abs=1e-9)
            assert fg.std() == pytest.approx(np.sqrt(bg.var() + 1e-5), rel=1e-6)
            np.testing.assert_array_equal(out[b, c][~m[b]], bg)  # background unchanged


def test_output_is_composed_from_foreground_and_shadowed_background():
    torch.manual_seed(1)
    net = Harmonizer(HarmonizerConfig.small()).eval()
    composite, mask = torch.rand(2, 3, 16, 16), _mask(2, 16)
    with torch.no_grad():
        out = net(composite, mask)
    assert out["image"].shape == (2, 3, 16, 16) and out["shadow"].shape == (2, 1, 16, 16)
    assert torch.all(out["shadow"][mask > 0.5] == 0) and torch.all(out["shadow"] < 1)
    expected = mask * out["foreground"] + (1 - mask) * composite * (1 - out["shadow"])
    torch.testing.assert_close(out["image"], expected)
    # the colour head starts at zero: an untrained generator leaves the foreground as it is
    torch.testing.assert_close(out["foreground"], composite)
    assert net.discriminator(out["image"], mask).shape == (2, 1, 4, 4)
    assert net.restore(torch.rand(3, 13, 10), torch.ones(13, 10)).shape == (3, 13, 10)


def test_losses_are_finite_and_named():
    torch.manual_seed(2)
    net = Harmonizer(HarmonizerConfig.small())
    batch = {"input": torch.rand(2, 3, 16, 16), "target": torch.rand(2, 3, 16, 16), "mask": _mask(2, 16), "shadow": torch.zeros(2, 1, 16, 16)}
    out = net(batch["input"], batch["mask"])
    terms = generator_loss(net, out, batch)
    assert set(terms) == {"loss", "l1", "shadow", "adversarial"}
    c = net.config
    terms = {k: float(v.detach()) for k, v in terms.items()}
    assert terms["loss"] == pytest.approx(terms["l1"] + c.shadow_weight * terms["shadow"] + c.adv_weight * terms["adversarial"], rel=1e-6)
    assert torch.isfinite(discriminator_loss(net, out["image"], batch))


def test_errors():
    with pytest.raises(ValueError, match="levels must be a positive integer"):
        HarmonizerConfig(levels=0)
    with pytest.raises(ValueError, match="adv_weight must be non-negative"):
        HarmonizerConfig(adv_weight=-1.0)
    net = Harmonizer(HarmonizerConfig.small())
    with pytest.raises(ValueError, match=r"mask must have shape \(B, 1, H, W\)"):
        net(torch.rand(1, 3, 16, 16), torch.ones(1, 16, 16))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 3, 18, 16), torch.ones(1, 1, 18, 16))
