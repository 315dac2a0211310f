"""Fast compressed kernels and the deploy step (issue 19, item 3).

References are independent of the code under test: ``F.conv2d`` with the layer's dense weight
(the Tucker-2 / low-rank reconstruction), a network whose factorized layers are replaced by plain
convolutions holding that weight, and torch's profiler for the kernels that run.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.compress import deploy
from sparsesel.compress.deploy import refolded, resolve_device
from sparsesel.compress.factorized import BlockSparseLinear, LowRankConv, LowRankLinear, Tucker2Conv, factorize
from sparsesel.nets import zoo
from sparsesel.nets.layers import pointwise_conv
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig

SMALL = UHDformerConfig(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)
FACTORIZED = (Tucker2Conv, LowRankConv, LowRankLinear, BlockSparseLinear)


def _randomized(config: UHDformerConfig, seed: int) -> UHDformer:
    model = UHDformer(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.5 / max(1, p[0].numel()) ** 0.5
            p.copy_(torch.randn(p.shape, generator=gen) * scale + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
            if name.endswith("gamma"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
    return model


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


#: layers of the small UHDformer factorized below partial rank: ConvNeXt 3x3 convs (folded into fc1),
#: the up-sampling conv (folded with the fusion), a strided conv (down), 1x1 layers (reductions, fc2)
PARTIAL = {
    "shallow.conv": ("tucker2", [3, 2]),
    "tail.1.conv": ("tucker2", [2, 3]),
    "up": ("tucker2", [3, 2]),
    "down": ("tucker2", [2, 2]),
    "groups.0.units.0.attn.match.reduce": ("lowrank", [3]),
    "middle.fc2": ("lowrank", [3]),
    "deep.fc1": ("blocks", [6, 2, 2]),
}


def _compressed(seed: int = 3) -> UHDformer:
    model = _randomized(SMALL, seed)
    for name, (kind, ranks) in PARTIAL.items():
        _set(model, name, factorize(model.get_submodule(name), kind, ranks))
    return model


def _dense_reference(model: nn.Module) -> nn.Module:
    """The same network with every factorized layer replaced by a plain layer holding its dense weight."""
    reference = copy.deepcopy(model)
    for name, module in list(reference.named_modules()):
        if isinstance(module, FACTORIZED):
            weight = module.weight.detach()
            if weight.dim() == 2:
                dense = nn.Linear(weight.shape[1], weight.shape[0], bias=module.bias is not None)
            else:
                conv = module.core if isinstance(module, Tucker2Conv) else module.first
                dense = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2:], stride=conv.stride,
                                  padding=conv.padding, bias=module.bias is not None)
            with torch.no_grad():
                dense.weight.copy_(weight.view_as(dense.weight))
                if module.bias is not None:
                    dense.bias.copy_(module.bias.detach())
            _set(reference, name, dense)
    return reference


# -- pointwise_conv and the factorized forward -------------------------------------------------


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "sliced_channels_last"])
@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_conv_equals_conv2d_and_keeps_the_layout(layout, bias):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 9, 11, generator=gen)
    if layout != "contiguous":
        x = x.contiguous(memory_format=torch.channels_last)
    if layout == "sliced_channels_last":
        x = x[:, :, 1:8, 2:10]
    weight = torch.randn(5, 6, 1, 1, generator=gen)
    b = torch.randn(5, generator=gen) if bias else None
    got = pointwise_conv(x, weight, b)
    assert torch.allclose(got, F.conv2d(x, weight, b), atol=1e-5)
    if layout == "contiguous":
        assert got.is_contiguous()
    else:
        assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("case", ["3x3", "stride2", "reflect", "lowrank", "lowrank_stride2"])
def test_factorized_forward_equals_its_dense_weight(layout, case):
    gen = torch.Generator().manual_seed(1)
    if case.startswith("lowrank"):
        conv = nn.Conv2d(7, 9, 1, stride=2 if case.endswith("2") else 1)
        layer, kind = factorize(conv, "lowrank", [3]), "lowrank"
    else:
        conv = nn.Conv2d(7, 9, 3, stride=2 if case == "stride2" else 1, padding=1,
                         padding_mode="reflect" if case == "reflect" else "zeros")
        layer, kind = factorize(conv, "tucker2", [4, 3]), "tucker2"
    x = torch.randn(2, 7, 12, 10, generator=gen)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    expected = conv._conv_forward(x, layer.weight.detach(), layer.bias.detach()) if kind == "tucker2" else \
        F.conv2d(x, layer.weight.detach(), layer.bias.detach(), stride=conv.stride)
    with torch.no_grad():
        assert (layer(x) - expected).abs().max().item() <= 1e-5


def _slow_conv_calls(fn) -> int:
    from torch.profiler import profile

    with profile() as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key == "aten::_slow_conv2d_forward")


def test_factorized_layers_never_take_the_slow_convolution_path():
    """At tile sizes (a core input above torch's 20480-element threshold: below it torch itself
    prefers its native kernel for a 3x3 conv, measured faster there) no kernel of a factorized
    layer is ``_slow_conv2d_forward``, in either memory format; its 1x1 factors never are."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: where torch sends 1x1 convolutions to im2col
    try:
        layers = [factorize(nn.Conv2d(16, 16, 3, padding=1), "tucker2", [5, 5]), factorize(nn.Conv2d(16, 32, 1), "lowrank", [4])]
        dense_1x1 = nn.Conv2d(16, 16, 1)
        for layout in (torch.contiguous_format, torch.channels_last):
            x = torch.randn(1, 16, 80, 80).contiguous(memory_format=layout)
            with torch.no_grad():
                assert _slow_conv_calls(lambda: dense_1x1(x)) >= 1  # the reference: torch does take it
                for layer in layers:
                    assert _slow_conv_calls(lambda: layer(x)) == 0, (type(layer).__name__, layout)
                    assert layer(x).is_contiguous(memory_format=layout)  # one memory format throughout
    finally:
        torch.set_num_threads(threads)


