"""TSHRNet: the official layer sizes, shared middle layers, the three-stage wiring in both value
spaces, the official checkpoint layout, the official output, errors.

The official fixture ``tests/nets/data/tshrnet_official_random_io.pt`` (3.4 MB) was made by
running the official code, ``fu123456/TSHRNet`` at commit ``3aeb48a``, on CPU with torch 2.13
(float32 and float64). Recipe (what was run; the official code itself is not in this repository):

1. ``models/UNet.py`` was copied verbatim from the official repository to a scratch folder
   outside this repository and imported from there.
2. ``torch.manual_seed(1)``; the four networks of ``test_4_networks.py``:
   ``UNet(3, 3)``, ``UNet(3, 3)``, ``UNet(6, 3)``, ``UNet(9, 3)`` (UNet1 … UNet4).
3. The paper-size weights (117 M parameters, 468 MB) are too large for the repository, so they
   are replaced by a seeded generator recipe, which :func:`recipe_state` below re-implements:
   for UNet ``n`` and each entry ``key`` of its ``state_dict()`` (official names), a
   ``torch.Generator`` seeded with ``zlib.crc32(f"UNet{n}.{key}".encode())`` draws
   ``z = randn(shape)`` then ``u = rand(shape)`` (float64), and the entry becomes
   ``z / sqrt(shape[1]·16)`` for ``Cv*.conv.weight``, ``z / sqrt(shape[0]·4)`` for
   ``CvT*.conv.weight``, ``1 + 0.1 z`` for ``*.after.weight`` (BatchNorm scale),
   ``0.5 + u`` for ``*.after.running_var``, ``0.1 z`` for every other float entry (conv
   biases, BatchNorm shifts and running means), and 0 for ``num_batches_tracked``; then it is
   cast to the entry's dtype (float32). The networks are put in eval mode.
4. The input is ``skimage.data.astronaut()[::2, ::2]``, a (256, 256, 3) uint8 image (256 is
   the smallest side the official UNet accepts), as ``(1, 3, 256, 256)``; it was normalised as
   the official ``ImageTransform`` does (``ToTensor`` then ``Normalize((0.5,), (0.5,))``, i.e.
   ``(x / 255 − 0.5) / 0.5``).
5. The body of ``test_4_networks.py``'s ``with torch.no_grad()`` block was run on it:
   ``A = UNet1(img)``, ``S = UNet2(img)``, ``R = img − A·S``, ``D = UNet3(cat[A·S, img])``,
   ``D_tc = UNet4(cat[D, R, img])``; once in float32 and once with the networks and the input
   in float64 (``.to(torch.float64)`` before normalising). Also, in float32, the body of
   ``test_4_networks_mix.py``'s block with the same networks and input: ``D₁ = UNet1(img)``,
   ``R = UNet2(img)``, ``D = UNet3(cat[D₁, img])``, ``D_tc = UNet4(cat[D, R, img])``.
6. Saved with ``torch.save``: ``input_uint8``, ``diffuse_tc`` (D_tc) in float32,
   ``diffuse_tc_float64`` and ``mix_diffuse_tc`` (float32, the mixed-data wiring), all in the
   official ``[−1, 1]`` space, and ``layout``:
   per UNet the list of ``(key, shape, dtype)`` of its official ``state_dict()``, in order.
   The weights were also saved the way ``train_4_networks.py`` saves them
   (``torch.save(DataParallel(net).state_dict(), "UNet{n}_60.pth")``, hence the ``module.``
   prefixes) and :func:`sparsesel.nets.load_tshrnet` read that folder; the test below
   rebuilds the same state dicts in memory instead of writing 468 MB.

Measured there: our TSHRNet with those weights gives exactly the official tensors (max abs
difference 0 in float32 and in float64, and 0 for the mixed-data wiring with
``stage_one="direct"``); the tests assert 1e-5 (float32) and 1e-12 (float64).
The former ``[0, 1]`` computation (``value_space="unit"``) differs from the official output by
0.32 with the same weights.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from pathlib import Path

import pytest
import torch

from sparsesel.nets import load_tshrnet, save_tshrnet_official, zoo
from sparsesel.nets.tshrnet import (
    HighlightUNet,
    TSHRNet,
    TSHRNetConfig,
    from_official_range,
    to_official_range,
    tshrnet_loss,
)
from sparsesel.nets.tshrnet_checkpoints import official_unet_names, tshrnet_from_official, tshrnet_to_official

FIXTURE = Path(__file__).resolve().parent / "data" / "tshrnet_official_random_io.pt"
FLOAT32_BOUND = 1e-5
FLOAT64_BOUND = 1e-12


def recipe_state(n: int, layout: list) -> dict[str, torch.Tensor]:
    """UNet ``n``'s state dict of the fixture recipe (step 3 of the module docstring), official names."""
    state = {}
    for key, shape, dtype in layout:
        dtype = getattr(torch, dtype.removeprefix("torch."))
        if not dtype.is_floating_point:
            state[key] = torch.zeros(shape, dtype=dtype)
            continue
        gen = torch.Generator().manual_seed(zlib.crc32(f"UNet{n}.{key}".encode()))
        z = torch.randn(shape, generator=gen, dtype=torch.float64)
        u = torch.rand(shape, generator=gen, dtype=torch.float64)
        if key.endswith("conv.weight"):
            value = z / math.sqrt(shape[0] * 4 if key.startswith("CvT") else shape[1] * 16)
        elif key.endswith("after.weight"):
            value = 1.0 + 0.1 * z
        elif key.endswith("running_var"):
            value = 0.5 + u
        else:
            value = 0.1 * z
        state[key] = value.to(dtype)
    return state


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


