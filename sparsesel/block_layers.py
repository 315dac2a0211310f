"""Block-sparse layer forms: a ``Linear`` / ``Conv2d`` that stores only its kept blocks.

A block-pruned weight ``W`` of shape ``(out, in, *kernel)`` is blocked over its ``(out, in)``
dimensions with ``block_shape = (b1, b2)`` (the conventions of :mod:`sparsesel.blocks`; the
``kh x kw`` of a convolution kernel belongs whole to its block). Here the grid is rounded up,
``R = ceil(out / b1)`` rows and ``C = ceil(in / b2)`` columns, so block shapes that do not tile
the weight work too (the edge blocks are cut). :class:`PackedBlockLinear` and
:class:`PackedBlockConv2d` keep the ``K`` kept blocks as one parameter ``blocks`` of shape
``(K, b1, b2, *kernel)`` and their flat row-major grid positions ``r·C + c`` as the buffer
``index``: the checkpoint holds only those (plus the bias).

Kernels (``kernel=``), all computing ``y = x Wᵀ + b`` (resp. the convolution) with the dense
``W`` that is zero outside the kept blocks:

* ``"grouped"`` -- gather the input channels of every non-empty block-row, padded to the
  largest count ``m`` of kept blocks in a row, with one ``index_select``; then one batched
  product: a grouped convolution (``groups = R'`` non-empty rows, ``b1`` outputs of ``m·b2``
  inputs each) for convolutions, a batched matrix product over pixels for ``Linear`` and
  ``1x1`` convolutions (stride 1, no padding).
* ``"rows"`` -- the same per block-row in a Python loop, without padding (better when the rows
  keep very different numbers of blocks).
* ``"bsr"`` -- torch's block-sparse row format (``torch.sparse_bsr_tensor``) multiplied with the
  dense input, for ``Linear`` and ``1x1`` convolutions whose weight square blocks tile (torch's
  CPU product, MKL sparse, refuses non-square blocks).
  Not exportable (:mod:`sparsesel.export` falls back to the dense form); while a gradient is needed
  the layer computes with ``"grouped"`` instead (the BSR product has no backward).

Which kernel (or the dense layer) is fastest depends on the widths, the density and the input
size; :mod:`sparsesel.block_speed` measures it per layer. Rows that keep no block produce their
bias only. Structural edits are recorded in ``model.structure`` as
``{"kind": "block_pack", "args": {"name", "block_shape", "kept", "kernel"}}``, so
checkpoints of the :mod:`sparsesel.nets` formats load again (see :func:`pack_layer`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.compress.apply import set_submodule
from sparsesel.nets.edits import drop_edits, record_edit

__all__ = [
    "EDIT_KIND",
    "KERNELS",
    "PackedBlockConv2d",
    "PackedBlockLinear",
    "PackedBlocks",
    "ceil_grid",
    "dense_layer",
    "kernels_for",
    "pack_layer",
    "replay_pack",
    "unpack_layer",
    "empty_packed",
    "packable",
    "packed_from_dense",
]

KERNELS = ("grouped", "rows", "bsr")
#: the structural edit that replaces a layer by its packed block-sparse form
EDIT_KIND = "block_pack"


def ceil_grid(shape: Sequence[int], block_shape: tuple[int, int]) -> tuple[int, int]:
    """The block grid ``(ceil(out / b1), ceil(in / b2))`` over the first two dimensions of ``shape``."""
    return -(-int(shape[0]) // block_shape[0]), -(-int(shape[1]) // block_shape[1])


def _tracing() -> bool:
    """Whether a tracer (torch.export / dynamo, or the TorchScript tracer of the ONNX exporter) runs."""
    return bool(torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing())


@dataclass(frozen=True)
class _Layout:
    """Where the kept blocks sit, derived from ``index`` (Python side of the layout)."""

    rows: tuple[int, ...]  # the non-empty block-rows, ascending
    counts: tuple[int, ...]  # kept blocks of each of them
    width: int  # m: the largest count
    segments: tuple[tuple[bool, int, int], ...]  # output channel ranges in order: (computed?, start, stop)


class PackedBlocks(nn.Module):
    """Base of the packed block-sparse layers (see the module docstring).

    Parameters
    ----------
    out_features, in_features : int
        The dense weight's ``(out, in)``.
    kernel_size : tuple of int
        ``()`` for a linear layer, ``(kh, kw)`` for a convolution.
    kept : int
        Number of kept blocks ``K`` (0 allowed: the layer outputs its bias).
    block_shape : (int, int)
    bias : bool
    kernel : {"grouped", "rows", "bsr"}
    """

    def __init__(self, out_features: int, in_features: int, kernel_size: tuple[int, ...], kept: int,
                 block_shape: tuple[int, int], *, bias: bool, kernel: str) -> None:
        super().__init__()
        b1, b2 = (int(b) for b in block_shape)
        if b1 < 1 or b2 < 1:
            raise ValueError(f"block_shape sides must be >= 1, got {block_shape}")
        self.out_features, self.in_features = int(out_features), int(in_features)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        self.block_shape = (b1, b2)
        rows, cols = ceil_grid((out_features, in_features), self.block_shape)
        if not 0 <= int(kept) <= rows * cols:
            raise ValueError(f"kept blocks must lie in [0, {rows * cols}] for a {rows}x{cols} grid, got {kept}")
        self.blocks = nn.Parameter(torch.zeros(int(kept), b1, b2, *self.kernel_size))
        self.register_buffer("index", torch.arange(int(kept), dtype=torch.long))
        self.register_parameter("bias", nn.Parameter(torch.zeros(out_features)) if bias else None)
        self.kernel = self._checked_kernel(kernel)
        self._cache: dict[str, tuple[Any, torch.Tensor]] = {}
        self.refresh_layout()

    # -- layout --------------------------------------------------------------------------------

    @property
    def grid(self) -> tuple[int, int]:
        """The block grid ``(R, C)``."""
        return ceil_grid((self.out_features, self.in_features), self.block_shape)

    @property
    def tiles(self) -> bool:
        """Whether the block shape tiles the weight (no cut edge blocks)."""
        return self.out_features % self.block_shape[0] == 0 and self.in_features % self.block_shape[1] == 0

    def _checked_kernel(self, kernel: str) -> str:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if kernel not in kernels_for(self):
            raise ValueError(f"kernel {kernel!r} does not apply to {self._describe()}; choose one of {kernels_for(self)}")
        return kernel

    def _describe(self) -> str:
        return f"a {type(self).__name__} of weight {tuple(self.dense_shape)} with {self.block_shape[0]}x{self.block_shape[1]} blocks"

    @property
    def dense_shape(self) -> tuple[int, ...]:
        """Shape of the equivalent dense weight."""
        return (self.out_features, self.in_features, *self.kernel_size)

    def set_kernel(self, kernel: str) -> None:
        """Switch the kernel (checked to apply to this layer)."""
        self.kernel = self._checked_kernel(kernel)
        self._cache.clear()

    def refresh_layout(self) -> None:
        """Recompute the gather indices from ``index`` (after it was changed in place)."""
        if self.index.is_meta:  # built on the meta device (checkpoint checks): no values to lay out
            self._layout, self._layout_version = _Layout((), (), 0, ()), None
            return
        index = self.index.detach().cpu()
        rows_n, cols_n = self.grid
        b1, b2 = self.block_shape
        if index.numel():
            if index.min() < 0 or index.max() >= rows_n * cols_n or not bool((index[1:] > index[:-1]).all()):
                raise ValueError(f"a block-sparse layer's index must hold distinct block positions in [0, {rows_n * cols_n - 1}], "
                                 "ascending (is the checkpoint corrupt?)")
        row_of, col_of = (index // cols_n).tolist(), (index % cols_n).tolist()
        rows = sorted(set(row_of))
        counts = [row_of.count(r) for r in rows]
        width = max(counts, default=0)
        last_channel = self.in_features - 1
        channels = torch.arange(b2)
        # unpadded gather (the rows kernel), padded gather and each block's slot (the grouped kernel)
        gather_rows = (torch.tensor(col_of, dtype=torch.long)[:, None] * b2 + channels).reshape(-1).clamp_(max=last_channel)
        slot, padded = [], []
        for i, (r, count) in enumerate(zip(rows, counts)):
            start = sum(counts[:i])
            slot += [i * width + j for j in range(count)]
            padded += col_of[start:start + count] + [col_of[start]] * (width - count)
        gather = (torch.tensor(padded, dtype=torch.long)[:, None] * b2 + channels).reshape(-1).clamp_(max=last_channel)
        self._set_buffer("gather", gather)
        self._set_buffer("gather_rows", gather_rows)
        self._set_buffer("gather_blocks", torch.tensor(padded, dtype=torch.long))
        self._set_buffer("gather_blocks_rows", torch.tensor(col_of, dtype=torch.long))
        self._set_buffer("slot", torch.tensor(slot, dtype=torch.long))
        self._set_buffer("valid", None if self.tiles else self._valid_mask(row_of, col_of))
        self._set_buffer("rows_index", torch.tensor(rows, dtype=torch.long))
        self._layout = _Layout(tuple(rows), tuple(counts), width, _segments(rows, rows_n, b1))
        self._layout_version = (self.index._version, self.index.data_ptr())
        self._cache.clear()

    def _set_buffer(self, name: str, value: torch.Tensor | None) -> None:
        device = self.index.device
        self.register_buffer(name, None if value is None else value.to(device), persistent=False)

    def _valid_mask(self, row_of: list[int], col_of: list[int]) -> torch.Tensor:
        """``(K, b1, b2, 1...)`` ones where a block covers the weight, zeros where a cut edge block does not."""
        b1, b2 = self.block_shape
        out_ok = (torch.tensor(row_of)[:, None] * b1 + torch.arange(b1)) < self.out_features
        in_ok = (torch.tensor(col_of)[:, None] * b2 + torch.arange(b2)) < self.in_features
        mask = (out_ok[:, :, None] & in_ok[:, None, :]).to(self.blocks.dtype)
        return mask.reshape(*mask.shape, *([1] * len(self.kernel_size)))

    def _current_layout(self) -> _Layout:
        if not _tracing() and self._layout_version != (self.index._version, self.index.data_ptr()):
            self.refresh_layout()
        return self._layout

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.refresh_layout()

    def _apply(self, fn: Any, recurse: bool = True) -> "PackedBlocks":
        self._cache.clear()
        result = super()._apply(fn, recurse)
        self._layout_version = (self.index._version, self.index.data_ptr())
        return result

    # -- weights -------------------------------------------------------------------------------

    def _values(self) -> torch.Tensor:
        """The kept blocks with the parts of cut edge blocks outside the weight zeroed."""
        return self.blocks if self.valid is None else self.blocks * self.valid

    def __getstate__(self) -> dict[str, Any]:
        """The module's state without the cached kernel weights (a BSR tensor has no storage to copy or pickle)."""
        state = dict(super().__getstate__())
        state["_cache"] = {}
        return state

    def _cached(self, key: str, build: Any) -> torch.Tensor:
        """``build()``, reused while the parameters are unchanged and no gradient or tracer needs it fresh."""
        if _tracing() or (torch.is_grad_enabled() and self.blocks.requires_grad):
            return build()
        stamp = (self.blocks._version, self.blocks.data_ptr(), self.blocks.dtype, self.blocks.device,
                 None if self.bias is None else (self.bias._version, self.bias.data_ptr()), self._layout_version)
        hit = self._cache.get(key)
        if hit is None or hit[0] != stamp:
            with torch.no_grad():
                hit = (stamp, build())
            self._cache[key] = hit
        return hit[1]

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight ``(out, in, *kernel)``, zero outside the kept blocks (differentiable)."""
        rows_n, cols_n = self.grid
        b1, b2 = self.block_shape
        grid = self.blocks.new_zeros(rows_n * cols_n, b1, b2, *self.kernel_size).index_copy(0, self.index, self._values())
        grid = grid.view(rows_n, cols_n, b1, b2, *self.kernel_size).transpose(1, 2)
        dense = grid.reshape(rows_n * b1, cols_n * b2, *self.kernel_size)
        return dense[: self.out_features, : self.in_features]

    def _grouped_weight(self, layout: _Layout) -> torch.Tensor:
        """``(R', b1, m·b2, *kernel)``: the non-empty block-rows, each padded with zero blocks to ``m``."""
        b1, b2 = self.block_shape
        values = self._values()
        count = len(layout.rows) * layout.width
        if count != values.shape[0]:
            values = values.new_zeros(count, b1, b2, *self.kernel_size).index_copy(0, self.slot, values)
        grouped = values.view(len(layout.rows), layout.width, b1, b2, *self.kernel_size).transpose(1, 2)
        return grouped.reshape(len(layout.rows), b1, layout.width * b2, *self.kernel_size)

    def _row_weights(self, layout: _Layout) -> list[torch.Tensor]:
        """One ``(b1, count·b2, *kernel)`` weight per non-empty block-row."""
        b1, b2 = self.block_shape
        values, out, start = self._values(), [], 0
        for count in layout.counts:
            part = values[start:start + count].transpose(0, 1).reshape(b1, count * b2, *self.kernel_size)
            out.append(part)
            start += count
        return out

    def _row_bias(self) -> torch.Tensor | None:
        """The bias of the computed rows ``(R'·b1,)`` (zero-padded past ``out``)."""
        if self.bias is None:
            return None
        rows_n, b1 = self.grid[0], self.block_shape[0]
        padded = F.pad(self.bias, (0, rows_n * b1 - self.out_features))
        if len(self._layout.rows) == rows_n:
            return padded
        return padded.view(rows_n, b1).index_select(0, self.rows_index).reshape(-1)

    # -- output assembly -----------------------------------------------------------------------

    def _assemble(self, y: torch.Tensor, dim: int, layout: _Layout) -> torch.Tensor:
        """The full ``out`` channels (along ``dim``) from the computed rows ``y``: empty rows give the bias."""
        rows_n, b1 = self.grid[0], self.block_shape[0]
        if len(layout.rows) != rows_n:
            pieces, shape = [], list(y.shape)
            bias = None if self.bias is None else F.pad(self.bias, (0, rows_n * b1 - self.out_features))
            for computed, start, stop in layout.segments:
                if computed:
                    pieces.append(y.narrow(dim, start, stop - start))
                    continue
                shape[dim] = stop - start
                view = [1] * len(shape)
                view[dim] = stop - start
                filler = (y.new_zeros(stop - start) if bias is None else bias[start:stop]).view(view)
                pieces.append(filler.expand(shape))
            y = torch.cat(pieces, dim)
        if y.shape[dim] != self.out_features:
            y = y.narrow(dim, 0, self.out_features)
        return y

    # -- construction --------------------------------------------------------------------------

    def extra_repr(self) -> str:
        rows_n, cols_n = self.grid
        return (f"dense={tuple(self.dense_shape)}, block={self.block_shape[0]}x{self.block_shape[1]}, "
                f"kept={self.blocks.shape[0]}/{rows_n * cols_n}, kernel={self.kernel!r}")

    def load_dense(self, weight: torch.Tensor, bias: torch.Tensor | None, block_mask: torch.Tensor) -> None:
        """Take the kept blocks of a dense ``weight`` ``(out, in, *kernel)`` chosen by ``block_mask`` ``(R, C)``."""
        rows_n, cols_n = self.grid
        b1, b2 = self.block_shape
        if tuple(weight.shape) != tuple(self.dense_shape):
            raise ValueError(f"weight has shape {tuple(weight.shape)}, the layer {tuple(self.dense_shape)}")
        if tuple(block_mask.shape) != (rows_n, cols_n):
            raise ValueError(f"block mask has shape {tuple(block_mask.shape)}, the block grid is {(rows_n, cols_n)}")
        index = torch.nonzero(block_mask.reshape(-1).to(torch.bool), as_tuple=False).reshape(-1)
        if index.numel() != self.blocks.shape[0]:
            raise ValueError(f"block mask keeps {index.numel()} blocks, the layer holds {self.blocks.shape[0]}")
        padded = F.pad(weight.detach(), [0, 0] * len(self.kernel_size) + [0, cols_n * b2 - self.in_features, 0, rows_n * b1 - self.out_features])
        grid = padded.reshape(rows_n, b1, cols_n, b2, *self.kernel_size).transpose(1, 2).reshape(rows_n * cols_n, b1, b2, *self.kernel_size)
        with torch.no_grad():
            self.index.copy_(index.to(self.index.device))
            self.blocks.copy_(grid[index.to(grid.device)])
            if self.bias is not None:
                self.bias.copy_(bias.detach())
        self.refresh_layout()


def _segments(rows: list[int], rows_n: int, b1: int) -> tuple[tuple[bool, int, int], ...]:
    """Output channel ranges in order: computed rows are numbered by their place among ``rows``."""
    segments: list[list] = []
    place = {r: i for i, r in enumerate(rows)}
    for r in range(rows_n):
        computed = r in place
        start = place[r] * b1 if computed else r * b1
        if segments and segments[-1][0] == computed and segments[-1][2] == start:
            segments[-1][2] = start + b1
        else:
            segments.append([computed, start, start + b1])
    return tuple((bool(c), int(a), int(b)) for c, a, b in segments)


class PackedBlockLinear(PackedBlocks):
    """An ``nn.Linear`` ``(in_features -> out_features)`` holding only its kept blocks.

    Input ``(..., in_features)``, output ``(..., out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, kept: int, block_shape: tuple[int, int], *,
                 bias: bool = True, kernel: str = "grouped") -> None:
        super().__init__(out_features, in_features, (), kept, block_shape, bias=bias, kernel=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects (..., {self.in_features}) inputs, got {tuple(x.shape)}")
        lead = x.shape[:-1]
        y = _rows_last(self, x.reshape(-1, self.in_features))
        return y.reshape(*lead, self.out_features)


class PackedBlockConv2d(PackedBlocks):
    """An ``nn.Conv2d`` (``groups=1``) holding only its kept blocks (blocked over its (out, in) channels).

    Input ``(B, C_in, H, W)`` (channels-first or channels-last memory), output as the dense convolution's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, kept: int, block_shape: tuple[int, int], *,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1, padding_mode: str = "zeros",
                 bias: bool = True, kernel: str = "grouped") -> None:
        probe = nn.Conv2d(1, 1, kernel_size, stride=stride, padding=padding, dilation=dilation, padding_mode=padding_mode,
                          device="meta")  # torch's own argument checks and normalisation
        self.stride, self.padding, self.dilation = probe.stride, probe.padding, probe.dilation
        self.padding_mode = probe.padding_mode
        self._reversed_padding_repeated_twice = probe._reversed_padding_repeated_twice
        super().__init__(out_channels, in_channels, tuple(probe.kernel_size), kept, block_shape, bias=bias, kernel=kernel)

    @property
    def in_channels(self) -> int:
        return self.in_features

    @property
    def out_channels(self) -> int:
        return self.out_features

    @property
    def pointwise(self) -> bool:
        """A 1x1 convolution with stride 1 and no padding: a matrix product over pixels."""
        return self.kernel_size == (1, 1) and tuple(self.stride) == (1, 1) and self.padding in ((0, 0), "valid")

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", stride={self.stride}, padding={self.padding}, dilation={self.dilation}"
                + ("" if self.padding_mode == "zeros" else f", padding_mode={self.padding_mode!r}"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_features:
            raise ValueError(f"{type(self).__name__} expects (B, {self.in_features}, H, W) inputs, got {tuple(x.shape)}")
        if self.pointwise:
            if x.is_contiguous() or not x.is_contiguous(memory_format=torch.channels_last):
                return _rows_channels_first(self, x)
            # channels-last memory: a linear layer over the (B, H, W, C) view, returned in the same memory format
            return _rows_last(self, x.permute(0, 2, 3, 1).reshape(-1, self.in_features)).view(
                x.shape[0], x.shape[2], x.shape[3], self.out_features).permute(0, 3, 1, 2)
        return _conv_rows(self, x)


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------


def _kernel(layer: PackedBlocks) -> str:
    """The layer's kernel; ``"grouped"`` in place of ``"bsr"`` while a gradient is needed (torch's BSR
    product has no backward)."""
    if layer.kernel == "bsr" and torch.is_grad_enabled() and layer.blocks.requires_grad:
        return "grouped"
    return layer.kernel


def _channels_last(x: torch.Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _gather_last(layer: PackedBlocks, x: torch.Tensor, padded: bool) -> torch.Tensor:
    """``(N, in) -> (N, count·b2)``: the input channels of the kept blocks (``padded``: row by row, padded to ``m``).

    When ``b2`` divides ``in``, whole blocks of ``b2`` channels are copied (a gather of contiguous chunks)."""
    b2 = layer.block_shape[1]
    if layer.in_features % b2 == 0:
        columns = layer.gather_blocks if padded else layer.gather_blocks_rows
        return x.reshape(x.shape[0], -1, b2).index_select(1, columns).reshape(x.shape[0], -1)
    return x.index_select(1, layer.gather if padded else layer.gather_rows)


def _gather_channels(layer: PackedBlocks, x: torch.Tensor, padded: bool) -> torch.Tensor:
    """``(B, in, H, W) -> (B, count·b2, H, W)`` in ``x``'s memory format (see :func:`_gather_last`)."""
    if _channels_last(x) and layer.in_features % layer.block_shape[1] == 0:
        batch, _, height, width = x.shape
        gathered = _gather_last(layer, x.permute(0, 2, 3, 1).reshape(-1, layer.in_features), padded)
        return gathered.view(batch, height, width, -1).permute(0, 3, 1, 2)
    return x.index_select(1, layer.gather if padded else layer.gather_rows)


def _row_ranges(layer: PackedBlocks, layout: _Layout) -> list[tuple[int, int]]:
    """``(start, stop)`` of each non-empty block-row's channels in the unpadded gather."""
    b2, ranges, start = layer.block_shape[1], [], 0
    for count in layout.counts:
        ranges.append((start * b2, (start + count) * b2))
        start += count
    return ranges


def _rows_last(layer: PackedBlocks, x: torch.Tensor) -> torch.Tensor:
    """``(N, in) -> (N, out)``: the kept blocks applied with the channels in the last dimension."""
    layout = layer._current_layout()
    n, b1 = x.shape[0], layer.block_shape[0]
    if not layout.rows:
        return layer._assemble(x.new_zeros(n, 0), 1, layout)
    if _kernel(layer) == "bsr":
        y = _bsr_matrix(layer).matmul(x.t()).t()
        return y if layer.bias is None else y + layer.bias
    if layer.kernel == "rows":
        weights = layer._cached("rows_mm_t", lambda: [w.reshape(b1, -1).t().contiguous() for w in layer._row_weights(layout)])
        gathered = _gather_last(layer, x, padded=False)  # (N, K·b2)
        y = torch.cat([gathered[:, a:b].matmul(w) for (a, b), w in zip(_row_ranges(layer, layout), weights)], 1)
    else:
        weight = layer._cached("grouped_mm_t", lambda: layer._grouped_weight(layout).reshape(len(layout.rows), b1, -1)
                               .transpose(1, 2).contiguous())  # (R', m·b2, b1)
        gathered = _gather_last(layer, x, padded=True).view(n, len(layout.rows), -1).transpose(0, 1)  # (R', N, m·b2)
        y = torch.bmm(gathered, weight).transpose(0, 1).reshape(n, len(layout.rows) * b1)
    bias = layer._row_bias()
    return layer._assemble(y if bias is None else y + bias, 1, layout)


def _rows_channels_first(layer: PackedBlockConv2d, x: torch.Tensor) -> torch.Tensor:
    """A pointwise convolution on ``(B, C_in, H, W)`` channels-first data: products over the pixels."""
    layout = layer._current_layout()
    batch, _, height, width = x.shape
    pixels, b1 = height * width, layer.block_shape[0]
    flat = x.reshape(batch, layer.in_features, pixels)
    if not layout.rows:
        return layer._assemble(x.new_zeros(batch, 0, height, width), 1, layout)
    if _kernel(layer) == "bsr":
        matrix = _bsr_matrix(layer)
        y = torch.stack([matrix.matmul(flat[b]) for b in range(batch)])
        y = y if layer.bias is None else y + layer.bias[:, None]
        return y.view(batch, layer.out_features, height, width)
    if layer.kernel == "rows":
        weights = layer._cached("rows_mm", lambda: [w.reshape(b1, -1) for w in layer._row_weights(layout)])  # (b1, count·b2)
        gathered = flat.index_select(1, layer.gather_rows)  # (B, K·b2, P)
        y = torch.cat([torch.matmul(w, gathered[:, a:b]) for (a, b), w in zip(_row_ranges(layer, layout), weights)], 1)
    else:
        weight = layer._cached("grouped_mm", lambda: layer._grouped_weight(layout).reshape(len(layout.rows), b1, -1))
        gathered = flat.index_select(1, layer.gather).view(batch, len(layout.rows), -1, pixels)  # (B, R', m·b2, P)
        y = torch.matmul(weight, gathered).view(batch, len(layout.rows) * b1, pixels)
    bias = layer._row_bias()
    if bias is not None:
        y = y + bias[:, None]
    return layer._assemble(y.view(batch, -1, height, width), 1, layout)


def _conv_rows(layer: PackedBlockConv2d, x: torch.Tensor) -> torch.Tensor:
    """A ``kh x kw`` convolution of the kept blocks: gathered input channels, grouped (or per-row) convolution."""
    layout = layer._current_layout()
    padding: Any = layer.padding
    if not layout.rows:  # only the bias: the output size of the dense convolution, from a one-channel probe
        x = x[:, :1]
    else:
        x = _gather_channels(layer, x, padded=layer.kernel != "rows")  # channel-wise: commutes with the padding
    if layer.padding_mode != "zeros":
        x, padding = F.pad(x, layer._reversed_padding_repeated_twice, mode=layer.padding_mode), 0
    options = dict(stride=layer.stride, padding=padding, dilation=layer.dilation)
    if not layout.rows:
        return layer._assemble(F.conv2d(x, x.new_zeros(1, 1, *layer.kernel_size), **options)[:, :0], 1, layout)
    bias = layer._row_bias()
    if layer.kernel == "rows":
        weights = layer._cached("rows_conv", lambda: layer._row_weights(layout))
        b1 = layer.block_shape[0]
        y = torch.cat([F.conv2d(x[:, a:b], w, None if bias is None else bias[i * b1:(i + 1) * b1], **options)
                       for i, ((a, b), w) in enumerate(zip(_row_ranges(layer, layout), weights))], 1)
    else:
        weight = layer._cached("grouped_conv", lambda: layer._grouped_weight(layout).flatten(0, 1))  # (R'·b1, m·b2, kh, kw)
        y = F.conv2d(x, weight, bias, groups=len(layout.rows), **options)
    return layer._assemble(y, 1, layout)


def _bsr_matrix(layer: PackedBlocks) -> torch.Tensor:
    """The ``(out, in)`` weight as a torch BSR tensor (blocks ``(b1, b2)``; the layer must tile)."""

    def build() -> torch.Tensor:
        rows_n, cols_n = layer.grid
        index = layer.index
        crow = torch.zeros(rows_n + 1, dtype=torch.long, device=index.device)
        crow[1:] = torch.bincount(index // cols_n, minlength=rows_n).cumsum(0)
        values = layer._values().reshape(-1, *layer.block_shape)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "BSR support is in beta state"
            return torch.sparse_bsr_tensor(crow, index % cols_n, values, size=(layer.out_features, layer.in_features),
                                           check_invariants=False)

    return layer._cached("bsr", build)


# ---------------------------------------------------------------------------------------------
# conversion and the structural edit
# ---------------------------------------------------------------------------------------------


def packable(module: nn.Module) -> str | None:
    """``None`` if ``module`` has a packed form, else why not (a short phrase)."""
    if type(module) is nn.Linear:
        return None
    if type(module) is nn.Conv2d:
        if module.groups != 1:
            return f"grouped convolution (groups={module.groups})"
        if isinstance(module.padding, str) and module.padding == "same" and module.padding_mode != "zeros":
            return "padding='same' with a non-zero padding mode"
        return None
    return f"{type(module).__name__} has no block-sparse form (Linear and Conv2d only)"


def kernels_for(layer: nn.Module) -> tuple[str, ...]:
    """The kernels that apply to a packed ``layer`` (``bsr``: linear or pointwise layers that square blocks tile)."""
    pointwise = isinstance(layer, PackedBlockLinear) or (isinstance(layer, PackedBlockConv2d) and layer.pointwise)
    tiles = getattr(layer, "out_features", 0) % layer.block_shape[0] == 0 and getattr(layer, "in_features", 0) % layer.block_shape[1] == 0
    square = layer.block_shape[0] == layer.block_shape[1]  # MKL's BSR product takes square blocks only
    return ("grouped", "rows", "bsr") if pointwise and tiles and square else ("grouped", "rows")


def empty_packed(module: nn.Module, kept: int, block_shape: tuple[int, int], kernel: str = "grouped") -> PackedBlocks:
    """A packed layer shaped to replace the ``nn.Linear`` / ``nn.Conv2d`` ``module`` (blocks zero), on its device and dtype."""
    reason = packable(module)
    if reason is not None:
        raise TypeError(f"cannot pack {reason}")
    like = dict(dtype=module.weight.dtype, device=module.weight.device)
    if isinstance(module, nn.Linear):
        layer: PackedBlocks = PackedBlockLinear(module.in_features, module.out_features, kept, block_shape,
                                                bias=module.bias is not None, kernel="grouped")
    else:
        layer = PackedBlockConv2d(module.in_channels, module.out_channels, module.kernel_size, kept, block_shape,
                                  stride=module.stride, padding=module.padding, dilation=module.dilation,
                                  padding_mode=module.padding_mode, bias=module.bias is not None, kernel="grouped")
    layer = layer.to(**like)
    layer.set_kernel(kernel)
    return layer


def packed_from_dense(module: nn.Module, block_mask: torch.Tensor, block_shape: tuple[int, int], kernel: str = "grouped") -> PackedBlocks:
    """The packed form of a (masked, baked) ``nn.Linear`` / ``nn.Conv2d`` keeping the blocks of ``block_mask``.

    Parameters
    ----------
    module : nn.Linear or nn.Conv2d (groups 1)
        Not modified.
    block_mask : bool tensor ``(ceil(out / b1), ceil(in / b2))``
        The kept blocks; the layer computes ``module`` with its weight zeroed outside them.
    block_shape : (int, int)
    kernel : {"grouped", "rows", "bsr"}
    """
    layer = empty_packed(module, int(torch.as_tensor(block_mask).sum()), block_shape, kernel)
    layer.load_dense(module.weight, module.bias, torch.as_tensor(block_mask))
    return layer


def dense_layer(layer: PackedBlocks) -> nn.Module:
    """The plain ``nn.Linear`` / ``nn.Conv2d`` computing what the packed ``layer`` computes (zeros outside its blocks)."""
    like = dict(dtype=layer.blocks.dtype, device=layer.blocks.device)
    bias = layer.bias is not None
    if isinstance(layer, PackedBlockLinear):
        dense: nn.Module = nn.Linear(layer.in_features, layer.out_features, bias=bias, **like)
    else:
        dense = nn.Conv2d(layer.in_features, layer.out_features, layer.kernel_size, stride=layer.stride, padding=layer.padding,
                          dilation=layer.dilation, padding_mode=layer.padding_mode, bias=bias, **like)
    with torch.no_grad():
        dense.weight.copy_(layer.weight)
        if bias:
            dense.bias.copy_(layer.bias)
    return dense


def pack_layer(model: nn.Module, name: str, block_mask: torch.Tensor, block_shape: tuple[int, int], kernel: str = "grouped") -> PackedBlocks:
    """Replace layer ``name`` of ``model`` (in place) by its packed form and record the edit in ``model.structure``.

    ``model.structure`` (created when missing) gets ``{"kind": EDIT_KIND, "args": {"name", "block_shape",
    "kept", "kernel"}}``; replaying it (:func:`replay_pack`) and loading the state dict rebuilds the layer.
    """
    layer = packed_from_dense(model.get_submodule(name), block_mask, block_shape, kernel)
    set_submodule(model, name, layer)
    record_edit(model, EDIT_KIND, {"name": name, "block_shape": [int(b) for b in block_shape],
                                   "kept": int(layer.blocks.shape[0]), "kernel": layer.kernel})
    return layer


def unpack_layer(model: nn.Module, name: str) -> nn.Module:
    """Replace the packed layer ``name`` of ``model`` (in place) by its dense form and drop its edit from ``model.structure``."""
    dense = dense_layer(model.get_submodule(name))
    set_submodule(model, name, dense)
    drop_edits(model, EDIT_KIND, name)
    return dense


def replay_pack(model: nn.Module, name: str, block_shape: Sequence[int], kept: int, kernel: str = "grouped") -> None:
    """Structural edit: replace layer ``name`` by an empty packed layer of ``kept`` blocks (the state dict fills it)."""
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"the block-sparse edit names layer {name!r}, which the network does not have") from None
    if not isinstance(block_shape, (list, tuple)) or len(block_shape) != 2:
        raise ValueError(f"the block-sparse edit of {name!r} has block_shape {block_shape!r}; expected [b1, b2]")
    set_submodule(model, name, empty_packed(module, int(kept), (int(block_shape[0]), int(block_shape[1])), kernel))
