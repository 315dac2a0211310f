"""Reliability of ``sparsesel export``: hostile checkpoints, outputs and arguments are refused clearly;
odd but valid sizes give an artefact that is right against the eager network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reliability_helpers import expect_clear_error, run_cli

from sparsesel.nets import zoo
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig

SMALL = UHDformerConfig(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return zoo.save_net(UHDformer(SMALL).eval(), tmp_path / "net.pt", net="uhdformer")


def _hostile(case: str, tmp_path, checkpoint):
    """``(argv, fragments)`` of one hostile invocation."""
    out = tmp_path / "out.onnx"
    base = ["export", checkpoint, "--format", "onnx", "--out", out, "--device", "cpu"]
    if case == "missing_checkpoint":
        return ["export", tmp_path / "nope.pt", "--format", "onnx", "--out", out], ["does not exist"]
    if case == "garbage_checkpoint":
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a checkpoint")
        return ["export", bad, "--format", "onnx", "--out", out], ["bad.pt"]
    if case == "folder_checkpoint":
        return ["export", tmp_path, "--format", "onnx", "--out", out], ["is a folder"]
    if case == "existing_output":
        out.write_bytes(b"keep")
        return base, ["exists", "--force"]
    if case == "output_is_checkpoint":
        return ["export", checkpoint, "--format", "pt2", "--out", checkpoint, "--force"], ["is the input CHECKPOINT"]
    if case == "output_is_folder":
        (tmp_path / "folder").mkdir()
        return ["export", checkpoint, "--format", "onnx", "--out", tmp_path / "folder", "--force"], ["is a folder"]
    if case == "unknown_format":
        return ["export", checkpoint, "--format", "tflite", "--out", out], ["invalid choice"]
    if case == "zero_example_size":
        return [*base, "--example-size", "0", "8"], ["example_size"]
    if case == "bogus_device":
        return [*base[:-1], "gpu7"], ["not a torch device"]
    if case == "cuda_without_cuda":
        return [*base[:-1], "cuda"], ["cuda is not available"]
    raise AssertionError(case)


HOSTILE = ["missing_checkpoint", "garbage_checkpoint", "folder_checkpoint", "existing_output", "output_is_checkpoint",
           "output_is_folder", "unknown_format", "zero_example_size", "bogus_device", "cuda_without_cuda"]


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", HOSTILE)
def test_export_refuses_hostile_input_clearly(case, tmp_path, checkpoint):
    if case == "cuda_without_cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    argv, fragments = _hostile(case, tmp_path, checkpoint)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    expect_clear_error(argv, *fragments)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing lost


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("example", [(13, 17), (4, 4)])
def test_odd_example_sizes_give_a_right_dynamic_onnx_model(example, tmp_path, checkpoint):
    onnxruntime = pytest.importorskip("onnxruntime")
    out = tmp_path / "net.onnx"
    run = run_cli(["export", checkpoint, "--format", "onnx", "--out", out, "--example-size", *example, "--device", "cpu"])
    assert run.status == 0, run.err
    model, _ = zoo.load_net(checkpoint)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 20, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() <= 1e-4
