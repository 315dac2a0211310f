"""Network adapters: one module per built-in network, found without importing it; what each one tells the pipeline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sparsesel.nets import zoo
from sparsesel.nets.adapter import BuiltinAdapter, FactoryAdapter, NetworkAdapter, adapter_for, get_adapter, net_names
from sparsesel.training.losses import l1_fft_loss

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "uhdformer": {"width": 8, "number_block": 1, "unit_num": 1, "num_heads": 2, "match_factor": 2, "ffn_expansion_factor": 2,
                  "scale_factor": 4},
    "csattn": {"width": 4, "blocks": [1, 1, 1], "heads": [1, 1, 2]},
    "tshrnet": {"width": 4, "levels": 2, "shared_repeats": 1, "max_width_mult": 2},
    "harmonizer": {"width": 4, "levels": 3, "disc_width": 4, "disc_layers": 1},
}


def _tiny(name: str) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return zoo.build_net(name, TINY[name]).eval()


def test_the_built_in_networks_are_the_modules_of_the_adapters_package():
    files = {path.stem for path in (ROOT / "sparsesel" / "nets" / "adapters").glob("*.py") if path.stem != "__init__"}
    assert set(net_names()) == files == set(TINY)
    for name in net_names():
        adapter = get_adapter(name)
        assert isinstance(adapter, BuiltinAdapter) and adapter.name == name and adapter.tasks
    with pytest.raises(ValueError, match=r"unknown network 'unet'; choose one of \('csattn', 'harmonizer', 'tshrnet', 'uhdformer'\) "
                                         "or a factory 'package.module:function'"):
        get_adapter("unet")


def test_listing_the_networks_imports_no_torch():
    script = ("import sys; from sparsesel.nets.adapter import net_names; names = net_names(); "
              "assert 'torch' not in sys.modules, 'torch imported'; print(','.join(names))")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={"PYTHONPATH": str(ROOT)}, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == ",".join(sorted(TINY))


@pytest.mark.parametrize("name", sorted(TINY))
def test_each_network_is_found_by_its_class_and_rebuilt_from_its_config(name):
    model = _tiny(name)
    adapter = adapter_for(model)
    assert adapter is get_adapter(name)
    rebuilt = adapter.build(adapter.config_of(model))
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def _own_multiple(name: str, model: nn.Module) -> int:
    """Each network's size multiple, from its configuration (independent of the adapters)."""
    config = model.config
    if name == "uhdformer":
        return config.scale_factor
    if name == "csattn":
        return 4  # two stride-2 levels
    if name == "tshrnet":
        return 2 ** (config.levels + config.shared_repeats + 1)
    return 2 ** (config.levels - 1)


@pytest.mark.parametrize("name", sorted(TINY))
def test_restore_of_any_size_equals_the_networks_own_restore(name):
    model = _tiny(name)
    adapter = get_adapter(name)
    assert adapter.size_multiple(model) == _own_multiple(name, model)
    generator = torch.Generator().manual_seed(1)
    batch = {"input": torch.rand(1, 3, 21, 30, generator=generator)}
    if adapter.takes_mask:
        batch["mask"] = (torch.rand(1, 1, 21, 30, generator=generator) > 0.5).float()
    with torch.no_grad():
        got = adapter.restore(model, batch)
        expected = model.restore(batch["input"], batch["mask"]) if adapter.takes_mask else model.restore(batch["input"])
    assert got.shape == (1, 3, 21, 30)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_the_harmonizer_takes_its_mask_as_a_fourth_channel():
    model = _tiny("harmonizer")
    adapter = adapter_for(model)
    image, mask = torch.rand(2, 3, 8, 8), (torch.rand(2, 1, 8, 8) > 0.5).float()
    x = adapter.network_input({"input": image, "mask": mask})
    assert x.shape == (2, 4, 8, 8) and torch.equal(x[:, 3:], mask)
    with torch.no_grad():
        torch.testing.assert_close(adapter.output_image(model, x), model(image, mask)["image"])
    with pytest.raises(ValueError, match="harmonizer takes a foreground mask, but the data has none"):
        adapter.network_input({"input": image})
    with pytest.raises(ValueError, match="expected 4 input channels, got 3"):
        adapter.output_image(model, image)
    assert adapter.compress_exclude == ("discriminator.*",) and adapter.tasks == ("harmonize",)


def test_tshrnets_image_is_its_tone_corrected_diffuse_output():
    model = _tiny("tshrnet")
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(adapter_for(model).output_image(model, x), model(x)["diffuse_tc"])


def test_any_other_module_gets_the_default_adapter():
    class TwoOutputs(nn.Module):
        def forward(self, x):
            return {"a": x, "b": 2 * x}

    adapter = adapter_for(TwoOutputs())
    assert isinstance(adapter, FactoryAdapter) and isinstance(adapter, NetworkAdapter)
    assert adapter.factory is None  # defined in a function: not importable by name
    x = torch.rand(1, 3, 4, 4)
    assert adapter.network_input({"input": x}) is x and adapter.tasks[0] == "lowlight" and adapter.size_multiple(TwoOutputs()) == 1
    with pytest.raises(ValueError, match=r"returns a dict \['a', 'b'\]; its adapter must name the image entry"):
        adapter.output_image(TwoOutputs(), x)


def test_the_default_recipe_is_l1_plus_fft_on_the_output_image():
    model = nn.Conv2d(3, 3, 3, padding=1)
    recipe = adapter_for(model).training_recipe()
    batch = {"input": torch.rand(2, 3, 8, 8), "target": torch.rand(2, 3, 8, 8)}
    (step,) = recipe.steps
    loss = step.loss(model, batch, {})["loss"]
    torch.testing.assert_close(loss, l1_fft_loss(model(batch["input"]), batch["target"]))
    assert recipe.optimizer.optimizer == "adamw" and set(step.parameters(model)) == set(model.parameters())


def test_a_folder_of_official_tshrnet_files_is_a_checkpoint(tmp_path):
    from sparsesel.cli import main
    from sparsesel.data.image_files import read_image, write_image
    from sparsesel.nets.tshrnet import TSHRNet, TSHRNetConfig
    from sparsesel.nets.tshrnet_checkpoints import save_tshrnet_official

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = TSHRNet(TSHRNetConfig(width=4, levels=2, shared_repeats=1, max_width_mult=2)).eval()
    save_tshrnet_official(model, tmp_path / "official", epoch=60)
    loaded, info = zoo.load_net(tmp_path / "official")
    assert info["net"] == "tshrnet" and info["format"] == "official"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    image = write_image(tmp_path / "in.png", torch.rand(20, 24, 3, generator=torch.Generator().manual_seed(0)).numpy())
    assert main(["restore", str(image), "--checkpoint", str(tmp_path / "official"), "--out", str(tmp_path / "out.png")]) == 0
    with torch.no_grad():
        expected = model.restore(torch.from_numpy(read_image(image).transpose(2, 0, 1).copy())[None])[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(read_image(tmp_path / "out.png"), np.round(expected.clip(0, 1) * 255) / 255, atol=1.01 / 255)
    with pytest.raises(ValueError, match="is a directory"):
        zoo.load_net(tmp_path)


def test_a_data_parallel_wrapper_gets_the_adapter_of_its_network():
    model = _tiny("harmonizer")
    assert adapter_for(nn.DataParallel(model)) is get_adapter("harmonizer")
