"""SequentialAttention++ (Yasuda, Axiotis, Fu, Bateni, Mirrokni 2024) for block sparsification.

Logit weight decay (the paper's "weight decay, including on the logits").
Always on: ``logit_decay`` is SA++'s own decoupled (AdamW) decay of the
logits towards uniform attention, independent of the shared
``weight_decay`` on the network's weights (which every method gets).
Default ``0.01``, chosen on the digits tasks' validation split (the last 20%
of the training data; MLP and CNN; blocks 4×4/8×8 at 90%, 8×8 at 95%,
16×16 at 80%; 5 epochs; seed 0), grid {0, 1e-3, 1e-2, 0.1, 1}: mean
validation accuracy 93.15 / 92.73 / 93.15 / 92.45 / 88.43 with
``score="attention"`` and 93.15 / 92.59 / 92.96 / 92.92 / 88.56 with
``"effective"`` — flat (within 2 validation samples) up to 0.1, clearly
worse at 1. (A coupled ℓ2 penalty on the logits in the loss, tried as an
alternative, did not change the wide-linear findings below.)

Block scores (``score``). The paper ranks blocks by ``A`` alone
(``score="attention"``). But ``Ŵ = W ⊙ A`` is invariant under
``W_b → W_b/α, A_b → α·A_b``: ``A`` carries the block's importance only
where ℓ2 weight decay on both ``W`` and the logits pins this direction (the
paper's Lemma 2.1 reading). Decay on the logits alone cannot: it pulls
``A`` towards 1 and lets ``W`` absorb the scale. With Adam, moreover, every
coordinate of ``W`` moves about one learning rate per step, so blocks that
need large weights (inputs of small scale) keep a consistent "scale me up"
gradient on their logit for longest: without decay on ``W`` the attention
ends up ranking blocks by the weight size they need, not by their
importance. Measured on the benchmark's wide-linear task (``weight_decay=0``
chosen by the dense model, input scales 0.2-5), the support's share of the
best-possible true importance at 8×8 / 90%: 0.79 for ``"effective"``
(= magnitude's), 0.28-0.37 for ``"attention"`` with logit decay 1e-4, 0.01
(decoupled or coupled ℓ2), 0.1 or 1; 4×4 / 90%: 0.78 against 0.03-0.45.
So ``"attention"`` stays an option and the default is ``score="effective"``,
which ranks blocks by ``A_b·‖W_b‖ = ‖Ŵ_b‖``, the block of the weight the
network actually uses: invariant under the rescaling, and ordered like
``A`` at the ℓ2-balanced point that weight decay selects (there ``A_b``
grows with ``‖Ŵ_b‖``). On digits (``weight_decay=0.03``) the two scores tie
(validation means above). The paper-theory test instances (6 blocks,
full-batch, features of very different scales) need ``"attention"``:
``"effective"`` is fooled by feature scales there as magnitude is.

What the attention learns on the wide-linear task (diagnosed by tracking
``A`` over training; 3 seeds, 8×8 blocks):

* with input scales 0.2–5 it learns the inverse of the scale, not the
  importance: at initialisation every block's output is noise, which the
  loss punishes most for high-scale inputs, so their logits fall within
  ~20 steps and the softmax hands their share to low-scale blocks, true or
  not (mean logit +2.2 for scales < 0.5, −1.5 for > 2 after 60 steps; the
  top-k of ``A`` then holds none of the true importance). At any
  equilibrium of loss plus weight decay ``A`` is a function of the weights
  alone (Lemma 2.1's penalty on ``W ⊙ A``), so no setting makes it see
  input scale; ``logit_lr``, warm-up length, clipping and weight decay on
  ``W`` only move the support share between 0.1 and 0.8;
* with all scales 1, ``"attention"`` still keeps only 0.76 of the true
  importance at 90% sparsity (magnitude and ``"effective"``: 1.00) because
  masked blocks stay in the softmax, where ``∂ℓ/∂A = 0``, while kept
  blocks see a small positive mean gradient from the noise of ``W``:
  attention drains into the pruned blocks during sparse phases (the top-k
  of ``A`` holds 0.75 of the importance after the first dense phase, 0.08
  after the first sparse one). A softmax over the kept blocks only removes
  the drain but costs 5–22 accuracy points on the digits tasks, so the
  paper's form (softmax over all blocks) stays.
"""

