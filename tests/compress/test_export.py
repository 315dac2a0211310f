"""Export to plain artefacts (issue 19, item 4): ONNX in onnxruntime and torch.export programs loaded
without sparsesel, at sizes other than the export size; traced models at other sizes work or raise.

The reference is always the eager network of :mod:`sparsesel.nets` (its tiled UHDformer is tested
against the official code in tests/nets).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sparsesel.compress.factorized import factorize
from sparsesel.compress.network_io import example_input, network_output
from sparsesel.export import ExportableNetwork, export_model, size_multiple
from sparsesel.nets import zoo
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

SMALL = UHDformerConfig(width=8, number_block=1, unit_num=2, num_heads=2, match_factor=2, ffn_expansion_factor=2, scale_factor=4)
EXPORT_SIZE = (16, 16)
OTHER_SIZES = [(24, 20), (12, 32)]  # multiples of 4, neither the export size
TOLERANCE = 1e-4


def _uhdformer(seed: int) -> UHDformer:
    model = UHDformer(SMALL).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5 / max(1, p[0].numel()) ** 0.5
                    + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
            if name.endswith("gamma"):
                p.copy_(0.5 + 0.5 * torch.rand(p.shape, generator=gen))
    return model


def _compressed_uhdformer() -> UHDformer:
    model = _uhdformer(seed=11)
    for name, (kind, ranks) in {"shallow.conv": ("tucker2", [3, 2]), "up": ("tucker2", [2, 3]), "down": ("tucker2", [2, 2]),
                                "groups.0.units.1.ffn.match.reduce": ("lowrank", [3]), "tail.0.fc2": ("lowrank", [2])}.items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, factorize(model.get_submodule(name), kind, ranks))
    return model


NETWORKS = {"uhdformer": lambda: _uhdformer(seed=10), "compressed_uhdformer": _compressed_uhdformer}


def _expected(model: nn.Module, height: int, width: int, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.cat([example_input(model, height, width, seed=s) for s in range(batch)])
    with torch.no_grad():
        return x, network_output(model, x)


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def exported(request, tmp_path_factory):
    """``(model, onnx path, pt2 path)`` for each network, exported once at EXPORT_SIZE."""
    model = NETWORKS[request.param]()
    folder = tmp_path_factory.mktemp(request.param)
    onnx_path = export_model(model, folder / "model.onnx", format="onnx", example_size=EXPORT_SIZE, device="cpu")
    pt2_path = export_model(model, folder / "model.pt2", format="pt2", example_size=EXPORT_SIZE, device="cpu")
    return model, onnx_path, pt2_path


@pytest.mark.parametrize(("height", "width", "batch"), [(*OTHER_SIZES[0], 1), (*OTHER_SIZES[1], 2)])
def test_onnx_runs_in_onnxruntime_at_other_sizes(exported, height, width, batch):
    model, onnx_path, _ = exported
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x, expected = _expected(model, height, width, batch)
    got = session.run(None, {"image": x.numpy()})[0]
    assert got.shape == tuple(expected.shape)
    assert np.abs(got - expected.numpy()).max() <= TOLERANCE


def test_onnx_records_its_size_multiple(exported):
    _, onnx_path, _ = exported
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert props["size_multiple"] == "4" and props["producer"] == "sparsesel"


def test_onnx_raises_at_a_size_that_is_not_a_multiple(exported):
    model, onnx_path, _ = exported
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 18, 16).numpy()  # 18 is not a multiple of 4
    with pytest.raises(Exception):  # onnxruntime's shape error; never an output
        session.run(None, {"image": x})


_LOADER = r"""
import importlib.abc, json, sys
class NoSparsesel(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "sparsesel" or name.startswith("sparsesel."):
            raise ImportError("sparsesel must not be imported: " + name)
sys.meta_path.insert(0, NoSparsesel())
import torch
program, inputs, out = sys.argv[1], sys.argv[2], sys.argv[3]
module = torch.export.load(program).module()
results = {}
for name, x in torch.load(inputs).items():
    results[name] = module(x)
try:
    module(torch.rand(1, 3, 18, 16))
    results["raised"] = False
except Exception:
    results["raised"] = True
torch.save(results, out)
print(json.dumps(sorted(k for k in sys.modules if k == "sparsesel" or k.startswith("sparsesel."))))
"""


def test_pt2_loads_without_sparsesel_and_matches_at_other_sizes(exported, tmp_path):
    model, _, pt2_path = exported
    cases = {f"{h}x{w}": _expected(model, h, w) for h, w in OTHER_SIZES}
    torch.save({name: x for name, (x, _) in cases.items()}, tmp_path / "inputs.pt")
    script = tmp_path / "load.py"
    script.write_text(_LOADER)
    done = subprocess.run([sys.executable, str(script), str(pt2_path), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
                          capture_output=True, text=True, cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []  # no sparsesel module in the loading process
    results = torch.load(tmp_path / "out.pt")
    for name, (_, expected) in cases.items():
        assert results[name].shape == expected.shape
        assert (results[name] - expected).abs().max().item() <= TOLERANCE, name
    assert results["raised"] is True  # a size that is not a multiple raises, never returns garbage


def test_export_refuses_an_existing_file_and_bad_arguments(tmp_path):
    model = _uhdformer(seed=1)
    target = tmp_path / "model.onnx"
    target.write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="already exists"):
        export_model(model, target, format="onnx", device="cpu")
    assert target.read_bytes() == b"keep me"
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(model, tmp_path / "m.bin", format="tflite", device="cpu")
    with pytest.raises(ValueError, match="example_size must be"):
        export_model(model, tmp_path / "m.onnx", format="onnx", example_size=(16,), device="cpu")
    with pytest.raises(TypeError, match="takes an nn.Module"):
        export_model("model", tmp_path / "m.onnx", format="onnx", device="cpu")
    assert not (tmp_path / "m.onnx").exists()


def test_static_export_fixes_the_size(tmp_path):
    model = _uhdformer(seed=2)
    path = export_model(model, tmp_path / "static.onnx", format="onnx", example_size=(16, 16), dynamic=False, device="cpu")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape
    assert shape == [1, 3, 16, 16]


# -- every network of sparsesel.nets -------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in zoo.net_names() if n != "uhdformer"])
def test_other_networks_export_to_onnx_and_match_at_another_size(name, tmp_path):
    model = zoo.build_net(name, "small").eval()
    multiple = size_multiple(model)
    side = max(2 * multiple, 16)
    path = export_model(model, tmp_path / f"{name}.onnx", format="onnx", example_size=(side, side), device="cpu")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, expected = _expected(model, side + multiple, side + 2 * multiple)
    got = session.run(None, {"image": x.numpy()})[0]
    assert np.abs(got - expected.numpy()).max() <= TOLERANCE * max(1.0, float(expected.abs().max()))


# -- torch.jit.trace at one size, run at another: works or raises --------------------------------


def _traced(model: nn.Module, x: torch.Tensor):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit.trace's deprecation and tracer warnings
        return torch.jit.trace(ExportableNetwork(model), x, check_trace=False)


@pytest.mark.parametrize("name", ["uhdformer", "compressed_uhdformer", *[n for n in zoo.net_names() if n != "uhdformer"]])
def test_a_trace_at_one_size_works_at_others_or_raises(name):
    model = NETWORKS[name]() if name in NETWORKS else zoo.build_net(name, "small").eval()
    multiple = size_multiple(model)
    side = max(2 * multiple, 16)
    traced = _traced(model, example_input(model, side, side))
    for height, width in [(side + multiple, side + 2 * multiple), (2 * side, side)]:
        x, expected = _expected(model, height, width)
        with torch.no_grad():
            got = traced(x)
        assert torch.isfinite(got).all()
        assert (got - expected).abs().max().item() <= TOLERANCE * max(1.0, float(expected.abs().max())), (height, width)
    with pytest.raises(Exception), torch.no_grad():  # a side that is not a multiple: an error, no output
        traced(example_input(model, side + multiple // 2 if multiple > 1 else side, side))


def test_uhdformer_tiles_are_not_what_a_trace_records():
    """The cause of the NaNs of issue 19: the tiled forward fills ``torch.empty`` outputs tile by tile,
    and a trace freezes the tile bounds of its example size.  Capture now takes the single-pass form,
    so a trace made at a size with several tiles serves a larger image."""
    model = _uhdformer(seed=4)
    model.tile_size = 8  # 16x16 example: four tiles if the tiled form were traced
    traced = _traced(model, torch.rand(1, 3, 16, 16))
    x, expected = _expected(model, 32, 24)
    with torch.no_grad():
        got = traced(x)
    assert (got - expected).abs().max().item() <= TOLERANCE


# -- the command line ----------------------------------------------------------------------------


def test_export_command_writes_a_loadable_onnx_file_and_refuses_overwrites(tmp_path, capsys):
    from sparsesel.cli import main

    model = _uhdformer(seed=6)
    checkpoint = zoo.save_net(model, tmp_path / "net.pt", net="uhdformer")
    out = tmp_path / "net.onnx"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out), "--example-size", "16", "16", "--device", "cpu"]) == 0
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x, expected = _expected(model, 20, 28)
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected.numpy()).max() <= TOLERANCE
    before = out.read_bytes()
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out), "--device", "cpu"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(["export", str(checkpoint), "--format", "pt2", "--out", str(checkpoint), "--force", "--device", "cpu"]) == 2
    assert "is the input CHECKPOINT" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.pt"), "--format", "pt2", "--out", str(tmp_path / "m.pt2")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_readme_export_command_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's concrete `sparsesel export` command, run in a scratch folder (the repository's files
    it names are given by their absolute path); the file it writes runs in onnxruntime at another size."""
    import re
    import shlex

    from sparsesel.cli import main

    root = Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (root / "README.md").read_text(), flags=re.S)
    commands = [line.strip() for block in blocks for line in block.splitlines()
                if line.strip().startswith("sparsesel export ") and not re.search(r"[|\[]", line)
                and (root / shlex.split(line)[2]).is_file()]  # the user-network example: tests/compress/test_user_networks.py
    assert commands, "the README lost its concrete `sparsesel export` command"
    monkeypatch.chdir(tmp_path)
    for command in commands:
        argv = [str(root / a) if (root / a).is_file() else a for a in shlex.split(command)[1:]]
        assert main(argv) == 0, capsys.readouterr().err
        out = Path(argv[argv.index("--out") + 1])
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        model, _ = zoo.load_net(root / "sparsesel" / "assets" / "uhdformer_lowlight.pt")
        x, expected = _expected(model, 40, 24)
        assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected.numpy()).max() <= TOLERANCE
