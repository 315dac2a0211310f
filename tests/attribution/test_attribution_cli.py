"""The `sparsesel attribute` command: outputs, refusal to overwrite, errors."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from sparsesel.cli import main



@pytest.fixture(scope="module")
def digit_png(tmp_path_factory):
    from sklearn.datasets import load_digits

    digit = load_digits().images[0]  # a zero
    path = tmp_path_factory.mktemp("img") / "zero.png"
    Image.fromarray(np.round(digit / 16 * 255).astype(np.uint8)).save(path)
    return path


def test_attribute_writes_heatmap_and_json(tmp_path, digit_png, capsys):
    out = tmp_path / "run"
    args = ["attribute", "--model", "builtin:digits-cnn", "--image", str(digit_png), "--k", "12",
            "--solver", "greedy_pig", "--rounds", "3", "--steps", "8", "--out", str(out)]
    assert main(args) == 0
    record = json.loads((out / "attribution.json").read_text())
    assert record["predicted"] == 0 and record["target"] == 0
    assert len(record["selected"]) == len(set(record["selected"])) == 12
    assert np.asarray(record["attribution"]).shape == (32, 32)
    assert record["gradient_evaluations"] == 24
    with Image.open(out / "heatmap.png") as png:
        assert png.format == "PNG"
    assert main(args) == 2
    assert "already holds heatmap.png, attribution.json; pass --force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    assert main(args + ["--force", "--path", "imputed"]) == 0
    record = json.loads((out / "attribution.json").read_text())
    assert record["options"]["path"] == "imputed" and len(record["selected"]) == 12
    # SIC rounds: 8 rounds by default, ending where SIC reveals 0.5%, 2%, ... of the 32x32 pixels
    assert main(args[:-6] + ["--steps", "2", "--out", str(out), "--force", "--path", "imputed",
                             "--schedule", "sic", "--ranked", "0.75"]) == 0
    record = json.loads((out / "attribution.json").read_text())
    assert record["options"]["rounds"] == 8 and record["gradient_evaluations"] == 16
    assert len(record["selected"]) == 12
    assert main(args[:-6] + ["--steps", "2", "--out", str(out), "--force", "--path", "imputed",
                             "--schedule", "sic", "--ranked", "0.75", "--anchor-draws", "2"]) == 0
    record = json.loads((out / "attribution.json").read_text())
    assert record["options"]["anchor_draws"] == 2 and record["gradient_evaluations"] == 16
    assert main(args + ["--force", "--path", "imputed", "--anchor-draws", "9"]) == 2
    assert "--anchor-draws 9 needs --steps >= 9" in capsys.readouterr().err
    assert main(args + ["--force", "--ranked", "2.5"]) == 2
    assert "--ranked must be a whole count of pixels or a fraction in (0, 1], got 2.5" in capsys.readouterr().err
    assert main(args + ["--force", "--schedule", "sic", "--rounds", "5"]) == 2
    assert "--schedule sic has 8 rounds (its 8 SIC reveal fractions), got --rounds 5" in capsys.readouterr().err


def test_attribute_loads_an_arch_checkpoint(tmp_path, digit_png):
    import torch

    from sparsesel.attribution.models import DigitsCNN

    net = DigitsCNN()
    checkpoint = tmp_path / "digits.pt"
    torch.save({"arch": "digits-cnn", "state_dict": net.state_dict()}, checkpoint)
    out = tmp_path / "ck"
    assert main(["attribute", "--model", str(checkpoint), "--image", str(digit_png), "--k", "200",
                 "--solver", "integrated_gradients", "--steps", "8", "--out", str(out)]) == 0
    record = json.loads((out / "attribution.json").read_text())
    assert len(record["selected"]) == 200 and record["options"] == {"steps": 8, "method": "gausslegendre"}
    torch.save({"arch": "digits-cnn", "state_dict": {"wrong": torch.zeros(1)}}, checkpoint)
    assert main(["attribute", "--model", str(checkpoint), "--image", str(digit_png), "--out", str(tmp_path / "x")]) == 2


def test_attribute_rejects_bad_k_and_missing_files(tmp_path, digit_png, capsys):
    base = ["attribute", "--model", "builtin:digits-cnn", "--out", str(tmp_path / "o")]
    assert main(base + ["--image", str(digit_png), "--k", "1025"]) == 2
    assert "--k must be between 1 and 1024" in capsys.readouterr().err
    assert main(base + ["--image", str(tmp_path / "missing.png")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["attribute", "--model", "builtin:vgg", "--image", str(digit_png), "--out", str(tmp_path / "p")]) == 2
    assert "unknown built-in model 'vgg'" in capsys.readouterr().err


# ------------------------------------------------------------------- any model, any size, checks before work
@pytest.fixture(scope="module")
def odd_png(tmp_path_factory):
    """A 21x18 RGB image (sides that no network's size multiple divides)."""
    path = tmp_path_factory.mktemp("odd") / "odd.png"
    Image.fromarray((np.random.default_rng(0).random((18, 21, 3)) * 255).astype(np.uint8)).save(path)
    return path


FACTORY_MODULE = '''
import torch

def classifier():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(4, 3))

def enhancer():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.Sigmoid())

def not_a_module():
    return "model"
'''


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "h21c_factories.py").write_text(FACTORY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib
    import sys

    sys.modules.pop("h21c_factories", None)
    importlib.invalidate_caches()
    return importlib.import_module("h21c_factories")


def read_png(path):
    import torch

    with Image.open(path) as handle:
        return torch.from_numpy(np.asarray(handle.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255)


@pytest.mark.parametrize("net", ["csattn", "uhdformer", "tshrnet"])
def test_attribute_explains_a_restoration_network_region_mean(net, tmp_path, odd_png):
    import torch

    from sparsesel.nets import build_net, save_net

    model = build_net(net, "small").eval()
    save_net(model, tmp_path / f"{net}.pt", net=net)
    out = tmp_path / "o"
    assert main(["attribute", "--model", str(tmp_path / f"{net}.pt"), "--image", str(odd_png), "--k", "20",
                 "--solver", "integrated_gradients", "--steps", "4", "--target-region", "2,3,10,12",
                 "--target-channel", "1", "--out", str(out)]) == 0
    record = json.loads((out / "attribution.json").read_text())
    assert record["input_shape"] == [3, 18, 21] and np.asarray(record["attribution"]).shape == (18, 21)
    assert record["model_family"] == f"net:{net}" and record["output"] == "raw"
    x = read_png(odd_png)
    with torch.no_grad():  # the network's own whole-image restore, independent of the attribution wrapper
        restored = model.restore(x, clamp=False) if net == "uhdformer" else model.restore(x)
    expected = float(restored[1, 3:12, 2:10].mean())
    assert record["target_definition"]["value"] == pytest.approx(expected, abs=1e-5)
    assert record["target_definition"]["region"] == [2, 3, 10, 12]


def test_attribute_runs_a_factory_with_weights_like_the_library(tmp_path, odd_png, factories):
    import torch

    import sparsesel as ss

    trained = factories.classifier()
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.3)
    torch.save(trained.state_dict(), tmp_path / "weights.pt")
    out = tmp_path / "f"
    assert main(["attribute", "--model", "h21c_factories:classifier", "--weights", str(tmp_path / "weights.pt"),
                 "--image", str(odd_png), "--k", "30", "--solver", "integrated_gradients", "--steps", "8",
                 "--baseline", "blurred", "--out", str(out)]) == 0
    record = json.loads((out / "attribution.json").read_text())
    x = read_png(odd_png)
    trained.eval()
    target = int(trained(x[None]).argmax())
    expected = ss.solve(ss.Attribution(trained, x, baseline="blurred", target=target, k=30, groups="pixels",
                                       output="softmax"), "integrated_gradients", steps=8)
    assert record["target"] == target and record["selected"] == list(expected.selected)
    np.testing.assert_allclose(record["attribution"], expected.info["attribution"], rtol=0, atol=1e-7)


def test_attribute_image_to_image_factory_defaults_to_the_whole_output(tmp_path, odd_png, factories):
    out = tmp_path / "e"
    assert main(["attribute", "--model", "h21c_factories:enhancer", "--image", str(odd_png), "--k", "10",
                 "--solver", "gradient", "--out", str(out)]) == 0
    record = json.loads((out / "attribution.json").read_text())
    assert record["target_definition"]["region"] == [0, 0, 21, 18] and record["target"] is None
    x = read_png(odd_png)
    import torch

    with torch.no_grad():
        assert record["target_definition"]["value"] == pytest.approx(float(factories.enhancer()(x[None]).mean()), abs=1e-6)


def test_builtin_classifiers_any_size(tmp_path, odd_png):
    out = tmp_path / "s"
    assert main(["attribute", "--model", "builtin:crops-cnn", "--image", str(odd_png), "--size", "40x24", "--k", "5",
                 "--solver", "gradient", "--out", str(out)]) == 0
    record = json.loads((out / "attribution.json").read_text())
    assert record["input_shape"] == [3, 24, 40] and np.asarray(record["attribution"]).shape == (24, 40)
    assert main(["attribute", "--model", "builtin:digits-cnn", "--image", str(odd_png), "--k", "5",
                 "--solver", "gradient", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "attribution.json").read_text())["input_shape"] == [1, 32, 32]  # the default size


def test_builtin_models_ship_or_are_cached_not_retrained(tmp_path, odd_png, monkeypatch):
    from sparsesel.attribution import model_store, models

    calls = []
    original = dict(models.BUILTIN)

    def counting(name):
        def train(seed):
            calls.append((name, seed))
            return original[name](seed)
        return train

    monkeypatch.setattr(models, "BUILTIN", {name: counting(name) for name in original})
    monkeypatch.setenv("SPARSESEL_CACHE", str(tmp_path / "cache"))
    base = ["attribute", "--image", str(odd_png), "--k", "5", "--solver", "gradient", "--force", "--out", str(tmp_path / "o")]
    for name in ("digits-cnn", "crops-cnn"):
        assert main(base + ["--model", f"builtin:{name}"]) == 0
    assert calls == []  # seed 0 ships with the package
    for _ in range(2):
        assert main(base + ["--model", "builtin:digits-cnn", "--seed", "3"]) == 0
    assert calls == [("digits-cnn", 3)]  # trained once, then read from the cache
    cached = model_store.cache_path("digits-cnn", 3)
    assert cached.is_file() and str(cached).startswith(str(tmp_path / "cache"))
    cached.write_bytes(b"not a torch file")
    assert main(base + ["--model", "builtin:digits-cnn", "--seed", "3"]) == 0
    assert calls == [("digits-cnn", 3)] * 2  # a corrupt cache file is rebuilt


def test_shipped_weights_classify_held_out_images():
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from sparsesel.attribution import models
    from sparsesel.attribution.model_store import builtin_classifier

    data = load_digits()
    _, x_test, _, y_test = train_test_split((data.images / 16.0).astype(np.float32)[:, None], data.target,
                                            test_size=0.25, random_state=0, stratify=data.target)
    with torch.no_grad():
        digits = builtin_classifier("digits-cnn")(torch.from_numpy(x_test)).argmax(1).numpy()
    assert (digits == y_test).mean() > 0.9
    rng = np.random.default_rng(0)
    sources = models.crop_sources()
    models.random_crops(sources, 400, 32, rng)  # the training crops, drawn first
    crops, labels = models.random_crops(sources, 60, 32, rng)
    with torch.no_grad():
        predicted = builtin_classifier("crops-cnn")(torch.from_numpy(crops)).argmax(1).numpy()
    assert (predicted == labels).mean() > 0.9


HOSTILE_BEFORE_WORK = [
    (["--path", "imputed", "--anchor-draws", "8", "--steps", "4"], r"--anchor-draws 8 needs --steps >= 8"),
    (["--anchor-draws", "2"], r"--anchor-draws 2 needs --path imputed"),
    (["--solver", "integrated_gradients", "--rounds", "3"], r"--rounds applies to --solver greedy_pig only"),
    (["--solver", "gradient", "--steps", "3"], r"--steps applies to --solver integrated_gradients or greedy_pig"),
    (["--schedule", "sic", "--rounds", "5"], r"--schedule sic has 8 rounds"),
    (["--target", "1", "--target-region", "0,0,4,4"], r"--target \(a class of a classifier\) and --target-region"),
    (["--output", "softmax", "--target-region", "0,0,4,4"], r"--output softmax needs class scores"),
    (["--target-region", "0,0,4"], r"--target-region must be four integers X0,Y0,X1,Y1"),
    (["--target-region", "4,0,2,4"], r"must have 0 <= X0 < X1 and 0 <= Y0 < Y1"),
    (["--size", "64"], r"--size must be WxH with positive integers"),
    (["--weights", "w.pt"], r"--weights applies to --model package.module:factory only"),
    (["--channels", "1"], r"--channels applies to --model package.module:factory only"),
    (["--k", "0"], r"--k must be >= 1, got 0"),
    (["--k", "1025"], r"--k must be between 1 and 1024 \(the model input has 32x32 pixels\)"),
    (["--size", "16x16", "--k", "300"], r"--k must be between 1 and 256"),
    (["--steps", "0"], r"--steps must be >= 1, got 0"),
    (["--ranked", "2.5"], r"--ranked must be a whole count of pixels or a fraction in \(0, 1\], got 2.5"),
    (["--ranked", "0"], r"--ranked must be a fraction in \(0, 1\] or a count >= k"),
    (["--ranked", "100", "--k", "200"], r"--ranked must be between k \(200\) and the number of features \(1024\)"),
    (["--rounds", "300", "--k", "200"], r"--rounds must be <= k \(200\), got 300"),
    (["--method", "simpson"], r"--method must be one of \('riemann_left'"),
    (["--target", "-1"], r"--target must be >= 0"),
    (["--image", "builtin:nope"], r"unknown bundled image 'builtin:nope'"),
    (["--model", "no_such_file.pt"], r"model checkpoint 'no_such_file.pt' not found"),
]


@pytest.mark.parametrize(("extra", "message"), HOSTILE_BEFORE_WORK, ids=[" ".join(e) for e, _ in HOSTILE_BEFORE_WORK])
def test_every_option_is_checked_before_any_work(extra, message, tmp_path, digit_png, monkeypatch, capsys):
    import sparsesel.commands.attribute as command

    def no_work(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(command, "load_model", no_work)
    argv = ["attribute", "--model", "builtin:crops-cnn", "--image", str(digit_png), "--out", str(tmp_path / "o")]
    assert main(argv + extra) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("builtin:crops-cnn", ["--target", "7"], r"--target must be < 5 \(the model returns 5 classes\), got 7"),
        ("builtin:crops-cnn", ["--target-region", "0,0,4,4"], r"explain an image output, but the model returns shape \(1, 5\)"),
        ("h21c_factories:enhancer", ["--target", "1"], r"--target 1 picks a class, but the model returns an image"),
        ("h21c_factories:enhancer", ["--target-region", "0,0,100,4"], r"does not fit the network's output of 21x18 pixels"),
        ("h21c_factories:enhancer", ["--target-channel", "5"], r"target channel\(s\) \[5\] out of range: the output has 3"),
        ("h21c_factories:not_a_module", [], r"--model: network factory 'h21c_factories:not_a_module' returned a str, not a torch nn.Module"),
        ("h21c_factories:missing", [], r"--model: network factory 'h21c_factories:missing': module 'h21c_factories' has no 'missing'"),
        ("no_such_module_h21c:make", [], r"--model: network factory 'no_such_module_h21c:make': cannot import module 'no_such_module_h21c'"),
    ],
)
def test_model_dependent_checks_come_before_the_attribution(model, extra, message, tmp_path, odd_png, factories,
                                                           monkeypatch, capsys):
    import sparsesel

    def no_work(*args, **kwargs):
        raise AssertionError("the attribution ran before the target was checked")

    monkeypatch.setattr(sparsesel, "solve", no_work)
    assert main(["attribute", "--model", model, "--image", str(odd_png), "--k", "5", "--out", str(tmp_path / "o")]
                + extra) == 2
    assert re.search(message, capsys.readouterr().err)


def test_model_files_are_read_weights_only(tmp_path, odd_png, capsys):
    import torch

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3))
    torch.save(module, tmp_path / "whole.pt")  # a pickled module: loading it would run code
    assert main(["attribute", "--model", str(tmp_path / "whole.pt"), "--image", str(odd_png),
                 "--out", str(tmp_path / "o")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    torch.jit.script(module).save(str(tmp_path / "script.pt"))  # TorchScript: code, never loaded
    assert main(["attribute", "--model", str(tmp_path / "script.pt"), "--image", str(odd_png),
                 "--out", str(tmp_path / "o")]) == 2
    assert "TorchScript" in capsys.readouterr().err
    torch.save({"weights": torch.zeros(3)}, tmp_path / "plain.pt")
    assert main(["attribute", "--model", str(tmp_path / "plain.pt"), "--image", str(odd_png),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "lacks the key(s) 'arch'" in err and "it has the keys ['weights']" in err and "not a network of" in err
