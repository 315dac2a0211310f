"""``sparsesel prune`` on networks of sparsesel.nets (skipped where sparsesel.nets is missing)."""

import hashlib
import json

import pytest
import torch

from sparsesel.cli import main

torch.set_num_threads(1)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
    named_orig, named_new = dict(original.named_parameters()), dict(pruned.named_parameters())
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
    assert "density must be in (0, 1]" in capsys.readouterr().err
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
    untouched = dict(load_uhdformer(default).named_parameters())
    for name in pruned_every - pruned_default:
        assert torch.equal(untouched[name], original[name])
