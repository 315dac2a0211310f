"""compress under a latency budget (issue 19, items 5-6; issue 21, item 8): the channel rules of the
baselines, their match to a measured latency, sizes, the one-pass footprint, the report's block grouping,
and one whole run (API) whose report holds every network's size, MACs, latency and footprint.

References: closed forms and brute force written in the tests, networks counted here, files read back.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sparsesel.compress import latency_baselines
from sparsesel.compress.footprint import one_pass_footprint
from sparsesel.compress.latency_baselines import match_latency, rule_counts
from sparsesel.compress.pipeline import compress_checkpoint, parse_size
from sparsesel.compress.report import MAX_LABELS, grouped_by_block
from sparsesel.compress.structured import kept_channels, magnitude_selector, structured_units
from sparsesel.nets import zoo
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig

SMALL = dict(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)


@pytest.fixture(scope="module")
def model() -> UHDformer:
    torch.manual_seed(0)
    return UHDformer(UHDformerConfig(**SMALL)).eval()


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5, 0.8, 1.0])
def test_uniform_and_magnitude_counts_follow_their_closed_forms(model, fraction):
    units = structured_units(model)
    assert units
    uniform = rule_counts(units, "uniform", fraction)
    magnitude = rule_counts(units, "magnitude", fraction)
    scores = np.concatenate([u.group.importance for u in units])
    for unit in units:
        step = unit.group.unit * unit.group.subgroups
        expected = min(unit.group.channels, max(step, int(np.ceil(fraction * unit.group.channels / step - 1e-9)) * step))
        assert uniform[unit.key] == expected
        # magnitude: the channels at or above the (1 - fraction) quantile of every score, rounded up to whole units
        above = int(np.sum(unit.group.importance >= np.quantile(scores, 1 - fraction))) if fraction < 1 else unit.group.channels
        assert magnitude[unit.key] == min(unit.group.channels, max(step, -(-above // step) * step))


@pytest.mark.parametrize("share", [0.2, 0.6, 0.9, 1.0])
def test_energy_counts_are_the_fewest_that_keep_the_share(model, share):
    units = structured_units(model)
    counts = rule_counts(units, "energy", share)
    for unit in units:
        step = unit.group.unit * unit.group.subgroups
        order = magnitude_selector(None, unit.group)
        total = unit.group.importance.sum()
        kept = {c: unit.group.importance[kept_channels(unit.group, order, c)].sum() / total
                for c in range(step, unit.group.channels + 1, step)}
        fewest = min(c for c, v in kept.items() if v >= share - 1e-12)  # brute force over every count
        assert counts[unit.key] == fewest


def test_rule_counts_refuse_bad_rules_and_fractions(model):
    units = structured_units(model)
    with pytest.raises(ValueError, match="unknown latency baseline rule 'random'"):
        rule_counts(units, "random", 0.5)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
            rule_counts(units, "uniform", bad)


def test_match_latency_keeps_the_largest_fraction_within_the_target(model, monkeypatch):
    """With a deterministic clock (time proportional to parameters) the bisection's choice is checked
    against a fine enumeration of the fractions."""
    dense = sum(p.numel() for p in model.parameters())

    def fake_deltas(base, variants, size, repeats, *, clock="auto"):
        return 100.0, [100.0 * sum(p.numel() for p in v.parameters()) / dense - 100.0 for v in variants]

    monkeypatch.setattr(latency_baselines, "time_deltas", fake_deltas)
    units = structured_units(model)
    from sparsesel.compress.structured import shrink

    steps = 6
    network, info = match_latency(model, "uniform", 0.6, steps=steps)
    ratio = sum(p.numel() for p in network.parameters()) / dense
    assert info["fits"] and ratio <= 0.6 and info["measured_ratio"] == pytest.approx(ratio)
    grid = np.linspace(0.01, 1.0, 100)
    fitting = [f for f in grid if sum(p.numel() for p in shrink(model, rule_counts(units, "uniform", f)).parameters()) / dense <= 0.6]
    assert info["fraction"] >= max(fitting) - 1.0 / 2**steps - 1e-9
    with pytest.raises(ValueError, match=r"target_ratio must be in \(0, 1\]"):
        match_latency(model, "uniform", 1.2)


@pytest.mark.parametrize("text, expected", [("512", (512, 512)), ("2160x3840", (2160, 3840)), (" 64 X 32 ", (64, 32)),
                                            (96, (96, 96)), ((8, 16), (8, 16))])
def test_parse_size_reads_n_and_hxw(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["", "x", "0", "-5", "4x", "1x2x3", "axb", 0, True, 2.5, (1, 0)])
def test_parse_size_refuses_anything_else(bad):
    with pytest.raises(ValueError, match="latency_size must be a positive size written N or HxW"):
        parse_size(bad)


def test_grouped_by_block_sums_within_blocks_and_caps_the_labels():
    names = [f"groups.{g}.{b}.conv{c}" for g in range(30) for b in range(3) for c in range(2)]
    kept = [1.0] * len(names)
    whole = [2.0 if c else 4.0 for g in range(30) for b in range(3) for c in range(2)]
    bars = grouped_by_block(names, kept, whole)
    assert len(bars) == 30  # depth 2 ("groups.g"), the deepest with <= 40 blocks
    assert bars[0] == ("groups.0", pytest.approx(6.0 / 18.0))
    many = grouped_by_block([f"b{i}" for i in range(100)], [1.0] * 100, [1.0] * 100)
    assert len(many) == MAX_LABELS and many[-1][0] == "(others)"


def test_one_pass_footprint_reports_time_and_memory_growth(model):
    small = one_pass_footprint(model, size=(32, 32), threads=1, net="uhdformer")
    large = one_pass_footprint(model, size=(768, 768), threads=1, net="uhdformer")
    assert set(small) >= {"ms", "cpu_ms", "peak_mib", "size", "threads"} and small["size"] == [32, 32], small
    assert "peak_mib" in large, large
    # 576x the pixels: the activations (tens of MiB at 768x768) grow the peak
    assert large["peak_mib"] > small["peak_mib"] + 8 and small["peak_mib"] >= 0, (small, large)
    assert large["ms"] > 0 and large["cpu_ms"] > 0


@pytest.mark.slow
def test_compress_under_a_latency_budget_reports_every_network(model, tmp_path, monkeypatch):
    monkeypatch.setenv("SPARSESEL_CACHE", str(tmp_path / "cache"))
    checkpoint = zoo.save_net(model, tmp_path / "net.pt", net="uhdformer")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="latency budget 0.5 .* is too small: the fastest plan is predicted at"):
        compress_checkpoint(checkpoint, tmp_path / "refused", budget=0.5, cost="latency", latency_size="64", curve=(), threads=1,
                            progress=False)
    # the demo's way: a budget out of reach gives the fastest plan, said so
    summary = compress_checkpoint(checkpoint, out, budget=0.5, cost="latency", latency_size="64", latency_repeats=2, curve=(),
                                  finetune_steps=1, eval_count=1, eval_size=32, threads=1, progress=False, footprint_size=(64, 64),
                                  device="cpu", reach_fastest=True)
    assert "latency budget 0.5" in summary and "was out of reach" in summary
    report = json.loads((out / "report.json").read_text())
    assert report["cost"] == "latency" and report["latency_size"] == [64, 64] and report["footprint_size"] == [64, 64]
    assert report["finetune"]["lr"] == 2e-3  # the latency default (default_lr)
    rows = report["networks"]
    assert set(rows) == {"original", "ours", "uniform", "energy", "magnitude"}
    ours, _ = zoo.load_net(out / "compressed.pt")
    assert rows["ours"]["params"] == sum(p.numel() for p in ours.parameters())
    assert rows["original"]["params"] == sum(p.numel() for p in model.parameters())
    for name, row in rows.items():
        assert row["latency_ms"] > 0 and row["macs"] > 0 and row["footprint_peak_mib"] >= 0 and row["footprint_ms"] > 0, name
        assert row["speedup"] == pytest.approx(rows["original"]["latency_ms"] / row["latency_ms"])
    for name in ("uniform", "energy", "magnitude"):
        assert report["baselines"][name]["params"] == rows[name]["params"]
    markdown = (out / "report.md").read_text()
    assert "GMAC 64x64" in markdown and "3840" not in markdown and "64x64 peak memory (MiB)" in markdown
    for name in ("original", "packing (ours)", "uniform", "energy", "magnitude"):
        assert f"| {name} |" in markdown
    assert (out / "psnr_vs_latency.png").is_file() and (out / "layer_ranks.png").is_file()
    plan = json.loads((out / "plan.json").read_text())
    assert plan["cost"] == "latency" and plan["latency"]["requested_budget"] == 0.5 and plan["budget"] > 0.5
    assert "Budget: 0.5 was out of reach" in markdown


@pytest.mark.parametrize("rule", ["uniform", "energy", "magnitude"])
def test_the_smallest_rule_networks_still_run(model, rule):
    """An attention keeps at least the query channels its matching picks (else its top-k fails)."""
    from sparsesel.compress.latency_baselines import minimum_channels
    from sparsesel.compress.network_io import example_input, network_output
    from sparsesel.compress.structured import shrink

    units = structured_units(model)
    minimums = minimum_channels(model, units)
    assert minimums and all(v == model.get_submodule(k[0]).match.num_matching for k, v in minimums.items())
    network = shrink(model, rule_counts(units, rule, 0.01, minimums)).eval()
    with torch.no_grad():
        out = network_output(network, example_input(model, 32, 32))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
