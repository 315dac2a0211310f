"""Structured channel options: trunk widths, heads, matching candidates; the selector hook.

References: the original network with the removed channels' producing weights zeroed (where the
pruned network must compute exactly that), the original layers' weights restricted by hand, and
the network re-loaded from a file (replay of the recorded edits).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparsesel.compress import channel_pruning as cp
from sparsesel.compress import trunk_widths as tw
from sparsesel.compress.factorized import factorize
from sparsesel.compress.structured import kept_channels, magnitude_selector, shrink, structured_units
from sparsesel.nets import zoo
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig
from spread_weights import spread_weights

SMALL = dict(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)


@pytest.fixture(scope="module")
def small() -> UHDformer:
    return spread_weights(UHDformer(UHDformerConfig(**SMALL)), 3)


def _x(seed: int, size=(16, 24)) -> torch.Tensor:
    return torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(seed))


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_tail_width_equals_the_masked_original(small):
    keep = [0, 2, 5, 6]
    drop = sorted(set(range(8)) - set(keep))
    shrunk = tw.shrink_trunk(copy.deepcopy(small), "tail", keep)
    masked = copy.deepcopy(small)
    with torch.no_grad():
        masked.fusion.weight[drop] = 0
        masked.fusion.bias[drop] = 0
        for block in masked.tail:
            block.conv.weight[drop] = 0
            block.conv.bias[drop] = 0
            block.fc2.weight[drop] = 0
            block.fc2.bias[drop] = 0
    assert shrunk.widths == {"encoder": 8, "lowres": 8, "upsampled": 8, "tail": 4}
    with torch.no_grad():
        for seed in (1, 2):
            x = _x(seed)
            torch.testing.assert_close(shrunk(x), masked(x), rtol=1e-5, atol=1e-5)
            assert (shrunk(x) - small(x)).abs().max() > 1e-3
    assert shrunk.structure == [{"kind": tw.EDIT_KIND, "args": {"space": "tail", "channels": 4}}]


def test_heads_without_matching_equal_the_masked_original():
    config = UHDformerConfig(**{**SMALL, "num_heads": 4, "attention_matching": False})
    model = spread_weights(UHDformer(config), 4)
    attention = "groups.0.units.1.attn"
    keep = [2, 3, 6, 7]  # heads 1 and 3 (two channels each)
    pruned = cp.prune_channels(model, {(attention, "heads"): keep})
    masked = copy.deepcopy(model)
    qkv, dw = masked.get_submodule(attention).qkv, masked.get_submodule(attention).qkv_dw
    with torch.no_grad():
        for channel in (0, 1, 4, 5):  # the removed heads' values are zero: their outputs vanish
            for layer in (qkv, dw):
                layer.weight[16 + channel] = 0
                layer.bias[16 + channel] = 0
    assert pruned.get_submodule(attention).num_heads == 2
    with torch.no_grad():
        x = _x(5)
        torch.testing.assert_close(pruned(x), masked(x), rtol=1e-5, atol=1e-5)


def test_encoder_pairs_keep_the_acm_logits_of_the_kept_channels(small):
    keep = torch.tensor([2, 3, 6, 7])
    shrunk = tw.shrink_trunk(copy.deepcopy(small), "encoder", keep.tolist())
    c = 8
    cat = torch.randn(1, 3 * c, 5, 6, generator=torch.Generator().manual_seed(7))
    kept = torch.cat([keep, keep + c, keep + 2 * c])
    zeroed = torch.zeros_like(cat)
    zeroed[:, kept] = cat[:, kept]

    def logits(acm, x):  # spread(mix(x)): output o of the depthwise spread reads mixed channel o // 2
        mixed = F.conv2d(x, acm.mix.weight, acm.mix.bias)
        return F.conv2d(mixed.repeat_interleave(2, dim=1), acm.spread.weight, acm.spread.bias, padding=1, groups=2 * x.shape[1])

    with torch.no_grad():
        reference = logits(small.acm, zeroed)[:, torch.cat([kept, kept + 3 * c])]
        torch.testing.assert_close(logits(shrunk.acm, cat[:, kept]), reference, rtol=1e-5, atol=1e-5)
        # the encoder blocks compute the masked original on the kept channels
        x = _x(8)
        masked = copy.deepcopy(small)
        drop = [0, 1, 4, 5]
        for layer in (masked.stem, masked.shallow.conv, masked.shallow.fc2):
            layer.weight[drop] = 0
            layer.bias[drop] = 0
        f_masked = masked.shallow(masked.stem(x))[:, keep]
        torch.testing.assert_close(shrunk.shallow(shrunk.stem(x)), f_masked, rtol=1e-5, atol=1e-5)
        # the layers called one by one (a global hook disables the fused paths) compute the same
        handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
        try:
            called = shrunk(x)
        finally:
            handle.remove()
        torch.testing.assert_close(called, shrunk(x), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="whole channel pairs"):
        tw.shrink_trunk(copy.deepcopy(small), "encoder", [0, 2])


@pytest.mark.parametrize("single_pass", [False, True])
def test_every_structured_kind_runs_and_replays_after_save_and_load(small, tmp_path, single_pass):
    units = structured_units(small)
    kinds = {u.group.kind for u in units}
    assert {"trunk_encoder", "trunk_lowres", "trunk_tail", "heads", "candidates", "gate", "convnext"} <= kinds
    counts = {u.key: u.options[-1] for u in units}
    pruned = shrink(small, counts).eval()
    assert pruned.widths["encoder"] == 2 and pruned.widths["lowres"] == 2 and pruned.widths["tail"] == 2
    assert _params(pruned) < 0.3 * _params(small)
    pruned.single_pass = single_pass
    path = zoo.save_net(pruned, tmp_path / "pruned.pt", net="uhdformer")
    loaded, _ = zoo.load_net(path)
    loaded.single_pass = single_pass
    assert loaded.structure == pruned.structure and _params(loaded) == _params(pruned)
    with torch.no_grad():
        x = _x(9, (16, 16))
        out = pruned(x)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(loaded(x), out, rtol=0, atol=0)
    # the tiled and the single-pass forward agree (at a milder pruning: with two matching candidates
    # left, float rounding can flip a nearest-channel choice between the two forms)
    middle = shrink(small, {u.key: u.options[len(u.options) // 2] for u in units}).eval()
    with torch.no_grad():
        tiled = middle(x)
        middle.single_pass = True
        torch.testing.assert_close(middle(x), tiled, rtol=1e-4, atol=1e-5)
        middle.single_pass = False
        handle = torch.nn.modules.module.register_module_forward_hook(lambda module, args, out: None)
        try:  # every layer called on the data (no fused paths)
            torch.testing.assert_close(middle(x), tiled, rtol=1e-4, atol=1e-5)
        finally:
            handle.remove()


def test_the_selector_decides_which_channels(small):
    group = next(g for g in cp.channel_groups(small) if g.kind == "candidates")
    reverse = lambda model, g: magnitude_selector(model, g)[::-1]  # noqa: E731 - least important first
    weakest = np.argsort(group.importance, kind="stable")[:4]
    pruned = shrink(small, {(group.module, group.kind): 4}, selector=reverse)
    reduce_old = small.get_submodule(group.module).reduce.weight.detach()
    reduce_new = pruned.get_submodule(group.module).reduce.weight.detach()
    torch.testing.assert_close(reduce_new, reduce_old[np.sort(weakest)])
    # L2 by default: the strongest rows by numpy norms
    norms = reduce_old.flatten(1).pow(2).sum(1).numpy()
    pruned = shrink(small, {(group.module, group.kind): 4})
    torch.testing.assert_close(pruned.get_submodule(group.module).reduce.weight.detach(), reduce_old[np.sort(np.argsort(-norms)[:4])])


def test_kept_channels_respect_units_and_conv_groups(small):
    groups = {g.kind: g for g in cp.channel_groups(small)}
    encoder = groups["trunk_encoder"]
    kept = kept_channels(encoder, np.array([5, 0, 1, 2, 3, 4, 6, 7]), 4)
    np.testing.assert_array_equal(kept, [0, 1, 4, 5])  # the pair of channel 5 first, then the pair of 0
    expand = groups["ffn_expand"]
    kept = kept_channels(expand, np.arange(expand.channels)[::-1], expand.subgroups)
    per = expand.channels // expand.subgroups
    np.testing.assert_array_equal(kept, np.arange(expand.subgroups) * per + per - 1)  # one per conv group
    with pytest.raises(ValueError, match="permutation"):
        kept_channels(encoder, np.zeros(8, dtype=int), 4)
    with pytest.raises(ValueError, match="cannot keep 3"):
        kept_channels(encoder, np.arange(8), 3)


def test_trunk_edits_refuse_bad_input(small):
    with pytest.raises(ValueError, match="unknown trunk space"):
        tw.shrink_trunk(copy.deepcopy(small), "middle", [0])
    with pytest.raises(ValueError, match="non-empty subset"):
        tw.shrink_trunk(copy.deepcopy(small), "tail", [9])
    with pytest.raises(ValueError, match="a multiple of 2"):
        tw.replay_trunk(copy.deepcopy(small), "encoder", 3)
    factorized = copy.deepcopy(small)
    factorized.tail[0].conv = factorize(factorized.tail[0].conv, "tucker2", (4, 4))
    with pytest.raises(ValueError, match="shrink the trunk before"):
        tw.shrink_trunk(factorized, "tail", [0, 1])
    with pytest.raises(ValueError, match="whole units of 4 channels"):
        cp.prune_channels(small, {("groups.0.units.0.attn", "heads"): [0, 1]})