# -- UHDformer with factorized layers: folds give what the dense weights give --------------------


@pytest.mark.parametrize("tile", [4, 8, 1000])
def test_compressed_uhdformer_equals_its_dense_reference(tile):
    model = _compressed()
    reference = _dense_reference(model)
    x = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(5))
    model.tile_size = reference.tile_size = tile
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_compressed_uhdformer_single_pass_equals_tiled():
    model = _compressed(seed=8)
    x = torch.rand(1, 3, 24, 16, generator=torch.Generator().manual_seed(6))
    model.tile_size = 8
    with torch.no_grad():
        tiled = model(x)
        model.single_pass = True
        whole = model(x)
    assert (whole - tiled).abs().max().item() <= 1e-5


# -- deploy --------------------------------------------------------------------------------------


@pytest.mark.parametrize("refold", ["always", "never", "auto"])
def test_deploy_computes_the_same_function(refold):
    model = _compressed()
    deployed = deploy(model, refold=refold, example_size=(16, 16), device="cpu", repeats=2)
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = _dense_reference(model)(x)
        assert (deployed(x) - expected).abs().max().item() <= 1e-5
    assert any(isinstance(m, FACTORIZED) for m in model.modules())  # the input is not modified
    kinds = {type(m) for m in deployed.modules()}
    report = {entry["name"]: entry for entry in deployed.deploy_report}
    assert set(report) == set(PARTIAL)
    assert report["deep.fc1"]["form"] == "dense"  # block-sparse: always refolded
    if refold == "always":
        assert not kinds & set(FACTORIZED)
    if refold == "never":
        assert {name for name, e in report.items() if e["form"] == "factorized"} == set(PARTIAL) - {"deep.fc1"}
    if refold == "auto":
        for name, entry in report.items():
            if name != "deep.fc1":
                assert entry["ms_factorized"] > 0 and entry["ms_dense"] > 0, name
                faster = "dense" if entry["ms_dense"] < entry["ms_factorized"] else "factorized"
                assert entry["form"] == faster, name
    assert not deployed.training


