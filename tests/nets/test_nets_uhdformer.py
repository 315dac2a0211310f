"""UHDformer: official fixture, config inference round trips, restore(), checkpoint errors.

References: the official network's stored output (``shared/fixtures``), an
independent functional transcription of the official forward
(``test_nets_uhdformer_reference.py``, itself checked on the fixture), the
paper's parameter count, and torch's own reflect padding.

``tests/nets/data/uhdformer_official_random_out64.pt`` holds the official output in float64. It
was made by running the official code (``supersupercong/UHDformer`` at ``db0a2e1``): its
``basicsr/archs/femasr_arch.py`` was copied to a scratch folder outside this repository, with
stand-ins for the imports the forward pass does not use (the BasicSR registry decorator,
``fema_utils``, ``vgg_arch``, timm's ``DropPath``/``trunc_normal_``, torchvision's ``vgg19``) and
einops 0.8.2 installed beside it; ``FeMaSRNet(**config)`` (the fixture's recorded config without
``unit_num``, which ``FeMaSRNet`` does not pass on; ``Net``'s default is the recorded 3) loaded
``uhdformer_official_random_g.pth`` strictly, was put in eval mode and converted with
``.double()``, and ``restoration_network(input.double())`` on the fixture's input was saved
under ``output_float64``.

Measured on this repository's CPU with torch 2.13 (max abs difference, outputs up to 2.6 in
magnitude): ours vs the stored official float32 output 1.3e-6 (the official code rerun here
differs from its own stored output by 7.2e-7); ours vs the official code in float64 2.2e-15.
The tests assert 3e-6 and 1e-12.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_nets_uhdformer_reference import RecordingDict, reference_forward

from sparsesel.nets import UHDformer, UHDformerConfig, load_checkpoint, load_uhdformer, save_checkpoint
from sparsesel.nets.checkpoints import infer_uhdformer_config, official_to_ours, ours_to_official, register_structure_op

# the fixture lives beside the repository (../shared/fixtures); a copy in tests/nets/data is used first
_HERE = Path(__file__).resolve().parent
FIXTURES = next(
    (d for d in (_HERE / "data", _HERE.parents[2] / "shared" / "fixtures") if (d / "uhdformer_official_random_g.pth").is_file()),
    _HERE / "data",
)
FIXTURE_G = FIXTURES / "uhdformer_official_random_g.pth"
FIXTURE_IO = FIXTURES / "uhdformer_official_random_io.pt"
FIXTURE_OUT64 = _HERE / "data" / "uhdformer_official_random_out64.pt"
FLOAT32_BOUND = 3e-6  # README: "1.3e-6 in float32"
FLOAT64_BOUND = 1e-12  # README: "2.2e-15 in float64"
needs_fixture = pytest.mark.skipif(not FIXTURE_G.is_file(), reason=f"official fixture not found in {FIXTURES}")


def _official_cfg(config: UHDformerConfig) -> dict:
    return {k: getattr(config, k) for k in ("number_block", "unit_num", "scale_factor", "attention_matching", "ffn_matching", "ffn_restormer")}


def _randomized(config: UHDformerConfig, seed: int) -> UHDformer:
    model = UHDformer(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.15)
    return model


def _official_state(model: UHDformer) -> dict[str, torch.Tensor]:
    return ours_to_official(model.state_dict())


# ---------------------------------------------------------------------------
# the official fixture
# ---------------------------------------------------------------------------


@needs_fixture
def test_fixture_output_matches_official():
    model = load_uhdformer(FIXTURE_G)
    io = torch.load(FIXTURE_IO, weights_only=True)
    assert not model.training
    assert model.config == UHDformerConfig.paper()
    with torch.no_grad():
        out = model(io["input"])
    assert out.shape == io["output"].shape
    assert (out - io["output"]).abs().max().item() <= FLOAT32_BOUND


@needs_fixture
def test_fixture_output_matches_official_in_float64():
    model = load_uhdformer(FIXTURE_G).double()
    io = torch.load(FIXTURE_IO, weights_only=True)
    official = torch.load(FIXTURE_OUT64, weights_only=True)["output_float64"]
    with torch.no_grad():
        out = model(io["input"].double())
    assert out.dtype == torch.float64 and out.shape == official.shape
    assert (out - official).abs().max().item() <= FLOAT64_BOUND


@needs_fixture
def test_reference_reproduces_fixture_and_uses_every_official_key():
    raw = torch.load(FIXTURE_G, weights_only=True)["params"]
    sd = RecordingDict({k.removeprefix("restoration_network."): v for k, v in raw.items()})
    io = torch.load(FIXTURE_IO, weights_only=True)
    with torch.no_grad():
        out = reference_forward(sd, io["config"], io["input"])
    assert (out - io["output"]).abs().max().item() <= 1e-4
    assert sd.read == set(sd)


@needs_fixture
def test_fixture_config_matches_recorded_official_config():
    io = torch.load(FIXTURE_IO, weights_only=True)
    config = load_uhdformer(FIXTURE_G).config
    recorded = dict(io["config"])
    recorded["layernorm_type"] = recorded.pop("LayerNorm_type")
    assert {k: getattr(config, k) for k in recorded} == recorded


def test_paper_parameter_count():
    model = UHDformer(UHDformerConfig.paper())
    assert sum(p.numel() for p in model.parameters()) == 339_323  # the paper's 0.3393 M
    assert UHDformerConfig.paper() == UHDformerConfig()


# ---------------------------------------------------------------------------
# other configurations: reference, config inference, both layouts
# ---------------------------------------------------------------------------

CONFIGS = [
    # (config, batch, height, width)
    (UHDformerConfig(width=8, number_block=2, unit_num=2, num_heads=4, match_factor=2, ffn_expansion_factor=2,
                     scale_factor=4, bias=False, layernorm_type="BiasFree"), 2, 24, 16),
    (UHDformerConfig(width=12, number_block=1, unit_num=3, num_heads=3, match_factor=3, ffn_expansion_factor=3,
                     attention_matching=False), 1, 16, 40),
    (UHDformerConfig(width=16, number_block=2, unit_num=1, num_heads=2, match_factor=1, ffn_expansion_factor=2.625,
                     scale_factor=2, ffn_restormer=True), 2, 10, 6),
    (UHDformerConfig(width=6, number_block=1, unit_num=2, num_heads=1, match_factor=2, ffn_expansion_factor=1.5,
                     scale_factor=4, layernorm_type="BiasFree", attention_matching=False, ffn_matching=False,
                     ffn_restormer=True), 1, 12, 20),
    (UHDformerConfig(width=10, number_block=3, unit_num=1, num_heads=5, match_factor=5, ffn_expansion_factor=1,
                     scale_factor=8, bias=False), 2, 16, 24),
    (UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=4, ffn_expansion_factor=2,
                     scale_factor=4, ffn_matching=False), 1, 8, 12),
]


@pytest.mark.parametrize(("config", "batch", "height", "width"), CONFIGS)
def test_config_round_trip_both_layouts(tmp_path, config, batch, height, width):
    model = _randomized(config, seed=batch * 100 + height + width)
    x = torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(3))
    sd = RecordingDict(_official_state(model))
    with torch.no_grad():
        expected = reference_forward(sd, _official_cfg(config), x)
        direct = model(x)
    assert sd.read == set(sd)  # every official parameter is used by the reference
    tol = 1e-4 * max(1.0, expected.abs().max().item())
    assert (direct - expected).abs().max().item() <= tol

    ours_path = save_checkpoint(model, tmp_path / "ours.pt", meta={"note": "round trip"})
    official_path = save_checkpoint(model, tmp_path / "official.pth", layout="official")
    raw = torch.load(official_path, weights_only=True)
    assert set(raw) == {"params"} and all(k.startswith("restoration_network.") for k in raw["params"])
    torch.save({k.removeprefix("restoration_network."): v for k, v in raw["params"].items()}, tmp_path / "plain.pth")
    for path in (ours_path, official_path, tmp_path / "plain.pth"):
        loaded = load_uhdformer(path)
        assert not loaded.training
        # our format records the config as given; from tensors alone only the canonical form is knowable
        assert loaded.config == (config if path == ours_path else config.canonical())
        assert loaded.config.num_matching == config.num_matching or not config.uses_matching
        assert loaded.config.hidden_features == config.hidden_features
        with torch.no_grad():
            assert torch.equal(loaded(x), direct), path.name


def test_tiling_does_not_change_the_output():
    config = UHDformerConfig(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)
    model = _randomized(config, seed=5)
    x = torch.rand(2, 3, 44, 36, generator=torch.Generator().manual_seed(1))
    sd = _official_state(model)
    with torch.no_grad():
        expected = reference_forward(sd, _official_cfg(config), x)
        outs = []
        for tile in (4, 8, 12, 1000):
            model.tile_size = tile
            outs.append(model(x))
    tol = 1e-4 * max(1.0, expected.abs().max().item())
    for out in outs:
        assert (out - expected).abs().max().item() <= tol


def test_gradients_flow():
    config = UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)
    model = _randomized(config, seed=2).train()
    model.tile_size = 8
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    model(x).square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert model.groups[0].units[0].attn.match.reduce.weight.grad.abs().sum() > 0
    assert model.up.weight.grad.abs().sum() > 0


def test_key_renaming_is_a_bijection():
    for config, *_ in CONFIGS:
        ours = UHDformer(config).state_dict()
        official = ours_to_official(ours)
        assert len(official) == len(ours)
        assert set(official_to_ours(official)) == set(ours)


# ---------------------------------------------------------------------------
# restore(): any size
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    config = UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)
    model = UHDformer(config).eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return model


@pytest.mark.parametrize(("height", "width"), [(37, 53), (8, 8), (5, 3), (1, 9), (16, 17)])
def test_restore_any_size(small_model, height, width):
    image = torch.rand(3, height, width, generator=torch.Generator().manual_seed(height * width))
    out = small_model.restore(image)
    assert out.shape == image.shape
    assert out.min() >= 0 and out.max() <= 1
    batch = small_model.restore(torch.stack([image, image.flip(-1)]), clamp=False)
    assert batch.shape == (2, 3, height, width)
    assert torch.allclose(batch[0].clamp(0, 1), out, atol=1e-5)


def test_restore_matches_manual_reflect_padding(small_model):
    image = torch.rand(1, 3, 37, 53, generator=torch.Generator().manual_seed(7))
    padded = F.pad(image, (0, 3, 0, 3), mode="reflect")  # 40 x 56
    with torch.no_grad():
        expected = small_model(padded)[:, :, :37, :53]
    assert torch.allclose(small_model.restore(image, clamp=False), expected, atol=1e-6)


def test_restore_numpy_uint8(small_model):
    image = (np.random.default_rng(0).random((21, 30, 3)) * 255).astype(np.uint8)
    out = small_model.restore(image)
    assert isinstance(out, np.ndarray) and out.shape == (21, 30, 3) and out.dtype == np.float32
    expected = small_model.restore(torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1))
    np.testing.assert_allclose(out, expected.permute(1, 2, 0).numpy(), atol=1e-6)


def test_forward_rejects_sizes_not_multiple_of_scale(small_model):
    with pytest.raises(ValueError, match="multiples of 8"):
        small_model(torch.rand(1, 3, 12, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        small_model(torch.rand(3, 16, 16))


# ---------------------------------------------------------------------------
# configuration checks
# ---------------------------------------------------------------------------


def test_config_validation():
    with pytest.raises(ValueError, match="num_heads .* must divide width"):
        UHDformerConfig(width=16, num_heads=3)
    with pytest.raises(ValueError, match="multiple of width"):
        UHDformerConfig(width=16, ffn_expansion_factor=2.5)
    with pytest.raises(ValueError, match="keeps no channel"):
        UHDformerConfig(width=4, num_heads=1, match_factor=8)
    with pytest.raises(ValueError, match="layernorm_type"):
        UHDformerConfig(layernorm_type="Batch")
    with pytest.raises(TypeError, match="bias must be a bool"):
        UHDformerConfig(bias=1)
    with pytest.raises(ValueError, match=r"unknown UHDformer config field\(s\) \['depth'\]"):
        UHDformerConfig.from_dict({"depth": 3})
    # a Restormer feed-forward network accepts any expansion (e.g. Restormer's 2.66)
    assert UHDformerConfig(ffn_restormer=True, ffn_expansion_factor=2.66).hidden_features == 42


# ---------------------------------------------------------------------------
# bad checkpoints
# ---------------------------------------------------------------------------


def _small_official(tmp_path) -> tuple[Path, dict]:
    config = UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)
    path = save_checkpoint(_randomized(config, 1), tmp_path / "net_g.pth", layout="official")
    return path, torch.load(path, weights_only=True)


def test_truncated_and_corrupt_files(tmp_path):
    path, _ = _small_official(tmp_path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"truncated\.pth.*corrupt or truncated"):
        load_uhdformer(truncated)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ValueError, match=r"garbage\.pth.*corrupt"):
        load_uhdformer(garbage)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pth"):
        load_uhdformer(empty)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_uhdformer(tmp_path / "missing.pth")


class _Exploit:
    """Unpickling this calls os.system (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    plain = tmp_path / "evil.pkl"
    with open(plain, "wb") as handle:
        pickle.dump({"params": _Exploit(marker)}, handle)
    zipped = tmp_path / "evil.pth"
    torch.save({"params": {"enter.0.weight": torch.zeros(1)}, "payload": _Exploit(marker)}, zipped)
    for path in (plain, zipped):
        with pytest.raises(ValueError, match=rf"cannot read checkpoint .*{path.name} safely.*could run code"):
            load_uhdformer(path)
        with pytest.raises(ValueError, match="not unpickled"):
            load_checkpoint(path)
    assert not marker.exists()


def test_missing_unexpected_and_misshapen_keys(tmp_path):
    _, raw = _small_official(tmp_path)
    params = raw["params"]

    missing = dict(params)
    del missing["restoration_network.block.0.TransformerBlock.0.ffn.project_out.1.bias"]
    torch.save({"params": missing}, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"missing\.pth.*missing key\(s\): block\.0\.TransformerBlock\.0\.ffn\.project_out\.1\.bias"):
        load_uhdformer(tmp_path / "missing.pth")

    extra = dict(params)
    extra["restoration_network.extra_head.weight"] = torch.zeros(3)
    torch.save({"params": extra}, tmp_path / "extra.pth")
    with pytest.raises(ValueError, match=r"unexpected key.*extra_head\.weight"):
        load_uhdformer(tmp_path / "extra.pth")

    misshapen = dict(params)
    misshapen["restoration_network.fusion.bias"] = torch.zeros(9)
    torch.save({"params": misshapen}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match=r"wrong shape\(s\): fusion\.bias: checkpoint \(9,\) vs network \(8,\)"):
        load_uhdformer(tmp_path / "shape.pth")

    no_block = {k: v for k, v in params.items() if ".block." not in k}
    torch.save(no_block, tmp_path / "noblock.pth")
    with pytest.raises(ValueError, match="no transformer blocks"):
        load_uhdformer(tmp_path / "noblock.pth")

    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other\.pth: no UHDformer parameters"):
        load_uhdformer(tmp_path / "other.pth")

    torch.save({"params": {**params, "restoration_network.note": "x"}}, tmp_path / "nontensor.pth")
    with pytest.raises(ValueError, match="not tensors: restoration_network.note"):
        load_uhdformer(tmp_path / "nontensor.pth")


def test_our_format_errors(tmp_path):
    config = UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)
    path = save_checkpoint(_randomized(config, 1), tmp_path / "ours.pt")
    with pytest.raises(FileExistsError):
        save_checkpoint(UHDformer(config), path)
    obj = torch.load(path, weights_only=True)
    assert obj["format"] == "sparsesel.network" and obj["version"] == 1 and obj["net"] == "uhdformer"
    assert obj["config"] == config.to_dict() and obj["edits"] == []

    torch.save({**obj, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="unsupported sparsesel.network version 99"):
        load_uhdformer(tmp_path / "future.pt")
    torch.save({**obj, "format": "sparsesel.csattn"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is a 'sparsesel.csattn' checkpoint"):
        load_uhdformer(tmp_path / "other.pt")
    torch.save({**obj, "config": {**obj["config"], "width": 16}}, tmp_path / "lying.pt")
    with pytest.raises(ValueError, match=r"lying\.pt does not fit .*wrong shape"):
        load_uhdformer(tmp_path / "lying.pt")
    torch.save({**obj, "edits": [{"kind": "no_such_edit", "args": {}}]}, tmp_path / "edit.pt")
    with pytest.raises(ValueError, match="unknown structural edit 'no_such_edit'"):
        load_uhdformer(tmp_path / "edit.pt")
    torch.save({**obj, "net": "csattn"}, tmp_path / "csattn.pt")
    with pytest.raises(ValueError, match="bad configuration .*unknown CSAttnConfig options"):
        load_uhdformer(tmp_path / "csattn.pt")


def test_files_of_the_earlier_uhdformer_format_load(tmp_path):
    """``{"format": "sparsesel.uhdformer", ..., "structure": [...]}``, as written before the one format."""
    config = UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)
    model = _randomized(config, 1)
    legacy = {"format": "sparsesel.uhdformer", "version": 1, "config": config.to_dict(), "structure": [], "meta": {},
              "state_dict": model.state_dict()}
    torch.save(legacy, tmp_path / "old.pt")
    loaded = load_uhdformer(tmp_path / "old.pt")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    torch.save({**legacy, "version": 99}, tmp_path / "future.pt")
    with pytest.raises(ValueError, match="unsupported sparsesel.uhdformer version 99"):
        load_uhdformer(tmp_path / "future.pt")
    torch.save({**legacy, "structure": [{"kind": "no_such_edit", "args": {}}]}, tmp_path / "edit.pt")
    with pytest.raises(ValueError, match="unknown structural edit 'no_such_edit'"):
        load_uhdformer(tmp_path / "edit.pt")
    torch.save({**legacy, "structure": "x"}, tmp_path / "notlist.pt")
    with pytest.raises(ValueError, match="'structure' must be a list"):
        load_uhdformer(tmp_path / "notlist.pt")


@register_structure_op("test_uhdformer_head_without_bias")
def _head_without_bias(model: UHDformer) -> None:
    model.head = torch.nn.Conv2d(model.config.width, 3, 3, padding=1, bias=False)


def test_structural_edits_are_replayed(tmp_path):
    config = UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)
    model = _randomized(config, 4)
    _head_without_bias(model)
    model.structure.append({"kind": "test_uhdformer_head_without_bias", "args": {}})
    path = save_checkpoint(model, tmp_path / "edited.pt")
    loaded = load_uhdformer(path)
    assert loaded.head.bias is None and loaded.structure == model.structure
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="structural edits cannot be written in the official layout"):
        save_checkpoint(model, tmp_path / "edited.pth", layout="official")


def test_infer_config_names_missing_key():
    sd = UHDformer(UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2)).state_dict()
    del sd["down.weight"]
    with pytest.raises(ValueError, match="missing key 'down.weight'"):
        infer_uhdformer_config(sd)