def _tiny(value_space: str = "official", seed: int = 0) -> TSHRNet:
    torch.manual_seed(seed)
    net = TSHRNet(TSHRNetConfig(width=4, levels=2, shared_repeats=1, max_width_mult=2, value_space=value_space))
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def test_official_value_space_is_the_default_and_the_paper_preset():
    assert TSHRNetConfig().value_space == "official"
    assert TSHRNetConfig.paper().value_space == "official" and TSHRNetConfig.small().value_space == "official"


def test_official_stages_are_wired_as_the_official_test_script():
    net = _tiny("official")
    image = torch.rand(2, 3, 16, 16)
    out = net(image)
    # rebuild test_4_networks.py by hand on the normalised image, then unnormalize every result
    x = (image - 0.5) / 0.5
    albedo, shading = net.albedo_net(x), net.shading_net(x)
    refined = net.refine_net(torch.cat([albedo * shading, x], 1))
    toned = net.tone_net(torch.cat([refined, x - albedo * shading, x], 1))
    expected = {"albedo": albedo, "shading": shading, "diffuse_coarse": albedo * shading,
                "residue": x - albedo * shading, "diffuse": refined, "diffuse_tc": toned}
    for key, value in expected.items():
        torch.testing.assert_close(out[key], value * 0.5 + 0.5, msg=key)
    official = net.forward_official(x)
    torch.testing.assert_close(official["diffuse_tc"], toned)
    torch.testing.assert_close(to_official_range(image), x)
    torch.testing.assert_close(from_official_range(x), image)
    assert net.restore(torch.rand(3, 21, 9)).shape == (3, 21, 9)


def test_direct_stage_one_is_wired_as_the_official_mix_script():
    torch.manual_seed(1)
    config = TSHRNetConfig(width=4, levels=2, shared_repeats=1, max_width_mult=2, stage_one="direct")
    net = TSHRNet(config).eval()
    image = torch.rand(1, 3, 16, 16)
    out = net(image)
    assert set(out) == {"diffuse_coarse", "residue", "diffuse", "diffuse_tc"}
    x = (image - 0.5) / 0.5  # test_4_networks_mix.py on the normalised image
    diffuse, residue = net.albedo_net(x), net.shading_net(x)
    refined = net.refine_net(torch.cat([diffuse, x], 1))
    toned = net.tone_net(torch.cat([refined, residue, x], 1))
    for key, value in {"diffuse_coarse": diffuse, "residue": residue, "diffuse": refined, "diffuse_tc": toned}.items():
        torch.testing.assert_close(out[key], value * 0.5 + 0.5, msg=key)
    unit = TSHRNet(dataclasses.replace(config, value_space="unit")).eval()
    unit.load_state_dict(net.state_dict())
    first = (unit.albedo_net(x) + 1) / 2
    torch.testing.assert_close(unit(image)["diffuse"], (unit.refine_net(torch.cat([first, image], 1) * 2 - 1) + 1) / 2)
    with pytest.raises(ValueError, match=r"stage_one must be one of \('intrinsic', 'direct'\)"):
        TSHRNetConfig(stage_one="mix")