from __future__ import annotations

import functools

from sparsesel.problems.block_sparsification import BlockSparsification
from sparsesel.registry import register_solver
from sparsesel.result import Result
from sparsesel.schedules import sapp_schedule  # noqa: F401 - re-exported: the schedule lives with the core


@register_solver("sequential_attention_pp", kinds=(BlockSparsification,),
                 description="SequentialAttention++: block attention logits + ACDC phases with gradual sparsification (Alg. 1)")
def sequential_attention_pp(problem: BlockSparsification, *, epochs: int = 20, lr: float = 3e-3,
                            batch_size: int = 64, weight_decay: float = 0.0, seed: int = 0,
                            warmup_fraction: float = 0.2, n_cycles: int = 4, final_fraction: float = 0.2,
                            c: float = 4.0, logit_decay: float = 1e-2, logit_lr: float = 0.1,
                            clip: bool = True, sparsification: bool = True, score: str = "effective",
                            progress: bool = False) -> Result:
    """SequentialAttention++ (the paper's Alg. 1 with its sparsification phase and tricks).

    Each prunable weight gets one logit per block; the weight used is
    ``Ŵ = W ⊙ A ⊙ mask`` with ``A = n·softmax(logits)`` (``n`` blocks, so the
    mean attention is 1), clipped to ``[density, 1/density]`` when ``clip``.
    (The issue and the reference notes write the bound on ``A`` as
    ``[n·density, n/density]``; taken literally that forces every
    ``A ≥ n·density`` (> 1 once two blocks are kept), contradicting the mean of 1. It is read as a bound on
    the softmax ``s = A/n ∈ [density/n, 1/(n·density)]``, i.e. the mean-1 ``A``
    in ``[density, 1/density]``.)

    Phases (:func:`sapp_schedule`): dense (mask all ones; mask ← top-k of the
    block scores, see below), sparsification (sparsity rises on
    ``s·(1 − e^{−cu})/(1 − e^{−c})``, ``u ∈ [0, 1]``, pruning the lowest scores among the still kept blocks at
    every step), sparse (the stored mask), and a final fine-tune in which ``A``
    is baked into ``W`` and only ``W`` trains under the mask. The optimizer is
    reset at every phase. The logits have their own peak learning rate
    ``logit_lr`` (following the same cosine decay as ``lr``): with Adam a
    parameter moves about one learning rate per step whatever its gradient's
    scale, so the logits need a learning rate of their own for the attention to
    separate within short budgets (0.1 works from 10 to 1000s of steps in our
    benchmark; the paper does not state one). ``epochs=0`` prunes by block
    norm (``A = 1``).

    Logit weight decay, the choice of block scores and what the attention learns are discussed, with
    their measurements, in this module's docstring.
    """
    from solvers import block_training as bt

    _check_options(epochs, lr, batch_size, weight_decay, seed, score, n_cycles, c, logit_decay, logit_lr)
    phases = sapp_schedule(bt.fraction(warmup_fraction, "warmup_fraction"), n_cycles,
                           bt.fraction(final_fraction, "final_fraction"), bool(sparsification))
    model = bt.fresh_copy(problem)
    info = {"epochs": epochs, "schedule": phases, "c": c, "score": score}
    if epochs == 0:
        masks = problem.select(bt.effective_norms(problem, model))
        return problem.make_result(masks, model, info=info)
    bounds = (problem.density, 1.0 / problem.density) if clip else None
    trainer = bt.Trainer(problem, model, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                         seed=seed, progress=progress, desc="sequential_attention_pp")
    gates = bt.install_gates(problem, model, attention=True, clip=bounds)
    trainer.add_group([g.logits for g in gates.values()], weight_decay=float(logit_decay),
                      lr_scale=float(logit_lr) / lr if lr > 0 else 0.0)
    lengths = bt.phase_lengths(trainer.total_steps, [fr for _, fr in phases])

    scores = functools.partial(_block_scores, problem, model, gates, score)
    trace, gated = [], True
    masks = problem.select(scores())
    for (kind, _), steps in zip(phases, lengths):
        if kind == "final":
            masks = bt.gate_masks(gates) if trace and trace[-1]["phase"] != "dense" else problem.select(scores())
            info["attention"] = {n: a.clone() for n, a in _attention(gates).items()}
            bt.remove_gates(problem, model, keep_mask=True)  # W ← W ⊙ A
            gated = False
            bt.train_masked(trainer, problem, masks, steps)
            trace.append({"phase": kind, "steps": steps, "loss": trainer.last_loss})
            break
        trainer.reset_optimizer()
        if kind == "dense":
            bt.set_masks(gates, None)
            trainer.run(steps)
            masks = problem.select(scores())  # mask ← top_k(A)
        elif kind == "sparse":
            bt.set_masks(gates, masks)
            trainer.run(steps)
        else:  # sparsification: backward selection by attention on the exponential schedule
            masks = _sparsification_phase(problem, trainer, gates, scores, steps, c)
        trace.append({"phase": kind, "steps": steps, "loss": trainer.last_loss})
    trainer.close()
    if gated:  # no final phase (final_fraction = 0)
        info["attention"] = {n: a.clone() for n, a in _attention(gates).items()}
        bt.remove_gates(problem, model, keep_mask=True)
    return problem.make_result(masks, model, trace=trace, info=info)


