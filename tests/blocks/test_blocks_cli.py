"""``sparsesel prune`` on networks of sparsesel.nets (skipped where sparsesel.nets is missing)."""

import hashlib
import json

import pytest
import torch

from sparsesel.cli import main

torch.set_num_threads(1)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def effective_weights(model):
    """``{"layer.weight": dense weight}`` of every layer, also of layers prune packed into block-sparse form
    (whose dense weight, zero outside the kept blocks, is their ``weight`` property)."""
    weights = dict(model.named_parameters())
    for name, module in model.named_modules():
        if type(module).__name__.startswith("PackedBlock"):
            weights[f"{name}.weight"] = module.weight
    return weights


@pytest.fixture
def checkpoint(tmp_path):
    nets = pytest.importorskip("sparsesel.nets")
    torch.manual_seed(0)
    model = nets.UHDformer(nets.UHDformerConfig(number_block=1, unit_num=1))
    path = tmp_path / "in.pth"
    nets.save_checkpoint(model, path)
    return path


def test_prune_writes_a_new_checkpoint_and_leaves_the_input(checkpoint, tmp_path):
    from sparsesel.nets import load_uhdformer

    before = digest(checkpoint)
    out = tmp_path / "pruned.pth"
    assert main(["prune", str(checkpoint), "--density", "0.25", "--block", "8x8", "--out", str(out)]) == 0
    assert digest(checkpoint) == before
    original, pruned = load_uhdformer(checkpoint), load_uhdformer(out)
    summary = json.loads((tmp_path / "pruned.pth.prune.json").read_text())
    assert summary["selected"]
    named_orig, named_new = dict(original.named_parameters()), effective_weights(pruned)
    for name, kept in summary["selected"]:
        w0, w1 = named_orig[name].detach(), named_new[name].detach()
        R, C = w0.shape[0] // 8, w0.shape[1] // 8
        assert len(kept) == max(1, int(0.25 * R * C + 0.5))
        for index in range(R * C):
            r, c = divmod(index, C)
            block0, block1 = w0[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8], w1[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8]
            if index in kept:
                assert torch.equal(block0, block1)
            else:
                assert torch.all(block1 == 0)
        # magnitude: every kept block is at least as large as every dropped one
        norms = [float(w0[(i // C) * 8:(i // C + 1) * 8, (i % C) * 8:(i % C + 1) * 8].norm()) for i in range(R * C)]
        dropped = [norms[i] for i in range(R * C) if i not in kept]
        if dropped:
            assert min(norms[i] for i in kept) >= max(dropped)
    # an existing output is refused without --force; the input is never the output
    assert main(["prune", str(checkpoint), "--density", "0.25", "--out", str(out)]) == 2
    assert main(["prune", str(checkpoint), "--density", "0.25", "--out", str(checkpoint), "--force"]) == 2
    assert digest(checkpoint) == before


def test_prune_errors(tmp_path, capsys, checkpoint):
    assert main(["prune", str(tmp_path / "missing.pth"), "--density", "0.5", "--out", str(tmp_path / "o.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["prune", str(checkpoint), "--density", "1.5", "--out", str(tmp_path / "o.pth")]) == 2
    assert "--density must be a fraction in (0, 1] of the blocks, written with a decimal point" in capsys.readouterr().err
    assert main(["prune", str(checkpoint), "--density", "0.5", "--block", "8by8", "--out", str(tmp_path / "o.pth")]) == 2
    assert "must look like '8x8'" in capsys.readouterr().err


def test_prune_min_blocks_keeps_small_weights_dense(checkpoint, tmp_path):
    """The paper's rule: weights with fewer than --min-blocks blocks are left dense (default 100)."""
    from sparsesel.nets import load_uhdformer

    default, every = tmp_path / "default.pth", tmp_path / "every.pth"
    assert main(["prune", str(checkpoint), "--density", "0.25", "--block", "4x4", "--out", str(default)]) == 0
    assert main(["prune", str(checkpoint), "--density", "0.25", "--block", "4x4", "--min-blocks", "1", "--out", str(every)]) == 0
    pruned_default = {name for name, _ in json.loads((tmp_path / "default.pth.prune.json").read_text())["selected"]}
    pruned_every = {name for name, _ in json.loads((tmp_path / "every.pth.prune.json").read_text())["selected"]}
    original = dict(load_uhdformer(checkpoint).named_parameters())
    blocks = {name: (original[name].shape[0] // 4) * (original[name].shape[1] // 4) for name in pruned_every}
    assert pruned_default == {name for name, n in blocks.items() if n >= 100}
    assert pruned_default < pruned_every
    untouched = effective_weights(load_uhdformer(default))
    for name in pruned_every - pruned_default:
        assert torch.equal(untouched[name], original[name])


# --- output paths: default name, the input never written, every check before any write (issue 6 audit) ---


def snapshot(folder):
    """Every file under ``folder`` with its sha256 (folders as None): what a refused run must leave as it was."""
    return {str(p.relative_to(folder)): (digest(p) if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_prune_issue_command_writes_the_default_output(checkpoint, tmp_path, capsys):
    """``sparsesel prune CHECKPOINT --density 0.25 --block 8x8`` (the issue's command, no --out)."""
    from sparsesel.nets import load_uhdformer

    before = digest(checkpoint)
    assert main(["prune", str(checkpoint), "--density", "0.25", "--block", "8x8"]) == 0
    expected = tmp_path / "in.pruned-d0.25-b8x8.pth"  # <stem>.pruned-d<density>-b<b1>x<b2><suffix>
    sidecar = tmp_path / "in.pruned-d0.25-b8x8.pth.prune.json"
    assert str(expected) in capsys.readouterr().out
    assert digest(checkpoint) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in.pth", expected.name, sidecar.name])
    summary = json.loads(sidecar.read_text())
    assert summary["target_density"] == 0.25 and summary["block"] == "8x8"
    pruned = effective_weights(load_uhdformer(expected))
    for name, kept in summary["selected"]:  # the pruned blocks are zero in the written checkpoint
        w = pruned[name].detach()
        R, C = w.shape[0] // 8, w.shape[1] // 8
        zero = [int(torch.all(w[(i // C) * 8:(i // C + 1) * 8, (i % C) * 8:(i % C + 1) * 8] == 0)) for i in range(R * C)]
        assert sum(zero) >= R * C - len(kept)
    # a second run finds the default output: refused without --force, nothing changes
    state = snapshot(tmp_path)
    assert main(["prune", str(checkpoint), "--density", "0.25", "--block", "8x8"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert snapshot(tmp_path) == state
    assert main(["prune", str(checkpoint), "--density", "0.25", "--block", "8x8", "--force"]) == 0
    assert digest(checkpoint) == before
    # another density or block gives another default name
    assert main(["prune", str(checkpoint), "--density", "0.5", "--block", "4x4"]) == 0
    assert (tmp_path / "in.pruned-d0.5-b4x4.pth").is_file()
    assert (tmp_path / "in.pruned-d0.5-b4x4.pth.prune.json").is_file()
    assert digest(checkpoint) == before


def test_prune_summary_never_overwrites_the_input(checkpoint, tmp_path, capsys):
    """Input ``a.pth.prune.json`` with ``--out a.pth``: the summary would be the input → refused, even with --force."""
    source = tmp_path / "a.pth.prune.json"
    source.write_bytes(checkpoint.read_bytes())
    checkpoint.unlink()
    before = digest(source)
    out = tmp_path / "a.pth"
    for extra in ([], ["--force"]):
        state = snapshot(tmp_path)
        assert main(["prune", str(source), "--density", "0.25", "--block", "8x8", "--out", str(out), *extra]) == 2
        assert "is the input checkpoint" in capsys.readouterr().err
        assert digest(source) == before
        assert not out.exists()  # nothing written: the checks come before the checkpoint
        assert snapshot(tmp_path) == state
    # the audit's exact case: --out exists too
    out.write_bytes(b"an older output")
    state = snapshot(tmp_path)
    assert main(["prune", str(source), "--density", "0.25", "--block", "8x8", "--out", str(out), "--force"]) == 2
    assert "is the input checkpoint" in capsys.readouterr().err
    assert snapshot(tmp_path) == state and digest(source) == before


def test_prune_existing_summary_needs_force(checkpoint, tmp_path, capsys):
    before = digest(checkpoint)
    out = tmp_path / "o.pth"
    sidecar = tmp_path / "o.pth.prune.json"
    sidecar.write_text("keep me")
    state = snapshot(tmp_path)
    assert main(["prune", str(checkpoint), "--density", "0.25", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "o.pth.prune.json exists; pass --force" in err
    assert snapshot(tmp_path) == state and not out.exists()  # the checkpoint is not written either
    assert main(["prune", str(checkpoint), "--density", "0.25", "--out", str(out), "--force"]) == 0
    assert json.loads(sidecar.read_text())["target_density"] == 0.25
    assert out.is_file() and digest(checkpoint) == before


def test_prune_links_to_the_input_are_refused(checkpoint, tmp_path, capsys):
    """A symlink or a hard link to the input is the input (os.path.samefile), even with --force."""
    import os

    before = digest(checkpoint)
    symlink, hardlink = tmp_path / "sym.pth", tmp_path / "hard.pth"
    symlink.symlink_to(checkpoint)
    os.link(checkpoint, hardlink)
    for out in (symlink, hardlink):
        state = snapshot(tmp_path)
        assert main(["prune", str(checkpoint), "--density", "0.25", "--out", str(out), "--force"]) == 2
        assert "is the input checkpoint" in capsys.readouterr().err
        assert snapshot(tmp_path) == state and digest(checkpoint) == before
    # the summary as a link to the input
    (tmp_path / "x.pth.prune.json").symlink_to(checkpoint)
    assert main(["prune", str(checkpoint), "--density", "0.25", "--out", str(tmp_path / "x.pth"), "--force"]) == 2
    assert "is the input checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "x.pth").exists() and digest(checkpoint) == before


def test_prune_out_folder_is_a_clear_error(checkpoint, tmp_path, capsys):
    """``--out`` naming a folder: exit 2 with a message (it was an IsADirectoryError traceback), nothing written."""
    before = digest(checkpoint)
    folder = tmp_path / "outdir"
    folder.mkdir()
    for extra in ([], ["--force"]):
        state = snapshot(tmp_path)
        assert main(["prune", str(checkpoint), "--density", "0.25", "--block", "8x8", "--out", str(folder), *extra]) == 2
        err = capsys.readouterr().err
        assert "is a folder" in err and "Traceback" not in err
        assert snapshot(tmp_path) == state and digest(checkpoint) == before
    # a file where a folder of --out should be
    assert main(["prune", str(checkpoint), "--density", "0.25", "--out", str(checkpoint / "o.pth")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert digest(checkpoint) == before


def test_prune_bad_arguments_are_refused_before_any_write(checkpoint, tmp_path, capsys):
    """Density and block are checked before the default output name is built or anything is written."""
    state = snapshot(tmp_path)
    for density in ("0", "nan", "inf", "-0.5"):
        assert main(["prune", str(checkpoint), "--density", density]) == 2
        assert "--density must be a fraction in (0, 1] of the blocks, written with a decimal point" in capsys.readouterr().err
    assert main(["prune", str(checkpoint), "--density", "0.5", "--block", "8/8"]) == 2
    assert "must look like '8x8'" in capsys.readouterr().err
    assert snapshot(tmp_path) == state


@pytest.mark.parametrize("net", ["csattn", "tshrnet", "harmonizer"])
def test_prune_every_network_of_sparsesel_nets(net, tmp_path):
    """Networks written by sparsesel.nets.save_net (as ``sparsesel train`` does) are pruned and stay loadable.

    Reference: the block norms of each pruned weight, computed here with torch: the kept blocks are
    unchanged and at least as large as every dropped one, the dropped ones are zero.
    """
    nets = pytest.importorskip("sparsesel.nets")
    torch.manual_seed(0)
    model = nets.build_net(net, "small").eval()
    path = tmp_path / f"{net}.pt"
    nets.save_net(model, path, net=net, meta={"task": "test"})
    before = digest(path)
    assert main(["prune", str(path), "--density", "0.5", "--block", "4x4", "--min-blocks", "1"]) == 0
    assert digest(path) == before
    out = tmp_path / f"{net}.pruned-d0.5-b4x4.pt"
    pruned, info = nets.load_net(out)
    assert info["net"] == net and info["meta"]["task"] == "test" and info["meta"]["prune"]["net"] == net
    summary = json.loads((tmp_path / f"{net}.pruned-d0.5-b4x4.pt.prune.json").read_text())
    assert summary["selected"]
    original, new = dict(model.named_parameters()), effective_weights(pruned)
    for name, kept in summary["selected"]:
        w0, w1 = original[name].detach(), new[name].detach()
        rows, cols = w0.shape[0] // 4, w0.shape[1] // 4
        blocks0 = w0.reshape(rows, 4, cols, 4, -1).transpose(1, 2).reshape(rows * cols, -1)
        blocks1 = w1.reshape(rows, 4, cols, 4, -1).transpose(1, 2).reshape(rows * cols, -1)
        norms = blocks0.norm(dim=1)
        assert len(kept) == max(1, int(0.5 * rows * cols + 0.5))
        mask = torch.zeros(rows * cols, dtype=torch.bool)
        mask[list(kept)] = True
        # a top-k by norm (zero-initialised weights tie everywhere, so any k of them are a top-k)
        assert bool(mask.all()) or float(norms[mask].min()) >= float(norms[~mask].max())
        assert torch.equal(blocks1[mask], blocks0[mask]) and torch.all(blocks1[~mask] == 0)
