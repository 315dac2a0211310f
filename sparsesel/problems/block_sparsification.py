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
from typing import TYPE_CHECKING, Any

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
        DataLoader yielding ``(inputs, targets)`` pairs and having a ``len()`` (the
        schedules need the batches per epoch; an IterableDataset must define
        ``__len__``). ``X`` (and float ``y``) are cast to the dtype of the model's
        parameters. At construction the data are checked against the model: the
        first rows of ``X`` (or the DataLoader's first batch, drawn without changing
        any random state) go through the model and the loss; with ``cross_entropy``
        every label of ``y`` must lie in ``[0, n_classes)``. A DataLoader's batches
        are checked for NaN/inf as they are used. Needed by solvers that train.
        With ``(X, y)`` the solvers draw the batch order from their ``seed``; a
        DataLoader keeps its own order (give it a seeded ``generator`` for
        reproducible runs).
    loss : {"mse", "cross_entropy"} or callable
        ``callable(output, target) -> scalar tensor`` for anything else; it
        gets integer ``y`` as int64 class labels and any other ``y`` in the model's
        floating dtype (float32 for a float32 model).
    params : sequence of str, optional
        Names of the weights to prune (as in ``model.named_parameters()``).
        Default: every ``Linear`` and ``Conv1d/2d/3d`` weight that the block shape tiles
        and that is a registered parameter (a weight computed by a parametrization,
        e.g. ``torch.nn.utils.parametrizations.weight_norm``, is skipped); a tied
        weight is listed once, under its first name in ``named_parameters()``, and
        the pruning applies to every use of it in the result's model.
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
        parameter names, a tied alias or a parametrized weight in ``params``;
        the deprecated ``torch.nn.utils.weight_norm``; mismatched data lengths;
        data the model or the loss cannot take; class labels out of range; a
        DataLoader without ``len()`` or with no batch.
    TypeError
        A DataLoader whose batches are not ``(inputs, targets)`` pairs.
    """

    model: Any
    block_shape: Any = (1, 1)
    density: float = 0.1
    data: Any = None
    loss: Any = "mse"
    params: Sequence[str] | None = None
    allocation: str = "per_layer"
    min_blocks: int = 100

    def __post_init__(self) -> None:
        import torch
        from torch import nn

        from sparsesel.blocks import block_grid, parse_block_shape
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
        if not callable(self.loss):
            check_choice(self.loss, "loss", LOSSES)
        model = _copy_model(self.model)
        named = dict(model.named_parameters())
        if self.params is None:
            names, dense_params = _default_params(model, named, block_shape, min_blocks)
        else:
            names, dense_params = _check_params(self.params, model, named), []
        grids = {}
        for name in names:
            grids[name] = block_grid(named[name].shape, block_shape, name=f"parameter {name!r}")
        for name in (*names, *dense_params):
            bad = int((~torch.isfinite(named[name].detach())).sum())
            if bad:
                raise ValueError(f"parameter {name!r} has {bad} NaN or infinite value(s); "
                                 "the model (or the checkpoint it came from) is corrupt")
        data = self._check_data(self.data, self.loss, _float_dtype(model))
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
            self._probe(model, data[0][:2], data[1][:2], all_targets=data[1])
        elif data is not None:
            self._probe(model, *_first_batch(data))

    def _probe(self, model: nn.Module, inputs: Any, targets: Any, all_targets: Any = None) -> None:
        """Run ``model`` on a few rows (eval mode, no gradients) and check the loss can be computed.

        Parameters
        ----------
        model : nn.Module
        inputs, targets : tensors with a leading batch dimension
            The probe rows (the first two rows of ``(X, y)``, or a DataLoader's first batch).
        all_targets : tensor (n,), optional
            Every target of ``(X, y)``: with ``cross_entropy`` each label is checked to be
            in ``[0, n_classes)``, ``n_classes`` read from the model's output.

        Raises
        ------
        ValueError
            The model cannot take the inputs, a class label is out of range, non-integer
            targets for ``cross_entropy``, or the loss fails.
        """
        import torch

        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                try:
                    out = model(inputs)
                except Exception as exc:  # noqa: BLE001 - any failure means the data do not fit
                    shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
                    raise ValueError(f"model and data do not fit together: the model cannot take inputs of shape "
                                     f"{shape}: {type(exc).__name__}: {exc}") from None
                if self.loss == "cross_entropy" and isinstance(targets, torch.Tensor) and isinstance(out, torch.Tensor):
                    _check_class_labels(out, targets if all_targets is None else all_targets,
                                        whole_data=all_targets is not None)
                try:
                    self.loss_fn(out, targets)
                except Exception as exc:  # noqa: BLE001 - any failure means the data do not fit
                    _explain_class_labels_with_mse(self.loss, out, targets if all_targets is None else all_targets)
                    out_shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    target_shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
                    raise ValueError(f"model and data do not fit together: the loss fails on model output of shape "
                                     f"{out_shape} and targets of shape {target_shape}: {type(exc).__name__}: {exc}") from None
        finally:
            model.train(was)

    # ------------------------------------------------------------------ data
    @staticmethod
    def _check_data(data: Any, loss: Any, dtype: Any = None) -> Any:
        import torch

        if data is None:
            return None
        if isinstance(data, torch.utils.data.DataLoader):
            _check_loader_length(data)
            return data
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise TypeError(f"data must be (X, y) or a torch DataLoader, got {type(data).__name__}")
        dtype = torch.float32 if dtype is None else dtype
        X, y = data
        X_t = torch.as_tensor(as_finite_array(_to_numpy(X), "data X"), dtype=dtype)
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
            y_t = torch.as_tensor(y_np, dtype=dtype)
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
        loader = not isinstance(self.data, tuple)
        with torch.no_grad():
            for index, (xb, yb) in enumerate(self.batches(batch_size=1024)):
                if loader:
                    check_finite_batch(xb, yb, f"evaluating the loss, batch {index + 1} of the DataLoader")
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

    def objective(self, selected: Any, model: nn.Module | None = None) -> float:
        """The objective of keeping the blocks ``selected`` (see the class docstring).

        Parameters
        ----------
        selected : tuple of (str, tuple of int) pairs, or mapping of str to bool tensor (R, C)
            Exactly a ``Result.selected`` of this kind (kept flat block indices per prunable
            weight), or block masks per weight.
        model : nn.Module, optional
            The weights the blocks are cut from; default: the problem's model. A solver that
            trains returns its weights in ``result.info["model"]`` (masked): pass that model
            (its masks are removed first, so its trained weights count) to get
            ``result.objective``.

        Returns
        -------
        float
            With data: the mean loss of ``model`` with only the kept blocks. Without:
            :meth:`discarded_energy`.
        """
        from sparsesel.blocks import apply_masks, unmask

        block_masks = self.block_masks(selected)
        model = self.model if model is None else unmask(model)
        if self.data is None:
            return self.discarded_energy(block_masks, model)
        return self.evaluate(apply_masks(model, self.masks(block_masks)))

    def block_masks(self, selected: Any) -> dict[str, Any]:
        """``(R, C)`` block masks of every prunable weight from a ``Result.selected`` (or block masks)."""
        import torch

        from sparsesel.blocks import block_mask_from_indices

        if isinstance(selected, Mapping):
            pairs = {str(n): torch.as_tensor(m).bool() for n, m in selected.items()}
        else:
            try:
                pairs = {str(n): block_mask_from_indices(kept, self._grids[n]) for n, kept in selected}
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"selected must be (parameter name, kept block indices) pairs of the prunable "
                                 f"weights {list(self.params)}: {exc}") from None
        missing = [n for n in self.params if n not in pairs]
        if missing:
            raise ValueError(f"selected has no blocks for the prunable weight(s) {missing}")
        return {n: pairs[n] for n in self.params}

    def make_result(self, block_masks: Mapping[str, Any], model: nn.Module, *, status: str = "feasible",
                    trace: Sequence[dict] = (), info: Mapping[str, Any] | None = None) -> Any:
        """Package a solver's answer: ``selected``, masks, density, the masked model, the objective.

        ``model`` is the solver's final model (plain weights; masked here on a copy).
        """
        import torch

        from sparsesel.blocks import apply_masks, bake_masks, block_indices, resolve
        block_masks = {n: block_masks[n].bool().clone() for n in self.params}
        budget = self.budget()
        kept = {n: int(block_masks[n].sum()) for n in self.params}
        if isinstance(budget, dict):
            wrong = {n: (kept[n], budget[n]) for n in self.params if kept[n] != budget[n]}
        else:
            wrong = {} if sum(kept.values()) == budget else {"total": (sum(kept.values()), budget)}
        if wrong:
            raise RuntimeError(f"internal error: kept blocks {wrong} differ from the budget (kept, budget)")
        with torch.no_grad():
            for name, param in model.named_parameters():
                bad = int((~torch.isfinite(param)).sum()) if param.dtype.is_floating_point else 0
                if bad:
                    raise FloatingPointError(
                        f"the trained model's parameter {name!r} has {bad} NaN or infinite value(s): "
                        "training diverged; try a lower learning rate (lr=...)")
        masks = self.masks(block_masks)
        masked = apply_masks(bake_masks(model), masks)
        tied = _tied_names(model, self.params)
        if tied:
            # the alias uses the stored tensor itself, not the masked value: zero the pruned entries
            # in the stored tensor so that every use of a tied weight sees the pruning
            with torch.no_grad():
                for name in tied:
                    module, attr = resolve(masked, name)
                    module.parametrizations[attr].original.mul_(masks[name].to(module.parametrizations[attr].original.dtype))
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
        return self.result(selected, objective=objective, status=status, trace=trace, **extra)


def check_finite_batch(inputs: Any, targets: Any, where: str) -> None:
    """Raise a ValueError if a floating ``inputs`` or ``targets`` tensor holds NaN or inf.

    Parameters
    ----------
    inputs, targets : Any
        A batch; only floating-point tensors are checked (one ``isfinite().all()`` each).
    where : str
        Where the batch was met (e.g. ``"training epoch 2, step 3 of 8"``), put in the message.
    """
    import torch

    for label, value in (("inputs", inputs), ("targets", targets)):
        if isinstance(value, torch.Tensor) and value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{where}: the batch's {label} contain NaN or infinite values; "
                             "clean the data (the DataLoader's dataset) first")


def _tied_names(model: Any, names: Sequence[str]) -> list[str]:
    """The names in ``names`` whose tensor the model also uses under another name (tied weights)."""
    seen: dict[int, int] = {}
    for _, param in model.named_parameters(remove_duplicate=False):
        seen[id(param)] = seen.get(id(param), 0) + 1
    named = dict(model.named_parameters())
    return [n for n in names if n in named and seen.get(id(named[n]), 0) > 1]


def _copy_model(model: Any) -> Any:
    """A deep copy of ``model``, refusing the deprecated ``torch.nn.utils.weight_norm``.

    That weight_norm keeps its computed weight as a non-leaf tensor after every
    forward with gradients, which torch cannot deep-copy (and the solvers copy the
    model to train it and to mask the result), so such a model is refused with a
    clear error. ``torch.nn.utils.parametrizations.weight_norm`` is supported.
    """
    from torch.nn.utils.weight_norm import WeightNorm

    users = [f"{module_name}.{hook.name}" if module_name else hook.name
             for module_name, module in model.named_modules()
             for hook in module._forward_pre_hooks.values() if isinstance(hook, WeightNorm)]
    if users:
        raise ValueError(
            f"the model uses the deprecated torch.nn.utils.weight_norm on {users}, whose computed weight "
            "torch cannot deep-copy after training; apply torch.nn.utils.parametrizations.weight_norm instead "
            "(such a weight is not pruned: it stays dense) or remove it first with torch.nn.utils.remove_weight_norm"
        )
    return copy.deepcopy(model)


def _float_dtype(model: Any) -> Any:
    """The dtype of the model's first floating parameter (float32 when it has none)."""
    import torch

    for param in model.parameters():
        if param.dtype.is_floating_point:
            return param.dtype
    return torch.float32


def _explain_class_labels_with_mse(loss: Any, output: Any, targets: Any) -> None:
    """Raise a ``ValueError`` with a hint when ``loss='mse'`` meets integer class labels for a multi-output model.

    Does nothing in any other case (the caller then reports the shape mismatch itself).
    """
    import torch

    if loss != "mse" or not (isinstance(output, torch.Tensor) and isinstance(targets, torch.Tensor)):
        return
    if output.ndim != 2 or output.shape[1] < 2 or targets.ndim != 1 or targets.numel() == 0:
        return
    if not bool(torch.all(targets == torch.round(targets))):
        return
    low, high = int(targets.min()), int(targets.max())
    raise ValueError(
        f"loss='mse' compares the model output, shape (n, {output.shape[1]}), with targets of that same shape, "
        f"but data y holds integer labels of shape (n,) (values {low}..{high}); for class labels use "
        f"loss='cross_entropy', or give y as an (n, {output.shape[1]}) float array (e.g. one-hot) for mse"
    )


def _check_loader_length(loader: Any) -> None:
    """Refuse a DataLoader without ``len()`` (the schedules need the batches per epoch) or with none."""
    try:
        n_batches = len(loader)
    except TypeError:
        raise ValueError(
            f"data is a DataLoader over {type(loader.dataset).__name__}, which has no len(): the training "
            "schedules need the number of batches per epoch, so the DataLoader must have a len() "
            "(use a map-style Dataset, or an IterableDataset that defines __len__)"
        ) from None
    if n_batches == 0:
        raise ValueError("data is an empty DataLoader (0 batches); give it at least one batch")


def _first_batch(loader: Any) -> tuple[Any, Any]:
    """The DataLoader's first batch as ``(inputs, targets)``, checked; the random states are left as they were.

    Drawing a batch advances torch's global generator (the loader's base seed, an
    unseeded shuffle), the loader's own ``generator`` (a seeded shuffle) and possibly
    numpy's and Python's generators (augmentations): all are saved and restored so
    that building the problem changes no later run.
    """
    import random

    import torch

    generators = []
    for holder in (loader, loader.sampler, getattr(loader.batch_sampler, "sampler", None)):
        gen = getattr(holder, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g, _ in generators):
            generators.append((gen, gen.get_state()))
    torch_state, numpy_state, python_state = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
    try:
        batch = next(iter(loader), None)
    finally:
        torch.random.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        for gen, state in generators:
            gen.set_state(state)
    if batch is None:
        raise ValueError("data is a DataLoader that yields no batch; give it at least one batch")
    if isinstance(batch, Mapping):
        raise TypeError(
            f"a DataLoader batch must be an (inputs, targets) pair (a tuple or list of length 2), got a "
            f"{type(batch).__name__} with keys {list(batch)}; wrap the dataset so that it yields (x, y)"
        )
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        found = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (tuple, list)) \
            else f"a {type(batch).__name__}"
        raise TypeError(f"a DataLoader batch must be an (inputs, targets) pair (a tuple or list of length 2), "
                        f"got {found}; wrap the dataset so that it yields (x, y)")
    return batch[0], batch[1]


