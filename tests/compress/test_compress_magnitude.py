"""Structured L2-magnitude channel pruning (the ``magnitude`` baseline of ``sparsesel compress``).

References: numpy-computed channel norms, Torch-Pruning's own ``MagnitudeImportance``, and the
original network with the removed channels' producing weights zeroed (pruning a channel must
compute exactly what masking it does).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sparsesel.compress import channel_pruning as cp
from sparsesel.compress.baselines import baseline_model, magnitude_prune
from sparsesel.nets import zoo
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig
from spread_weights import spread_weights

DEMO = Path(__file__).resolve().parents[2] / "sparsesel" / "assets" / "uhdformer_lowlight.pt"


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def small() -> UHDformer:
    config = UHDformerConfig(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)
    return spread_weights(UHDformer(config), 1)


def _masked(model: UHDformer, pruned: UHDformer) -> UHDformer:
    """``model`` with the producing weights (and biases) of every removed channel zeroed."""
    masked = UHDformer(model.config).eval()
    masked.load_state_dict(model.state_dict())
    info = pruned.channel_pruning["groups"]
    for group in cp.channel_groups(model, cp.MASKABLE_KINDS):
        kept_count, total = info[group.name]
        if kept_count == total:
            continue
        owner = masked.get_submodule(group.module) if group.module else masked
        pruned_owner = pruned.get_submodule(group.module) if group.module else pruned
        # recover the kept channels from the pruned weights (rows of the first producing layer)
        if group.kind == "convnext":
            old, new = owner.fc1.weight, pruned_owner.fc1.weight
            producers, rows_per = [owner.fc1], 1
        elif group.kind == "gate":
            old, new = owner.gate_in.weight, pruned_owner.gate_in.weight
            producers, rows_per = [owner.gate_in, owner.gate_dw], 1
        elif group.kind == "ffn_expand":
            old, new = owner.expand.weight, pruned_owner.expand.weight
            producers, rows_per = [owner.expand], 1
        elif group.kind == "ffn_unsqueeze":
            old, new = owner.unsqueeze.weight, pruned_owner.unsqueeze.weight
            producers, rows_per = [owner.unsqueeze], 1
        elif group.kind == "upsample":
            area = owner.up.out_channels // group.channels
            old = owner.up.weight.reshape(group.channels, -1)
            new = pruned_owner.up.weight.reshape(kept_count, -1)
            producers, rows_per = [owner.up], area
        else:  # pragma: no cover
            raise AssertionError(group.kind)
        old_np, new_np = old.detach().reshape(old.shape[0], -1).numpy(), new.detach().reshape(new.shape[0], -1).numpy()
        kept = [int(np.flatnonzero((old_np == row).all(axis=1))[0]) for row in new_np]
        removed = sorted(set(range(group.channels)) - set(kept))
        with torch.no_grad():
            for layer in producers:
                for ch in removed:
                    layer.weight[ch * rows_per : (ch + 1) * rows_per] = 0
                    if layer.bias is not None:
                        layer.bias[ch * rows_per : (ch + 1) * rows_per] = 0
    return masked


# ---------------------------------------------------------------------------
# importance
# ---------------------------------------------------------------------------


def test_importance_mirrors_torch_pruning_on_a_conv_triple(small):
    """gate_in -> gate_dw (depthwise) -> gate_out: our importance equals Torch-Pruning's
    MagnitudeImportance(p=2, mean reduction, mean normalizer) on the same layers."""
    tp = pytest.importorskip("torch_pruning")
    matcher = small.groups[0].units[0].attn.match
    seq = nn.Sequential(
        nn.Conv2d(matcher.gate_in.in_channels, matcher.gate_in.out_channels, 1),
        nn.Conv2d(matcher.gate_dw.in_channels, matcher.gate_dw.out_channels, 3, padding=1, groups=matcher.gate_dw.groups),
        nn.GELU(),
        nn.Conv2d(matcher.gate_out.in_channels, matcher.gate_out.out_channels, 1),
    )
    seq.load_state_dict({"0.weight": matcher.gate_in.weight, "0.bias": matcher.gate_in.bias, "1.weight": matcher.gate_dw.weight,
                         "1.bias": matcher.gate_dw.bias, "3.weight": matcher.gate_out.weight, "3.bias": matcher.gate_out.bias})
    graph = tp.DependencyGraph().build_dependency(seq, example_inputs=torch.rand(1, seq[0].in_channels, 4, 4))
    group = graph.get_pruning_group(seq[0], tp.prune_conv_out_channels, idxs=list(range(seq[0].out_channels)))
    reference = tp.importance.MagnitudeImportance(p=2, group_reduction="mean", normalizer="mean")(group).numpy()
    ours = next(g for g in cp.channel_groups(small) if g.module == "groups.0.units.0.attn.match" and g.kind == "gate")
    np.testing.assert_allclose(ours.importance, reference, rtol=1e-5)


def test_removed_channels_are_the_smallest_l2_ones_on_a_linear_pair(small):
    """fc1 -> fc2: the r removed channels are those of smallest ||fc1[i]||^2 + ||fc2[:, i]||^2 (numpy)."""
    block = small.shallow
    w1, w2 = block.fc1.weight.detach().numpy(), block.fc2.weight.detach().numpy()
    score = (w1**2).sum(1) + (w2**2).sum(0)
    group = next(g for g in cp.channel_groups(small) if g.module == "shallow")
    assert group.cost == w1.shape[1] + 1 + w2.shape[0]
    total = _params(small)
    for r in (1, 3, 6):
        keep, _, params = cp.select_channels([group], total, total - r * group.cost)
        assert params == total - r * group.cost
        expected = np.sort(np.argsort(score, kind="stable")[r:])
        np.testing.assert_array_equal(keep[0], expected)
        pruned = cp.prune_channels(small, {("shallow", "convnext"): keep[0]})
        np.testing.assert_array_equal(pruned.shallow.fc1.weight.detach().numpy(), w1[expected])
        np.testing.assert_array_equal(pruned.shallow.fc2.weight.detach().numpy(), w2[:, expected])
        assert _params(pruned) == params


def test_grouped_ffn_is_pruned_evenly_with_numpy_norms(small):
    """expand -> grouped squeeze: each conv group loses its smallest channels, the same number in each."""
    ffn = small.groups[0].units[1].ffn
    e = ffn.expand.weight.detach().numpy().reshape(ffn.expand.out_channels, -1)
    sq = ffn.squeeze.weight.detach().numpy()  # (dim, per, 3, 3): input channel g * per + j -> sq[g, j]
    dim, per = sq.shape[0], sq.shape[1]
    score = np.array([((e[g * per + j] ** 2).sum() + (sq[g, j] ** 2).sum()) / 2 for g in range(dim) for j in range(per)])
    group = next(g for g in cp.channel_groups(small) if g.module == "groups.0.units.1.ffn" and g.kind == "ffn_expand")
    np.testing.assert_allclose(group.importance, score / score.mean(), rtol=1e-6)
    total = _params(small)
    keep, _, _ = cp.select_channels([group], total, total - dim * group.cost)  # one slice
    expected = np.sort([g * per + j for g in range(dim) for j in range(per) if j != np.argmin(score[g * per : (g + 1) * per])])
    np.testing.assert_array_equal(keep[0], expected)


# ---------------------------------------------------------------------------
# the pruned network
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.75, 0.55])
def test_pruned_uhdformer_equals_masked_original_and_meets_budget(small, fraction):
    budget = int(fraction * _params(small))
    pruned, info = cp.magnitude_prune_uhdformer(small, budget, kinds=cp.MASKABLE_KINDS)
    assert _params(pruned) == info["params"] <= budget
    assert any(k < n for k, n in info["groups"].values())
    assert all(type(m) in (nn.Conv2d, nn.Linear) for name, m in pruned.named_modules() if name.endswith(("fc1", "gate_in", "expand")))
    masked = _masked(small, pruned)
    for size in ((16, 24), (32, 8)):  # any size the network supports
        x = torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(size[0]))
        with torch.no_grad():
            out = pruned(x)
            torch.testing.assert_close(out, masked(x), rtol=1e-4, atol=1e-5)
            assert (out - small(x)).abs().max() > 1e-3  # the pruning did change the function
    # the original is untouched
    assert _params(small) > budget and small.structure == []


def test_full_budget_is_the_original_exactly(small):
    pruned, info = cp.magnitude_prune_uhdformer(small, _params(small))
    assert info["params"] == _params(small) and pruned.structure == []
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(pruned(x), small(x))


def test_gradients_flow_to_every_parameter(small):
    pruned, _ = cp.magnitude_prune_uhdformer(small, int(0.6 * _params(small)))
    pruned.train()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    pruned(x).square().mean().backward()
    # the FFN's expand/squeeze only choose the matched channels (no gradient through the
    # choice, as in the original network): the same parameters must get gradients
    original = UHDformer(small.config).train()
    original.load_state_dict(small.state_dict())
    original(x).square().mean().backward()
    expected = {n for n, p in original.named_parameters() if p.grad is not None}
    got = {n for n, p in pruned.named_parameters() if p.grad is not None}
    assert got == expected and len(got) > 0.8 * len(list(original.parameters()))
    assert pruned.up.weight.grad.abs().sum() > 0 and pruned.fusion.weight.grad.abs().sum() > 0


def test_save_and_load_replays_the_pruning(small, tmp_path):
    pruned, _ = cp.magnitude_prune_uhdformer(small, int(0.6 * _params(small)))
    path = zoo.save_net(pruned, tmp_path / "pruned.pt", net="uhdformer")
    loaded, _ = zoo.load_net(path)
    assert loaded.structure == pruned.structure and _params(loaded) == _params(pruned)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


def test_budget_below_one_channel_per_group_is_refused(small):
    floor = cp.min_params(small)
    pruned, _ = cp.magnitude_prune_uhdformer(small, floor)
    assert _params(pruned) == floor
    with pytest.raises(ValueError, match=r"cannot reach .* one per group leaves"):
        cp.magnitude_prune_uhdformer(small, floor - 1)


def test_bad_keep_sets_are_refused(small):
    with pytest.raises(ValueError, match="same number of channels in each"):
        cp.prune_channels(small, {("groups.0.units.0.ffn", "ffn_expand"): [0, 1, 2]})
    with pytest.raises(ValueError, match="no prunable channel group"):
        cp.prune_channels(small, {("nowhere", "gate"): [0]})
    with pytest.raises(ValueError, match="non-empty subset"):
        cp.prune_channels(small, {("shallow", "convnext"): [99]})


def test_demo_checkpoint_at_half_and_quarter_budget():
    model, _ = zoo.load_net(DEMO)
    total = _params(model)
    began = time.perf_counter()
    net, info = baseline_model(model, "magnitude", 0.5, example=None)
    assert info["params"] == _params(net) <= 0.5 * total
    assert info["params"] >= 0.47 * total  # within one up-sampling channel of the budget
    x = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert torch.isfinite(net(x)).all()
    # with the trunk widths, heads and matching candidates it reaches 25% (block-internal channels alone: 32.4%)
    quarter, info = baseline_model(model, "magnitude", 0.25, example=None)
    assert info["params"] == _params(quarter) <= 0.25 * total
    assert info["params"] >= 0.24 * total
    assert any(name.endswith("trunk_encoder") and kept < of for name, (kept, of) in quarter.channel_pruning["groups"].items())
    with torch.no_grad():
        assert torch.isfinite(quarter(x)).all()
    with pytest.raises(ValueError, match="cannot reach 84830 parameters"):
        cp.magnitude_prune_uhdformer(model, int(0.25 * total), kinds=cp.MASKABLE_KINDS)
    assert time.perf_counter() - began < 40


# ---------------------------------------------------------------------------
# other networks: Torch-Pruning
# ---------------------------------------------------------------------------


def test_generic_network_goes_through_torch_pruning():
    pytest.importorskip("torch_pruning")
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    spread_weights(net, 2)
    budget = _params(net) // 2
    pruned = magnitude_prune(net, budget, torch.rand(1, 3, 8, 8), iterations=6)
    assert _params(pruned) <= budget and pruned[-1].out_channels == 3
    assert pruned(torch.rand(1, 3, 12, 12)).shape == (1, 3, 12, 12)


def test_generic_network_errors_are_value_errors():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 1))
    with pytest.raises(ValueError, match="needs an example input"):
        magnitude_prune(net, 10)
    with pytest.raises(ValueError, match="Torch-Pruning failed on Sequential"):
        magnitude_prune(net, 10, torch.rand(1, 5, 8, 8))  # the tracer cannot run the network
