"""Block indexing, block masks and the torch parametrization that applies them.

Conventions
-----------
A prunable weight ``W`` has at least two dimensions. Blocks tile its first two
dimensions, ``(out, in)``, with ``block_shape = (b1, b2)``; every further
dimension (the ``kh × kw`` of a convolution kernel) belongs whole to the block,
so a conv kernel is blocked over its (out, in) channels. The block grid has
``R = out / b1`` rows and ``C = in / b2`` columns, and block ``(r, c)`` has the
flat index ``r·C + c`` (row-major). A *block mask* is a boolean tensor of shape
``(R, C)``; a *mask* is a boolean tensor of the weight's own shape.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize


def parse_block_shape(value: Any, name: str = "block_shape") -> tuple[int, int]:
    """``"8x8"``, ``8`` or ``(8, 8)`` → ``(8, 8)``; both sides positive integers."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX×,]\s*(\d+)\s*", value) or re.fullmatch(r"\s*(\d+)\s*", value)
        if not match:
            raise ValueError(f"{name} must look like '8x8', got {value!r}")
        sides = tuple(int(g) for g in match.groups())
        value = sides * 2 if len(sides) == 1 else sides
    elif isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (b1, b2), an int or a string like '8x8', got {value!r}")
    sides = []
    for side in value:
        if isinstance(side, bool) or not isinstance(side, int):
            raise TypeError(f"{name} sides must be integers, got {value!r}")
        if side < 1:
            raise ValueError(f"{name} sides must be >= 1, got {value!r}")
        sides.append(int(side))
    return sides[0], sides[1]


def tiles(shape: Sequence[int], block_shape: tuple[int, int]) -> bool:
    """Whether ``block_shape`` tiles the first two dimensions of ``shape``."""
    return len(shape) >= 2 and shape[0] % block_shape[0] == 0 and shape[1] % block_shape[1] == 0


def block_grid(shape: Sequence[int], block_shape: tuple[int, int], name: str = "weight") -> tuple[int, int]:
    """The grid ``(R, C)`` of blocks over the first two dimensions of ``shape``.

    Raises
    ------
    ValueError
        When the weight has fewer than two dimensions or the block shape does not
        divide its ``(out, in)`` dimensions.
    """
    shape = tuple(shape)
    if len(shape) < 2:
        raise ValueError(f"{name} has shape {shape}: block sparsity needs at least 2 dimensions")
    if not tiles(shape, block_shape):
        raise ValueError(
            f"block shape {block_shape[0]}x{block_shape[1]} does not divide {name} of shape {shape} "
            f"(its (out, in) = {shape[:2]})"
        )
    return shape[0] // block_shape[0], shape[1] // block_shape[1]


def _blocked_view(weight: torch.Tensor, block_shape: tuple[int, int]) -> torch.Tensor:
    """``weight`` viewed as ``(R, b1, C, b2, rest)``."""
    rows, cols = block_grid(weight.shape, block_shape)
    return weight.reshape(rows, block_shape[0], cols, block_shape[1], -1)


def block_norms(weight: torch.Tensor, block_shape: tuple[int, int], eps: float = 0.0) -> torch.Tensor:
    """Frobenius norm of every block, shape ``(R, C)``.

    ``eps > 0`` returns ``sqrt(‖W_b‖² + eps)``, differentiable at zero blocks.
    """
    squares = _blocked_view(weight, block_shape).pow(2).sum(dim=(1, 3, 4))
    return (squares + eps).sqrt() if eps > 0 else squares.sqrt()


def expand_block_values(values: torch.Tensor, shape: Sequence[int], block_shape: tuple[int, int]) -> torch.Tensor:
    """Broadcast per-block values ``(R, C)`` to a tensor of the weight's ``shape``."""
    shape = tuple(shape)
    rows, cols = block_grid(shape, block_shape)
    if tuple(values.shape) != (rows, cols):
        raise ValueError(f"block values have shape {tuple(values.shape)}, expected the grid {(rows, cols)}")
    rest = math.prod(shape[2:])
    out = values.reshape(rows, 1, cols, 1, 1).expand(rows, block_shape[0], cols, block_shape[1], rest)
    return out.reshape(shape)


