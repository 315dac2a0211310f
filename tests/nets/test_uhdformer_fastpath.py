"""UHDformer's weight-folding fast paths give way to the modules that replace (or hook) its layers.

The network folds the weights of ``up``, ``fusion``, ``acm.mix``/``acm.spread``, every DualCMT
``reduce`` and the ConvNeXt ``fc2`` layers.  A factorized replacement (sparsesel.compress) must be
*called* -- its cheap forward, not its dense ``.weight`` rebuilt each pass (the 1x1 ones may be
folded by calling them on unit vectors) -- and at full rank the network must compute what the
original computes.  Hooked layers (plain or not) are called on the data, so tracers and profilers
see them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsesel.compress.factorized import LowRankConv, LowRankLinear, Tucker2Conv, factorize
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig, is_plain_layer, pointwise_affine_map
from sparsesel.nets.zoo import load_net

DEMO = Path(__file__).resolve().parents[2] / "sparsesel" / "assets" / "uhdformer_lowlight.pt"
SMALL = UHDformerConfig(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)


def _randomized(config: UHDformerConfig, seed: int) -> UHDformer:
    model = UHDformer(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / max(1, p[0].numel()) ** 0.5) + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model


def _fast_path_layers(model: UHDformer) -> dict[str, str]:
    """``{layer name: factorization}`` of every layer whose weights a fast path reads."""
    names = {"up": "tucker2", "fusion": "lowrank", "acm.mix": "lowrank"}
    for name, module in model.named_modules():
        if name.endswith(".reduce"):
            names[name] = "lowrank"
        if name.endswith(".fc2"):
            names[name] = "lowrank"
    return names


def _full_ranks(module: nn.Module, factorization: str) -> list[int]:
    out, inp = module.weight.shape[:2]
    if factorization == "lowrank":
        return [min(out, inp)]
    area = module.weight[0, 0].numel()
    return [min(out, inp * area), min(inp, out * area)]


def _replace(model: UHDformer, layers: dict[str, str]) -> UHDformer:
    new = copy.deepcopy(model)
    for name, factorization in layers.items():
        layer = new.get_submodule(name)
        parent, _, child = name.rpartition(".")
        setattr(new.get_submodule(parent) if parent else new, child, factorize(layer, factorization, _full_ranks(layer, factorization)))
    return new


@pytest.fixture(scope="module")
def demo() -> UHDformer:
    model, _ = load_net(DEMO)
    return model.eval()


def _subsets(model: UHDformer) -> dict[str, dict[str, str]]:
    everything = _fast_path_layers(model)
    reduces = [n for n in everything if n.endswith(".reduce")]
    return {
        "all": everything,
        "up_only": {"up": "tucker2"},
        "fusion_only": {"fusion": "tucker2"},  # a 1x1 Tucker-2 layer
        "mix_only": {"acm.mix": "lowrank"},
        "some_reduce": {n: "lowrank" for n in reduces[::2]},  # mixes the fused and the called reductions
        "fc2_only": {n: f for n, f in everything.items() if n.endswith(".fc2")},
    }


@pytest.mark.parametrize("subset", ["all", "up_only", "fusion_only", "mix_only", "some_reduce", "fc2_only"])
def test_full_rank_factorized_layers_give_the_original_output(demo, subset):
    layers = _subsets(demo)[subset]
    compressed = _replace(demo, layers)
    for name in layers:
        assert not is_plain_layer(compressed.get_submodule(name), type(demo.get_submodule(name)))
    x = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(3))
    compressed.tile_size = demo.tile_size = 16  # several tiles: halos are exercised
    with torch.no_grad():
        expected, got = demo(x), compressed(x)
    assert (got - expected).abs().max().item() <= 1e-5


def test_full_rank_on_random_small_network_any_tiling():
    model = _randomized(SMALL, seed=4)
    compressed = _replace(model, _fast_path_layers(model))
    x = torch.rand(2, 3, 20, 28, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = model(x)
        for tile in (4, 8, 1000):
            compressed.tile_size = tile
            assert (compressed(x) - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_hooked_factorized_layers_are_called_on_every_tile(demo, monkeypatch):
    layers = _fast_path_layers(demo)
    compressed = _replace(demo, layers)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = compressed(x)

    def forbidden(self):
        raise AssertionError(f"the dense weight of a {type(self).__name__} was rebuilt in forward")

    for cls in (Tucker2Conv, LowRankConv, LowRankLinear):
        monkeypatch.setattr(cls, "weight", property(forbidden))
    calls = {name: 0 for name in layers}

    def counter(name):
        def hook(module, inputs, output):
            calls[name] += 1
        return hook

    for name in layers:
        compressed.get_submodule(name).register_forward_hook(counter(name))
    compressed.tile_size = 16  # 4 tiles of 16 x 16
    with torch.no_grad():
        out = compressed(x)
    assert (out - expected).abs().max().item() <= 1e-5
    tiles = 4
    assert calls["acm.mix"] == tiles and calls["up"] == tiles and calls["fusion"] == tiles
    for name, count in calls.items():
        if name.endswith(".reduce"):
            assert count == tiles, name  # once per tile at full resolution
        if name.endswith(".fc2"):
            assert count == tiles, name  # the ConvNeXt blocks run tile by tile


def test_unhooked_factorized_layers_run_their_forward(demo, monkeypatch):
    """Without hooks: ``up`` runs its factorized head on every tile (its last 1x1 factor folded
    with the fusion, :func:`output_affine_split`); the 1x1 layers are called on unit vectors once
    per use (their fold), never through ``.weight``."""
    layers = _fast_path_layers(demo)
    compressed = _replace(demo, layers)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = demo(x)
    calls: dict[int, list] = {}
    for cls in (Tucker2Conv, LowRankConv, LowRankLinear):
        original = cls.forward

        def counted(self, inputs, original=original):
            calls.setdefault(id(self), []).append(tuple(inputs.shape))
            return original(self, inputs)

        monkeypatch.setattr(cls, "forward", counted)  # a class patch, not a hook: the fast path stays
        original_head = cls.__dict__.get("head")
        if original_head is not None:
            def counted_head(self, inputs, original=original_head):
                calls.setdefault(("head", id(self)), []).append(tuple(inputs.shape))
                return original(self, inputs)

            monkeypatch.setattr(cls, "head", counted_head)
        monkeypatch.setattr(cls, "weight", property(lambda self: pytest.fail("dense weight rebuilt")))
    compressed.tile_size = 16  # 4 tiles
    with torch.no_grad():
        out = compressed(x)
    assert (out - expected).abs().max().item() <= 1e-5
    by_name = {name: calls.get(id(compressed.get_submodule(name)), []) for name in layers}
    up_heads = calls.get(("head", id(compressed.up)), [])
    assert by_name["up"] == [] and len(up_heads) == 4 and all(shape[1] == 16 and shape[2] > 1 for shape in up_heads)  # data tiles
    assert by_name["fusion"] == [(1, 32, 1, 33)]  # one probe: 32 unit vectors and zero
    assert len(by_name["acm.mix"]) == 4  # folded per call of the ACM (once per tile)
    for name, shapes in by_name.items():
        if name.endswith(".reduce"):
            assert shapes == [(1, 48, 1, 49)], name
        if name.endswith(".fc2"):
            assert shapes == [(17, 16)] * 4, name


def test_gradients_reach_the_factorized_parameters(demo):
    compressed = _replace(demo, _fast_path_layers(demo)).train()
    compressed.tile_size = 16
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    compressed(x).square().mean().backward()
    for name in _fast_path_layers(demo):
        layer = compressed.get_submodule(name)
        assert layer.first.weight.grad is not None and layer.first.weight.grad.abs().sum() > 0, name
        assert layer.last.weight.grad.abs().sum() > 0, name


def test_hooked_plain_layers_are_called_and_change_nothing(demo):
    model = copy.deepcopy(demo)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        expected = model(x)
    names = [*_fast_path_layers(model), "acm.spread"]
    seen = set()
    handles = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: seen.add(n)) for n in names]
    try:
        assert not is_plain_layer(model.up, nn.Conv2d)
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    assert seen == set(names)
    assert (out - expected).abs().max().item() <= 1e-5
    assert is_plain_layer(model.up, nn.Conv2d)  # hooks removed: the fast path is back


def test_is_plain_layer():
    conv = nn.Conv2d(2, 2, 1)
    assert is_plain_layer(conv, nn.Conv2d) and not is_plain_layer(conv, nn.Linear)
    assert not is_plain_layer(LowRankConv(2, 2, 1), nn.Conv2d)

    class Sub(nn.Conv2d):
        pass

    assert not is_plain_layer(Sub(2, 2, 1), nn.Conv2d)
    handle = conv.register_forward_pre_hook(lambda m, i: None)
    assert not is_plain_layer(conv, nn.Conv2d)
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        assert not is_plain_layer(conv, nn.Conv2d)
    finally:
        handle.remove()
    assert is_plain_layer(conv, nn.Conv2d)


def test_pointwise_affine_map_of_factorized_layers_equals_their_dense_weight():
    gen = torch.Generator().manual_seed(0)
    conv, linear = nn.Conv2d(6, 4, 1), nn.Linear(5, 3)
    with torch.no_grad():
        for p in (*conv.parameters(), *linear.parameters()):
            p.copy_(torch.randn(p.shape, generator=gen))
    like = torch.zeros(1)
    for layer, kind, factorized in (
        (conv, nn.Conv2d, factorize(conv, "lowrank", [2])),
        (conv, nn.Conv2d, factorize(conv, "tucker2", [3, 3])),
        (linear, nn.Linear, factorize(linear, "lowrank", [2])),
    ):
        weight, bias = pointwise_affine_map(factorized, kind, layer.weight.shape[1], like)
        torch.testing.assert_close(weight, factorized.weight.reshape(weight.shape), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(bias, factorized.bias, atol=1e-6, rtol=1e-6)
    assert pointwise_affine_map(nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d, 3, like) is None
    assert pointwise_affine_map(factorize(nn.Conv2d(3, 3, 3, padding=1), "tucker2", [2, 2]), nn.Conv2d, 3, like) is None
    hooked = factorize(conv, "lowrank", [2])
    hooked.register_forward_hook(lambda m, i, o: None)
    assert pointwise_affine_map(hooked, nn.Conv2d, 6, like) is None
