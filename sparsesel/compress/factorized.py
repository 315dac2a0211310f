"""Factorized replacements of dense layers, initialised from the trained weights.

* :class:`Tucker2Conv` -- a ``k x k`` convolution ``C_in -> C_out`` as
  ``1x1 (C_in -> R_in)``, ``k x k (R_in -> R_out)``, ``1x1 (R_out -> C_out)``
  (Kim et al. 2016), initialised from the Tucker-2 decomposition of the kernel
  over its output- and input-channel modes (tensorly ``partial_tucker``, HOOI).
* :class:`LowRankConv` -- a ``1x1`` convolution as two ``1x1`` convolutions
  through ``R`` channels (truncated SVD of the ``C_out x C_in`` matrix).
* :class:`LowRankLinear` -- the same for ``nn.Linear``.
* :class:`BlockSparseLinear` -- an ``nn.Linear`` that keeps ``k`` blocks of its weight (the
  largest in Frobenius norm when initialised from a trained layer) and stores only those.

Each exposes ``weight`` (the reconstructed dense weight, differentiable) and
``bias``, so code that reads a layer's weight directly keeps working; networks
should call the layer instead (UHDformer does, see
:func:`sparsesel.nets.uhdformer.is_plain_layer`).  The 1x1 convolution forms
declare ``pointwise_affine`` so a network may fold them into a larger matrix by
calling them once on unit vectors.
"""

from __future__ import annotations

import numpy as np
import tensorly as tl
import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.nets.layers import pointwise_conv
from sparsesel.tensors.tucker import leading_left_singular_vectors

__all__ = [
    "BlockSparseLinear",
    "LowRankConv",
    "LowRankLinear",
    "Tucker2Conv",
    "factorized_params",
    "factorize",
    "empty_factorized",
    "truncated_tucker2",
    "truncated_svd",
    "linear_block_shape",
]

#: block shapes tried, in order, for the block-sparse option of a linear layer
LINEAR_BLOCK_SHAPES: tuple[tuple[int, int], ...] = ((4, 4), (2, 2), (1, 1))

#: HOOI sweeps used to initialise a Tucker-2 layer (tensorly ``partial_tucker``).
HOOI_ITERATIONS = 10


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def truncated_tucker2(kernel: np.ndarray, out_rank: int, in_rank: int, *, n_iter_max: int = HOOI_ITERATIONS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tucker-2 of a conv kernel over its channel modes (HOSVD initialisation, then HOOI sweeps).

    Parameters
    ----------
    kernel : ndarray, shape (C_out, C_in, kh, kw)
    out_rank, in_rank : int
        ``R_out <= C_out``, ``R_in <= C_in``.
    n_iter_max : int
        HOOI sweeps after the HOSVD (SVD) initialisation.

    Returns
    -------
    core : ndarray, shape (R_out, R_in, kh, kw)
    out_factor : ndarray, shape (C_out, R_out)
    in_factor : ndarray, shape (C_in, R_in)
        ``kernel ≈ core ×_0 out_factor ×_1 in_factor``.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 4:
        raise ValueError(f"kernel must have shape (C_out, C_in, kh, kw), got {kernel.shape}")
    if not (1 <= out_rank <= kernel.shape[0] and 1 <= in_rank <= kernel.shape[1]):
        raise ValueError(f"ranks (out {out_rank}, in {in_rank}) must lie in [1, {kernel.shape[0]}] x [1, {kernel.shape[1]}]")
    # HOOI over modes 0 and 1 with tensorly's unfoldings and mode products; the leading singular
    # vectors come from numpy's SVD (tensorly's partial_tucker computes the same, much slower on CPU)
    ranks = (int(out_rank), int(in_rank))
    factors = [_leading(tl.unfold(kernel, mode), r) for mode, r in enumerate(ranks)]  # HOSVD
    for _ in range(int(n_iter_max)):
        for mode in (0, 1):
            other = 1 - mode
            projected = tl.tenalg.mode_dot(kernel, factors[other].T, other)
            factors[mode] = _leading(tl.unfold(projected, mode), ranks[mode])
    core = tl.tenalg.multi_mode_dot(kernel, factors, modes=[0, 1], transpose=True)
    return np.asarray(core), factors[0], factors[1]


def _leading(matrix: np.ndarray, rank: int) -> np.ndarray:
    """The ``rank`` leading left singular vectors of ``matrix`` (columns).

    If ``rank`` exceeds the number of columns (a Tucker-2 rank ``R_in > R_out * kh * kw``: the
    projected unfolding has fewer columns than the rank asked for), the basis is completed with
    orthonormal vectors of the complement, whose core slices are then zero: the factorization
    stays exact and has the requested shape.
    """
    rows, cols = matrix.shape
    if rank > cols:
        basis = _leading(matrix, cols)
        # complete the basis: QR of [basis, I] keeps basis's span first
        q, _ = np.linalg.qr(np.concatenate([basis, np.eye(rows)], axis=1))
        return np.ascontiguousarray(np.concatenate([basis, q[:, cols:rank]], axis=1))
    if rows <= 4 * cols:
        u, _, _ = np.linalg.svd(matrix, full_matrices=False)
        return np.ascontiguousarray(u[:, :rank])
    # tall unfolding (e.g. the 1024-channel up-sampling conv): from the small Gram matrix
    return np.ascontiguousarray(leading_left_singular_vectors(matrix, rank))


def _hook_free(*modules: nn.Module) -> bool:
    """No forward (pre-)hooks on ``modules`` and no global module hooks."""
    hooks = nn.modules.module
    if hooks._global_forward_hooks or hooks._global_forward_pre_hooks:
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in modules)