def _check_class_labels(output: Any, targets: Any, *, whole_data: bool) -> None:
    """Check ``cross_entropy`` targets: integer labels in ``[0, n_classes)`` (or class probabilities).

    ``n_classes`` is ``output.shape[1]``. Floating targets of the output's shape
    (class probabilities) are accepted.
    """
    import torch

    where = "data y" if whole_data else "the DataLoader's first batch"
    if targets.dtype.is_floating_point or targets.dtype.is_complex or targets.dtype == torch.bool:
        if targets.dtype.is_floating_point and tuple(targets.shape) == tuple(output.shape):
            return  # class probabilities
        raise ValueError(f"cross_entropy needs integer class labels, got {str(targets.dtype).replace('torch.', '')} "
                         f"targets of shape {tuple(targets.shape)} in {where} (for model outputs of shape "
                         f"{tuple(output.shape)}); give int64 labels, e.g. y.long()")
    if output.ndim < 2:
        return  # the loss call reports the shape problem
    n_classes = int(output.shape[1])
    bad = ((targets < 0) | (targets >= n_classes)).reshape(targets.shape[0], -1).any(dim=1).nonzero()
    if len(bad):
        row = int(bad[0, 0])
        labels = targets[row].reshape(-1)
        label = int(labels[(labels < 0) | (labels >= n_classes)][0])
        raise ValueError(f"{where} has class label {label} in row {row}, but the model outputs {n_classes} "
                         f"classes; cross_entropy needs labels in [0, {n_classes})")


