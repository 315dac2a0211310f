"""Block sparsification: which blocks of a network's weights to keep.

torch is imported on first use so that ``import sparsesel`` and ``import
solvers`` stay light.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from sparsesel.problems.base import Problem
from sparsesel.validation import as_finite_array, check_choice

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

LOSSES = ("mse", "cross_entropy")
ALLOCATIONS = ("per_layer", "global")


@dataclass(frozen=True, eq=False)
class BlockSparsification(Problem):
    """Keep a fraction ``density`` of the ``b1 × b2`` blocks of a network's weights.

    Blocks tile the ``(out, in)`` dimensions of each prunable weight (a conv
    kernel ``(out, in, kh, kw)`` is blocked over its channels; the whole
    ``kh × kw`` belongs to the block). Block ``(r, c)`` of a weight with a grid
    of ``R × C`` blocks has the flat index ``r·C + c``.

    Budget: with ``allocation="per_layer"`` (the paper's uniform sparsity) each
    weight keeps ``k_l = round(density · n_l)`` of its ``n_l`` blocks (at least
    one); with ``"global"`` the model keeps ``round(density · Σ n_l)`` blocks in
    all, wherever they score best. :meth:`budget` gives the counts.

    Small layers (the paper's trick): with the default ``params=None``, a
    candidate weight with fewer than ``min_blocks`` blocks (100, as in the
    paper) is *not pruned*: it stays dense, outside :attr:`param_names`, and is
    listed in :attr:`dense_params`. Naming weights in ``params`` overrides the
    rule (they are pruned whatever their size). ``min_blocks=1`` prunes every
    candidate.

    Density accounting (exact): ``density`` and the budget apply to the pruned
    weights only. ``info["density"]`` is kept blocks / blocks of the pruned
    weights (equal to the budget's fraction up to the rounding of
    :meth:`budget`); ``info["density_with_dense"]`` counts the blocks of the
    :attr:`dense_params` as kept (kept + their blocks over all candidate
    blocks), and ``info["weight_density"]`` is the fraction of nonzero-able
    entries kept over all candidate weights (pruned and dense), the number to
    quote for the model as a whole.

    Objective of a pruned model: the mean ``loss`` over ``data`` when data are
    given; otherwise the fraction of the weights' energy the pruning discards,
    ``Σ_removed ‖W_b‖² / Σ ‖W‖²`` (over the prunable weights).

    Results of every solver of this kind carry

    * ``selected``: a tuple of ``(parameter name, tuple of kept flat block
      indices)`` pairs, one per prunable weight, in :attr:`param_names` order;
    * ``info["masks"]``: parameter name → boolean mask of the parameter's shape;
    * ``info["block_masks"]``: parameter name → boolean ``(R, C)`` block mask;
    * ``info["density"]``: achieved fraction of kept blocks (over all prunable
      weights), ``info["layer_density"]`` the same per weight;
    * ``info["model"]``: the solver's final (trained, if it trained) model, a
      copy masked with :class:`sparsesel.blocks.BlockMask` parametrizations.
      The problem's and the caller's models are never modified.

    Parameters
    ----------
    model : torch.nn.Module
        The network; deep-copied, the caller's module is never modified.
    block_shape : (int, int), int or str
        ``(b1, b2)``, ``b`` for ``(b, b)`` or ``"8x8"``.
    density : float
        Fraction of blocks kept, ``0 < density <= 1``.
    data : (X, y) or torch.utils.data.DataLoader, optional
        Training data: arrays/tensors ``X`` of shape ``(n, ...)`` and ``y`` of
        shape ``(n,)`` (class labels for ``cross_entropy``) or ``(n, m)``; or a
        DataLoader yielding ``(inputs, targets)``. Needed by solvers that train.
        With ``(X, y)`` the solvers draw the batch order from their ``seed``; a
        DataLoader keeps its own order (give it a seeded ``generator`` for
        reproducible runs).
    loss : {"mse", "cross_entropy"} or callable
        ``callable(output, target) -> scalar tensor`` for anything else; it
        gets integer ``y`` as int64 class labels and any other ``y`` as float32.
    params : sequence of str, optional
        Names of the weights to prune (as in ``model.named_parameters()``).
        Default: every ``Linear`` and ``Conv1d/2d/3d`` weight that the block shape tiles.
    allocation : {"per_layer", "global"}
    min_blocks : int
        With ``params=None``, weights with fewer blocks than this stay dense
        (default 100, the paper's rule; ``1`` disables it).

    Raises
    ------
    TypeError
        ``model`` not a torch module, non-numeric data, wrong types.
    ValueError
        ``density`` outside ``(0, 1]``; a named weight the blocks do not tile;
        NaN or infinite values in a candidate weight (a corrupt model);
        no prunable weight (also when ``min_blocks`` leaves none); unknown
        parameter names; mismatched data lengths.
    """

    model: Any
    block_shape: Any = (1, 1)
    density: float = 0.1
    data: Any = None
    loss: Any = "mse"
    params: Sequence[str] | None = None
    allocation: str = "per_layer"
    min_blocks: int = 100

    kind: ClassVar[str] = "block_sparsification"

    def __post_init__(self) -> None:
        import torch
        from torch import nn

        from sparsesel.blocks import block_grid, parse_block_shape, tiles
        from sparsesel.validation import check_int

        if not isinstance(self.model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")
        block_shape = parse_block_shape(self.block_shape)
        if isinstance(self.density, bool) or not isinstance(self.density, numbers.Real):
            raise TypeError(f"density must be a number in (0, 1], got {self.density!r}")
        density = float(self.density)
        if not (math.isfinite(density) and 0.0 < density <= 1.0):
            raise ValueError(f"density must be in (0, 1], got {self.density!r}")
        allocation = check_choice(self.allocation, "allocation", ALLOCATIONS)
        min_blocks = check_int(self.min_blocks, "min_blocks", low=1)
        dense_params: list[str] = []
        if not callable(self.loss):
            check_choice(self.loss, "loss", LOSSES)
        model = copy.deepcopy(self.model)
        named = dict(model.named_parameters())
        if self.params is None:
            names = []
            for module_name, module in model.named_modules():
                if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                    weight = module.weight
                    if tiles(weight.shape, block_shape):
                        names.append(f"{module_name}.weight" if module_name else "weight")
            if not names:
                raise ValueError(
                    f"model has no Linear/Conv weight whose (out, in) dimensions the block shape "
                    f"{block_shape[0]}x{block_shape[1]} tiles; pass params=[...] or another block_shape"
                )
            sizes = {n: math.prod(block_grid(named[n].shape, block_shape)) for n in names}
            dense_params = [n for n in names if sizes[n] < min_blocks]
            names = [n for n in names if sizes[n] >= min_blocks]
            if not names:
                raise ValueError(
                    f"every candidate weight has fewer than min_blocks={min_blocks} blocks of "
                    f"{block_shape[0]}x{block_shape[1]} ({sizes}); they all stay dense (the paper's rule): "
                    f"pass min_blocks=1, a smaller block_shape or params=[...] to prune them"
                )
        else:
            if isinstance(self.params, str) or not isinstance(self.params, Sequence):
                raise TypeError(f"params must be a sequence of parameter names, got {self.params!r}")
            names = list(self.params)
            if not names:
                raise ValueError("params is empty: name at least one weight to prune")
            unknown = [n for n in names if n not in named]
            if unknown:
                raise ValueError(f"params names unknown parameter(s) {unknown}; the model has {list(named)}")
            if len(set(names)) != len(names):
                raise ValueError(f"params has repeated names: {names}")
        grids = {}
        for name in names:
            grids[name] = block_grid(named[name].shape, block_shape, name=f"parameter {name!r}")
        for name in (*names, *dense_params):
            bad = int((~torch.isfinite(named[name].detach())).sum())
            if bad:
                raise ValueError(f"parameter {name!r} has {bad} NaN or infinite value(s); "
                                 "the model (or the checkpoint it came from) is corrupt")
        data = self._check_data(self.data, self.loss)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "block_shape", block_shape)
        object.__setattr__(self, "density", density)
        object.__setattr__(self, "allocation", allocation)
        object.__setattr__(self, "params", tuple(names))
        object.__setattr__(self, "min_blocks", min_blocks)
        object.__setattr__(self, "dense_params", tuple(dense_params))
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "_grids", grids)
        if isinstance(data, tuple):
            with torch.no_grad():
                was = model.training
                model.eval()
                try:
                    out = model(data[0][:2])
                    self.loss_fn(out, data[1][:2])
                except Exception as exc:  # noqa: BLE001 - any failure means the data do not fit
                    raise ValueError(f"model and data do not fit together: {type(exc).__name__}: {exc}") from None
                finally:
                    model.train(was)

    # ------------------------------------------------------------------ data
    @staticmethod
    def _check_data(data: Any, loss: Any) -> Any:
        import torch

        if data is None:
            return None
        if isinstance(data, torch.utils.data.DataLoader):
            return data
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise TypeError(f"data must be (X, y) or a torch DataLoader, got {type(data).__name__}")
        X, y = data
        X_t = torch.as_tensor(as_finite_array(_to_numpy(X), "data X"), dtype=torch.float32)
        y_np = as_finite_array(_to_numpy(y), "data y")
        if X_t.ndim < 1 or y_np.ndim < 1 or X_t.shape[0] != y_np.shape[0]:
            raise ValueError(f"data X has {X_t.shape[0] if X_t.ndim else 0} rows but y has {y_np.shape[0] if y_np.ndim else 0}; they must match")
        if loss == "cross_entropy":
            if y_np.ndim != 1 or not np.all(y_np == np.round(y_np)) or y_np.min() < 0:
                raise ValueError("data y must be non-negative integer class labels of shape (n,) for loss='cross_entropy'")
            y_t = torch.as_tensor(y_np.astype(np.int64))
        elif callable(loss) and _is_integer(y):
            y_t = torch.as_tensor(y_np.astype(np.int64))  # a custom loss may need class labels
        else:
            y_t = torch.as_tensor(y_np, dtype=torch.float32)
        return (X_t, y_t)

    @property
    def loss_fn(self) -> Callable[[Any, Any], Any]:
        """The loss as ``f(output, target) -> scalar tensor`` (mean over the batch)."""
        import torch.nn.functional as F

        if callable(self.loss):
            return self.loss
        if self.loss == "cross_entropy":
            return F.cross_entropy

        def mse(output: Any, target: Any) -> Any:
            return F.mse_loss(output, target.reshape(output.shape))

        return mse

    # ---------------------------------------------------------------- blocks
    @property
    def param_names(self) -> tuple[str, ...]:
        """The prunable weights, in order."""
        return self.params

    def grid(self, name: str) -> tuple[int, int]:
        """The block grid ``(R, C)`` of weight ``name``."""
        return self._grids[name]

    def _dense_grid(self, name: str) -> tuple[int, int]:
        from sparsesel.blocks import block_grid

        return block_grid(_effective(self.model, name, dict(self.model.named_parameters())).shape, self.block_shape)

    @property
    def n_blocks(self) -> dict[str, int]:
        """Number of blocks of every prunable weight."""
        return {n: r * c for n, (r, c) in self._grids.items()}

    def budget(self, density: float | None = None) -> dict[str, int] | int:
        """Blocks to keep: per weight (``per_layer``) or in total (``global``).

        ``round(density · n)`` (halves rounded up), at least 1, at most ``n``.
        """
        density = self.density if density is None else float(density)
        if self.allocation == "global":
            return _count(density, sum(self.n_blocks.values()))
        return {n: _count(density, total) for n, total in self.n_blocks.items()}

    def select(self, scores: Mapping[str, Any], density: float | None = None,
               allowed: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Block masks keeping the best-scoring blocks within the budget.

        Parameters
        ----------
        scores : mapping of str to tensor (R, C)
            Importance of every block of every prunable weight (larger is kept).
        density : float, optional
            Override of the problem's density (used by gradual schedules).
        allowed : mapping of str to bool tensor (R, C), optional
            Only these blocks may be kept (backward selection); others score ``-inf``.

        Returns
        -------
        dict of str to bool tensor (R, C)
        """
        import torch

        from sparsesel.blocks import top_k_mask

        budget = self.budget(density)
        prepared = {}
        for name in self.params:
            s = torch.as_tensor(scores[name]).detach().to(torch.float64).reshape(self._grids[name])
            if allowed is not None:
                s = torch.where(torch.as_tensor(allowed[name]).bool(), s, torch.full_like(s, -math.inf))
            prepared[name] = s
        if isinstance(budget, dict):
            return {n: top_k_mask(prepared[n], budget[n]) for n in self.params}
        flat = torch.cat([prepared[n].reshape(-1) for n in self.params])
        keep = top_k_mask(flat, budget)
        out, start = {}, 0
        for n in self.params:
            size = prepared[n].numel()
            out[n] = keep[start : start + size].reshape(self._grids[n])
            start += size
        return out

    def masks(self, block_masks: Mapping[str, Any]) -> dict[str, Any]:
        """Entry masks (the parameters' shapes) from ``(R, C)`` block masks."""
        from sparsesel.blocks import expand_block_values

        named = dict(self.model.named_parameters())
        return {
            n: expand_block_values(block_masks[n].bool(), named[n].shape, self.block_shape).clone()
            for n in self.params
        }

    # -------------------------------------------------------------- objective
    def evaluate(self, model: nn.Module) -> float:
        """Mean loss of ``model`` over ``data`` (eval mode, no gradients)."""
        import torch

        if self.data is None:
            raise ValueError("this BlockSparsification has no data; evaluate needs data=(X, y) or a DataLoader")
        loss_fn = self.loss_fn
        was = model.training
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for xb, yb in self.batches(batch_size=1024):
                n = len(xb)
                total += float(loss_fn(model(xb), yb)) * n
                count += n
        model.train(was)
        return total / max(count, 1)

    def batches(self, batch_size: int, generator: Any = None) -> Any:
        """One pass over ``data`` in batches (shuffled with ``generator`` when given)."""
        import torch

        if isinstance(self.data, tuple):
            X, y = self.data
            n = X.shape[0]
            order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                yield X[index], y[index]
        else:
            yield from self.data

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps in one pass over the data."""
        if isinstance(self.data, tuple):
            return math.ceil(self.data[0].shape[0] / batch_size)
        return len(self.data)

    def discarded_energy(self, block_masks: Mapping[str, Any], model: nn.Module | None = None) -> float:
        """``Σ_removed ‖W_b‖² / Σ ‖W‖²`` over the prunable weights of ``model`` (default: the problem's)."""
        import torch

        from sparsesel.blocks import block_norms

        named = dict((model or self.model).named_parameters())
        removed = total = 0.0
        with torch.no_grad():
            for n in self.params:
                sq = block_norms(_effective(model or self.model, n, named), self.block_shape).pow(2).double()
                total += float(sq.sum())
                removed += float(sq[~block_masks[n].bool()].sum())
        return removed / total if total > 0 else 0.0

    def objective(self, block_masks: Mapping[str, Any], model: nn.Module | None = None) -> float:
        """The objective of keeping ``block_masks`` (see the class docstring).

        With data: mean loss of ``model`` (default: the problem's model) with the
        masks applied. Without: :meth:`discarded_energy`.
        """
        from sparsesel.blocks import apply_masks

        if self.data is None:
            return self.discarded_energy(block_masks, model)
        return self.evaluate(apply_masks(model if model is not None else self.model, self.masks(block_masks)))

    def make_result(self, block_masks: Mapping[str, Any], model: nn.Module, *, status: str = "feasible",
                    trace: Sequence[dict] = (), info: Mapping[str, Any] | None = None) -> Any:
        """Package a solver's answer: ``selected``, masks, density, the masked model, the objective.

        ``model`` is the solver's final model (plain weights; masked here on a copy).
        """
        from sparsesel.blocks import apply_masks, bake_masks, block_indices
        from sparsesel.result import Result

        block_masks = {n: block_masks[n].bool().clone() for n in self.params}
        budget = self.budget()
        kept = {n: int(block_masks[n].sum()) for n in self.params}
        if isinstance(budget, dict):
            wrong = {n: (kept[n], budget[n]) for n in self.params if kept[n] != budget[n]}
        else:
            wrong = {} if sum(kept.values()) == budget else {"total": (sum(kept.values()), budget)}
        if wrong:
            raise RuntimeError(f"internal error: kept blocks {wrong} differ from the budget (kept, budget)")
        masks = self.masks(block_masks)
        masked = apply_masks(bake_masks(model), masks)
        objective = self.evaluate(masked) if self.data is not None else self.discarded_energy(block_masks, model)
        total = sum(self.n_blocks.values())
        named = dict(model.named_parameters())
        dense_blocks = sum(math.prod(self._dense_grid(n)) for n in self.dense_params)
        entries = {n: _effective(model, n, named).numel() for n in (*self.params, *self.dense_params)}
        kept_entries = sum(int(masks[n].sum()) for n in self.params) + sum(entries[n] for n in self.dense_params)
        extra = {
            "masks": masks,
            "block_masks": block_masks,
            "density": sum(kept.values()) / total,
            "layer_density": {n: kept[n] / self.n_blocks[n] for n in self.params},
            "dense_params": tuple(self.dense_params),
            "density_with_dense": (sum(kept.values()) + dense_blocks) / (total + dense_blocks),
            "weight_density": kept_entries / sum(entries.values()),
            "kept_blocks": sum(kept.values()),
            "total_blocks": total,
            "objective_kind": "mean loss on data" if self.data is not None else "discarded weight energy",
            "model": masked,
        }
        extra.update(info or {})
        selected = tuple((n, block_indices(block_masks[n])) for n in self.params)
        return Result(selected=selected, objective=objective, status=status, trace=tuple(trace), info=extra)


def _count(density: float, total: int) -> int:
    return int(min(total, max(1, math.floor(density * total + 0.5 + 1e-9))))


def _is_integer(value: Any) -> bool:
    """Whether ``value`` (tensor, array or sequence) holds integers, bools excluded."""
    import torch

    if isinstance(value, torch.Tensor):
        return not value.dtype.is_floating_point and not value.dtype.is_complex and value.dtype != torch.bool
    dtype = np.asarray(value).dtype
    return bool(np.issubdtype(dtype, np.integer))


def _to_numpy(value: Any) -> Any:
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        return value.detach().cpu().numpy()
    return value


def _effective(model: Any, name: str, named: Mapping[str, Any]) -> Any:
    """The weight as the forward pass sees it (through parametrizations)."""
    from sparsesel.blocks import resolve

    if name in named:
        return named[name]
    module, attr = resolve(model, name)
    return getattr(module, attr)
