"""Block-sparse layers in networks (issue 20, item 2): the per-layer choice, checkpoints, export, ``prune --kernel``.

The choice logic is tested with fixed timings (no timed assertions); the networks are compared with
their masked dense twins built here (the weights masked with ``repeat_interleave`` of the block masks).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from sparsesel import block_speed
from sparsesel.block_layers import PackedBlocks, ceil_grid, pack_layer
from sparsesel.cli import main
from sparsesel.compress.network_io import example_input, network_output
from sparsesel.nets import zoo

torch.set_num_threads(1)


def block_masks_for(model: nn.Module, names: list[str], block: tuple[int, int], density: float, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    masks = {}
    for name in names:
        grid = ceil_grid(model.get_submodule(name).weight.shape, block)
        scores = torch.rand(grid, generator=generator).reshape(-1)
        mask = torch.zeros(scores.numel(), dtype=torch.bool)
        mask[scores.argsort()[: max(1, round(density * scores.numel()))]] = True
        masks[f"{name}.weight"] = mask.reshape(grid)
    return masks


def masked_copy(model: nn.Module, masks: dict[str, torch.Tensor], block: tuple[int, int]) -> nn.Module:
    """The reference: ``model`` with the dropped blocks of every masked weight set to zero."""
    import copy

    new = copy.deepcopy(model)
    params = dict(new.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            weight = params[name]
            full = mask.repeat_interleave(block[0], 0).repeat_interleave(block[1], 1)[: weight.shape[0], : weight.shape[1]]
            weight.mul_(full.reshape(*full.shape, *([1] * (weight.dim() - 2))).to(weight.dtype))
    return new


def csattn_layers(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear) and getattr(m, "groups", 1) == 1 and min(m.weight.shape[:2]) >= 8]


@pytest.fixture
def csattn():
    torch.manual_seed(0)
    return zoo.build_net("csattn", "small").eval()


def fixed_timings(monkeypatch, layer_ms: dict[str, tuple[float, ...]], network_ms: tuple[float, float]) -> None:
    """Replace the clocks: ``layer_ms[name] = (dense, kernel 1, kernel 2, ...)``; ``network_ms = (dense, chosen)``."""
    import importlib

    deploy_module = importlib.import_module("sparsesel.compress.deploy")
    order: list[str] = []
    real = block_speed._time_layer

    def spy(entry, *args, **kwargs):
        order.append(entry["name"])
        return real(entry, *args, **kwargs)

    monkeypatch.setattr(deploy_module, "time_calls", lambda modules, inputs, repeats: list(layer_ms[order[-1]][: len(modules)]))
    monkeypatch.setattr(block_speed, "_time_layer", spy)
    monkeypatch.setattr(block_speed, "time_networks", lambda models, size, repeats: list(network_ms))


@pytest.mark.parametrize("kernel", ["auto", "block", "dense"])
def test_pack_model_follows_the_timings(monkeypatch, csattn, kernel):
    names = ["down1", "fuse2", "skip1"]
    masks = block_masks_for(csattn, names, (4, 4), 0.3)
    fixed_timings(monkeypatch, {"down1": (2.0, 1.0, 3.0), "fuse2": (1.0, 4.0, 5.0, 0.5), "skip1": (1.0, 2.0, 3.0, 4.0)}, (10.0, 9.0))
    reference = masked_copy(csattn, masks, (4, 4))  # pack_model takes the pruned network, masks baked
    packed, report = block_speed.pack_model(reference, masks, (4, 4), kernel=kernel, example_size=(16, 16), repeats=1)
    forms = {e["name"]: e["form"] for e in report["layers"]}
    kinds = {e["name"]: e["block_kernel"] for e in report["layers"]}
    assert kinds == {"down1": "grouped", "fuse2": "bsr", "skip1": "grouped"}
    assert report["dense_wins"] == ["skip1"]
    expected = {"auto": {"down1", "fuse2"}, "block": set(names), "dense": set()}[kernel]
    assert {n for n, f in forms.items() if f == "block"} == expected
    assert {n for n, m in packed.named_modules() if isinstance(m, PackedBlocks)} == expected
    assert report["total"]["layers_ms_dense"] == 4.0
    assert report["total"]["layers_ms_chosen"] == {"auto": 2.5, "block": 3.5, "dense": 4.0}[kernel]
    x = example_input(csattn, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(network_output(packed, x), network_output(reference, x), rtol=1e-5, atol=1e-5)


def test_auto_reverts_when_the_whole_network_is_slower(monkeypatch, csattn):
    masks = block_masks_for(csattn, ["down1"], (4, 4), 0.3)
    fixed_timings(monkeypatch, {"down1": (2.0, 1.0, 3.0)}, (10.0, 12.0))
    packed, report = block_speed.pack_model(csattn, masks, (4, 4), kernel="auto", example_size=(16, 16), repeats=1)
    assert report["total"]["reverted"] and report["layers"][0]["form"] == "dense"
    assert "whole network was slower" in report["layers"][0]["note"]
    assert not any(isinstance(m, PackedBlocks) for m in packed.modules()) and not getattr(packed, "structure", [])


def test_pack_model_measures_for_real(csattn):
    """Without patched clocks every prunable layer gets a dense and a block time; unsupported ones say why."""
    names = ["down1", "encoder1.0.attention.depthwise"]
    masks = block_masks_for(csattn, ["down1"], (4, 4), 0.2)
    masks["encoder1.0.attention.depthwise.weight"] = torch.ones(10, 1, dtype=torch.bool)
    _, report = block_speed.pack_model(csattn, masks, (4, 4), kernel="block", example_size=(16, 16), repeats=1, threads=1)
    entries = {e["name"]: e for e in report["layers"]}
    assert set(entries) == set(names)
    assert entries["down1"]["ms_dense"] > 0 and entries["down1"]["ms_block"] > 0 and entries["down1"]["form"] == "block"
    assert set(entries["down1"]["ms_kernels"]) == {"grouped", "rows"}
    assert entries["encoder1.0.attention.depthwise"]["form"] == "dense"
    assert "grouped convolution" in entries["encoder1.0.attention.depthwise"]["note"]
    assert report["threads"] == 1 and report["total"]["network_ms_dense"] > 0


def test_prune_offers_the_kernel_choices_of_pack_model():
    from sparsesel.commands import prune

    assert prune.KERNEL_CHOICES == block_speed.KERNEL_CHOICES


def test_pack_model_refuses_bad_options(csattn):
    with pytest.raises(ValueError, match="kernel must be one of"):
        block_speed.pack_model(csattn, {}, (4, 4), kernel="sparse")
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        block_speed.pack_model(csattn, {}, (4, 4), repeats=0)


# --- checkpoints ---------------------------------------------------------------------------------


LOAD_IN_A_FRESH_PROCESS = """
import sys, torch
from sparsesel.nets import zoo
model, _ = zoo.load_net(sys.argv[1])
print(sorted(type(m).__name__ for m in model.modules() if type(m).__name__.startswith("PackedBlock")))
"""


@pytest.mark.parametrize("net", ["csattn", "tshrnet", "uhdformer"])
def test_packed_networks_save_and_load(net, tmp_path):
    """save_net / load_net keep the packed layers (the loader knows the edit without an import) and the function."""
    torch.manual_seed(1)
    model = zoo.build_net(net, "small").eval()
    names = [n for n, m in model.named_modules() if type(m) in (nn.Conv2d, nn.Linear) and getattr(m, "groups", 1) == 1
             and min(m.weight.shape[:2]) >= 4][:4]
    masks = block_masks_for(model, names, (4, 4), 0.4)
    reference = masked_copy(model, masks, (4, 4))
    for name, kernel in zip(names, ["grouped", "rows", "grouped", "rows"]):
        pack_layer(model, name, masks[f"{name}.weight"], (4, 4), kernel)
    dense_path, packed_path = tmp_path / "dense.pt", tmp_path / "packed.pt"
    zoo.save_net(reference, dense_path, net=net)
    zoo.save_net(model, packed_path, net=net)
    assert packed_path.stat().st_size < dense_path.stat().st_size
    loaded, _ = zoo.load_net(packed_path)
    assert [type(loaded.get_submodule(n)).__name__ for n in names] == [type(model.get_submodule(n)).__name__ for n in names]
    assert [loaded.get_submodule(n).kernel for n in names] == ["grouped", "rows", "grouped", "rows"]
    x = example_input(model, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(network_output(loaded, x), network_output(reference, x), rtol=1e-5, atol=1e-5)
    fresh = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, str(packed_path)], capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.count("PackedBlock") == len(names)


# --- export --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["pt2", "onnx"])
def test_packed_networks_export_and_bsr_falls_back_to_dense(fmt, csattn, tmp_path):
    from sparsesel.export import DenseFallbackWarning, export_model

    names = ["encoder1.0.attention.project", "down1", "fuse2"]
    masks = block_masks_for(csattn, names, (4, 4), 0.4)
    reference = masked_copy(csattn, masks, (4, 4))
    for kernels in (["grouped", "rows", "grouped"], ["bsr", "grouped", "bsr"]):
        model = zoo.build_net("csattn", "small")
        model.load_state_dict(csattn.state_dict())
        for name, kernel in zip(names, kernels):
            pack_layer(model, name, masks[f"{name}.weight"], (4, 4), kernel)
        path = tmp_path / f"{kernels[0]}.{fmt}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DenseFallbackWarning)
            export_model(model, path, format=fmt, example_size=(32, 32), device="cpu")
        fallbacks = [str(w.message) for w in caught if issubclass(w.category, DenseFallbackWarning)]
        if "bsr" in kernels:
            assert len(fallbacks) == 1 and "encoder1.0.attention.project, fuse2" in fallbacks[0] and "dense form" in fallbacks[0]
        else:
            assert fallbacks == []
        x = example_input(csattn, 64, 32, seed=3)
        with torch.no_grad():
            expected = network_output(reference, x)
        if fmt == "pt2":
            got = torch.export.load(str(path)).module()(x)
        else:
            import onnxruntime

            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            got = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture
def csattn_file(tmp_path, csattn):
    path = tmp_path / "csattn.pt"
    zoo.save_net(csattn, path, net="csattn")
    return path


def test_prune_kernel_block_writes_packed_layers_and_reports_times(csattn_file, csattn, tmp_path, capsys):
    out_block, out_dense = tmp_path / "block.pt", tmp_path / "dense.pt"
    common = ["--density", "0.1", "--block", "4x4", "--min-blocks", "1", "--latency-size", "16", "--threads", "1"]
    assert main(["prune", str(csattn_file), *common, "--kernel", "block", "--out", str(out_block)]) == 0
    printed = capsys.readouterr().out
    assert "in block-sparse form" in printed and "dense wins in" in printed
    assert main(["prune", str(csattn_file), *common, "--kernel", "dense", "--out", str(out_dense)]) == 0
    summary = json.loads((tmp_path / "block.pt.prune.json").read_text())
    speed = summary["speed"]
    assert speed["kernel"] == "block" and speed["example_size"] == [16, 16] and speed["threads"] == 1
    timed = [e for e in speed["layers"] if e["ms_dense"] is not None]
    assert timed and all(e["ms_block"] > 0 and e["form"] == "block" and e["speedup"] > 0 for e in timed)
    assert speed["dense_wins"] == [e["name"] for e in timed if e["speedup"] <= 1]
    assert speed["total"]["block_layers"] == len(timed) and speed["total"]["network_ms_dense"] > 0
    packed, _ = zoo.load_net(out_block)
    dense, _ = zoo.load_net(out_dense)
    assert sum(isinstance(m, PackedBlocks) for m in packed.modules()) == len(timed)
    assert not any(isinstance(m, PackedBlocks) for m in dense.modules())
    assert out_block.stat().st_size < out_dense.stat().st_size
    x = example_input(csattn, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(network_output(packed, x), network_output(dense, x), rtol=1e-5, atol=1e-5)
    # the block-pruned checkpoint restores an image
    from PIL import Image

    image, restored = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray((torch.rand(24, 24, 3) * 255).to(torch.uint8).numpy()).save(image)
    assert main(["restore", str(image), "--checkpoint", str(out_block), "--out", str(restored), "--threads", "1"]) == 0
    assert restored.is_file()


@pytest.mark.parametrize("argv,message", [
    (["--latency-size", "0"], "--latency-size must be between 1 and 8192"),
    (["--threads", "0"], "--threads must be between 1 and"),
])
def test_prune_refuses_bad_timing_options_before_any_write(argv, message, csattn_file, tmp_path, capsys):
    out = tmp_path / "o.pt"
    assert main(["prune", str(csattn_file), "--density", "0.5", "--out", str(out), *argv]) == 2
    assert message in capsys.readouterr().err and not out.exists()


# --- the README's command ------------------------------------------------------------------------


def readme_prune_commands() -> list[str]:
    """The README's concrete ``sparsesel prune`` commands on the demo checkpoint (code blocks, no synopsis)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", readme, flags=re.S)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("sparsesel prune sparsesel/assets/") and not re.search(r"[|\[]", line)]


def test_the_readme_shows_a_block_sparse_prune_command():
    assert any("--kernel" in command for command in readme_prune_commands())


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_prune_commands())
def test_readme_prune_command_runs_as_written(command, tmp_path, monkeypatch, capsys):
    """Run in a scratch folder where ``sparsesel/assets`` is the package's own (a link), so the outputs land there."""
    import shlex
    from pathlib import Path

    import sparsesel

    (tmp_path / "sparsesel").mkdir()
    (tmp_path / "sparsesel" / "assets").symlink_to(Path(sparsesel.__file__).parent / "assets")
    monkeypatch.chdir(tmp_path)
    argv = shlex.split(command)[1:]
    assert main(argv) == 0, capsys.readouterr().err
    out = Path(argv[argv.index("--out") + 1])
    speed = json.loads(out.with_name(out.name + ".prune.json").read_text())["speed"]
    assert speed["example_size"] == [512, 512] and speed["total"]["layers_ms_dense"] > 0
    assert "dense wins in" in capsys.readouterr().out
    model, _ = zoo.load_net(out)
    assert sum(isinstance(m, PackedBlocks) for m in model.modules()) == speed["total"]["block_layers"]