def _check_options(epochs, lr, batch_size, weight_decay, seed, score, n_cycles, c, logit_decay,  # noqa: ANN001
                   logit_lr) -> None:  # noqa: ANN001
    """Refuse a bad option of :func:`sequential_attention_pp`, naming it."""
    from solvers import block_training as bt
    from sparsesel.validation import check_choice, check_int

    bt.check_budget(epochs, lr, batch_size, weight_decay, seed)
    check_choice(score, "score", ("effective", "attention"))
    check_int(n_cycles, "n_cycles", low=1)
    for value, name in ((c, "c"), (logit_decay, "logit_decay"), (logit_lr, "logit_lr")):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if c == 0:
        raise ValueError("c must be > 0")


def _attention(gates: dict) -> dict:
    """Each gated weight's attention ``A`` per block (detached)."""
    return {n: g.attention().detach() for n, g in gates.items()}


def _block_scores(problem: BlockSparsification, model, gates: dict, score: str) -> dict:  # noqa: ANN001
    """Block scores for the top-k: ``‖W_b ⊙ A_b‖`` (``score="effective"``) or ``A`` (``"attention"``, the paper's)."""
    if score == "attention":
        return _attention(gates)
    from sparsesel.blocks import block_norms, resolve

    out = {}
    for n, g in gates.items():
        module, attr = resolve(model, n)
        stored = module.parametrizations[attr].original.detach()
        out[n] = g.attention().detach() * block_norms(stored, problem.block_shape)
    return out


def _sparsification_phase(problem: BlockSparsification, trainer, gates: dict, scores, steps: int,  # noqa: ANN001
                          c: float) -> dict:
    """Backward selection by block score, sparsity rising on the exponential schedule over ``steps``; the masks."""
    from solvers import block_training as bt

    current = {n: torch_ones_like(g.block_mask) for n, g in gates.items()}
    bt.set_masks(gates, None)
    for t in range(steps):
        u = (t + 1) / steps
        target = None if t == steps - 1 else 1.0 - bt.exponential_sparsity(u, 1.0 - problem.density, c)
        current = problem.select(scores(), density=target, allowed=current)
        bt.set_masks(gates, current)
        trainer.step()
    if steps == 0:
        current = problem.select(scores())
        bt.set_masks(gates, current)
    return current


def torch_ones_like(x):  # noqa: ANN001, ANN201 - tiny helper, keeps torch out of module import time
    import torch

    return torch.ones_like(x, dtype=torch.bool)

