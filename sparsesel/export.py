"""Export a network (compressed or not) to a plain artefact that runs without sparsesel.

* ``format="pt2"`` -- a :func:`torch.export.export` program saved with
  :func:`torch.export.save`; load it with ``torch.export.load(path).module()`` in any process
  with torch (no sparsesel import: the graph holds only ATen operators and the weights).
* ``format="onnx"`` -- an ONNX model (TorchScript-based :func:`torch.onnx.export`, opset 17),
  for onnxruntime and other ONNX runtimes.

The artefact takes one tensor ``(B, C, H, W)``: the image in ``[0, 1]`` (``C = 3``), with the
foreground mask appended as a fourth channel for networks that take one (the harmonizer), and
returns the restored image ``(B, 3, H, W)``.  With ``dynamic=True`` (default) ``H`` and ``W`` may
be any positive multiples of the network's size multiple (``torch.export.Dim`` derived dims: ``H =
m * h``), and the ONNX batch axis is free too; a size that is not a multiple raises when run,
never returns garbage.  The size multiple and the input contract are stored with the artefact
(ONNX ``metadata_props``, pt2 ``extra_files["sparsesel.json"]``).

UHDformer is exported in its single-pass form (:attr:`sparsesel.nets.uhdformer.UHDformer.single_pass`):
the same function as its tiled eager form, without size-dependent Python; its memory grows with
``H x W``.  Each export is checked: the artefact is run at the example size and at one other size
and compared with the eager network (``verify=True``).
"""

from __future__ import annotations

import copy
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sparsesel.atomic import refuse_existing, write_atomic
from sparsesel.compress.network_io import example_input, network_output, size_multiple

__all__ = ["EXPORT_FORMATS", "DenseFallbackWarning", "ExportableNetwork", "export_model", "size_multiple"]

EXPORT_FORMATS = ("pt2", "onnx")
ONNX_OPSET = 17
#: largest side the dynamic dims allow (pixels)
MAX_SIDE = 16384
#: tolerance of the post-export check, relative to the output's largest magnitude (at least 1)
VERIFY_TOLERANCE = 1e-4


class DenseFallbackWarning(UserWarning):
    """Block-sparse layers (:mod:`sparsesel.block_layers`) were exported in their dense form (same function)."""


