"""Train with a group penalty on the blocks, then keep the largest blocks."""

from __future__ import annotations

from sparsesel.problems.block_sparsification import BlockSparsification
from sparsesel.registry import register_solver
from sparsesel.result import Result


@register_solver("group_regularized", kinds=(BlockSparsification,),
                 description="train with a group penalty (lasso, log, MCP, SCAD, lq) on block norms, keep the largest blocks, fine-tune")
def group_regularized(problem: BlockSparsification, *, penalty: str = "group_log", lam: float = 1e-3,
                      tau: float = 0.1, gamma: float = 3.0, a: float = 3.7, q: float = 0.5, epochs: int = 20,
                      lr: float = 3e-3, batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0,
                      finetune_fraction: float = 0.2, progress: bool = False) -> Result:
    """Penalised training, then magnitude selection and fine-tuning.

    For ``1 − finetune_fraction`` of the budget the loss is
    ``loss + Σ_weights Σ_blocks p(‖W_b‖)`` with ``p`` the chosen
    :mod:`sparsesel.penalties` penalty (``lam`` and its own parameters:
    ``tau`` for group_log, ``gamma`` for group_mcp, ``a`` for group_scad,
    ``q`` for group_lq; block norms are smoothed as ``sqrt(‖W_b‖² + 1e-12)``
    so that gradients exist at zero). Then the largest blocks are kept and the
    model is fine-tuned without the penalty. ``epochs=0`` prunes by norm.
    """
    import torch

    from solvers import _block_training as bt
    from sparsesel.blocks import block_norms, resolve
    from sparsesel.penalties import PENALTIES, make_penalty

    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {tuple(PENALTIES)}, got {penalty!r}")
    extra = {"group_log": {"tau": tau}, "group_mcp": {"gamma": gamma}, "group_scad": {"a": a},
             "group_lq": {"q": q}}.get(penalty, {})
    pen = make_penalty(penalty, lam=lam, **extra)
    bt.check_budget(epochs, lr, batch_size, weight_decay, seed)
    f = bt.fraction(finetune_fraction, "finetune_fraction")
    model = bt.fresh_copy(problem)
    if epochs == 0:
        masks = problem.select(bt.effective_norms(problem, model))
        return problem.make_result(masks, model, info={"penalty": repr(pen), "epochs": 0})

    def penalty_term(m: torch.nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for name in problem.params:
            module, attr = resolve(m, name)
            total = total + pen.value(block_norms(getattr(module, attr), problem.block_shape, eps=1e-12))
        return total

    trainer = bt.Trainer(problem, model, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                         seed=seed, progress=progress, desc=f"group_regularized ({penalty})")
    train, tune = bt.phase_lengths(trainer.total_steps, [1 - f, f])
    trainer.penalty = penalty_term
    trainer.run(train)
    trace = [{"phase": "penalised", "steps": train, "loss": trainer.last_loss,
              "penalty": float(penalty_term(model).detach())}]
    trainer.penalty = None
    masks = problem.select(bt.effective_norms(problem, model))
    bt.train_masked(trainer, problem, masks, tune)
    trace.append({"phase": "fine-tune", "steps": tune, "loss": trainer.last_loss})
    trainer.close()
    return problem.make_result(masks, model, trace=trace, info={"penalty": repr(pen), "epochs": epochs})
