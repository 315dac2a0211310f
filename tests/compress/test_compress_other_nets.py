"""The compression pipeline on the other networks of sparsesel.nets (dict outputs, a mask input)."""

import pytest
import torch

from sparsesel.compress import apply, count_params, load_compressed, plan, save_compressed
from sparsesel.compress.finetune import FinetuneConfig, finetune
from sparsesel.compress.network_io import example_input, network_input, network_output
from sparsesel.compress.pipeline import compress_model, default_task
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.nets import zoo

BUDGETS = {"csattn": 0.5, "tshrnet": 0.75, "harmonizer": 0.5}


def small(name):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return zoo.build_net(name, "small").eval()


def reference_output(name, model, x):
    """The network's result called the way its own module documents it (independent of network_io)."""
    if name == "harmonizer":
        return model(x[:, :3], x[:, 3:4])["image"]
    if name == "tshrnet":
        return model(x)["diffuse_tc"]
    return model(x)


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_full_rank_plan_keeps_the_output_and_budget_is_met(name):
    model = small(name)
    x = example_input(model, 64, 64)
    p = plan(model, 1.0)
    for layer in p.layers:  # exact factorizations everywhere
        if layer.factorization == "dense" and layer.module == "Conv2d":
            k = layer.shape[2] * layer.shape[3]
            if k > 1:
                layer.factorization, layer.ranks = "tucker2", [min(layer.shape[0], layer.shape[1] * k), min(layer.shape[1], layer.shape[0] * k)]
    full = apply(model, p)
    with torch.no_grad():
        assert torch.allclose(network_output(full, x), reference_output(name, model, x), atol=1e-4)
    compressed, compressed_plan, _ = compress_model(model, BUDGETS[name])
    assert count_params(compressed) == compressed_plan.params_after <= int(BUDGETS[name] * count_params(model))
    with torch.no_grad():
        assert network_output(compressed, x).shape == reference_output(name, model, x).shape


@pytest.mark.parametrize("name", sorted(BUDGETS))
def test_finetune_save_load(name, tmp_path):
    model = small(name)
    compressed, _, _ = compress_model(model, BUDGETS[name])
    before = {k: v.clone() for k, v in compressed.state_dict().items()}
    finetune(compressed, model, FinetuneConfig(task=default_task(model), steps=2, batch_size=2, patch_size=64), progress=False)
    assert any(not torch.equal(before[k], v) for k, v in compressed.state_dict().items())
    path = save_compressed(compressed, tmp_path / "c.pt", net=name)
    loaded, _ = load_compressed(path)
    x = example_input(model, 64, 64)
    with torch.no_grad():
        assert torch.equal(network_output(loaded, x), network_output(compressed, x))


def test_harmonizer_mask_and_discriminator():
    model = small("harmonizer")
    _, p, _ = compress_model(model, 0.5)
    assert all(not layer.name.startswith("discriminator") for layer in p.layers)
    assert any(s["name"].startswith("discriminator") for s in p.skipped)
    batch = PairedPatchDataset("harmonize", split="test", patch_size=64, length=1, seed=0).batch([0])
    assert network_input(model, batch).shape[1] == 4
    with pytest.raises(ValueError, match="takes a foreground mask"):
        network_input(model, {"input": batch["input"]})
    with pytest.raises(ValueError, match="expected 4 input channels"):
        network_output(model, batch["input"])


def test_tshrnet_budget_below_its_unplanned_layers_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        compress_model(small("tshrnet"), 0.3)


def test_cli_on_a_tshrnet_checkpoint(tmp_path):
    import json

    from sparsesel.cli import main

    checkpoint = zoo.save_net(small("tshrnet"), tmp_path / "tshrnet.pt", net="tshrnet")
    before = checkpoint.read_bytes()
    out = tmp_path / "run"
    assert main(["compress", str(checkpoint), "--budget", "0.75", "--finetune-steps", "2", "--eval-count", "1", "--eval-size", "64",
                 "--curve", "", "--latency-repeats", "0", "--no-progress", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["task"] == "specular" and report["params_after"] <= 0.75 * report["params_before"]
    assert report["baselines"]["magnitude"]["error"].startswith("skipped for tshrnet")
    assert {"uniform", "energy"} <= {k for k, v in report["baselines"].items() if v["psnr"] is not None}
    assert checkpoint.read_bytes() == before


def test_official_uhdformer_release_compresses_and_reloads(tmp_path):
    """An official UHDformer checkpoint (the fixture of the official code) goes through plan -> apply -> save -> load."""
    from pathlib import Path

    from sparsesel.nets import load_uhdformer

    official = Path(__file__).resolve().parents[1] / "nets" / "data" / "uhdformer_official_random_g.pth"
    before = official.read_bytes()
    model = load_uhdformer(official).eval()
    p = plan(model, 0.5)  # weight-error objective: no calibration pass
    small_model = apply(model, p)
    assert count_params(small_model) == p.params_after <= 0.5 * count_params(model)
    loaded, _ = load_compressed(save_compressed(small_model, tmp_path / "c.pt"))
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(x), small_model(x))
    assert official.read_bytes() == before