class ExportableNetwork(nn.Module):
    """One tensor in, one image out: ``network_output(network, x)`` (see :mod:`sparsesel.compress.network_io`)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return network_output(self.network, x)


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    format: str = "pt2",
    example_size: Sequence[int] = (64, 64),
    dynamic: bool = True,
    device: str | torch.device | None = None,
    verify: bool = True,
    force: bool = False,
) -> Path:
    """Write ``model`` as a plain ``pt2`` or ``onnx`` artefact (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A network of :mod:`sparsesel.nets`, compressed or not, or any module mapping one
        ``(B, 3, H, W)`` tensor to an image; not modified.
    path : path-like
        Output file; written atomically, an existing file is refused unless ``force``.
    format : {"pt2", "onnx"}
    example_size : (H, W)
        Size of the example input the export traces (rounded up to the size multiple).
    dynamic : bool
        Dynamic ``H`` and ``W`` (and ONNX batch); ``False`` fixes them to the example's.
    device : str or torch.device, optional
        Where the export runs and the pt2 program's weights live (default: CUDA when present,
        else the CPU). ONNX files are device-neutral.
    verify : bool
        Run the artefact at the example size and at a second size (one more multiple per side;
        the example size only when ``dynamic=False``) and raise ``RuntimeError`` if it differs
        from the eager network by more than ``1e-4`` (relative to the output's magnitude).
    force : bool
        Replace an existing ``path``.

    Returns
    -------
    pathlib.Path
    """
    from sparsesel.compress.deploy import resolve_device

    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"export_model() takes an nn.Module, got {type(model).__name__}")
    if Path(path).is_dir():
        raise ValueError(f"{path} is a folder; give the output file")
    path = refuse_existing(path, force)
    device = resolve_device(device)
    network = _export_copy(model, device)
    multiple = size_multiple(network)
    height, width = _example_sides(example_size, multiple)
    wrapper = ExportableNetwork(network).eval()
    example = example_input(network, height, width)
    meta = _metadata(network, multiple, example.shape[1], dynamic)
    try:
        payload = _export_payload(format, wrapper, example, multiple, dynamic, meta)
    except Exception as error:  # noqa: BLE001 - retried once in the dense form, else raised as it was
        if not _densify(network, lambda names: f"the export of the block-sparse layers {names} failed "
                        f"({_first_line(error)}); they are exported in their dense form"):
            raise
        payload = _export_payload(format, wrapper, example, multiple, dynamic, meta)
    if verify:
        sizes = [(height, width)] + ([(height + multiple, width + 2 * multiple)] if dynamic else [])
        _verify(payload, format, wrapper, sizes, device)
    write_atomic(path, lambda stream: stream.write(payload), force=force)
    return path


def _export_copy(model: nn.Module, device: torch.device) -> nn.Module:
    """An eval-mode copy on ``device`` whose UHDformer parts run in their single-pass form; block-sparse
    layers whose kernel does not export (torch BSR) are in their dense form (with a warning)."""
    network = copy.deepcopy(model).to(device).eval()
    for module in network.modules():
        if hasattr(module, "single_pass"):
            module.single_pass = True
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    _densify(network, lambda names: f"the block-sparse layers {names} use torch's BSR kernel, which neither torch.export "
             "nor ONNX can capture; they are exported in their dense form", kernels=("bsr",))
    return network


def _export_payload(format: str, wrapper: nn.Module, example: torch.Tensor, multiple: int, dynamic: bool, meta: dict) -> bytes:
    if format == "pt2":
        return _export_pt2(wrapper, example, multiple, dynamic, meta)
    return _export_onnx(wrapper, example, dynamic, meta)


def _densify(network: nn.Module, message, kernels: Sequence[str] | None = None) -> bool:
    """Replace the block-sparse layers of ``network`` (those using ``kernels``, default all) by their dense
    form in place, warning ``message(names)`` (:class:`DenseFallbackWarning`); whether any was replaced."""
    import warnings

    from sparsesel.block_layers import PackedBlocks, unpack_layer

    names = [name for name, module in network.named_modules()
             if isinstance(module, PackedBlocks) and (kernels is None or module.kernel in kernels)]
    for name in names:
        unpack_layer(network, name)
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        warnings.warn(message(shown), DenseFallbackWarning, stacklevel=3)
    return bool(names)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__


def _example_sides(example_size: Sequence[int], multiple: int) -> tuple[int, int]:
    try:
        values = [int(v) for v in example_size]
    except (TypeError, ValueError):
        raise ValueError(f"example_size must be (H, W), got {example_size!r}") from None
    if len(values) != 2 or any(v < 1 for v in values):
        raise ValueError(f"example_size must be (H, W) with positive sides, got {example_size!r}")
    # at least two multiples per side: a dynamic dim must not be specialised to 1
    return tuple(max(2 * multiple, -(-v // multiple) * multiple) for v in values)  # type: ignore[return-value]


def _metadata(network: nn.Module, multiple: int, channels: int, dynamic: bool) -> dict[str, Any]:
    return {
        "producer": "sparsesel",
        "network": type(network).__name__,
        "size_multiple": multiple,
        "input": f"(B, {channels}, H, W) float32 in [0, 1]" + (", channel 4 = foreground mask" if channels == 4 else ""),
        "output": "(B, 3, H, W) restored image",
        "dynamic": bool(dynamic),
    }


def _export_pt2(wrapper: nn.Module, example: torch.Tensor, multiple: int, dynamic: bool, meta: dict) -> bytes:
    from torch.export import Dim

    shapes = None
    if dynamic:
        limit = MAX_SIDE // multiple
        h, w = Dim("h", min=1, max=limit), Dim("w", min=1, max=limit)
        shapes = {"x": {2: multiple * h if multiple > 1 else h, 3: multiple * w if multiple > 1 else w}}
    program = torch.export.export(wrapper, (example,), dynamic_shapes=shapes)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={"sparsesel.json": json.dumps(meta)})
    return buffer.getvalue()


def _export_onnx(wrapper: nn.Module, example: torch.Tensor, dynamic: bool, meta: dict) -> bytes:
    import warnings

    import onnx

    axes = {"image": {0: "batch", 2: "height", 3: "width"}, "restored": {0: "batch", 2: "height", 3: "width"}} if dynamic else None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer warnings
        torch.onnx.export(wrapper, (example,), buffer, dynamo=False, input_names=["image"], output_names=["restored"],
                          dynamic_axes=axes, opset_version=ONNX_OPSET)
    proto = onnx.load_from_string(buffer.getvalue())
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value) if not isinstance(value, str) else value
    return proto.SerializeToString()


def _verify(payload: bytes, format: str, wrapper: nn.Module, sizes: list[tuple[int, int]], device: torch.device) -> None:
    """Run the artefact at ``sizes`` and compare with the eager network; ``RuntimeError`` if it differs."""
    run = _pt2_runner(payload) if format == "pt2" else _onnx_runner(payload)
    network = wrapper.network
    for height, width in sizes:
        x = example_input(network, height, width, seed=height * 7919 + width)
        with torch.no_grad():
            expected = wrapper(x)
            got = run(x)
        scale = max(1.0, float(expected.abs().max()))
        error = float((got.to(expected.device) - expected).abs().max()) / scale
        if not error <= VERIFY_TOLERANCE:
            raise RuntimeError(f"the exported {format} model differs from the network at {height}x{width}: "
                               f"max error {error:.3g} (relative) > {VERIFY_TOLERANCE}")


def _pt2_runner(payload: bytes):
    program = torch.export.load(io.BytesIO(payload)).module()
    return lambda x: program(x)


def _onnx_runner(payload: bytes):
    import onnxruntime

    session = onnxruntime.InferenceSession(payload, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"image": x.detach().cpu().numpy()})[0])
