"""Train with a group penalty on the blocks, then keep the largest blocks."""

from __future__ import annotations

import functools

from sparsesel.problems.block_sparsification import BlockSparsification
from sparsesel.registry import register_solver
from sparsesel.result import Result

METHODS = ("proximal", "subgradient")


@register_solver("group_regularized", kinds=(BlockSparsification,),
                 description="train with a group penalty (lasso, log, MCP, SCAD, lq) on block norms by proximal gradient, keep the largest blocks, fine-tune")
def group_regularized(problem: BlockSparsification, *, penalty: str = "group_log", lam: float = 1e-3,
                      tau: float = 0.1, gamma: float = 3.0, a: float = 3.7, q: float = 0.5, epochs: int = 20,
                      lr: float = 3e-3, batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0,
                      finetune_fraction: float = 0.2, method: str = "proximal", optimizer: str = "adamw",
                      progress: bool = False) -> Result:
    """Penalised training, then magnitude selection and fine-tuning.

    For ``1 − finetune_fraction`` of the budget the model is trained on
    ``loss + Σ_weights Σ_blocks p(‖W_b‖)`` with ``p`` the chosen
    :mod:`sparsesel.penalties` penalty (``lam`` and its own parameters:
    ``tau`` for group_log, ``gamma`` for group_mcp, ``a`` for group_scad,
    ``q`` for group_lq). Then the largest blocks are kept and the model is
    fine-tuned without the penalty. ``epochs=0`` prunes by norm.

    ``method="proximal"`` (default): after every optimizer step on the loss,
    every block is replaced by the penalty's proximal operator with step size
    the current learning rate, ``W_b ← prox_{lr·p}(W_b)`` (closed forms of
    :mod:`sparsesel.penalties`); blocks reach exact zeros. With
    ``optimizer="sgd"`` this is proximal gradient descent (ISTA), which for the
    group lasso on least squares converges to its minimiser when ``lr ≤ 1/L``;
    with the default AdamW it is the usual proximal-Adam heuristic.
    ``method="subgradient"``: the penalty is added to the loss and
    differentiated (block norms smoothed as ``sqrt(‖W_b‖² + 1e-12)``); blocks
    shrink but never reach zero exactly.

    Raises
    ------
    ValueError
        Unknown penalty/method/optimizer; ``lr`` too large for the prox of
        MCP (``lr < gamma``) or SCAD (``lr < a − 1``).
    """
    import torch

    from solvers import block_training as bt
    from sparsesel.blocks import block_norms

    pen = _make_penalty(penalty, method, lam=lam, tau=tau, gamma=gamma, a=a, q=q)
    bt.check_budget(epochs, lr, batch_size, weight_decay, seed)
    f = bt.fraction(finetune_fraction, "finetune_fraction")
    model = bt.fresh_copy(problem)
    info = {"penalty": repr(pen), "epochs": epochs, "method": method, "optimizer": optimizer}
    if epochs == 0:
        masks = problem.select(bt.effective_norms(problem, model))
        return problem.make_result(masks, model, info=info)
    trainer = bt.Trainer(problem, model, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                         seed=seed, progress=progress, desc=f"group_regularized ({penalty})", optimizer=optimizer)
    train, tune = bt.phase_lengths(trainer.total_steps, [1 - f, f])
    if method == "proximal":
        for step_size in {lr, trainer.current_lr()}:  # fail early (MCP/SCAD need a small step)
            pen.prox_norms([1.0], step_size)
        trainer.post_step = functools.partial(_proximal_step, problem, model, pen)
    else:
        trainer.penalty = functools.partial(_penalty_term, problem, pen)
    trainer.run(train)
    with torch.no_grad():
        zero_blocks = sum(int((block_norms(w, problem.block_shape) == 0).sum()) for w in _weights(problem, model))
    trace = [{"phase": f"penalised ({method})", "steps": train, "loss": trainer.last_loss,
              "penalty": float(_penalty_term(problem, pen, model).detach()), "zero_blocks": zero_blocks}]
    trainer.penalty = None
    trainer.post_step = None
    masks = problem.select(bt.effective_norms(problem, model))
    bt.train_masked(trainer, problem, masks, tune)
    trace.append({"phase": "fine-tune", "steps": tune, "loss": trainer.last_loss})
    trainer.close()
    return problem.make_result(masks, model, trace=trace, info=info)


def _make_penalty(penalty: str, method: str, *, lam: float, tau: float, gamma: float, a: float, q: float):  # noqa: ANN202
    """The :mod:`sparsesel.penalties` penalty named ``penalty`` with its own parameter; check ``method``."""
    from sparsesel.penalties import PENALTIES, make_penalty
    from sparsesel.validation import check_choice

    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {tuple(PENALTIES)}, got {penalty!r}")
    check_choice(method, "method", METHODS)
    extra = {"group_log": {"tau": tau}, "group_mcp": {"gamma": gamma}, "group_scad": {"a": a},
             "group_lq": {"q": q}}.get(penalty, {})
    return make_penalty(penalty, lam=lam, **extra)


def _weights(problem: BlockSparsification, model) -> list:  # noqa: ANN001
    """The prunable weight tensors of ``model`` (the problem's ``params``)."""
    from sparsesel.blocks import resolve

    out = []
    for name in problem.params:
        module, attr = resolve(model, name)
        out.append(getattr(module, attr))
    return out


def _penalty_term(problem: BlockSparsification, pen, model):  # noqa: ANN001, ANN202
    """``Σ_weights Σ_blocks p(‖W_b‖)``, block norms smoothed by ``1e-12`` (differentiable), a 0-d tensor."""
    import torch

    from sparsesel.blocks import block_norms

    total = torch.zeros(())
    for w in _weights(problem, model):
        total = total + pen.value(block_norms(w, problem.block_shape, eps=1e-12))
    return total


def _proximal_step(problem: BlockSparsification, model, pen, step: float) -> None:  # noqa: ANN001
    """Replace every block by the penalty's proximal operator with step ``step``: ``W_b ← prox_{step·p}(W_b)``."""
    import torch

    from sparsesel.blocks import block_norms, expand_block_values

    with torch.no_grad():
        for w in _weights(problem, model):
            norms = block_norms(w, problem.block_shape).double()
            shrunk = torch.as_tensor(pen.prox_norms(norms.numpy(), step))
            factor = torch.where(norms > 0, shrunk / norms.clamp_min(1e-300), torch.zeros_like(norms))
            w.mul_(expand_block_values(factor.to(w.dtype), w.shape, problem.block_shape))
