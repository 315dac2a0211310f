"""Every command that writes files, described for the reliability suite: its inputs, its command line
for a given output path, the files it writes there, and a function that marks the start of its work.

The inputs are small files made here (a random small UHDformer, a digits CNN checkpoint, a PNG, a
CSV, a ``.npy`` tensor), so that each case sets up in milliseconds.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=None)
def uhdformer_bytes() -> bytes:
    """A random small UHDformer in sparsesel's checkpoint format (made once per process)."""
    import tempfile

    import torch

    from sparsesel.nets import zoo

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = zoo.build_net("uhdformer", "small")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.pt"
        zoo.save_net(model, path, net="uhdformer")
        return path.read_bytes()


@functools.lru_cache(maxsize=None)
def digits_cnn_bytes() -> bytes:
    import torch

    from sparsesel.attribution.models import DigitsCNN

    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save({"arch": "digits-cnn", "state_dict": DigitsCNN().state_dict()}, buffer)
    return buffer.getvalue()


@functools.lru_cache(maxsize=None)
def png_bytes(size: int = 32) -> bytes:
    from PIL import Image

    pixels = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def csv_text() -> str:
    rng = np.random.default_rng(0)
    rows = ["a,b,t"] + [f"{a:.4f},{b:.4f},{a + 2 * b + 0.1 * e:.4f}" for a, b, e in rng.normal(size=(40, 3))]
    return "\n".join(rows) + "\n"


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(0).normal(size=(6, 5, 4)))
    return buffer.getvalue()


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


@dataclass(frozen=True)
class Command:
    """One command that writes files.

    ``kind``: ``"file"`` (its output flag names a file) or ``"folder"`` (a folder it writes into).
    ``make_inputs(folder)`` creates the inputs there and returns ``{name: path}``.
    ``argv(inputs, out)`` is the command line. ``outputs(out)`` the paths it writes.
    ``work``: ``(module, attribute)`` of the first function of its real work (tests replace it to
    see whether a refusal came before any work).
    """

    name: str
    kind: str
    make_inputs: Callable[[Path], dict[str, Path]]
    argv: Callable[[dict[str, Path], Path], list[str]]
    outputs: Callable[[Path], list[Path]]
    work: tuple[str, str]
    own_files: tuple[str, ...] = ()

    def __str__(self) -> str:
        return self.name


def _json_of(out: Path) -> Path:
    return out.with_suffix(".json") if out.suffix != ".json" else out.with_name(out.name + ".meta.json")


COMPRESS_FAST = ["--finetune-steps", "2", "--eval-count", "1", "--eval-size", "64", "--curve", "", "--no-baselines",
                 "--latency-repeats", "0", "--threads", "1", "--no-progress"]

COMMANDS = [
    Command(
        "compress", "folder",
        lambda d: {"checkpoint": _write(d / "inputs" / "model.pt", uhdformer_bytes())},
        lambda i, out: ["compress", str(i["checkpoint"]), "--out", str(out), *COMPRESS_FAST],
        lambda out: [out / name for name in ("compressed.pt", "plan.json", "report.json", "report.md", "layer_ranks.png")],
        ("sparsesel.nets.zoo", "load_net"),
        ("compressed.pt", "plan.json", "report.json", "report.md", "layer_ranks.png"),
    ),
    Command(
        "attribute", "folder",
        lambda d: {"model": _write(d / "inputs" / "digits.pt", digits_cnn_bytes()), "image": _write(d / "inputs" / "img.png", png_bytes())},
        lambda i, out: ["attribute", "--model", str(i["model"]), "--image", str(i["image"]), "--k", "5", "--solver", "gradient",
                        "--out", str(out)],
        lambda out: [out / "heatmap.png", out / "attribution.json"],
        ("sparsesel.commands.attribute", "load_model"),
        ("heatmap.png", "attribution.json"),
    ),
    Command(
        "demo", "folder",
        lambda d: {},
        lambda i, out: ["demo", "--k", "2", "--out", str(out)],
        lambda out: [out / "demo.json", out / "demo.png"],
        ("sklearn.datasets", "load_digits"),
        ("demo.json", "demo.png"),
    ),
    Command(
        "aggregate", "file",
        lambda d: {"data": _write(d / "inputs" / "table.csv", csv_text())},
        lambda i, out: ["aggregate", "--data", str(i["data"]), "--target", "t", "--bag-size", "2", "--out", str(out)],
        lambda out: [out],
        ("sparsesel.tabular", "load_table"),
    ),
    Command(
        "core-shape", "file",
        lambda d: {"tensor": _write(d / "inputs" / "x.npy", npy_bytes())},
        lambda i, out: ["core-shape", "--tensor", str(i["tensor"]), "--budget", "20", "--output", str(out)],
        lambda out: [out],
        ("sparsesel.commands.core_shape", "load_tensor_argument"),
    ),
    Command(
        "export", "file",
        lambda d: {"checkpoint": _write(d / "inputs" / "model.pt", uhdformer_bytes())},
        lambda i, out: ["export", str(i["checkpoint"]), "--format", "onnx", "--example-size", "32", "32", "--out", str(out)],
        lambda out: [out],
        ("sparsesel.compress.apply", "load_compressed"),
    ),
    Command(
        "prune", "file",
        lambda d: {"checkpoint": _write(d / "inputs" / "model.pt", uhdformer_bytes())},
        lambda i, out: ["prune", str(i["checkpoint"]), "--density", "0.5", "--block", "2x2", "--min-blocks", "1", "--out", str(out)],
        lambda out: [out, out.with_name(out.name + ".prune.json")],
        ("sparsesel.nets.zoo", "load_net"),
    ),
    Command(
        "restore", "file",
        lambda d: {"image": _write(d / "inputs" / "img.png", png_bytes()), "checkpoint": _write(d / "inputs" / "model.pt", uhdformer_bytes())},
        lambda i, out: ["restore", str(i["image"]), "--checkpoint", str(i["checkpoint"]), "--out", str(out), "--threads", "1"],
        lambda out: [out],
        ("sparsesel.data.image_files", "read_image"),
    ),
    Command(
        "train", "file",
        lambda d: {},
        lambda i, out: ["train", "uhdformer", "--task", "lowlight", "--steps", "2", "--batch-size", "1", "--patch-size", "32",
                        "--eval-count", "1", "--eval-size", "32", "--threads", "1", "--no-progress", "--out", str(out)],
        lambda out: [out, _json_of(out), out.with_name(out.name + ".state")],
        ("sparsesel.nets.zoo", "build_net"),
    ),
]
COMMANDS_BY_NAME = {command.name: command for command in COMMANDS}


def default_out(command: Command, folder: Path) -> Path:
    """A fresh, valid output path for ``command`` in ``folder``."""
    return folder / ("out" if command.kind == "folder" else {"aggregate": "plot.png", "core-shape": "result.json",
                                                               "restore": "restored.png", "export": "net.onnx"}.get(command.name, "net.pt"))


def snapshot(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: relative path -> content digest ('dir' / 'link:TARGET' for those)."""
    state = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root) / name
            key = str(path.relative_to(folder))
            if path.is_symlink():
                state[key] = "link:" + os.readlink(path)
            elif path.is_dir():
                state[key] = "dir"
            elif not path.is_file():  # a pipe or a device: never opened here (a pipe would block)
                state[key] = "special"
            else:
                state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state