def test_unit_stages_combine_physical_quantities():
    net = _tiny("unit")
    image = torch.rand(1, 3, 16, 16)
    out = net(image)
    torch.testing.assert_close(out["diffuse_coarse"], out["albedo"] * out["shading"])
    torch.testing.assert_close(out["residue"], image - out["albedo"] * out["shading"])
    # stage 2 sees (A·S, I); stage 3 sees (refined, R, I), each U-Net in [-1, 1]: rebuild them by hand
    unit = lambda t: (t + 1) / 2  # noqa: E731
    refined = unit(net.refine_net(torch.cat([out["diffuse_coarse"], image], 1) * 2 - 1))
    torch.testing.assert_close(out["diffuse"], refined)
    toned = unit(net.tone_net(torch.cat([refined, out["residue"], image], 1) * 2 - 1))
    torch.testing.assert_close(out["diffuse_tc"], toned)
    # same weights, the other value space: a different function
    official = TSHRNet(TSHRNetConfig(width=4, levels=2, shared_repeats=1, max_width_mult=2)).eval()
    official.load_state_dict(net.state_dict())
    assert (official(image)["diffuse_tc"] - out["diffuse_tc"]).abs().max() > 1e-3


def test_loss_is_the_sum_of_five_mses_in_the_value_space():
    out = {k: torch.zeros(1, 3, 4, 4) for k in ("albedo", "shading", "residue", "diffuse", "diffuse_tc")}
    batch = {k: torch.full((1, 3, 4, 4), v) for k, v in (("albedo", 1.0), ("shading", 2.0), ("residue", 0.5), ("diffuse", 1.0), ("target", 3.0))}
    unit_sum = 1 + 4 + 0.25 + 1 + 9
    assert float(tshrnet_loss(out, batch, value_space="unit")) == pytest.approx(unit_sum)
    # official: MSE between 2x - 1 tensors (targets normalised as in train_4_networks.py) = 4x
    assert float(tshrnet_loss(out, batch)) == pytest.approx(4 * unit_sum)
    weights = {"albedo": 1.0, "shading": 1.0, "residue": 0.01, "diffuse": 1.0, "diffuse_tc": 1.0}
    assert float(tshrnet_loss(out, batch, value_space="unit", weights=weights)) == pytest.approx(unit_sum - 0.99 * 0.25)
    with pytest.raises(ValueError, match=r"needs batch keys \['albedo'"):
        tshrnet_loss(out, {"target": batch["target"]})
    with pytest.raises(ValueError, match="value_space must be one of"):
        tshrnet_loss(out, batch, value_space="physical")
    with pytest.raises(ValueError, match=r"unknown TSHRNet loss terms \['mask'\]"):
        tshrnet_loss(out, batch, weights={"mask": 1.0})
    # train_4_networks_mix.py: MSE(D1, D) + MSE(R) + MSE(D, D) + MSE(D_tc)
    out["diffuse_coarse"] = torch.full((1, 3, 4, 4), 2.0)
    assert float(tshrnet_loss(out, batch, value_space="unit", stage_one="direct")) == pytest.approx(1 + 0.25 + 1 + 9)
    three = {k: batch[k] for k in ("residue", "diffuse", "target")}
    assert float(tshrnet_loss(out, three, stage_one="direct")) == pytest.approx(4 * (1 + 0.25 + 1 + 9))
    with pytest.raises(ValueError, match=r"unknown TSHRNet loss terms \['albedo'\]"):
        tshrnet_loss(out, batch, stage_one="direct", weights={"albedo": 1.0})


