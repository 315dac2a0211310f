"""Reliability of block-sparse ``prune`` (issue 20): bad timing options and corrupt packed checkpoints are
refused clearly; a packed checkpoint restores the same image as its dense twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reliability_helpers import expect_clear_error, run_cli

from sparsesel.block_layers import ceil_grid, pack_layer
from sparsesel.nets import zoo


@pytest.fixture
def network(tmp_path):
    torch.manual_seed(0)
    return zoo.save_net(zoo.build_net("csattn", "small").eval(), tmp_path / "net.pt", net="csattn")


def _packed(tmp_path):
    """A CSAttn file with two packed layers, and the same network with those layers dense (masked)."""
    import copy

    torch.manual_seed(1)
    model = zoo.build_net("csattn", "small").eval()
    dense = copy.deepcopy(model)
    for name in ("down1", "fuse2"):
        grid = ceil_grid(model.get_submodule(name).weight.shape, (4, 4))
        mask = torch.zeros(grid, dtype=torch.bool)
        mask.view(-1)[::3] = True
        layer = pack_layer(model, name, mask, (4, 4))
        with torch.no_grad():  # the reference: dropped blocks zeroed with repeat_interleave of the mask
            full = mask.repeat_interleave(4, 0).repeat_interleave(4, 1)
            dense.get_submodule(name).weight.mul_(full[:, :, None, None].float())
        assert torch.equal(layer.weight, dense.get_submodule(name).weight)
    return zoo.save_net(model, tmp_path / "packed.pt", net="csattn"), zoo.save_net(dense, tmp_path / "dense.pt", net="csattn")


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("argv,fragments", [
    (["--latency-size", "0"], ["--latency-size must be between 1 and 8192", "got 0"]),
    (["--latency-size", "-3"], ["--latency-size must be between 1 and 8192"]),
    (["--latency-size", "100000"], ["--latency-size must be between 1 and 8192"]),
    (["--threads", "0"], ["--threads must be between 1 and"]),
    (["--threads", "100000"], ["--threads must be between 1 and"]),
    (["--kernel", "fast"], ["invalid choice: 'fast'", "auto", "dense", "block"]),
], ids=["size-zero", "size-negative", "size-huge", "threads-zero", "threads-huge", "kernel-unknown"])
def test_prune_refuses_bad_kernel_options(argv, fragments, network, tmp_path):
    out = tmp_path / "o.pt"
    expect_clear_error(["prune", network, "--density", "0.5", "--out", out, *argv], *fragments)
    assert not out.exists()


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("damage,fragments", [
    ("repeated", ["packed.pt", "distinct block positions"]),
    ("out_of_grid", ["packed.pt", "distinct block positions"]),
    ("blocks_shape", ["packed.pt", "down1.blocks"]),
])
def test_a_corrupt_packed_checkpoint_is_refused_naming_the_file(damage, fragments, tmp_path):
    packed, _ = _packed(tmp_path)
    payload = torch.load(packed, weights_only=True)
    params = payload["state_dict"]
    if damage == "repeated":
        params["down1.index"] = torch.full_like(params["down1.index"], 1)
    elif damage == "out_of_grid":
        params["down1.index"] = params["down1.index"] + 1000
    else:
        params["down1.blocks"] = params["down1.blocks"][:, :2]
    torch.save(payload, packed)
    image = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(image)
    expect_clear_error(["restore", image, "--checkpoint", packed, "--out", tmp_path / "out.png"], *fragments)


@pytest.mark.reliability("right_result")
def test_a_packed_checkpoint_restores_the_image_of_its_dense_twin(tmp_path):
    packed, dense = _packed(tmp_path)
    from PIL import Image

    image = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((20, 28, 3)) * 255).astype(np.uint8)).save(image)
    for path in (packed, dense):
        run = run_cli(["restore", image, "--checkpoint", path, "--out", tmp_path / f"{path.stem}.png", "--threads", "1"])
        assert run.status == 0, run.err
    a = np.asarray(Image.open(tmp_path / "packed.png"), dtype=np.int16)
    b = np.asarray(Image.open(tmp_path / "dense.png"), dtype=np.int16)
    assert np.abs(a - b).max() <= 1  # the same function up to float rounding (8-bit output)
