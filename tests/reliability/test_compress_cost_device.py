"""Reliability of the cost, latency and device options (issue 19): every bad value is refused with
one clear line before any work, and nothing is written."""

from __future__ import annotations

import pytest
import torch
from reliability_helpers import expect_clear_error

from sparsesel.nets import zoo
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig

SMALL = UHDformerConfig(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    return zoo.save_net(UHDformer(SMALL).eval(), tmp_path / "net.pt", net="uhdformer")


#: case -> (extra compress arguments, fragments of the message)
COMPRESS_CASES = {
    "unknown_cost": (["--cost", "flops"], ["--cost", "invalid choice", "flops"]),
    "latency_size_text": (["--latency-size", "big"], ["--latency-size", "N or HxW", "big"]),
    "latency_size_zero_side": (["--latency-size", "0x512"], ["--latency-size", "positive"]),
    "latency_size_three_sides": (["--latency-size", "2x3x4"], ["--latency-size", "HxW"]),
    "latency_threads_zero": (["--latency-threads", "0"], ["latency_threads", ">= 1"]),
    "latency_budget_with_curve": (["--cost", "latency", "--curve", "0.5"], ["--curve", "--cost latency"]),
    "latency_budget_unmeasured": (["--cost", "latency", "--latency-repeats", "0"], ["--latency-repeats", ">= 1"]),
    "macs_budget_magnitude": (["--cost", "macs", "--method", "magnitude"], ["magnitude", "MACs"]),
    "latency_budget_over_one": (["--cost", "latency", "--budget", "1.5"], ["--budget"]),
    "device_nonsense": (["--device", "potato"], ["--device", "potato"]),
    "latency_budget_resume": (["--cost", "latency", "--resume"], ["resume", "latency budget", "--force"]),
}


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("case", sorted(COMPRESS_CASES))
def test_compress_refuses_bad_cost_and_device_values(case, checkpoint, tmp_path):
    extra, fragments = COMPRESS_CASES[case]
    out = tmp_path / "out"
    expect_clear_error(["compress", checkpoint, "--out", out, "--no-progress", *extra], *fragments)
    assert not out.exists()


def _device_argv(command: str, checkpoint, tmp_path, device: str) -> list:
    if command == "compress":
        return ["compress", checkpoint, "--out", tmp_path / "out", "--device", device, "--no-progress"]
    if command == "restore":
        from sparsesel.data.image_files import write_image
        import numpy as np

        image = tmp_path / "in.png"
        write_image(image, np.full((16, 16, 3), 0.5, dtype=np.float32))
        return ["restore", image, "--checkpoint", checkpoint, "--out", tmp_path / "out.png", "--device", device]
    if command == "train":
        return ["train", "uhdformer", "--task", "lowlight", "--steps", "1", "--out", tmp_path / "t.pt", "--device", device, "--no-progress"]
    return ["export", checkpoint, "--format", "onnx", "--out", tmp_path / "out.onnx", "--device", device]


@NO_CUDA
@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("command", ["compress", "restore", "train", "export"])
def test_cuda_device_without_cuda_is_one_clear_line(command, checkpoint, tmp_path):
    run = expect_clear_error(_device_argv(command, checkpoint, tmp_path, "cuda"), "cuda", "not available")
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.png").exists() and not (tmp_path / "t.pt").exists()


@pytest.mark.reliability("right_result")
def test_restore_on_an_explicit_cpu_device_equals_the_default(checkpoint, tmp_path):
    """``--device cpu`` names the device the default picks on a machine without CUDA: the same image."""
    from reliability_helpers import run_cli

    from sparsesel.data.image_files import read_image, write_image
    import numpy as np

    image = tmp_path / "in.png"
    write_image(image, np.random.default_rng(0).random((24, 20, 3)).astype(np.float32))
    first = run_cli(["restore", image, "--checkpoint", checkpoint, "--out", tmp_path / "a.png", "--device", "cpu"])
    second = run_cli(["restore", image, "--checkpoint", checkpoint, "--out", tmp_path / "b.png"])
    assert first.status == 0 and second.status == 0, first.err + second.err
    assert np.array_equal(read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png"))


@pytest.mark.reliability("right_result")
def test_training_on_an_explicit_cpu_device_writes_a_network(tmp_path):
    from reliability_helpers import run_cli

    run = run_cli(["train", "uhdformer", "--task", "lowlight", "--steps", "1", "--batch-size", "1", "--patch-size", "32",
                   "--eval-count", "0", "--out", tmp_path / "t.pt", "--device", "cpu", "--no-progress",
                   "--option", "width=8", "--option", "number_block=1"])
    assert run.status == 0, run.err
    model, info = zoo.load_net(tmp_path / "t.pt")
    assert info["net"] == "uhdformer" and all(p.device.type == "cpu" for p in model.parameters())


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("budget", ["0.5", "300", "nan"])
def test_a_latency_budget_on_a_network_other_than_uhdformer_is_refused(budget, tmp_path):
    """Latency plans are made of UHDformer's channel groups: another network gets one line naming the way out
    (an unreadable budget is refused first, naming the unit the count is in)."""
    from sparsesel.nets.csattn import CSAttn, CSAttnConfig

    torch.manual_seed(0)
    path = zoo.save_net(CSAttn(CSAttnConfig.small()).eval(), tmp_path / "cs.pt", net="csattn")
    out = tmp_path / "out"
    fragments = ["milliseconds", "nan"] if budget == "nan" else ["cs.pt", "UHDformer networks only", "--cost params"]
    expect_clear_error(["compress", path, "--cost", "latency", "--budget", budget, "--out", out, "--no-progress"], *fragments)
    assert not out.exists()