def _run_pointwise(layer: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A stride-1 1x1 ``layer`` applied to ``x``: by :func:`pointwise_conv`, or by calling it
    when it carries hooks (so tracers and profilers see the call)."""
    if type(layer) is nn.Conv2d and _hook_free(layer):
        return pointwise_conv(x, layer.weight, layer.bias)
    return layer(x)


def truncated_svd(matrix: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Best rank-``rank`` factorization ``matrix ≈ left @ right`` (Eckart-Young).

    Returns ``left`` (m, r) = U_r diag(s_r) and ``right`` (r, n) = V_rᵀ.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    return u[:, :rank] * s[:rank], vt[:rank]


class Tucker2Conv(nn.Module):
    """``1x1 (C_in -> R_in)``, then ``k x k (R_in -> R_out)`` with the original stride,
    padding and dilation, then ``1x1 (R_out -> C_out)`` with the original bias.

    Input ``(B, C_in, H, W)``, output as the original convolution's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, in_rank: int, out_rank: int, *,
                 stride=1, padding=0, dilation=1, bias: bool = True, padding_mode: str = "zeros") -> None:
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size)
        self.in_rank, self.out_rank = int(in_rank), int(out_rank)
        self.first = nn.Conv2d(in_channels, in_rank, 1, bias=False)
        # the channel maps are pointwise and bias-free, so padding (zeros or reflect) commutes with them
        self.core = nn.Conv2d(in_rank, out_rank, kernel_size, stride=stride, padding=padding, dilation=dilation,
                              bias=False, padding_mode=padding_mode)
        self.last = nn.Conv2d(out_rank, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the 1x1 factors are matrix products in x's memory format (no im2col, no layout copies)
        return _run_pointwise(self.last, self.head(x))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """``core(first(x))``: the ``(B, R_out, H', W')`` map before the last 1x1 factor."""
        return self.core(_run_pointwise(self.first, x))

    def output_split(self):
        """``(head, weight, bias)`` with ``forward(x) == head(x)`` followed by the per-pixel affine
        map ``weight`` ``(C_out, R_out)``, ``bias`` ``(C_out,)``; ``None`` while ``last`` carries hooks.

        A network may fold a following per-pixel affine map into ``weight`` (UHDformer does:
        :func:`sparsesel.nets.uhdformer.output_affine_split`).
        """
        if not (type(self.last) is nn.Conv2d and _hook_free(self.last)):
            return None
        return self.head, self.last.weight.flatten(1), self.last.bias

    @property
    def weight(self) -> torch.Tensor:
        """The equivalent dense kernel ``(C_out, C_in, kh, kw)``."""
        return torch.einsum("or,rsxy,si->oixy", self.last.weight[:, :, 0, 0], self.core.weight, self.first.weight[:, :, 0, 0]).contiguous()

    @property
    def bias(self) -> torch.Tensor | None:
        return self.last.bias

    @property
    def pointwise_affine(self) -> bool:
        """Whether the layer is a per-pixel affine map (1x1 kernel, stride 1, no padding):
        networks may then fold it by calling it on unit vectors (see
        :func:`sparsesel.nets.uhdformer.pointwise_affine_map`)."""
        return self.kernel_size == (1, 1) and tuple(self.core.stride) == (1, 1) and tuple(self.core.padding) == (0, 0)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, in_rank: int, out_rank: int, *, n_iter_max: int = HOOI_ITERATIONS) -> "Tucker2Conv":
        """Factorize a trained dense ``conv`` (groups 1) at ranks ``(R_in, R_out)``."""
        layer = empty_factorized(conv, "tucker2", [out_rank, in_rank])
        weight = conv.weight.detach().cpu().double().numpy()
        core, out_factor, in_factor = truncated_tucker2(weight, out_rank, in_rank, n_iter_max=n_iter_max)
        like = dict(dtype=conv.weight.dtype, device=conv.weight.device)
        with torch.no_grad():
            layer.first.weight.copy_(torch.from_numpy(in_factor.T.copy())[:, :, None, None].to(**like))
            layer.core.weight.copy_(torch.from_numpy(core).to(**like))
            layer.last.weight.copy_(torch.from_numpy(out_factor.copy())[:, :, None, None].to(**like))
            if conv.bias is not None:
                layer.last.bias.copy_(conv.bias.detach())
        return layer


