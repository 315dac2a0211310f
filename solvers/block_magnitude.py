"""Block magnitude pruning: keep the blocks of largest Frobenius norm (the baseline)."""

from __future__ import annotations

from sparsesel.problems.block_sparsification import BlockSparsification
from sparsesel.registry import register_solver
from sparsesel.result import Result

SCHEDULES = ("one_shot", "gradual")


@register_solver("magnitude", kinds=(BlockSparsification,),
                 description="keep the blocks of largest norm: one-shot or gradual (cubic) schedule, then fine-tune")
def magnitude(problem: BlockSparsification, *, schedule: str = "one_shot", epochs: int = 0, lr: float = 3e-3,
              batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0, finetune_fraction: float = 0.2,
              ramp_start: float = 0.2, prune_every: int = 0, progress: bool = False) -> Result:
    """Block magnitude pruning.

    ``epochs=0`` (or no data): prune the model as it is, by block norm.
    With training (``epochs`` passes over the data, the shared budget):

    * ``schedule="one_shot"``: dense training for ``1 − finetune_fraction`` of
      the steps, prune to the target once, fine-tune the rest with the mask;
    * ``schedule="gradual"``: dense until ``ramp_start``, then the density goes
      down on the cubic schedule of Zhu & Gupta (2017) until
      ``1 − finetune_fraction``, re-pruning (among the still kept blocks) every
      ``prune_every`` steps (0: 1/20 of the ramp), then fine-tune.
    """
    from solvers import block_training as bt
    from sparsesel.validation import check_choice

    check_choice(schedule, "schedule", SCHEDULES)
    bt.check_budget(epochs, lr, batch_size, weight_decay, seed)
    f = bt.fraction(finetune_fraction, "finetune_fraction")
    start = bt.fraction(ramp_start, "ramp_start")
    model = bt.fresh_copy(problem)
    if epochs == 0:
        masks = problem.select(bt.effective_norms(problem, model))
        return problem.make_result(masks, model, info={"schedule": "one_shot", "epochs": 0})
    trainer = bt.Trainer(problem, model, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                         seed=seed, progress=progress, desc=f"magnitude ({schedule})")
    total = trainer.total_steps
    gates = bt.install_gates(problem, model)
    trace = []
    if schedule == "one_shot":
        dense, tune = bt.phase_lengths(total, [1 - f, f])
        trainer.run(dense)
        trace.append({"phase": "dense", "steps": dense, "loss": trainer.last_loss})
        masks = problem.select(bt.effective_norms(problem, model))
    else:
        if start > 1 - f:
            raise ValueError(f"ramp_start ({start}) must be <= 1 - finetune_fraction ({1 - f})")
        dense, ramp, tune = bt.phase_lengths(total, [start, 1 - f - start, f])
        trainer.run(dense)
        trace.append({"phase": "dense", "steps": dense, "loss": trainer.last_loss})
        every = prune_every if prune_every > 0 else max(1, ramp // 20)
        masks = bt.gate_masks(gates)
        for t in range(ramp):
            if t % every == 0:
                density = 1 - bt.cubic_sparsity((t + every) / ramp, 1 - problem.density)
                masks = problem.select(bt.effective_norms(problem, model), density=max(density, problem.density), allowed=masks)
                bt.set_masks(gates, masks)
            trainer.step()
        masks = problem.select(bt.effective_norms(problem, model), allowed=masks)
        trace.append({"phase": "gradual pruning", "steps": ramp, "loss": trainer.last_loss})
    bt.set_masks(gates, masks)
    trainer.reset_optimizer()
    trainer.run(tune)
    trace.append({"phase": "fine-tune", "steps": tune, "loss": trainer.last_loss})
    trainer.close()
    return bt.finish(problem, model, masks, trace=trace, info={"schedule": schedule, "epochs": epochs})
