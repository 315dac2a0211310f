"""TSHRNet: the official layer sizes, shared middle layers, the three-stage wiring, errors."""

from __future__ import annotations

import pytest
import torch

from sparsesel.nets.tshrnet import HighlightUNet, TSHRNet, TSHRNetConfig, tshrnet_loss


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("in_channels, expected", [(3, 29_245_507), (6, 29_248_579), (9, 29_251_651)])
def test_paper_unet_has_the_official_parameter_count(in_channels, expected):
    # counts of the official models/UNet.py (input_channels, output_channels=3)
    with torch.device("meta"):  # shapes only, no memory or initialisation
        net = HighlightUNet(in_channels, 3, TSHRNetConfig.paper())
    assert _count(net) == expected


def test_shared_layers_run_several_times_with_one_set_of_weights():
    config = TSHRNetConfig(width=4, levels=2, shared_repeats=3, max_width_mult=2)
    net = HighlightUNet(3, 3, config)
    calls = {"down": 0, "up": 0}
    net.shared_down.register_forward_hook(lambda *a: calls.__setitem__("down", calls["down"] + 1))
    net.shared_up.register_forward_hook(lambda *a: calls.__setitem__("up", calls["up"] + 1))
    out = net(torch.rand(2, 3, 64, 64))
    assert calls == {"down": 3, "up": 3}
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1
    assert config.multiple == 64


def test_three_stages_are_wired_as_the_paper():
    torch.manual_seed(0)
    net = TSHRNet(TSHRNetConfig(width=4, levels=2, shared_repeats=1, max_width_mult=2)).eval()
    image = torch.rand(1, 3, 16, 16)
    out = net(image)
    torch.testing.assert_close(out["diffuse_coarse"], out["albedo"] * out["shading"])
    torch.testing.assert_close(out["residue"], image - out["albedo"] * out["shading"])
    # stage 2 sees (A·S, I); stage 3 sees (refined, R, I): rebuild them by hand
    unit = lambda t: (t + 1) / 2  # noqa: E731
    refined = unit(net.refine_net(torch.cat([out["diffuse_coarse"], image], 1) * 2 - 1))
    torch.testing.assert_close(out["diffuse"], refined)
    toned = unit(net.tone_net(torch.cat([refined, out["residue"], image], 1) * 2 - 1))
    torch.testing.assert_close(out["diffuse_tc"], toned)
    assert net.restore(torch.rand(3, 21, 9)).shape == (3, 21, 9)


def test_loss_is_the_sum_of_five_mses():
    out = {k: torch.zeros(1, 3, 4, 4) for k in ("albedo", "shading", "residue", "diffuse", "diffuse_tc")}
    batch = {k: torch.full((1, 3, 4, 4), v) for k, v in (("albedo", 1.0), ("shading", 2.0), ("residue", 0.5), ("diffuse", 1.0), ("target", 3.0))}
    assert float(tshrnet_loss(out, batch)) == pytest.approx(1 + 4 + 0.25 + 1 + 9)
    with pytest.raises(ValueError, match=r"needs batch keys \['albedo'"):
        tshrnet_loss(out, {"target": batch["target"]})


def test_errors():
    with pytest.raises(ValueError, match="width must be a positive integer"):
        TSHRNetConfig(width=0)
    with pytest.raises(ValueError, match="shared_repeats"):
        TSHRNetConfig(shared_repeats=-1)
    with pytest.raises(ValueError, match="unknown TSHRNetConfig options"):
        TSHRNetConfig.from_dict({"depth": 3})
    net = TSHRNet(TSHRNetConfig.small())
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 48, 48))
