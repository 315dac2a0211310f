"""The `sparsesel attribute` command: outputs, refusal to overwrite, errors."""

import json

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
    assert "anchor_draws" in capsys.readouterr().err
    assert main(args + ["--force", "--ranked", "2.5"]) == 2
    assert "--ranked must be a whole count of pixels or a fraction in (0, 1], got 2.5" in capsys.readouterr().err
    assert main(args + ["--force", "--schedule", "sic", "--rounds", "5"]) == 2
    assert "schedule has 8 round boundaries but rounds is 5" in capsys.readouterr().err


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
