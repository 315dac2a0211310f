"""Every command reads every other command's output, for every network of sparsesel.nets and a user's own.

The chain ``compress -> restore -> prune -> restore -> compress again -> export`` runs on the command
line, each command in a fresh process (so nothing is imported by accident: the loader must know
every structural edit by itself). The results are checked against references made here: the first
compressed network against the original network with ``plan.json`` applied in this process, the
pruned file's zeros against the summary's kept blocks, the exported program against the loaded file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsesel.compress import apply, load_compressed
from sparsesel.compress.plan import Plan
from sparsesel.data.image_files import read_image, write_image
from sparsesel.nets import zoo
from sparsesel.nets.adapter import get_adapter

ROOT = Path(__file__).resolve().parents[2]
USER_MODULES = ROOT / "tests" / "compress"  # user_networks.py: a network sparsesel knows nothing of
USER_FACTORY = "user_networks:tiny_cnn"
if str(USER_MODULES) not in sys.path:  # this process builds the references, so it imports the user's module too
    sys.path.insert(0, str(USER_MODULES))
SMALL = {
    "uhdformer": {"width": 8, "number_block": 1, "unit_num": 1, "num_heads": 2, "match_factor": 2, "ffn_expansion_factor": 2,
                  "scale_factor": 4},
    "csattn": {"width": 8, "blocks": [1, 1, 1], "heads": [1, 2, 2]},
    "tshrnet": {"width": 4, "levels": 2, "shared_repeats": 1, "max_width_mult": 2},
    "harmonizer": {"width": 4, "levels": 2, "disc_width": 4, "disc_layers": 1},
}
COMPRESS_FAST = ["--finetune-steps", "0", "--no-baselines", "--curve", "", "--latency-repeats", "0", "--eval-count", "1",
                 "--eval-size", "32", "--threads", "1", "--no-progress"]


def test_every_network_of_sparsesel_nets_is_in_the_chain():
    assert set(SMALL) == set(zoo.net_names())


def _sparsesel(*args: object, cwd: Path, expect: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(USER_MODULES)]), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "sparsesel.cli", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == expect, f"sparsesel {' '.join(map(str, args))}: status {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    return run


def _original(net: str) -> torch.nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        if net == USER_FACTORY:
            return zoo.build_net(net).eval()
        return zoo.build_net(net, SMALL[net]).eval()


def _inputs(folder: Path, net: str) -> list[str]:
    rng = np.random.default_rng(0)
    image = write_image(folder / "in.png", rng.random((40, 48, 3)))
    if net != USER_FACTORY and get_adapter(net).takes_mask:
        mask = np.zeros((40, 48, 3))
        mask[10:30, 12:36] = 1.0
        return [image, "--mask", write_image(folder / "mask.png", mask)]
    return [image]


def _restored(model: torch.nn.Module, net: str, folder: Path) -> np.ndarray:
    """The 8-bit image ``restore`` must write for ``model`` (computed here)."""
    batch = {"input": torch.from_numpy(read_image(folder / "in.png").transpose(2, 0, 1).copy())[None]}
    if (folder / "mask.png").exists():
        batch["mask"] = torch.from_numpy((read_image(folder / "mask.png").mean(axis=2) > 0.5).astype(np.float32))[None, None]
    with torch.no_grad():
        out = get_adapter(net).restore(model, batch).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    return np.round(out * 255) / 255


def _dense_parameter_count(model: torch.nn.Module) -> int:
    """Parameters of ``model`` with each packed block-sparse layer counted as its dense weight and bias."""
    from sparsesel.block_layers import PackedBlocks

    total = 0
    for module in model.modules():
        if isinstance(module, PackedBlocks):
            total += module.weight.numel() + (0 if module.bias is None else module.bias.numel())
        else:
            total += sum(p.numel() for p in module.parameters(recurse=False))
    return total


@pytest.mark.slow
@pytest.mark.parametrize("net", [*SMALL, USER_FACTORY])
def test_compress_restore_prune_restore_compress_export(net, tmp_path):
    user = net == USER_FACTORY
    original = _original(net)
    if user:  # a plain state dict of the user's network; --net names its factory (the opt-in to import it)
        checkpoint = tmp_path / "weights.pt"
        torch.save(original.state_dict(), checkpoint)
        named = ["--net", USER_FACTORY]
    else:
        checkpoint = zoo.save_net(original, tmp_path / "net.pt")
        named = []
    image = _inputs(tmp_path, net)

    _sparsesel("compress", checkpoint, "--budget", "0.8", "--out", "first", *COMPRESS_FAST, *named, cwd=tmp_path)
    first = tmp_path / "first" / "compressed.pt"
    _sparsesel("restore", *image, "--checkpoint", first, "--out", "first.png", *named, cwd=tmp_path)
    reference = apply(original, Plan.load(tmp_path / "first" / "plan.json"))  # the original with the plan, made here
    np.testing.assert_allclose(read_image(tmp_path / "first.png"), _restored(reference, net, tmp_path), atol=1.01 / 255)

    if user:  # the file names its factory; loading it without an opt-in is refused
        refused = _sparsesel("restore", *image, "--checkpoint", first, "--out", "refused.png", cwd=tmp_path, expect=2)
        assert "--trust-code" in refused.stderr and USER_FACTORY in refused.stderr
        assert not (tmp_path / "refused.png").exists()

    side = 1 if user else 2  # the user's factorized layers have odd ranks
    kernel = ["--kernel", "block"] if user else []  # the user's network in packed block layers; the others as timed (auto)
    _sparsesel("prune", first, "--density", "0.5", "--block", f"{side}x{side}", "--min-blocks", "1", "--out", "pruned.pt",
               *kernel, *named, cwd=tmp_path)
    trust = ["--trust-code"] if user else []  # from here on the other opt-in
    pruned, _ = load_compressed(tmp_path / "pruned.pt", trust_code=user)
    summary = json.loads((tmp_path / "pruned.pt.prune.json").read_text())
    assert summary["selected"]
    for name, kept in summary["selected"]:
        module, _, attribute = name.rpartition(".")  # a layer --kernel auto packed has no weight parameter, but its dense weight
        weight = getattr(pruned.get_submodule(module), attribute).detach()
        rows, cols = weight.shape[0] // side, weight.shape[1] // side
        blocks = weight.reshape(rows, side, cols, side, -1).abs().sum(dim=(1, 3, 4)).reshape(-1)
        outside = np.setdiff1d(np.arange(rows * cols), kept)
        assert float(blocks[outside].sum()) == 0.0, name
    _sparsesel("restore", *image, "--checkpoint", "pruned.pt", "--out", "pruned.png", *trust, cwd=tmp_path)
    np.testing.assert_allclose(read_image(tmp_path / "pruned.png"), _restored(pruned, net, tmp_path), atol=1.01 / 255)

    _sparsesel("compress", "pruned.pt", "--budget", "0.9", "--out", "second", *COMPRESS_FAST, *trust, cwd=tmp_path)
    second, _ = load_compressed(tmp_path / "second" / "compressed.pt", trust_code=user)
    report = json.loads((tmp_path / "second" / "report.json").read_text())
    assert report["params_after"] <= 0.9 * report["params_before"]
    assert report["params_before"] == _dense_parameter_count(pruned)  # compress plans packed block layers in dense form
    stored = torch.load(tmp_path / "second" / "compressed.pt", weights_only=True)
    first_edits = torch.load(first, weights_only=True)["edits"]
    assert stored["edits"][: len(first_edits)] == first_edits  # the edits accumulate, in order
    assert {"factorize", "block_mask"} <= {edit["kind"] for edit in stored["edits"]}

    _sparsesel("export", tmp_path / "second" / "compressed.pt", "--format", "pt2", "--out", "net.pt2", "--device", "cpu",
               *trust, cwd=tmp_path)
    program = torch.export.load(tmp_path / "net.pt2").module()
    adapter = get_adapter(net)
    multiple = adapter.size_multiple(second)
    x = adapter.example_input(second, 2 * multiple * max(1, 16 // multiple), 2 * multiple * max(1, 16 // multiple), seed=3)
    with torch.no_grad():
        torch.testing.assert_close(program(x), adapter.output_image(second, x), rtol=1e-4, atol=1e-4)
