"""Shared machinery of the block-sparsification solvers: gates, the training loop, schedules.

Every solver that trains uses :class:`Trainer` with the same budget: ``epochs``
passes over the problem's data in batches of ``batch_size``, Adam with a cosine
learning-rate decay from ``lr`` to ``lr/10`` over the whole budget, weight decay
``weight_decay``, the batch order drawn from ``torch.Generator(seed)``. So at a
given (``epochs``, ``seed``) all solvers see the same data in the same order for
the same number of steps, and differ only in what they do to the weights.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from sparsesel.blocks import own_class, block_norms, resolve, scale_blocks
from sparsesel.problems.block_sparsification import BlockSparsification, check_finite_batch
from sparsesel.schedules import cubic_sparsity, exponential_sparsity, phase_lengths  # noqa: F401 - shared with the channel selectors


class BlockGate(nn.Module):
    """Parametrization ``W ↦ W ⊙ gate`` with one gate value per block.

    ``gate = block_mask`` (0/1 per block), times the attention
    ``A = n·softmax(logits)`` clipped to ``[a_min, a_max]`` when ``attention``,
    times ``‖V_b‖^{α−1}`` (block Powerpropagation: the stored weight ``V`` is
    multiplied by its own block norm) when ``power_alpha`` is given.

    Parameters
    ----------
    shape : tuple of int
        The weight's shape.
    block_shape : (int, int)
    attention : bool
    clip : (float, float) or None
        Bounds on ``A``.
    power_alpha : float or None
    """

    def __init__(self, shape: tuple[int, ...], block_shape: tuple[int, int], *, attention: bool = False,
                 clip: tuple[float, float] | None = None, power_alpha: float | None = None) -> None:
        super().__init__()
        self.block_shape = block_shape
        rows, cols = shape[0] // block_shape[0], shape[1] // block_shape[1]
        self.register_buffer("block_mask", torch.ones(rows, cols))
        self.logits = nn.Parameter(torch.zeros(rows, cols)) if attention else None
        self.clip = clip
        self.power_alpha = power_alpha

    def attention(self) -> torch.Tensor:
        """``A = n·softmax(logits)`` (mean 1), clipped; shape ``(R, C)``."""
        assert self.logits is not None
        n = self.logits.numel()
        a = n * torch.softmax(self.logits.reshape(-1), dim=0).reshape(self.logits.shape)
        if self.clip is not None:
            a = a.clamp(self.clip[0], self.clip[1])
        return a

    def gate(self, weight: torch.Tensor) -> torch.Tensor:
        gate = self.block_mask
        if self.logits is not None:
            gate = gate * self.attention()
        if self.power_alpha is not None:
            gate = gate * block_norms(weight, self.block_shape, eps=1e-12).pow(self.power_alpha - 1)
        return gate

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return scale_blocks(weight, self.gate(weight), self.block_shape)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """Stored weight ``V`` whose gated value is ``weight`` (only Powerpropagation changes it)."""
        if self.power_alpha is None:
            return weight
        norms = block_norms(weight, self.block_shape, eps=1e-24)
        return scale_blocks(weight, norms.pow(1.0 / self.power_alpha - 1.0), self.block_shape)


def install_gates(problem: BlockSparsification, model: nn.Module, **gate_options: Any) -> dict[str, BlockGate]:
    """Register a :class:`BlockGate` on every prunable weight of ``model`` (in place)."""
    gates = {}
    for name in problem.params:
        module, attr = resolve(model, name)
        gate = BlockGate(tuple(getattr(module, attr).shape), problem.block_shape, **gate_options)
        parametrize.register_parametrization(module, attr, gate)
        gates[name] = gate
    return gates


@torch.no_grad()
def remove_gates(problem: BlockSparsification, model: nn.Module, *, keep_mask: bool = False) -> None:
    """Bake the gates into plain weights (``W ← W ⊙ gate``), in place.

    With ``keep_mask`` the block mask is left out of the baked value (so the
    returned weights keep their pruned values; :meth:`make_result` masks them).
    """
    for name in problem.params:
        module, attr = resolve(model, name)
        gate: BlockGate = module.parametrizations[attr][0]
        if keep_mask:
            gate.block_mask.fill_(1.0)
        own_class(module)
        parametrize.remove_parametrizations(module, attr, leave_parametrized=True)


def gate_masks(gates: dict[str, BlockGate]) -> dict[str, torch.Tensor]:
    return {n: g.block_mask.bool().clone() for n, g in gates.items()}


@torch.no_grad()
def set_masks(gates: dict[str, BlockGate], block_masks: dict[str, torch.Tensor] | None) -> None:
    """Set every gate's block mask (``None``: keep everything, a dense phase)."""
    for name, gate in gates.items():
        gate.block_mask.copy_(torch.ones_like(gate.block_mask) if block_masks is None else block_masks[name].float())