class LowRankConv(nn.Module):
    """A ``1x1`` convolution as ``1x1 (C_in -> R)`` (with the stride) then ``1x1 (R -> C_out)``."""

    def __init__(self, in_channels: int, out_channels: int, rank: int, *, stride=1, bias: bool = True) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.rank = int(in_channels), int(out_channels), int(rank)
        self.first = nn.Conv2d(in_channels, rank, 1, stride=stride, bias=False)
        self.last = nn.Conv2d(rank, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run_pointwise(self.last, self.head(x))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """``first(x)``: the ``(B, R, H', W')`` map before the last 1x1 factor."""
        if not (type(self.first) is nn.Conv2d and _hook_free(self.first)):
            return self.first(x)
        if tuple(self.first.stride) != (1, 1):
            sh, sw = self.first.stride
            x = x[:, :, ::sh, ::sw]  # a strided 1x1 convolution reads every stride-th pixel
        return pointwise_conv(x, self.first.weight, self.first.bias)

    output_split = Tucker2Conv.output_split

    @property
    def weight(self) -> torch.Tensor:
        """The equivalent dense ``(C_out, C_in, 1, 1)`` kernel."""
        return (self.last.weight[:, :, 0, 0] @ self.first.weight[:, :, 0, 0])[:, :, None, None]

    @property
    def bias(self) -> torch.Tensor | None:
        return self.last.bias

    @property
    def pointwise_affine(self) -> bool:
        """Whether the layer is a per-pixel affine map (stride 1)."""
        return tuple(self.first.stride) == (1, 1)


class LowRankLinear(nn.Module):
    """``nn.Linear`` as ``Linear (in -> R, no bias)`` then ``Linear (R -> out)``."""

    def __init__(self, in_features: int, out_features: int, rank: int, *, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features, self.rank = int(in_features), int(out_features), int(rank)
        self.first = nn.Linear(in_features, rank, bias=False)
        self.last = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.first(x))

    @property
    def weight(self) -> torch.Tensor:
        """The equivalent dense ``(out, in)`` matrix."""
        return self.last.weight @ self.first.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.last.bias

    #: a per-row affine map: networks may fold it by calling it on unit vectors
    pointwise_affine = True


def linear_block_shape(out_features: int, in_features: int) -> tuple[int, int]:
    """The block shape of the block-sparse option of an ``(out, in)`` linear layer: the first of
    :data:`LINEAR_BLOCK_SHAPES` that tiles the weight."""
    for b1, b2 in LINEAR_BLOCK_SHAPES:
        if out_features % b1 == 0 and in_features % b2 == 0:
            return b1, b2
    return 1, 1


def block_norms(weight: np.ndarray, block_shape: tuple[int, int]) -> np.ndarray:
    """Squared Frobenius norms of the blocks of an ``(out, in)`` matrix, row-major over the
    ``(out / b1, in / b2)`` block grid; shape ``(n_blocks,)``."""
    b1, b2 = block_shape
    out, inp = weight.shape
    grid = weight.reshape(out // b1, b1, inp // b2, b2)
    return np.einsum("ijkl,ijkl->ik", grid, grid).ravel()


class BlockSparseLinear(nn.Module):
    """``nn.Linear`` whose weight is zero outside ``k`` kept blocks of shape ``(b1, b2)``.

    Only the kept blocks are parameters: ``blocks`` has shape ``(k, b1, b2)`` and the buffer
    ``index`` (saved with the state) holds their flat positions, row-major over the
    ``(out / b1, in / b2)`` block grid. Input ``(..., in)``, output ``(..., out)``.
    """

    #: a per-row affine map: networks may fold it by calling it on unit vectors
    pointwise_affine = True

    def __init__(self, in_features: int, out_features: int, kept: int, block_shape: tuple[int, int], *, bias: bool = True) -> None:
        super().__init__()
        b1, b2 = (int(b) for b in block_shape)
        if b1 < 1 or b2 < 1 or out_features % b1 or in_features % b2:
            raise ValueError(f"block shape {block_shape} does not tile the ({out_features}, {in_features}) weight")
        n_blocks = (out_features // b1) * (in_features // b2)
        _check_rank(int(kept), n_blocks, "kept blocks")
        self.in_features, self.out_features, self.block_shape = int(in_features), int(out_features), (b1, b2)
        self.blocks = nn.Parameter(torch.zeros(int(kept), b1, b2))
        self.register_buffer("index", torch.arange(int(kept), dtype=torch.long))
        self.bias_parameter = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """The dense ``(out, in)`` matrix (zeros outside the kept blocks), differentiable."""
        b1, b2 = self.block_shape
        rows, cols = self.out_features // b1, self.in_features // b2
        grid = self.blocks.new_zeros(rows * cols, b1, b2).index_copy(0, self.index, self.blocks)
        return grid.view(rows, cols, b1, b2).transpose(1, 2).reshape(self.out_features, self.in_features)

    @property
    def bias(self) -> torch.Tensor | None:
        return self.bias_parameter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias_parameter)

    @classmethod
    def from_linear(cls, linear: nn.Linear, kept: int, block_shape: tuple[int, int]) -> "BlockSparseLinear":
        """Keep the ``kept`` blocks of largest Frobenius norm of a trained ``linear`` (ties: lower index)."""
        layer = cls(linear.in_features, linear.out_features, kept, block_shape, bias=linear.bias is not None)
        weight = linear.weight.detach().cpu().double().numpy()
        norms = block_norms(weight, layer.block_shape)
        index = np.sort(np.argsort(-norms, kind="stable")[: int(kept)])
        b1, b2 = layer.block_shape
        grid = linear.weight.detach().reshape(linear.out_features // b1, b1, linear.in_features // b2, b2).transpose(1, 2)
        grid = grid.reshape(-1, b1, b2)
        layer = layer.to(dtype=linear.weight.dtype, device=linear.weight.device)
        with torch.no_grad():
            layer.index.copy_(torch.from_numpy(index))
            layer.blocks.copy_(grid[layer.index])
            if linear.bias is not None:
                layer.bias_parameter.copy_(linear.bias.detach())
        return layer


_RANK_FORMS = {"tucker2": "[R_out, R_in]", "lowrank": "[R]", "blocks": "[kept blocks, b1, b2]"}


def _ranks(factorization: str, ranks) -> tuple[int, ...]:
    """``ranks`` as a tuple of ints of the length ``factorization`` needs (a clear error otherwise)."""
    form = _RANK_FORMS.get(factorization)
    if form is None:
        raise ValueError(f"a factorized layer is 'tucker2', 'lowrank' or 'blocks', got {factorization!r}")
    values = () if ranks is None else tuple(ranks)
    if len(values) != form.count(",") + 1 or not all(isinstance(r, (int, np.integer)) or float(r).is_integer() for r in values):
        raise ValueError(f"factorization {factorization!r} needs ranks {form} (integers), got {ranks!r}")
    return tuple(int(r) for r in values)


def factorized_params(shape: tuple[int, ...], factorization: str, ranks, bias: bool) -> int:
    """Parameters of a layer of weight ``shape`` factorized as ``factorization`` at ``ranks``.

    ``shape`` is ``(C_out, C_in, kh, kw)`` for convolutions and ``(out, in)`` for linear layers;
    ``ranks`` is ``[R_out, R_in]`` for ``"tucker2"``, ``[R]`` for ``"lowrank"``, ``[k, b1, b2]``
    (kept blocks and block shape) for ``"blocks"``, ``None`` for ``"dense"``.
    """
    out, inp = int(shape[0]), int(shape[1])
    area = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    extra = out if bias else 0
    if factorization == "dense":
        return out * inp * area + extra
    if factorization == "tucker2":
        r_out, r_in = _ranks(factorization, ranks)
        return inp * r_in + r_in * r_out * area + r_out * out + extra
    if factorization == "lowrank":
        (r,) = _ranks(factorization, ranks)
        return r * (inp + out) + extra
    if factorization == "blocks":
        kept, b1, b2 = _ranks(factorization, ranks)
        return kept * b1 * b2 + extra
    raise ValueError(f"factorization must be 'dense', 'tucker2', 'lowrank' or 'blocks', got {factorization!r}")


def empty_factorized(module: nn.Module, factorization: str, ranks) -> nn.Module:
    """A factorized layer shaped to replace ``module`` (weights uninitialised, on its device/dtype)."""
    like = dict(dtype=module.weight.dtype, device=module.weight.device)
    ranks = _ranks(factorization, ranks)
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise ValueError(f"cannot factorize a grouped convolution (groups={module.groups})")
        out, inp = module.out_channels, module.in_channels
        if factorization == "tucker2":
            r_out, r_in = (int(r) for r in ranks)
            _check_rank(r_out, out, "R_out")
            _check_rank(r_in, inp, "R_in")
            layer: nn.Module = Tucker2Conv(inp, out, module.kernel_size, r_in, r_out, stride=module.stride, padding=module.padding,
                                           dilation=module.dilation, bias=module.bias is not None, padding_mode=module.padding_mode)
        elif factorization == "lowrank":
            if tuple(module.kernel_size) != (1, 1) or _pair(module.padding) != (0, 0):
                raise ValueError("factorization 'lowrank' applies to 1x1 convolutions without padding; use 'tucker2'")
            (r,) = (int(r) for r in ranks)
            _check_rank(r, min(out, inp), "R")
            layer = LowRankConv(inp, out, r, stride=module.stride, bias=module.bias is not None)
        else:
            raise ValueError(f"factorization of a Conv2d must be 'tucker2' or 'lowrank', got {factorization!r}")
    elif isinstance(module, nn.Linear):
        if factorization == "blocks":
            kept, b1, b2 = (int(r) for r in ranks)
            return BlockSparseLinear(module.in_features, module.out_features, kept, (b1, b2),
                                     bias=module.bias is not None).to(**like)
        if factorization != "lowrank":
            raise ValueError(f"factorization of a Linear layer must be 'lowrank' or 'blocks', got {factorization!r}")
        (r,) = (int(r) for r in ranks)
        _check_rank(r, min(module.in_features, module.out_features), "R")
        layer = LowRankLinear(module.in_features, module.out_features, r, bias=module.bias is not None)
    else:
        raise TypeError(f"only nn.Conv2d and nn.Linear layers can be factorized, not {type(module).__name__}")
    return layer.to(**like)


def _check_rank(rank: int, limit: int, name: str) -> None:
    if not 1 <= rank <= limit:
        raise ValueError(f"rank {name}={rank} must lie in [1, {limit}]")


def factorize(module: nn.Module, factorization: str, ranks, *, n_iter_max: int = HOOI_ITERATIONS) -> nn.Module:
    """The factorized replacement of a trained ``module``, initialised from its weights.

    ``"tucker2"``: truncated Tucker-2 (HOOI) of a conv kernel; ``"lowrank"``: truncated SVD of a
    1x1 conv or linear weight; ``"blocks"`` (``ranks = [k, b1, b2]``): the ``k`` largest blocks of
    a linear weight. The input module is not modified.
    """
    ranks = _ranks(factorization, ranks)
    if factorization == "tucker2":
        if not isinstance(module, nn.Conv2d):
            raise TypeError(f"tucker2 needs an nn.Conv2d, got {type(module).__name__}")
        r_out, r_in = ranks
        return Tucker2Conv.from_conv(module, r_in, r_out, n_iter_max=n_iter_max)
    if factorization == "blocks":
        if not isinstance(module, nn.Linear):
            raise TypeError(f"blocks needs an nn.Linear, got {type(module).__name__}")
        kept, b1, b2 = (int(r) for r in ranks)
        empty_factorized(module, factorization, ranks)  # validates the shape and count
        return BlockSparseLinear.from_linear(module, kept, (b1, b2))
    layer = empty_factorized(module, factorization, ranks)
    (r,) = (int(r) for r in ranks)
    weight = module.weight.detach().cpu().double().numpy().reshape(module.weight.shape[0], -1)
    left, right = truncated_svd(weight, r)
    like = dict(dtype=module.weight.dtype, device=module.weight.device)
    with torch.no_grad():
        first = torch.from_numpy(right.copy()).to(**like)
        last = torch.from_numpy(left.copy()).to(**like)
        layer.first.weight.copy_(first.view_as(layer.first.weight))
        layer.last.weight.copy_(last.view_as(layer.last.weight))
        if module.bias is not None:
            layer.last.bias.copy_(module.bias.detach())
    return layer

