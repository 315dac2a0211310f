"""``sparsesel train`` and ``sparsesel restore`` end to end, and their errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import torch

from sparsesel.cli import main
from sparsesel.data.datasets import TASKS
from sparsesel.data.images import load_bundled_image, read_image, write_image
from sparsesel.nets import zoo


def test_train_then_restore_an_odd_sized_image(tmp_path, capsys):
    out = tmp_path / "net.pt"
    args = ["train", "csattn", "--task", "blur", "--steps", "2", "--batch-size", "1", "--patch-size", "16",
            "--option", "width=4", "--option", "heads=[1,1,2]", "--eval-count", "1", "--eval-size", "32",
            "--threads", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    assert "held-out PSNR" in capsys.readouterr().out
    assert (tmp_path / "net.json").exists()
    assert main(args) == 2
    assert "exists; pass force=True (--force)" in capsys.readouterr().err

    image = load_bundled_image("chelsea")[:37, :45]
    write_image(tmp_path / "in.png", image)
    restored = tmp_path / "out.png"
    assert main(["restore", str(tmp_path / "in.png"), "--checkpoint", str(out), "--out", str(restored), "--threads", "1"]) == 0
    result = read_image(restored)
    assert result.shape == (37, 45, 3)
    model, _ = zoo.load_net(out)
    expected = model.restore(torch.from_numpy(read_image(tmp_path / "in.png").transpose(2, 0, 1))).clamp(0, 1)
    np.testing.assert_allclose(result, expected.permute(1, 2, 0).numpy(), atol=1 / 255 + 1e-6)
    assert main(["restore", str(tmp_path / "in.png"), "--checkpoint", str(out), "--out", str(restored)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "in.png"), "--checkpoint", str(out), "--out", str(restored), "--force"]) == 0


def test_harmonizer_needs_a_mask(tmp_path, capsys):
    net = tmp_path / "h.pt"
    zoo.save_net(zoo.build_net("harmonizer", "small"), net, net="harmonizer")
    image = load_bundled_image("flower")[:30, :26]
    write_image(tmp_path / "in.png", image)
    assert main(["restore", str(tmp_path / "in.png"), "--checkpoint", str(net), "--out", str(tmp_path / "o.png")]) == 2
    assert "needs --mask" in capsys.readouterr().err
    mask = np.zeros((30, 26))
    mask[8:20, 6:18] = 1
    write_image(tmp_path / "mask.png", mask)
    assert main(["restore", str(tmp_path / "in.png"), "--checkpoint", str(net), "--out", str(tmp_path / "o.png"),
                 "--mask", str(tmp_path / "mask.png")]) == 0
    assert read_image(tmp_path / "o.png").shape == (30, 26, 3)


def test_cli_errors(tmp_path, capsys):
    assert main(["train", "resnet", "--task", "haze", "--out", str(tmp_path / "x.pt")]) == 2
    assert "unknown network 'resnet'" in capsys.readouterr().err
    assert main(["train", "tshrnet", "--task", "haze", "--out", str(tmp_path / "x.pt")]) == 2
    assert "is not one of tshrnet's tasks" in capsys.readouterr().err
    assert main(["train", "csattn", "--task", "haze", "--option", "width", "--out", str(tmp_path / "x.pt")]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"\x00garbage")
    write_image(tmp_path / "in.png", np.zeros((8, 8, 3)))
    assert main(["restore", str(tmp_path / "in.png"), "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "o.png")]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert main(["restore", str(tmp_path / "nope.png"), "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "o.png")]) == 2
    assert "image file not found" in capsys.readouterr().err


def test_cli_lists_match_the_library_and_parsing_does_not_import_torch():
    from sparsesel.commands import train as train_command

    assert train_command.NETS == zoo.net_names()
    assert train_command.TASKS == TASKS
    assert train_command.PRESETS == zoo.PRESETS
    code = (
        "import argparse, sys\n"
        "from sparsesel.commands import train, restore\n"
        "p = argparse.ArgumentParser(); s = p.add_subparsers()\n"
        "train.register(s); restore.register(s)\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_restore_reads_an_official_layout_uhdformer_checkpoint(tmp_path):
    from sparsesel.nets.checkpoints import save_checkpoint

    torch.manual_seed(0)
    model = zoo.build_net("uhdformer", "small").eval()
    official = tmp_path / "official.pth"
    save_checkpoint(model, official, layout="official")  # {"params": {"restoration_network.<official name>": ...}}
    loaded, info = zoo.load_net(official)
    assert info["net"] == "uhdformer" and info["config"]["width"] == model.config.width
    image = load_bundled_image("flower")[:21, :34]
    write_image(tmp_path / "in.png", image)
    assert main(["restore", str(tmp_path / "in.png"), "--checkpoint", str(official), "--out", str(tmp_path / "o.png")]) == 0
    expected = model.restore(torch.from_numpy(read_image(tmp_path / "in.png").transpose(2, 0, 1)))
    np.testing.assert_allclose(read_image(tmp_path / "o.png"), expected.permute(1, 2, 0).numpy(), atol=1 / 255 + 1e-6)