def effective_norms(problem: BlockSparsification, model: nn.Module, *, ignore_mask: bool = True) -> dict[str, torch.Tensor]:
    """Block norms of the weights as the forward pass uses them (gates applied, mask ignored)."""
    out = {}
    with torch.no_grad():
        for name in problem.params:
            module, attr = resolve(model, name)
            if parametrize.is_parametrized(module, attr):
                gate: BlockGate = module.parametrizations[attr][0]
                stored = module.parametrizations[attr].original
                saved = gate.block_mask.clone()
                if ignore_mask:
                    gate.block_mask.fill_(1.0)
                weight = gate(stored)
                gate.block_mask.copy_(saved)
            else:
                weight = getattr(module, attr)
            out[name] = block_norms(weight, problem.block_shape)
    return out


class Trainer:
    """The training loop every solver shares (see the module docstring).

    Parameters
    ----------
    problem : BlockSparsification
    model : nn.Module
        Trained in place (solvers pass their own deep copy).
    epochs, lr, batch_size, weight_decay, seed, progress
        The shared budget and optimizer settings.
    extra_params : list of (parameters, weight_decay, lr_scale)
        Further parameter groups (the SA++ logits).
    penalty : callable, optional
        ``penalty(model) -> scalar tensor`` added to the loss (attribute).
    post_step : callable, optional
        ``post_step(lr)`` called after every optimizer step with the step's
        learning rate (attribute; the proximal step of ``group_regularized``).
    optimizer : {"adamw", "sgd"}
        ``"adamw"`` (every benchmark run) or plain full-step SGD (no momentum),
        with which a proximal step after each update is exactly proximal
        gradient descent.

    Raises
    ------
    FloatingPointError
        From :meth:`step`, when the training loss (plus penalty) becomes NaN or
        infinite: the run diverged (the message names the solver, epoch and step).
    ValueError
        From :meth:`step`, when a DataLoader batch holds NaN or inf.
    """

    def __init__(self, problem: BlockSparsification, model: nn.Module, *, epochs: int, lr: float,
                 batch_size: int, weight_decay: float, seed: int, progress: bool = False,
                 desc: str = "training", optimizer: str = "adamw") -> None:
        from sparsesel.validation import check_choice

        self.optimizer_kind = check_choice(optimizer, "optimizer", ("adamw", "sgd"))
        if problem.data is None:
            raise ValueError("training needs data: build the BlockSparsification with data=(X, y) or a DataLoader, or pass epochs=0")
        self.problem = problem
        self.model = model
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.batch_size = int(batch_size)
        self.generator = torch.Generator().manual_seed(int(seed))
        self._steps_per_epoch = problem.steps_per_epoch(self.batch_size)
        self.total_steps = int(epochs) * self._steps_per_epoch
        self.desc = desc
        # (X, y) arrays were checked for NaN/inf when the problem was built; a DataLoader's batches are not
        self._check_batches = not isinstance(problem.data, tuple)
        self.step_count = 0
        self.loss_fn = problem.loss_fn
        self.penalty: Callable[[nn.Module], torch.Tensor] | None = None
        self.post_step: Callable[[float], None] | None = None
        self.extra_groups: list[dict[str, Any]] = []
        self._batches = self._batch_stream()
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_loss = float("nan")
        self._bar = None
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total_steps, desc=desc, leave=False)

    def add_group(self, params: list[nn.Parameter], *, weight_decay: float, lr_scale: float = 1.0) -> None:
        self.extra_groups.append({"params": params, "weight_decay": weight_decay, "lr_scale": lr_scale})

    def _batch_stream(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from self.problem.batches(self.batch_size, self.generator)

    def current_lr(self) -> float:
        t = self.step_count / max(self.total_steps, 1)
        return self.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * t)))

    def reset_optimizer(self) -> None:
        """A fresh Adam (the paper resets the optimizer at every phase)."""
        extra = {id(p) for g in self.extra_groups for p in g["params"]}
        base = [p for p in self.model.parameters() if p.requires_grad and id(p) not in extra]
        groups = [{"params": base, "weight_decay": self.weight_decay, "lr_scale": 1.0}]
        groups += [dict(g) for g in self.extra_groups]
        if self.optimizer_kind == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=self.current_lr(), weight_decay=self.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=self.current_lr(), weight_decay=self.weight_decay)

    def step(self) -> float:
        """One optimizer step on the next batch; returns the batch loss."""
        if self.optimizer is None:
            self.reset_optimizer()
        assert self.optimizer is not None
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        xb, yb = next(self._batches)
        if self._check_batches:
            check_finite_batch(xb, yb, f"{self.desc}: training {self._position()}")
        self.model.train()
        loss = self.loss_fn(self.model(xb), yb)
        total = loss + self.penalty(self.model) if self.penalty is not None else loss
        value = float(total.detach())
        if not math.isfinite(value):
            penalty = "" if total is loss else f" (loss {float(loss.detach()):.4g} + penalty)"
            raise FloatingPointError(
                f"{self.desc}: the training loss became {value}{penalty} at {self._position()}: training "
                f"diverged; try a lower learning rate (lr={self.lr:g} now)")
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        if self.post_step is not None:
            self.post_step(lr)
        self.step_count += 1
        self.last_loss = float(loss.detach())
        if self._bar is not None:
            self._bar.update(1)
            if self.step_count % 20 == 0:
                self._bar.set_postfix(loss=f"{self.last_loss:.4g}")
        return self.last_loss

    def _position(self) -> str:
        """``"epoch e, step s of n"`` of the step about to be taken (1-based)."""
        per_epoch = max(self._steps_per_epoch, 1)
        epoch, step = divmod(self.step_count, per_epoch)
        return f"epoch {epoch + 1}, step {step + 1} of {per_epoch}"

    def run(self, steps: int) -> None:
        for _ in range(max(0, int(steps))):
            self.step()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def check_budget(epochs: Any, lr: Any, batch_size: Any, weight_decay: Any, seed: Any) -> None:
    """Validate the shared options (clear errors naming the option)."""
    from sparsesel.validation import check_int

    check_int(epochs, "epochs", low=0)
    check_int(batch_size, "batch_size", low=1)
    check_int(seed, "seed", low=0)
    for value, name in ((lr, "lr"), (weight_decay, "weight_decay")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def fresh_copy(problem: BlockSparsification) -> nn.Module:
    """A deep copy of the problem's model to train (the problem is never modified)."""
    return copy.deepcopy(problem.model)


def fraction(value: Any, name: str, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (0 <= value <= 1) or (low_open and value == 0):
        raise ValueError(f"{name} must be in {'(0' if low_open else '[0'}, 1], got {value!r}")
    return float(value)


def finish(problem: BlockSparsification, model: nn.Module, block_masks: dict[str, torch.Tensor], *,
           trace: list[dict], info: dict[str, Any] | None = None, gated: bool = True) -> Any:
    """Bake the gates (if any) and package the result (:meth:`BlockSparsification.make_result`)."""
    if gated:
        remove_gates(problem, model, keep_mask=True)
    return problem.make_result(block_masks, model, trace=trace, info=info)


def train_masked(trainer: Trainer, problem: BlockSparsification, block_masks: dict[str, torch.Tensor],
                 steps: int) -> None:
    """Fine-tune ``trainer.model`` (plain weights) for ``steps`` with the blocks masked, then bake."""
    if steps <= 0:
        return
    gates = install_gates(problem, trainer.model)
    set_masks(gates, block_masks)
    trainer.reset_optimizer()
    trainer.run(steps)
    remove_gates(problem, trainer.model, keep_mask=True)
