"""A user's own nn.Module compresses, saves, reloads and restores without being registered anywhere.

The networks live in ``user_networks.py`` beside this file (a module sparsesel knows nothing of).
Loading a file whose network was built by a factory imports that factory: it is refused unless the
caller opts in (``trust_code=True``, or names the factory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from sparsesel.compress import apply, load_compressed, plan, save_compressed
from sparsesel.nets import zoo
from sparsesel.nets.adapter import FactoryAdapter, adapter_for

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the user's module, importable as user_networks (as with PYTHONPATH)
import user_networks  # noqa: E402

FACTORY = "user_networks:tiny_cnn"


def _seeded(build):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build().eval()


def _image(seed: int = 1, size: tuple[int, int] = (20, 28)) -> torch.Tensor:
    return torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(seed))


def test_a_user_network_compresses_saves_and_reloads_through_the_api(tmp_path):
    model = _seeded(lambda: user_networks.TinyCNN(8))
    adapter = adapter_for(model)
    assert isinstance(adapter, FactoryAdapter) and adapter.factory == "user_networks:TinyCNN"
    small = apply(model, plan(model, 0.6))
    assert sum(p.numel() for p in small.parameters()) <= 0.6 * sum(p.numel() for p in model.parameters())
    path = save_compressed(small, tmp_path / "small.pt")  # no net=: the class, called without arguments
    stored = torch.load(path, weights_only=True)
    assert stored["format"] == "sparsesel.network" and stored["net"] == "user_networks:TinyCNN" and stored["config"] == {}
    assert [edit["kind"] for edit in stored["edits"]] == ["factorize"] * len(stored["edits"]) and stored["edits"]

    with pytest.raises(ValueError, match=r"built by the factory 'user_networks:TinyCNN'.*runs its code.*--net user_networks:TinyCNN"):
        load_compressed(path)
    loaded, info = load_compressed(path, trust_code=True)
    assert type(loaded) is user_networks.TinyCNN and info["plan"] == small.compress_plan and not loaded.training
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), small(x), rtol=0, atol=0)
    named, _ = load_compressed(path, net="user_networks:TinyCNN")  # naming the factory is the opt-in
    assert set(named.state_dict()) == set(small.state_dict())
    with pytest.raises(ValueError, match="holds a user_networks:TinyCNN network, not user_networks:tiny_cnn"):
        load_compressed(path, net=FACTORY)


def test_a_factory_and_its_keyword_arguments_are_the_config(tmp_path):
    model = _seeded(lambda: zoo.build_net(FACTORY, {"width": 6}))
    assert adapter_for(model).name == FACTORY
    path = save_compressed(apply(model, plan(model, 0.7)), tmp_path / "f.pt")
    stored = torch.load(path, weights_only=True)
    assert stored["net"] == FACTORY and stored["config"] == {"width": 6}
    loaded, info = load_compressed(path, net=FACTORY)
    assert loaded.body[0].out_channels == 6 and info["config"] == {"width": 6}


def test_saving_refuses_what_cannot_be_rebuilt(tmp_path):
    widened = _seeded(lambda: user_networks.Widened(5))  # Widened() needs its width
    with pytest.raises(ValueError, match=r"cannot record how to rebuild this Widened: .*pass net='package.module:function'"):
        save_compressed(widened, tmp_path / "w.pt")
    assert not (tmp_path / "w.pt").exists()
    save_compressed(widened, tmp_path / "w.pt", net="user_networks:Widened", config={"width": 5})
    loaded, _ = load_compressed(tmp_path / "w.pt", trust_code=True)
    assert loaded.body[0].out_channels == 5
    with pytest.raises(ValueError, match="cannot record how to rebuild this TinyCNN.*does not fit"):
        save_compressed(_seeded(lambda: user_networks.TinyCNN(4)), tmp_path / "x.pt", net=FACTORY)  # tiny_cnn() is 8 wide

    class Local(nn.Module):  # defined inside a function: not importable by name
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match="cannot record how to rebuild this Local: its class is not importable"):
        save_compressed(Local(), tmp_path / "l.pt")


def test_a_plain_state_dict_of_a_named_factory_loads(tmp_path):
    model = _seeded(lambda: user_networks.tiny_cnn())
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    loaded, info = zoo.load_net(tmp_path / "weights.pt", net=FACTORY)
    assert info["net"] == FACTORY and info["format"] == "state_dict"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    with pytest.raises(ValueError, match="not a network file.*name its factory"):
        zoo.load_net(tmp_path / "weights.pt")
    torch.save({"body.0.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"partial\.pt does not fit user_networks:tiny_cnn: missing key\(s\)"):
        zoo.load_net(tmp_path / "partial.pt", net=FACTORY)


def test_a_factory_that_fails_is_named(tmp_path):
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        zoo.build_net("no_such_module_xyz:make")
    with pytest.raises(ValueError, match="module 'user_networks' has no 'missing'"):
        zoo.build_net("user_networks:missing")
    with pytest.raises(ValueError, match=r"calling tiny_cnn\(\*\*\{'depth': 3\}\) failed: TypeError"):
        zoo.build_net(FACTORY, {"depth": 3})


def _readme_example() -> tuple[str, list[str]]:
    """The README's user-network example: its Python block and its command lines."""
    import re

    text = (HERE.parents[1] / "README.md").read_text()
    blocks = re.findall(r"```([a-z]*)\n(.*?)```", text, flags=re.S)
    python = [body for kind, body in blocks if kind == "python" and "my_nets:tiny_cnn" in body]
    commands = [line.strip() for kind, body in blocks if kind == "text" for line in body.splitlines()
                if line.strip().startswith("sparsesel ") and "tiny" in line]
    assert len(python) == 1 and len(commands) == 3, "the README lost its user-network example"
    return python[0], commands


@pytest.mark.slow
def test_the_readme_user_network_example_runs_as_written(tmp_path, monkeypatch, capsys):
    import shlex

    import numpy as np

    from sparsesel.cli import main
    from sparsesel.data.image_files import write_image

    (tmp_path / "my_nets.py").write_text((HERE / "user_networks.py").read_text())  # "your" module
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    python, commands = _readme_example()
    namespace: dict = {}
    exec(compile(python, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    assert namespace["info"]["net"] == "my_nets:tiny_cnn" and namespace["info"]["config"] == {"width": 8}
    import my_nets

    torch.save(_seeded(my_nets.tiny_cnn).state_dict(), tmp_path / "weights.pt")
    write_image(tmp_path / "photo.png", np.random.default_rng(0).random((24, 20, 3)))
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, (command, capsys.readouterr().err)
    assert (tmp_path / "photo-restored.png").is_file() and (tmp_path / "tiny.onnx").is_file()


def test_a_user_network_trains_from_the_command_line(tmp_path, capsys):
    from sparsesel.cli import main

    out = tmp_path / "tiny.pt"
    argv = ["train", FACTORY, "--task", "blur", "--steps", "3", "--batch-size", "2", "--patch-size", "16", "--eval-count", "1",
            "--eval-size", "16", "--option", "width=4", "--out", str(out), "--no-progress"]
    assert main(argv) == 0, capsys.readouterr().err
    model, info = load_compressed(out, net=FACTORY)
    assert info["config"] == {"width": 4} and model.body[0].out_channels == 4
    assert info["meta"]["train"]["net"] == FACTORY and info["meta"]["evaluation"]["psnr_output"] > 0
    assert main(["train", FACTORY, "--task", "harmonize", "--steps", "1", "--out", str(tmp_path / "h.pt")]) == 2
    assert "task 'harmonize' is not one of user_networks:tiny_cnn's tasks" in capsys.readouterr().err
