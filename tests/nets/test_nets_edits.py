"""The edit log and the declarative table of edit kinds: every kind is known to the loader without importing it first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsesel.nets import UHDformer, UHDformerConfig, zoo
from sparsesel.nets.edits import (
    EDIT_KINDS,
    LEGACY_KINDS,
    checked_edits,
    drop_edits,
    edit_log,
    record_edit,
    register_edit_kind,
    replay_edits,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG = UHDformerConfig(width=8, number_block=1, unit_num=1, num_heads=2, match_factor=2, ffn_expansion_factor=2,
                         scale_factor=4)


def test_every_kind_of_the_table_names_an_importable_replay_function():
    import importlib

    for kind, target in EDIT_KINDS.items():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), kind
    assert set(LEGACY_KINDS.values()) <= set(EDIT_KINDS)


def _edited_file(tmp_path: Path) -> Path:
    """A UHDformer factorized, channel-pruned and block-masked, saved (every bundled kind in its log)."""
    from sparsesel.commands.prune import prune_model
    from sparsesel.compress import apply, plan
    from sparsesel.compress.channel_pruning import magnitude_prune_uhdformer

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = UHDformer(CONFIG).eval()
    pruned, _ = magnitude_prune_uhdformer(model, int(0.8 * sum(p.numel() for p in model.parameters())))
    small = apply(pruned, plan(pruned, 0.7))
    masked, result = prune_model(small, 0.5, "2x2", min_blocks=1)
    for parameter, kept in result.selected:
        record_edit(masked, "block_mask", {"parameter": parameter, "block_shape": [2, 2], "kept": [int(i) for i in kept]})
    from sparsesel.block_layers import pack_layer, packable
    from sparsesel.commands.prune import block_masks_of

    masks = block_masks_of(result, masked, (2, 2))
    parameter = next(p for p in masks if packable(masked.get_submodule(p.rpartition(".")[0])) is None)
    pack_layer(masked, parameter.rpartition(".")[0], masks[parameter], (2, 2))  # one layer in its block-sparse form
    assert {edit["kind"] for edit in edit_log(masked)} == set(EDIT_KINDS)
    return zoo.save_net(masked, tmp_path / "edited.pt")


def test_a_fresh_process_loads_every_kind_without_importing_anything_first(tmp_path):
    path = _edited_file(tmp_path)
    expected, _ = zoo.load_net(path)
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.save(expected(x), tmp_path / "expected.pt")
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        from sparsesel.nets import load_net
        assert "sparsesel.compress" not in sys.modules
        model, info = load_net({str(path)!r})
        assert "sparsesel.compress.apply" in sys.modules  # imported by the loader, for the edits that need it
        with torch.no_grad():
            out = model(torch.load({str(tmp_path / 'x.pt')!r}))
        assert torch.equal(out, torch.load({str(tmp_path / 'expected.pt')!r}))
        print(sorted({{edit["kind"] for edit in model.structure}}))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)}, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(sorted(EDIT_KINDS))


def test_edits_of_earlier_files_are_read_under_their_current_names():
    edits = checked_edits([{"kind": "sparsesel.compress.factorize", "args": {"name": "stem"}},
                           {"kind": "sparsesel.compress.prune_channels", "args": {}}, {"kind": "block_mask"}], "f.pt")
    assert [edit["kind"] for edit in edits] == ["factorize", "prune_channels", "block_mask"]
    assert edits[2]["args"] == {}


@pytest.mark.parametrize(("edits", "message"), [
    ("x", r"f\.pt: 'edits' must be a list of edits, got str"),
    ([["factorize"]], r"edits\[0\] must be a dict with a str 'kind' and a dict 'args'"),
    ([{"kind": "factorize", "args": [1]}], r"edits\[0\] must be a dict"),
    ([{"kind": "no_such_edit", "args": {}}], r"unknown structural edit 'no_such_edit' \(edits\[0\]\); known: \['block_mask'"),
])
def test_malformed_logs_are_named(edits, message):
    with pytest.raises(ValueError, match=message):
        checked_edits(edits, "f.pt")


def test_an_edit_that_does_not_fit_the_network_names_its_position():
    model = UHDformer(CONFIG)
    with pytest.raises(ValueError, match=r"f\.pt: edits\[0\] \(factorize\): the plan names layer 'nowhere'"):
        replay_edits(model, [{"kind": "factorize", "args": {"name": "nowhere", "factorization": "lowrank", "ranks": [1]}}], "f.pt")
    with pytest.raises(ValueError, match=r"edits\[0\] \(factorize\): bad arguments \['name'\]"):
        replay_edits(model, [{"kind": "factorize", "args": {"name": "stem"}}], "f.pt")
    with pytest.raises(ValueError, match=r"edits\[0\] \(block_mask\): block mask of 'stem.weight': block indices must be integers in \[0, 3\], got \[12\]"):
        replay_edits(model, [{"kind": "block_mask", "args": {"parameter": "stem.weight", "block_shape": [2, 3], "kept": [12]}}])
    with pytest.raises(ValueError, match="no such parameter"):
        replay_edits(model, [{"kind": "block_mask", "args": {"parameter": "stem.nothing", "block_shape": [1, 1], "kept": []}}])


def test_edits_that_ask_for_large_layers_are_refused_before_anything_is_allocated(tmp_path):
    path = _edited_file(tmp_path)
    payload = torch.load(path, weights_only=True)
    edits = [dict(edit) for edit in payload["edits"]]
    first = next(i for i, edit in enumerate(edits) if edit["kind"] == "prune_channels" and edit["args"]["kind"] == "gate")
    edits[first] = {"kind": "prune_channels", "args": {**edits[first]["args"], "channels": 10**6}}
    torch.save({**payload, "edits": edits}, tmp_path / "huge.pt")
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(ValueError, match=r"huge\.pt does not fit uhdformer: .*checkpoint \(\d+, 8, 1, 1\) vs network \(1000000, 8, 1, 1\)"):
        zoo.load_net(tmp_path / "huge.pt")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 50 * 2**20  # the real layers (a million channels, three of them) would take over 100 MB
    # a rank beyond the layer is refused by the edit itself
    factorized = next(i for i, edit in enumerate(edits) if edit["kind"] == "factorize" and edit["args"]["factorization"] == "tucker2")
    edits = [dict(edit) for edit in payload["edits"]]
    edits[factorized] = {"kind": "factorize", "args": {**edits[factorized]["args"], "ranks": [10**5, 10**5]}}
    torch.save({**payload, "edits": edits}, tmp_path / "rank.pt")
    with pytest.raises(ValueError, match=r"rank\.pt: bad configuration .*edits\[\d+\] \(factorize\): rank R_out=100000 must lie in"):
        zoo.load_net(tmp_path / "rank.pt")


def test_registered_kinds_and_dropping_edits():
    with pytest.raises(ValueError, match="one of the bundled kinds"):
        register_edit_kind("factorize")(lambda model: None)

    @register_edit_kind("test_edits_widen_head")
    def widen(model: nn.Module, channels: int) -> None:
        model.head = nn.Conv2d(model.config.width, channels, 1)

    model = UHDformer(CONFIG)
    replay_edits(model, [{"kind": "test_edits_widen_head", "args": {"channels": 5}}])
    assert model.head.out_channels == 5 and edit_log(model)[-1]["kind"] == "test_edits_widen_head"
    log = edit_log(model)
    log += [{"kind": "factorize", "args": {"name": "up"}}, {"kind": "factorize", "args": {"name": "up.first"}},
            {"kind": "factorize", "args": {"name": "upper"}}, {"kind": "sparsesel.compress.factorize", "args": {"name": "up"}}]
    drop_edits(model, "factorize", "up")  # the layer and everything inside it, old names too
    assert [edit["args"].get("name") for edit in edit_log(model)] == [None, "upper"]


def test_a_module_with_its_own_structure_attribute_is_told_so():
    class Clash(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.structure = nn.Conv2d(3, 3, 1)

    with pytest.raises(TypeError, match="Clash.structure is a Conv2d; sparsesel keeps a network's log"):
        edit_log(Clash())


def test_a_structure_changed_without_an_edit_is_not_written(tmp_path):
    model = UHDformer(CONFIG)
    model.head = nn.Conv2d(CONFIG.width, 3, 1)  # as Torch-Pruning would: no edit recorded
    with pytest.raises(ValueError, match=r"cannot record how to rebuild this UHDformer: .*head.weight.*changed without a recorded edit"):
        zoo.save_net(model, tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()