# ---------------------------------------------------------------------------
# the official checkpoint layout and the official output
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_official_fixture_output_is_reproduced():
    fixture = torch.load(FIXTURE, weights_only=True)
    states = [{"module." + k: v for k, v in recipe_state(n, layout).items()} for n, layout in enumerate(fixture["layout"], 1)]
    model = tshrnet_from_official(states)  # DataParallel prefixes, as train_4_networks.py saves them
    del states
    assert model.config == TSHRNetConfig.paper() and not model.training
    image = fixture["input_uint8"].to(torch.float32) / 255  # [0, 1] in, [0, 1] out
    with torch.no_grad():
        out = model(image)
    assert (out["diffuse_tc"] - from_official_range(fixture["diffuse_tc"])).abs().max().item() <= FLOAT32_BOUND / 2
    assert (to_official_range(out["diffuse_tc"]) - fixture["diffuse_tc"]).abs().max().item() <= FLOAT32_BOUND
    # the same files read as a mixed-data (train_4_networks_mix.py) checkpoint
    mix = TSHRNet(dataclasses.replace(model.config, stage_one="direct")).eval()
    mix.load_state_dict(model.state_dict())
    with torch.no_grad():
        mixed = mix(image)["diffuse_tc"]
    assert (to_official_range(mixed) - fixture["mix_diffuse_tc"]).abs().max().item() <= FLOAT32_BOUND
    del mix
    model.double()
    with torch.no_grad():
        official = model.forward_official(to_official_range(fixture["input_uint8"].to(torch.float64) / 255))
    assert (official["diffuse_tc"] - fixture["diffuse_tc_float64"]).abs().max().item() <= FLOAT64_BOUND


def test_official_names_follow_the_official_unet():
    fixture = torch.load(FIXTURE, weights_only=True)
    table = official_unet_names(TSHRNetConfig.paper())
    for n, layout in enumerate(fixture["layout"], 1):
        in_channels = (3, 3, 6, 9)[n - 1]
        with torch.device("meta"):
            ours = HighlightUNet(in_channels, 3, TSHRNetConfig.paper()).state_dict()
        mapped = {}
        for key, shape, _ in layout:
            prefix = next(p for p in table if key.startswith(p))
            mapped[table[prefix] + key[len(prefix):]] = tuple(shape)
        assert mapped == {k: tuple(v.shape) for k, v in ours.items()}


def test_official_files_round_trip(tmp_path):
    model = _tiny("official", seed=3)
    paths = save_tshrnet_official(model, tmp_path / "checkpoints_SSHR", epoch=60)
    assert [p.name for p in paths] == ["UNet1_60.pth", "UNet2_60.pth", "UNet3_60.pth", "UNet4_60.pth"]
    raw = torch.load(paths[0], weights_only=True)
    assert {"Cv0.conv.weight", "Cv1.after.running_var", "Cv2.conv.weight", "Cv3.conv.weight", "CvT4.conv.bias",
            "CvT5.after.weight", "CvT6.conv.weight", "CvT7.conv.bias"} <= set(raw)
    loaded = load_tshrnet(tmp_path / "checkpoints_SSHR", shared_repeats=1)
    assert loaded.config == model.config and not loaded.training
    image = torch.rand(1, 3, 16, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image)["diffuse_tc"], model(image)["diffuse_tc"], rtol=0, atol=0)
    # the four files given one by one, with DataParallel prefixes
    for path in paths:
        torch.save({"module." + k: v for k, v in torch.load(path, weights_only=True).items()}, path.with_suffix(".dp.pth"))
    again = load_tshrnet([p.with_suffix(".dp.pth") for p in paths], shared_repeats=1)
    for state, other in zip(tshrnet_to_official(again), tshrnet_to_official(model)):
        assert state.keys() == other.keys() and all(torch.equal(state[k], other[k]) for k in state)