def _default_params(model: nn.Module, named: dict, block_shape: tuple[int, int],
                    min_blocks: int) -> tuple[list[str], list[str]]:
    """The prunable weights when ``params`` is not given, and those left dense for having too few blocks.

    Every Linear/Conv weight the block shape tiles, each once; a weight that is not a registered
    parameter (computed by weight_norm or a parametrization) is skipped; a tied weight is listed once,
    under the first name ``named_parameters()`` gives it. Weights of fewer than ``min_blocks`` blocks
    stay dense (the paper's rule).
    """
    from torch import nn

    from sparsesel.blocks import block_grid, tiles

    canonical = {id(p): n for n, p in named.items()}
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            weight = module.weight
            name = canonical.get(id(weight)) if isinstance(weight, nn.Parameter) else None
            if name is not None and name not in names and tiles(weight.shape, block_shape):
                names.append(name)
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
    return names, dense_params


def _check_params(params: Any, model: nn.Module, named: dict) -> list[str]:
    """The weights named by ``params``: a non-empty sequence of distinct parameter names of ``model``."""
    if isinstance(params, str) or not isinstance(params, Sequence):
        raise TypeError(f"params must be a sequence of parameter names, got {params!r}")
    names = list(params)
    if not names:
        raise ValueError("params is empty: name at least one weight to prune")
    unknown = [n for n in names if n not in named]
    if unknown:
        _explain_unknown_params(model, unknown, named)
    if len(set(names)) != len(names):
        raise ValueError(f"params has repeated names: {names}")
    return names