def test_deployed_refolds_save_and_load(tmp_path):
    model = _compressed()
    model.structure = [{"kind": "sparsesel.compress.factorize", "args": {"name": n, "factorization": k, "ranks": r}}
                       for n, (k, r) in PARTIAL.items()]
    deployed = deploy(model, refold="always", device="cpu")
    assert deployed.structure == []
    path = zoo.save_net(deployed, tmp_path / "deployed.pt", net="uhdformer")
    loaded, _ = zoo.load_net(path)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(loaded(x), deployed(x))


def test_refolded_layers_hold_the_dense_weight():
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1, padding_mode="reflect")
    tucker = factorize(conv, "tucker2", [3, 3])
    dense = refolded(tucker)
    assert type(dense) is nn.Conv2d and dense.stride == (2, 2) and dense.padding_mode == "reflect"
    assert torch.equal(dense.weight, tucker.weight.detach())
    linear = factorize(nn.Linear(8, 6), "lowrank", [2])
    assert type(refolded(linear)) is nn.Linear
    with pytest.raises(TypeError, match="refolded\\(\\) takes a factorized layer"):
        refolded(conv)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"refold": "sometimes"}, ValueError, "refold must be one of"),
        ({"repeats": 0}, ValueError, "repeats must be a positive integer"),
        ({"example_size": (0, 8)}, ValueError, "example_size must be"),
        ({"device": "bogus"}, ValueError, "is not a torch device"),
    ],
)
def test_deploy_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        deploy(_compressed(), **{"device": "cpu", **kwargs})


def test_default_device_is_cuda_only_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")


@pytest.mark.parametrize("form", ["plain", "scatter"])
def test_channel_pruned_upsampling_is_folded_and_equals_its_called_form(form):
    """A pruned ``up`` is a smaller plain conv (folded with the fusion as the original is); the form of
    older files (ScatterOutputConv) declares its scatter as an output split, so the network folds the
    fusion into it and never forms the zero channels.  Either equals calling the layer (forced by a hook)."""
    from sparsesel.compress.channel_pruning import EDIT_KIND, ScatterOutputConv, magnitude_prune_uhdformer, replay_channel_pruning

    model = _randomized(SMALL, seed=12)
    params = sum(p.numel() for p in model.parameters())
    pruned, info = magnitude_prune_uhdformer(model, int(0.8 * params), kinds=("upsample",))
    kept, of = info["groups"]["<net>:upsample"]
    assert kept < of and {"kind": EDIT_KIND, "args": {"kind": "upsample", "module": "", "channels": kept, "form": "plain"}} in pruned.structure
    assert type(pruned.up) is torch.nn.Conv2d and pruned.widths["upsampled"] == kept
    if form == "scatter":  # an edit as older files recorded it, with the pruned weights loaded into it
        old = copy.deepcopy(model)
        replay_channel_pruning(old, "upsample", "", kept)
        assert isinstance(old.up, ScatterOutputConv) and old.widths["upsampled"] == of
        with torch.no_grad():
            old.up.conv.weight.copy_(pruned.up.weight)
            old.fusion.conv.weight.copy_(pruned.fusion.weight)
            old.fusion.conv.bias.copy_(pruned.fusion.bias)
            old.up.index.copy_(pruned_index(model, pruned, kept))
            old.fusion.index[:kept].copy_(old.up.index[:: old.up.conv.out_channels // kept] // (old.up.conv.out_channels // kept))
        x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(13))
        with torch.no_grad():
            torch.testing.assert_close(old(x), pruned(x), rtol=1e-4, atol=1e-5)
        pruned = old
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(13))
    pruned.tile_size = 8
    with torch.no_grad():
        folded = pruned(x)
        handle = pruned.up.register_forward_hook(lambda module, inputs, output: None)
        try:
            called = pruned(x)
        finally:
            handle.remove()
    assert (folded - called).abs().max().item() <= 1e-5


def pruned_index(model, pruned, kept: int) -> torch.Tensor:
    """The rows of the original ``up`` that the pruned one kept (found by comparing weights)."""
    area = model.up.out_channels // model.widths["upsampled"]
    old_rows = model.up.weight.detach().flatten(1)
    new_rows = pruned.up.weight.detach().flatten(1)
    return torch.tensor([int((old_rows == row).all(dim=1).nonzero()[0]) for row in new_rows])