def test_official_checkpoint_errors(tmp_path):
    model = _tiny("official")
    folder = tmp_path / "ckpt"
    with pytest.raises(FileNotFoundError, match="checkpoint folder not found"):
        load_tshrnet(folder)
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no official TSHRNet files"):
        load_tshrnet(folder)
    save_tshrnet_official(model, folder, epoch=10)
    save_tshrnet_official(model, folder, epoch=20)
    with pytest.raises(ValueError, match=r"holds the epochs \['10', '20'\]; pass epoch="):
        load_tshrnet(folder, shared_repeats=1)
    assert load_tshrnet(folder, epoch=20, shared_repeats=1).config == model.config
    with pytest.raises(FileExistsError, match="already exists"):
        save_tshrnet_official(model, folder, epoch=10)
    with pytest.raises(FileNotFoundError, match="UNet1_30.pth"):
        load_tshrnet(folder, epoch=30)
    flat = TSHRNet(TSHRNetConfig(width=4, levels=2, shared_repeats=0, max_width_mult=2))
    save_tshrnet_official(flat, tmp_path / "flat", epoch=1)
    with pytest.raises(ValueError, match=r"UNet1 has no shared middle layer \(Cv2\) but shared_repeats=3"):
        load_tshrnet(tmp_path / "flat")
    assert load_tshrnet(tmp_path / "flat", shared_repeats=0).config == flat.config
    states = tshrnet_to_official(model)
    with pytest.raises(ValueError, match="four official state dicts"):
        tshrnet_from_official(states[:3])
    bad = [dict(s) for s in states]
    bad[2]["Cv9.conv.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"UNet3: keys that are not parameters of the official UNet: \[Cv9.conv.weight\]"):
        tshrnet_from_official(bad, shared_repeats=1)
    bad = [dict(s) for s in states]
    del bad[3]["CvT6.after.running_var"]
    with pytest.raises(ValueError, match=r"UNet4: does not fit .* missing keys \['CvT6.after.running_var'\]"):
        tshrnet_from_official(bad, shared_repeats=1)
    with pytest.raises(ValueError, match=r"UNet2: does not fit .* wrong shapes"):
        tshrnet_from_official([states[0], states[2], states[2], states[3]], shared_repeats=1)
    with pytest.raises(ValueError, match="UNet1: expected a non-empty state dict"):
        tshrnet_from_official([[], *states[1:]])
    with pytest.raises(ValueError, match="value_space='official'"):
        save_tshrnet_official(_tiny("unit"), tmp_path / "unit", epoch=1)
    # one official U-Net file given to the generic loader
    with pytest.raises(ValueError, match=r"one U-Net of an official TSHRNet checkpoint .*load_tshrnet\(folder\)"):
        zoo.load_net(folder / "UNet1_10.pth")


def test_files_saved_before_value_spaces_load_in_the_unit_space(tmp_path):
    model = _tiny("unit")
    config = {key: value for key, value in model.config.to_dict().items() if key != "value_space"}
    path = tmp_path / "old.pt"  # the "sparsesel.nets" format save_net wrote before value spaces (and before edits)
    torch.save({"format": "sparsesel.nets", "version": 1, "net": "tshrnet", "config": config, "meta": {},
                "params": model.state_dict()}, path)
    loaded, info = zoo.load_net(path)
    assert loaded.config.value_space == "unit" and info["config"]["value_space"] == "unit"
    image = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(image)["diffuse_tc"], model(image)["diffuse_tc"])
    round_trip, _ = zoo.load_net(zoo.save_net(_tiny("official"), tmp_path / "new.pt", net="tshrnet"))
    assert round_trip.config.value_space == "official"


def test_errors():
    with pytest.raises(ValueError, match="width must be a positive integer"):
        TSHRNetConfig(width=0)
    with pytest.raises(ValueError, match="shared_repeats"):
        TSHRNetConfig(shared_repeats=-1)
    with pytest.raises(ValueError, match="unknown TSHRNetConfig options"):
        TSHRNetConfig.from_dict({"depth": 3})
    with pytest.raises(ValueError, match=r"value_space must be one of \('official', 'unit'\)"):
        TSHRNetConfig(value_space="physical")
    net = TSHRNet(TSHRNetConfig.small())
    with pytest.raises(ValueError, match="multiples of 32"):
        net(torch.rand(1, 3, 48, 48))