def scale_blocks(weight: torch.Tensor, values: torch.Tensor, block_shape: tuple[int, int]) -> torch.Tensor:
    """``weight`` with block ``(r, c)`` multiplied by ``values[r, c]`` (differentiable, no copy of the grid)."""
    rows, cols = values.shape
    blocked = _blocked_view(weight, block_shape)
    return (blocked * values.reshape(rows, 1, cols, 1, 1)).reshape(weight.shape)


def block_indices(block_mask: torch.Tensor) -> tuple[int, ...]:
    """Flat row-major indices ``r·C + c`` of the kept blocks of a ``(R, C)`` block mask."""
    return tuple(int(i) for i in torch.nonzero(block_mask.reshape(-1), as_tuple=False).reshape(-1).tolist())


def block_mask_from_indices(indices: Iterable[int], grid: tuple[int, int]) -> torch.Tensor:
    """The ``(R, C)`` boolean block mask keeping the flat ``indices``."""
    mask = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
    indices = list(indices)
    if indices:
        index = torch.tensor(indices, dtype=torch.long)
        if index.min() < 0 or index.max() >= mask.numel():
            raise ValueError(f"block indices must lie in [0, {mask.numel() - 1}], got {indices}")
        mask[index] = True
    return mask.reshape(grid)


def top_k_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask (shape of ``scores``) of the ``k`` largest entries; ties go to the lower flat index."""
    flat = scores.detach().reshape(-1).to(torch.float64)
    if not 0 <= k <= flat.numel():
        raise ValueError(f"k must be in [0, {flat.numel()}], got {k}")
    order = torch.sort(-flat, stable=True).indices[:k]
    mask = torch.zeros(flat.numel(), dtype=torch.bool)
    mask[order] = True
    return mask.reshape(scores.shape)


def resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module owning parameter ``name`` and the attribute name (``"0.weight"`` → (model[0], "weight"))."""
    module_path, _, attr = name.rpartition(".")
    module = model.get_submodule(module_path) if module_path else model
    return module, attr


class BlockMask(nn.Module):
    """Parametrization ``W ↦ W ⊙ mask``: zeroes the masked entries and their gradients.

    Parameters
    ----------
    mask : torch.Tensor
        Boolean tensor of the weight's shape (kept entries ``True``).
    """

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().clone().to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask.to(weight.dtype)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor], *, copy_model: bool = True) -> nn.Module:
    """Register a :class:`BlockMask` parametrization on every parameter named in ``masks``.

    Parameters
    ----------
    model : nn.Module
        Left untouched when ``copy_model`` (the default): a deep copy is masked.
    masks : mapping of str to bool tensor
        Parameter name (as in ``model.named_parameters()``) → mask of its shape.

    Returns
    -------
    nn.Module
        The masked model; its forward uses ``W ⊙ mask`` and the masked entries get
        zero gradient. :func:`bake_masks` turns it back into plain modules.
    """
    model = copy.deepcopy(model) if copy_model else model
    for name, mask in masks.items():
        module, attr = resolve(model, name)
        weight = getattr(module, attr)
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(f"mask for {name} has shape {tuple(mask.shape)}, the parameter {tuple(weight.shape)}")
        if parametrize.is_parametrized(module, attr):
            raise ValueError(f"parameter {name} is already parametrized")
        parametrize.register_parametrization(module, attr, BlockMask(mask))
    return model


def bake_masks(model: nn.Module, *, copy_model: bool = True) -> nn.Module:
    """Remove every :class:`BlockMask`, leaving the masked values (zeros) in plain parameters."""
    model = copy.deepcopy(model) if copy_model else model
    _remove_block_masks(model, leave_parametrized=True)
    return model


