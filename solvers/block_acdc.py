"""ACDC: alternating compressed / decompressed training (Peste et al. 2021), on blocks."""

from __future__ import annotations

from sparsesel.problems.block_sparsification import BlockSparsification
from sparsesel.registry import register_solver
from sparsesel.result import Result


def acdc_schedule(warmup_fraction: float, n_cycles: int, final_fraction: float) -> list[tuple[str, float]]:
    """Phases as ``(kind, fraction of the budget)``: dense warm-up, ``n_cycles`` × (sparse, dense), final sparse."""
    middle = 1.0 - warmup_fraction - final_fraction
    if middle < 0:
        raise ValueError(f"warmup_fraction + final_fraction must be <= 1, got {warmup_fraction} + {final_fraction}")
    phases = [("dense", warmup_fraction)]
    for _ in range(n_cycles):
        phases += [("sparse", middle / (2 * n_cycles)), ("dense", middle / (2 * n_cycles))]
    phases.append(("final", final_fraction))
    return phases


@register_solver("acdc", kinds=(BlockSparsification,),
                 description="ACDC: alternating dense / block-sparse phases (magnitude top-k), then sparse fine-tune")
def acdc(problem: BlockSparsification, *, epochs: int = 20, lr: float = 3e-3, batch_size: int = 64,
         weight_decay: float = 0.0, seed: int = 0, warmup_fraction: float = 0.2, n_cycles: int = 4,
         final_fraction: float = 0.2, progress: bool = False) -> Result:
    """ACDC on blocks: dense warm-up, ``n_cycles`` × (sparse, dense), a final sparse phase.

    Each sparse phase keeps the top blocks by norm at its start (masking: the
    pruned blocks keep their values and come back in the next dense phase); the
    optimizer is reset at every phase. ``epochs=0`` prunes by block norm.
    """
    from solvers import block_training as bt
    from sparsesel.validation import check_int

    bt.check_budget(epochs, lr, batch_size, weight_decay, seed)
    check_int(n_cycles, "n_cycles", low=0)
    phases = acdc_schedule(bt.fraction(warmup_fraction, "warmup_fraction"), n_cycles,
                           bt.fraction(final_fraction, "final_fraction"))
    model = bt.fresh_copy(problem)
    if epochs == 0:
        masks = problem.select(bt.effective_norms(problem, model))
        return problem.make_result(masks, model, info={"epochs": 0})
    trainer = bt.Trainer(problem, model, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                         seed=seed, progress=progress, desc="acdc")
    gates = bt.install_gates(problem, model)
    lengths = bt.phase_lengths(trainer.total_steps, [fr for _, fr in phases])
    trace, masks = [], None
    for (kind, _), steps in zip(phases, lengths):
        if kind == "dense":
            bt.set_masks(gates, None)
        else:
            masks = problem.select(bt.effective_norms(problem, model))
            bt.set_masks(gates, masks)
        trainer.reset_optimizer()
        trainer.run(steps)
        trace.append({"phase": kind, "steps": steps, "loss": trainer.last_loss})
    trainer.close()
    if masks is None or lengths[-1] == 0:  # the budget ended in a dense phase
        masks = problem.select(bt.effective_norms(problem, model))
    return bt.finish(problem, model, masks, trace=trace, info={"epochs": epochs, "schedule": phases})
