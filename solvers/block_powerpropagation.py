"""Block Powerpropagation: every block multiplied by its own norm, then magnitude pruning."""

from __future__ import annotations

from sparsesel.problems.block_sparsification import BlockSparsification
from sparsesel.registry import register_solver
from sparsesel.result import Result


@register_solver("powerpropagation", kinds=(BlockSparsification,),
                 description="block Powerpropagation (W_b = V_b·‖V_b‖^(alpha-1)), keep the largest blocks, fine-tune")
def powerpropagation(problem: BlockSparsification, *, alpha: float = 2.0, epochs: int = 20, lr: float = 3e-3,
                     batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0,
                     finetune_fraction: float = 0.2, progress: bool = False) -> Result:
    """Block Powerpropagation (Schwarz et al. 2021, block form of the SA++ paper, Lemma 2.3).

    Each prunable weight is reparametrised as ``W_b = V_b·‖V_b‖^{α−1}``
    (``α = 2``: the block times its Frobenius norm, equivalent to a group-lasso
    penalty); initialised so that ``W`` is unchanged. After ``1 −
    finetune_fraction`` of the budget the blocks of largest ``‖W_b‖`` are kept
    and the model is fine-tuned with plain weights and the mask.
    """
    from solvers import block_training as bt

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 1:
        raise ValueError(f"alpha must be a number >= 1, got {alpha!r}")
    bt.check_budget(epochs, lr, batch_size, weight_decay, seed)
    f = bt.fraction(finetune_fraction, "finetune_fraction")
    model = bt.fresh_copy(problem)
    if epochs == 0:
        masks = problem.select(bt.effective_norms(problem, model))
        return problem.make_result(masks, model, info={"alpha": alpha, "epochs": 0})
    trainer = bt.Trainer(problem, model, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                         seed=seed, progress=progress, desc="powerpropagation")
    train, tune = bt.phase_lengths(trainer.total_steps, [1 - f, f])
    bt.install_gates(problem, model, power_alpha=float(alpha))
    trainer.reset_optimizer()
    trainer.run(train)
    trace = [{"phase": "powerprop", "steps": train, "loss": trainer.last_loss}]
    masks = problem.select(bt.effective_norms(problem, model))
    bt.remove_gates(problem, model, keep_mask=True)
    bt.train_masked(trainer, problem, masks, tune)
    trace.append({"phase": "fine-tune", "steps": tune, "loss": trainer.last_loss})
    trainer.close()
    return problem.make_result(masks, model, trace=trace, info={"alpha": alpha, "epochs": epochs})