def _explain_unknown_params(model: Any, unknown: Sequence[str], named: Mapping[str, Any]) -> None:
    """Raise a ValueError saying why the names in ``unknown`` are not prunable parameters.

    A tied weight's alias (the same tensor under a second name), a weight computed by a
    parametrization (``torch.nn.utils.parametrizations.weight_norm``, ...), a buffer, or a
    name the model does not have.
    """
    import torch
    from torch.nn.utils import parametrize

    from sparsesel.blocks import resolve

    by_id = {id(p): n for n, p in named.items()}
    aliases = dict(model.named_parameters(remove_duplicate=False))
    for name in unknown:
        if name in aliases and id(aliases[name]) in by_id:
            first = by_id[id(aliases[name])]
            raise ValueError(
                f"params names {name!r}, which is the same tensor as {first!r} (tied weights); "
                f"name it once, as {first!r}"
            )
        try:
            module, attr = resolve(model, name)
            value = getattr(module, attr)
        except AttributeError:
            continue
        if not isinstance(value, torch.Tensor):
            continue
        if parametrize.is_parametrized(module, attr):
            raise ValueError(
                f"params names {name!r}, which is computed by a parametrization "
                f"({', '.join(type(p).__name__ for p in module.parametrizations[attr])}, e.g. "
                f"torch.nn.utils.parametrizations.weight_norm), not a parameter; remove it first "
                f"(torch.nn.utils.parametrize.remove_parametrizations(module, {attr!r}))"
            )
        raise ValueError(f"params names {name!r}, a tensor that is not a registered parameter of the model "
                         "(a buffer or a computed attribute); only parameters can be pruned")
    raise ValueError(f"params names unknown parameter(s) {list(unknown)}; the model has {list(named)}")


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
