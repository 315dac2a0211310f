"""Channel selectors (issue 20): group masks, SA++ attention and schedule, planted useless channels.

References: the network with the chosen channels removed (shrunk) against the same network with
them masked by the attention hooks; weights sliced by hand; SA++'s attention against its closed
form (sums to n); the sparsification schedule against ``s·(1 − e^{−cu})/(1 − e^{−c})`` computed
here; channels made useless in the test (outputs and reads zeroed), which every selector but
``random`` must rank last.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from sparsesel.compress import channel_pruning as cp
from sparsesel.compress.finetune import FinetuneConfig
from sparsesel.compress.group_attention import ChannelScale, install_channel_scales, remove_channel_scales
from sparsesel.compress.sapp_channels import SappChannelConfig, sapp_channel_selection
from sparsesel.compress.selectors import SELECTORS, check_selector, order_selector, select_channels
from sparsesel.compress.structured import kept_channels, shrink
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig
from spread_weights import spread_weights

SMALL = dict(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)
TINY_TUNE = FinetuneConfig(task="lowlight", steps=8, batch_size=2, patch_size=32, lr=2e-4, seed=0)


@pytest.fixture(scope="module")
def small() -> UHDformer:
    return spread_weights(UHDformer(UHDformerConfig(**SMALL)), 3)


def _x(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(seed))


def _half(group: cp.ChannelGroup) -> int:
    step = group.unit * group.subgroups
    return max(step, group.channels // 2 // step * step)


@pytest.mark.parametrize("kind", ["convnext", "gate", "ffn_expand", "ffn_unsqueeze", "upsample"])
def test_masked_network_equals_the_shrunk_one(small, kind):
    groups = [g for g in cp.channel_groups(small) if g.kind == kind]
    assert groups, kind
    rng = np.random.default_rng(11)
    orders = {(g.module, g.kind): rng.permutation(g.channels) for g in groups}
    counts = {(g.module, g.kind): _half(g) for g in groups}
    masked = copy.deepcopy(small)
    scales = install_channel_scales(masked, groups, attention=False)
    for g in groups:
        scales[(g.module, g.kind)].set_mask(torch.as_tensor(kept_channels(g, orders[(g.module, g.kind)], counts[(g.module, g.kind)])))
    shrunk = shrink(small, counts, selector=order_selector(orders)).eval()
    with torch.no_grad():
        expected, got, original = masked(_x()), shrunk(_x()), small(_x())
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert float((original - expected).abs().max()) > 1e-4  # the mask did remove something (beyond the tolerance)
    # exactly the chosen groups lost exactly the chosen channels
    after = {(g.module, g.kind): g.channels for g in cp.channel_groups(shrunk)}
    for g in cp.channel_groups(small):
        key = (g.module, g.kind)
        assert after[key] == counts.get(key, g.channels), key


def test_shrunk_convnext_keeps_the_chosen_rows(small):
    group = next(g for g in cp.channel_groups(small) if g.kind == "convnext")
    order = np.arange(group.channels)[::-1].copy()
    shrunk = shrink(small, {(group.module, group.kind): 4}, selector=order_selector({(group.module, group.kind): order}))
    kept = sorted(order[:4].tolist())
    block_small, block_big = shrunk.get_submodule(group.module), small.get_submodule(group.module)
    torch.testing.assert_close(block_small.fc1.weight, block_big.fc1.weight[kept])
    torch.testing.assert_close(block_small.fc2.weight, block_big.fc2.weight[:, kept])


def test_attention_sums_to_n_and_folds_exactly(small):
    groups = cp.channel_groups(small)
    net = copy.deepcopy(small)
    scales = install_channel_scales(net, groups, attention=True, temperature=0.7)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for scale in scales.values():
            scale.logits.copy_(torch.randn(scale.logits.shape, generator=g))
    for scale in scales.values():
        a = scale.attention().detach()
        n = scale.group.channels // scale.group.unit
        assert a.shape == (n,)
        assert float(a.sum()) == pytest.approx(n, rel=1e-5)
        closed = n * torch.exp(scale.logits / 0.7) / torch.exp(scale.logits / 0.7).sum()
        torch.testing.assert_close(a, closed.detach())
        assert float(scale.channel_values().detach().sum()) == pytest.approx(scale.group.channels, rel=1e-5)
    with torch.no_grad():
        gated = net(_x(1))
    remove_channel_scales(net, scales, fold=True)
    with torch.no_grad():
        folded, original = net(_x(1)), small(_x(1))
    torch.testing.assert_close(folded, gated, atol=1e-4, rtol=1e-3)  # two code paths (hooks vs folded layers): float rounding
    assert float((folded - original).abs().max()) > 1e-3


def test_bad_temperature_is_refused(small):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ChannelScale(cp.channel_groups(small)[0], temperature=0.0)


# ---------------------------------------------------------------------------
# planted useless channels
# ---------------------------------------------------------------------------

PLANTED = {"convnext": 2, "gate": 3}


def _plant(model: UHDformer) -> dict[tuple[str, str], list[int]]:
    """Zero every weight that writes or reads some channels of each ConvNeXt and gate group."""
    planted = {}
    rng = np.random.default_rng(5)
    with torch.no_grad():
        for group in cp.channel_groups(model, tuple(PLANTED)):
            owner = model.get_submodule(group.module)
            chosen = sorted(rng.choice(group.channels, PLANTED[group.kind], replace=False).tolist())
            if group.kind == "convnext":
                writers, readers = [owner.fc1], [owner.fc2]
            else:
                writers, readers = [owner.gate_in, owner.gate_dw], [owner.gate_out]
            for layer in writers:
                layer.weight[chosen] = 0
                if layer.bias is not None:
                    layer.bias[chosen] = 0
            for layer in readers:
                layer.weight[:, chosen] = 0
            planted[(group.module, group.kind)] = chosen
    return planted


@pytest.fixture(scope="module")
def planted_model():
    model = spread_weights(UHDformer(UHDformerConfig(**SMALL)), 8)
    return model, _plant(model)


@pytest.mark.parametrize("name", ["magnitude", "taylor", "sa++"])
def test_every_selector_but_random_finds_planted_useless_channels(planted_model, name):
    model, planted = planted_model
    counts = {key: next(g.channels for g in cp.channel_groups(model) if (g.module, g.kind) == key) - len(chosen)
              for key, chosen in planted.items()}
    selection = select_channels(name, model, counts, finetune=TINY_TUNE, sapp=SappChannelConfig(steps=6, n_cycles=1))
    for group in cp.channel_groups(selection.network, tuple(PLANTED)):
        key = (group.module, group.kind)
        order = selection.selector(selection.network, group)
        assert sorted(order[-len(planted[key]):].tolist()) == planted[key], (name, key)


def test_random_selector_is_seeded_and_misses_planted_channels(planted_model):
    model, planted = planted_model
    counts = {key: 1 for key in planted}
    first, again, other = (select_channels("random", model, counts, seed=s) for s in (0, 0, 1))
    groups = cp.channel_groups(model, tuple(PLANTED))
    orders = [[s.selector(model, g).tolist() for g in groups] for s in (first, again, other)]
    assert orders[0] == orders[1] and orders[0] != orders[2]
    assert all(sorted(o) == list(range(g.channels)) for o, g in zip(orders[0], groups))
    found = [sorted(o[-len(planted[(g.module, g.kind)]):]) == planted[(g.module, g.kind)] for o, g in zip(orders[0], groups)]
    assert not all(found)


# ---------------------------------------------------------------------------
# SA++ schedule
# ---------------------------------------------------------------------------


def test_sapp_sparsifies_on_the_exponential_schedule(small):
    groups = [g for g in cp.channel_groups(small) if g.kind in ("convnext", "gate")]
    counts = {(g.module, g.kind): g.channels // 4 for g in groups}
    config = SappChannelConfig(steps=12, warmup_fraction=0.25, n_cycles=1, c=4.0)
    result = sapp_channel_selection(small, small, counts, TINY_TUNE, config)
    kept = result.info["kept_per_step"]
    assert [phase for phase, _ in kept] == ["dense"] * 3 + ["sparsification"] * 9
    total = sum(g.channels for g in groups)
    assert all(k == total for phase, k in kept if phase == "dense")
    steps = 9
    for t, (_, k) in enumerate(kept[3:]):
        u = (t + 1) / steps
        expected = 0
        for g in groups:
            s = (1 - g.channels // 4 / g.channels) * (1 - math.exp(-4 * u)) / (1 - math.exp(-4))
            expected += g.channels // 4 if t == steps - 1 else max(g.channels // 4, min(g.channels, int(round((1 - s) * g.channels))))
        assert k == expected, t
    assert kept[-1][1] == sum(counts.values())
    # the orders keep the final mask: shrinking with them keeps the planned counts
    for g in groups:
        key = (g.module, g.kind)
        assert len(set(result.orders[key].tolist())) == g.channels
        assert float(result.attention[key].sum()) == pytest.approx(g.channels, rel=1e-5)


def test_sapp_phases_follow_the_acdc_cycles(small):
    groups = [g for g in cp.channel_groups(small) if g.kind == "convnext"]
    counts = {(g.module, g.kind): 4 for g in groups}
    result = sapp_channel_selection(small, small, counts, TINY_TUNE, SappChannelConfig(steps=20, warmup_fraction=0.2, n_cycles=2))
    assert [p["phase"] for p in result.info["phases"]] == ["dense", "sparsification", "sparse", "dense", "sparsification"]
    assert [p["steps"] for p in result.info["phases"]] == [4, 2, 2, 4, 8]
    per_phase = {}
    for phase, k in result.info["kept_per_step"]:
        per_phase.setdefault(phase, []).append(k)
    target = sum(counts.values())
    assert set(per_phase["sparse"]) == {target}  # the sparse phase holds the first cycle's mask
    assert set(per_phase["dense"]) == {sum(g.channels for g in groups)}  # dense phases release it


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["sapp", "SA++", "", None, 3])
def test_bad_selector_names_list_the_valid_ones(bad):
    with pytest.raises(ValueError, match=r"unknown selector .*; choose one of sa\+\+, magnitude, taylor, random"):
        check_selector(bad)


def test_registry_names():
    assert list(SELECTORS) == ["sa++", "magnitude", "taylor", "random"]


def test_sapp_config_is_checked():
    with pytest.raises(ValueError, match="SappChannelConfig.steps must be an integer >= 2"):
        SappChannelConfig(steps=1)
    with pytest.raises(ValueError, match="SappChannelConfig.score must be 'effective' or 'attention'"):
        SappChannelConfig(score="norm")


# ---------------------------------------------------------------------------
# a latency plan applied with each selector
# ---------------------------------------------------------------------------


def _latency_plan(model: UHDformer, counts: dict[tuple[str, str], int]):
    from sparsesel.compress.plan import Plan

    params = sum(p.numel() for p in model.parameters())
    groups = {(g.module, g.kind): g.channels for g in cp.channel_groups(model)}
    return Plan(method="packing", budget=0.5, budget_cost=1000, cost="latency", image_size=[64, 64], params_before=params,
                params_after=params, cost_before=2000, cost_after=1000, layers=[], skipped=[], solver={},
                structured=[{"module": m, "kind": k, "channels": c, "of": groups[(m, k)]} for (m, k), c in counts.items()])


@pytest.mark.parametrize("name", list(SELECTORS))
def test_a_latency_plan_keeps_the_channels_its_selector_orders_first(small, name):
    from sparsesel.compress.selectors import apply_with_selector

    groups = [g for g in cp.channel_groups(small) if g.kind in ("convnext", "gate")]
    counts = {(g.module, g.kind): g.channels // 2 for g in groups}
    network, selection = apply_with_selector(small, _latency_plan(small, counts), name, finetune=TINY_TUNE, seed=4,
                                             sapp=SappChannelConfig(steps=4, n_cycles=1))
    assert selection.name == name and selection.steps == (4 if name == "sa++" else 0)
    after = {(g.module, g.kind): g.channels for g in cp.channel_groups(network)}
    assert all(after[key] == count for key, count in counts.items())
    source = selection.network  # the input itself, or SA++'s distilled copy
    for g in cp.channel_groups(source, ("convnext",)):
        kept = kept_channels(g, selection.selector(source, g), g.channels // 2)
        torch.testing.assert_close(network.get_submodule(g.module).fc1.weight, source.get_submodule(g.module).fc1.weight[kept])
    if name != "sa++":
        assert source is small


def test_taylor_orders_convnext_channels_by_summed_weight_times_gradient(small):
    """The Taylor selector against a direct computation: per hidden channel of each ConvNeXt block,
    ``Σ|w·∂L/∂w|`` over its row of ``fc1`` and its column of ``fc2`` (``L``: the distillation loss)."""
    from sparsesel.compress.selectors import taylor_selector
    from sparsesel.training.losses import l1_fft_loss

    teacher = spread_weights(UHDformer(UHDformerConfig(**SMALL)), 11)
    g = torch.Generator().manual_seed(12)
    batch = {"input": torch.rand(2, 3, 32, 32, generator=g), "target": torch.rand(2, 3, 32, 32, generator=g)}
    student = copy.deepcopy(small).train()
    with torch.no_grad():
        taught = teacher.eval()(batch["input"])
    out = student(batch["input"])
    loss = l1_fft_loss(out, taught) + l1_fft_loss(out, batch["target"])
    parameters = dict(student.named_parameters())
    grads = dict(zip(parameters, torch.autograd.grad(loss, list(parameters.values()), allow_unused=True)))
    select = taylor_selector(teacher, batch)
    groups = [group for group in cp.channel_groups(small) if group.kind == "convnext"]
    assert groups
    for group in groups:
        prefix = f"{group.module}." if group.module else ""
        w1, w2 = parameters[prefix + "fc1.weight"], parameters[prefix + "fc2.weight"]
        g1, g2 = grads[prefix + "fc1.weight"], grads[prefix + "fc2.weight"]
        rows = (w1 * g1).abs().flatten(1).sum(1)  # fc1's row of each hidden channel
        columns = (w2 * g2).abs().transpose(0, 1).flatten(1).sum(1)  # fc2's column of it
        taylor = (rows + columns).detach().double().numpy()
        order = select(small, group)
        assert sorted(order.tolist()) == list(range(group.channels))
        ranked = taylor[order]
        assert np.all(np.diff(ranked) <= 1e-9 * taylor.max()), (group.module, ranked)  # non-increasing