def unmask(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without its :class:`BlockMask` parametrizations, keeping the unmasked weights.

    The inverse of :func:`apply_masks`: every parameter gets back the value the mask was applied
    to (a model without masks is returned as a plain copy).
    """
    model = copy.deepcopy(model)
    _remove_block_masks(model, leave_parametrized=False)
    return model


def _remove_block_masks(model: nn.Module, *, leave_parametrized: bool) -> None:
    """Remove every :class:`BlockMask` parametrization of ``model`` in place, keeping the masked values
    (``leave_parametrized=True``) or the values the masks were applied to."""
    for module in list(model.modules()):
        if parametrize.is_parametrized(module):
            own_class(module)
            for attr in list(module.parametrizations.keys()):
                if any(isinstance(p, BlockMask) for p in module.parametrizations[attr]):
                    parametrize.remove_parametrizations(module, attr, leave_parametrized=leave_parametrized)


def own_class(module: nn.Module) -> None:
    """Give a parametrized module a class of its own before removing parametrizations.

    torch keeps the parametrized properties on a generated class that a deep copy
    shares with the original; removing them from the copy would break the original.
    """
    cls = module.__class__
    namespace = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


def masks_from_result(result: Any) -> dict[str, torch.Tensor]:
    """``result.info["masks"]`` of a block-sparsification result, checked."""
    masks = getattr(result, "info", {}).get("masks")
    if not isinstance(masks, Mapping):
        raise ValueError("result has no info['masks']: is it a BlockSparsification result?")
    return {str(k): torch.as_tensor(v, dtype=torch.bool) for k, v in masks.items()}


def apply_result(model: nn.Module, result: Any, *, shrink_model: bool = False) -> nn.Module:
    """A copy of ``model`` masked as ``result`` says; with ``shrink_model``, physically smaller.

    With ``shrink_model=False`` the copy carries :class:`BlockMask`
    parametrizations. With ``shrink_model=True`` the masks are baked in and
    :func:`shrink` removes the hidden units whose whole row or column went.
    ``model`` may itself be masked already (e.g. ``result.info["model"]``): its
    masks are baked first.
    """
    masked = apply_masks(bake_masks(model), masks_from_result(result), copy_model=False)
    return shrink(bake_masks(masked, copy_model=False), copy_model=False) if shrink_model else masked


_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
    nn.Identity, nn.Dropout, nn.Hardtanh, nn.Mish,
)


#: Layer kinds :func:`shrink` can narrow (weights shaped ``(out, in, *kernel)``; transposed convolutions are not).
_SHRINKABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def shrink(model: nn.Module, *, copy_model: bool = True) -> nn.Module:
    """Physically remove hidden units whose whole row or column of weights is zero.

    Works on every :class:`nn.Sequential` inside ``model`` (and on ``model``
    itself when it is one) whose layers are ``Linear`` or ``Conv1d``/``Conv2d``/``Conv3d``
    (``groups=1``) separated by
    element-wise activations only. Between two such layers ``L1 → act → L2``
    (same kind), hidden unit ``j`` goes when

    * its column (input channel) of ``L2`` is entirely zero — exactly; or
    * (``Linear`` pairs) its row of ``L1`` is entirely zero: its output is the
      constant ``act(b1_j)``, folded into the bias of ``L2`` — exactly.

    For convolutions a zero row is removed only when ``act(b1_j) = 0`` (the
    padded constant map is not constant at the border otherwise). The input and
    output sizes of the model never change. Masks must have been baked
    (:func:`bake_masks`) first.

    Returns
    -------
    nn.Module
        A model computing the same function with fewer parameters.
    """
    model = copy.deepcopy(model) if copy_model else model
    sequences = [m for m in model.modules() if isinstance(m, nn.Sequential)]
    for seq in sequences:
        layers = list(seq)
        i = 0
        while i < len(layers):
            first = layers[i]
            if not isinstance(first, _SHRINKABLE):
                i += 1
                continue
            j = i + 1
            while j < len(layers) and isinstance(layers[j], _ELEMENTWISE):
                j += 1
            if j < len(layers) and type(layers[j]) is type(first):
                _shrink_pair(first, nn.Sequential(*layers[i + 1 : j]), layers[j])
            i = j if j > i else i + 1
    return model


@torch.no_grad()
def _shrink_pair(first: nn.Module, activation: nn.Module, second: nn.Module) -> None:
    if not isinstance(first, nn.Linear) and (first.groups != 1 or second.groups != 1):
        return
    w1, w2 = first.weight, second.weight
    hidden = w1.shape[0]
    dead_column = (w2.transpose(0, 1).reshape(hidden, -1) == 0).all(dim=1)
    dead_row = (w1.reshape(hidden, -1) == 0).all(dim=1)
    bias1 = first.bias if first.bias is not None else torch.zeros(hidden, dtype=w1.dtype)
    was_training = activation.training
    activation.eval()
    constant = activation(bias1.reshape(1, -1)).reshape(-1) if len(activation) else bias1.clone()
    activation.train(was_training)
    if isinstance(first, nn.Linear):
        fold = dead_row & ~dead_column
        if fold.any():
            shift = w2[:, fold] @ constant[fold]
            if second.bias is None:
                second.bias = nn.Parameter(shift.clone())
            else:
                second.bias += shift
    else:
        fold = torch.zeros_like(dead_row)
        dead_row = dead_row & (constant == 0)
    keep = ~(dead_column | dead_row)
    if bool(keep.all()):
        return
    if not bool(keep.any()):
        keep[0] = True  # keep one unit so that the layers stay valid
        if isinstance(first, nn.Linear) and fold[0]:
            second.bias -= w2[:, 0] * constant[0]
    _select_units(first, second, keep)


def _select_units(first: nn.Module, second: nn.Module, keep: torch.Tensor) -> None:
    first.weight = nn.Parameter(first.weight[keep].clone())
    if first.bias is not None:
        first.bias = nn.Parameter(first.bias[keep].clone())
    second.weight = nn.Parameter(second.weight[:, keep].clone())
    count = int(keep.sum())
    if isinstance(first, nn.Linear):
        first.out_features, second.in_features = count, count
    else:
        first.out_channels, second.in_channels = count, count


def replay_block_mask(model: nn.Module, parameter: str, block_shape: Sequence[int], kept: Sequence[int]) -> None:
    """Structural edit ``block_mask``: the weight ``parameter`` holds zeros outside its ``kept`` blocks.

    Written by ``sparsesel prune`` (whose masks are baked into plain weights), so the structure is
    unchanged; replaying checks that the network has the parameter, that ``block_shape`` tiles it
    and that the flat block indices ``kept`` (row-major, see the module docstring) lie in its grid.
    :func:`block_masks` turns a network's log back into masks (e.g. for :func:`apply_masks`, to keep
    the zeros while fine-tuning).

    Raises
    ------
    ValueError
        The parameter does not exist, the blocks do not tile it, or an index is outside its grid.
    """
    try:
        module, attribute = resolve(model, parameter)
    except AttributeError:
        raise ValueError(f"block mask of {parameter!r}: the network has no such parameter") from None
    weight = getattr(module, attribute, None)
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"block mask of {parameter!r}: the network has no such parameter")
    rows, cols = block_grid(weight.shape, parse_block_shape(tuple(block_shape)), parameter)
    outside = [i for i in kept if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < rows * cols]
    if outside:  # checked in Python: the replay may run on the meta device
        raise ValueError(f"block mask of {parameter!r}: block indices must be integers in [0, {rows * cols - 1}], "
                         f"got {outside[:5]}")


def block_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{parameter: mask}`` (boolean, the weight's shape) of the ``block_mask`` edits in ``model``'s log."""
    from sparsesel.nets.edits import edit_log

    masks = {}
    for edit in edit_log(model):
        if edit.get("kind") != "block_mask":
            continue
        args = edit["args"]
        module, attribute = resolve(model, args["parameter"])
        weight = getattr(module, attribute)
        shape = parse_block_shape(tuple(args["block_shape"]))
        grid = block_grid(weight.shape, shape, args["parameter"])
        mask = expand_block_values(block_mask_from_indices(args["kept"], grid), weight.shape, shape)
        masks[args["parameter"]] = mask if args["parameter"] not in masks else masks[args["parameter"]] & mask
    return masks

