"""SA++ and ACDC phase mechanics observed from outside, against the closed forms of issue 6.

The solvers run unchanged; ``Trainer.step`` and ``torch.optim.AdamW`` are wrapped
(monkeypatch) to record, before every optimizer step, the block mask the forward
pass uses, the attention logits, the weight the network computes with and which
optimizer instance takes the step (with its state size). Expectations are
computed here by hand from the documented rules, never from the solvers:

* budget: ``T = epochs · ceil(n / batch_size)`` steps; phase ``i`` ends at step
  ``round(T · (f_1 + … + f_i))`` for the documented fractions;
* SA++ (``warmup_fraction=0.2, n_cycles=2, final_fraction=0.2``): dense 0.2,
  sparsification 0.075, sparse 0.075, dense 0.15, sparsification 0.3, final 0.2
  (each (sparse, dense) cycle of ACDC has its sparse half split into a
  sparsification and a sparse phase; the last cycle is one sparsification phase);
* sparsification: the ``t``-th of ``T_s`` steps (``t = 1..T_s``) uses
  ``round(n · (1 − sparsity(t/T_s)))`` blocks (halves up, at least 1) with
  ``sparsity(u) = s·(1 − e^{−cu})/(1 − e^{−c})``, ``s = 1 − density``, ``c = 4``;
* AdamW with a zero gradient only decays: ``L ← L · (1 − lr_t · decay)`` with
  ``lr_t = logit_lr · (0.1 + 0.45·(1 + cos(π t / T)))`` (cosine from the peak to a tenth);
* ACDC: dense warm-up, ``n_cycles`` × (sparse, dense), final sparse; each sparse
  phase keeps the top blocks by norm at its start; a fresh optimizer per phase.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import sparsesel as ss
from solvers import block_training as bt

torch.set_num_threads(1)

N_SAMPLES, BATCH, EPOCHS = 60, 5, 10
TOTAL = EPOCHS * math.ceil(N_SAMPLES / BATCH)  # 120 optimizer steps
BLOCK = (2, 2)
GRID = (32 // 2, 16 // 2)  # the 32x16 weight of Linear(16, 32) in 2x2 blocks
N_BLOCKS = GRID[0] * GRID[1]  # 128
DENSITY = 0.1
C = 4.0


def kept_count(density, n=N_BLOCKS):
    """``round(density · n)``, halves up, within [1, n] (the problem's documented budget)."""
    return min(n, max(1, math.floor(density * n + 0.5)))


def sparsity(u, s=1.0 - DENSITY, c=C):
    return s * (1.0 - math.exp(-c * u)) / (1.0 - math.exp(-c))


def boundaries(fractions, total=TOTAL):
    """Phase boundaries ``[0, round(T·F_1), …, T]`` (``F_i`` the cumulative fractions)."""
    out, acc = [0], 0.0
    for f in fractions:
        acc += f
        out.append(round(acc * total))
    out[-1] = total
    return out


SAPP_PHASES = ["dense", "sparsification", "sparse", "dense", "sparsification", "final"]
SAPP_BOUNDS = boundaries([0.2, 0.075, 0.075, 0.15, 0.3, 0.2])
ACDC_PHASES = ["dense", "sparse", "dense", "sparse", "dense", "final"]
ACDC_BOUNDS = boundaries([0.2, 0.15, 0.15, 0.15, 0.15, 0.2])


def test_the_hand_computed_boundaries():
    assert SAPP_BOUNDS == [0, 24, 33, 42, 60, 96, 120]
    assert ACDC_BOUNDS == [0, 24, 42, 60, 78, 96, 120]


def make_problem(seed=0, loss="cross_entropy"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_SAMPLES, 16)).astype(np.float32)
    y = X[:, :3].argmax(axis=1).astype(np.int64)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
    return ss.BlockSparsification(model, BLOCK, density=DENSITY, data=(X, y), loss=loss, params=["0.weight"])


def block_norms_naive(weight):
    """``(R, C)`` Frobenius norms of the 2x2 blocks, by a loop."""
    out = torch.zeros(GRID)
    for r in range(GRID[0]):
        for c in range(GRID[1]):
            out[r, c] = weight[2 * r:2 * r + 2, 2 * c:2 * c + 2].norm()
    return out


def zero_outside(weight, block_mask):
    """Whether every block of ``weight`` outside ``block_mask`` is zero."""
    for r in range(GRID[0]):
        for c in range(GRID[1]):
            if not block_mask[r, c] and torch.any(weight[2 * r:2 * r + 2, 2 * c:2 * c + 2] != 0):
                return False
    return True


@pytest.fixture
def recorder(monkeypatch):
    """Record, before each optimizer step, what the step will use (see the module docstring)."""
    log = []
    created = []

    class CountingAdamW(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            created.append(self)
            self.serial = len(created)

    monkeypatch.setattr(torch.optim, "AdamW", CountingAdamW)
    original_step = bt.Trainer.step

    def step(self):
        layer = self.model.get_submodule("0")
        gate = layer.parametrizations.weight[0]
        log.append({
            "step": self.step_count,
            "mask": gate.block_mask.detach().bool().clone(),
            "logits": None if gate.logits is None else gate.logits.detach().clone(),
            "weight": layer.weight.detach().clone(),  # the weight the forward pass uses
            "stored": layer.parametrizations.weight.original.detach().clone(),
            "optimizer": getattr(self.optimizer, "serial", None),
            "state_size": None if self.optimizer is None else len(self.optimizer.state),
            "lr": self.current_lr(),
        })
        return original_step(self)

    monkeypatch.setattr(bt.Trainer, "step", step)
    return log


def phase_of(step, kinds, bounds):
    for kind, start, end in zip(kinds, bounds[:-1], bounds[1:]):
        if start <= step < end:
            return kind, step - start, end - start
    raise AssertionError(step)  # pragma: no cover


def run_sapp(**options):
    problem = make_problem()
    settings = {"epochs": EPOCHS, "batch_size": BATCH, "lr": 1e-2, "n_cycles": 2, "warmup_fraction": 0.2,
                "final_fraction": 0.2, "c": C}
    settings.update(options)
    return problem, ss.solve(problem, solver="sequential_attention_pp", **settings)


def test_sapp_sparsification_follows_the_exponential_closed_form(recorder):
    _, result = run_sapp()
    assert [entry["step"] for entry in recorder] == list(range(TOTAL))
    last_sparsification_mask = None
    for entry in recorder:
        kind, index, length = phase_of(entry["step"], SAPP_PHASES, SAPP_BOUNDS)
        kept = int(entry["mask"].sum())
        if kind == "dense":
            assert kept == N_BLOCKS, entry["step"]
        elif kind == "sparsification":
            t = index + 1  # the t-th step of the phase uses sparsity(t / T_s)
            exact = N_BLOCKS * (1.0 - sparsity(t / length))
            assert abs(exact - math.floor(exact) - 0.5) > 1e-6  # no rounding tie in this instance
            assert kept == kept_count(1.0 - sparsity(t / length)), (entry["step"], kept, exact)
            if index > 0:  # backward selection: a block once pruned stays pruned within the phase
                assert not torch.any(entry["mask"] & ~previous)
            previous = entry["mask"]
            last_sparsification_mask = entry["mask"]
        elif kind == "sparse":  # the mask stored at the end of the sparsification phase
            assert torch.equal(entry["mask"], last_sparsification_mask)
        else:
            assert kept == kept_count(DENSITY)
    # the phases' ends reach the target density exactly
    assert kept_count(1.0 - sparsity(1.0)) == kept_count(DENSITY) == 13
    assert sum(len(k) for _, k in result.selected) == 13
    # the closed form is concave: it prunes fastest at the start (first steps of the 36-step phase)
    counts = [int(e["mask"].sum()) for e in recorder if SAPP_BOUNDS[4] <= e["step"] < SAPP_BOUNDS[5]]
    drops = [a - b for a, b in zip([N_BLOCKS] + counts[:-1], counts)]
    assert drops[0] > drops[-1] and counts[0] == kept_count(1 - sparsity(1 / 36)) == 116


def test_sapp_resets_the_optimizer_at_every_phase_start(recorder):
    run_sapp()
    serials = [entry["optimizer"] for entry in recorder]
    fresh = [entry["step"] for entry in recorder if entry["state_size"] == 0]
    assert fresh == SAPP_BOUNDS[:-1]  # an optimizer without state exactly at each phase start
    changes = [e["step"] for i, e in enumerate(recorder) if i == 0 or serials[i] != serials[i - 1]]
    assert changes == SAPP_BOUNDS[:-1]
    assert len(set(serials)) == len(SAPP_PHASES)  # one new optimizer per phase, never reused


def test_sapp_decays_the_logits_with_zero_gradient(recorder, monkeypatch):
    """Zero loss gradient: the logits only decay, ``L_k = L_0 · Π_{j<k} (1 − logit_lr·κ_j·decay)``."""
    initial = torch.randn(GRID, generator=torch.Generator().manual_seed(1))
    original_install = bt.install_gates

    def install_with_logits(problem, model, **options):
        gates = original_install(problem, model, **options)
        with torch.no_grad():
            for gate in gates.values():
                if gate.logits is not None:
                    gate.logits.copy_(initial)
        return gates

    monkeypatch.setattr(bt, "install_gates", install_with_logits)

    def flat_loss(output, target):
        return (output * 0.0).sum()  # gradients exist and are exactly zero

    logit_lr, decay = 0.1, 0.5
    problem = make_problem(loss=flat_loss)
    start_weight = problem.model[0].weight.detach().clone()
    ss.solve(problem, solver="sequential_attention_pp", epochs=EPOCHS, batch_size=BATCH, lr=1e-2, n_cycles=2,
             logit_lr=logit_lr, logit_decay=decay, weight_decay=0.0)
    gated = [e for e in recorder if e["step"] < SAPP_BOUNDS[-2]]  # the logits exist until the final phase
    expected = initial.clone().double()
    for entry in gated:
        assert torch.allclose(entry["logits"].double(), expected, rtol=1e-4, atol=1e-6), entry["step"]
        kappa = 0.1 + 0.45 * (1.0 + math.cos(math.pi * entry["step"] / TOTAL))
        expected = expected * (1.0 - logit_lr * kappa * decay)
    assert float(gated[-1]["logits"].abs().max()) < 0.2 * float(initial.abs().max())  # a visible decay
    # the network's weights (weight_decay=0, zero gradient) do not move: the decay is the logits' own
    for entry in gated:
        assert torch.equal(entry["stored"], start_weight)
    recorder.clear()
    ss.solve(make_problem(loss=flat_loss), solver="sequential_attention_pp", epochs=EPOCHS, batch_size=BATCH,
             lr=1e-2, n_cycles=2, logit_lr=logit_lr, logit_decay=0.0)
    for entry in recorder:
        if entry["step"] < SAPP_BOUNDS[-2]:
            assert torch.equal(entry["logits"], initial)  # no decay: the logits stay where they were


def test_sapp_final_fine_tune_keeps_the_final_mask(recorder):
    problem, result = run_sapp()
    start = SAPP_BOUNDS[-2]
    final_mask = recorder[start - 1]["mask"]  # the mask the last sparsification step ended with
    assert int(final_mask.sum()) == kept_count(DENSITY)
    fine_tune = [e for e in recorder if e["step"] >= start]
    assert len(fine_tune) == TOTAL - start == 24
    for entry in fine_tune:
        assert entry["logits"] is None  # the attention is baked into W; only W trains
        assert torch.equal(entry["mask"], final_mask), entry["step"]
        assert zero_outside(entry["weight"], final_mask)
    # the kept blocks do train during the fine-tune
    assert not torch.equal(fine_tune[0]["stored"] * 1, fine_tune[-1]["stored"] * 1)
    expected_mask = final_mask.repeat_interleave(2, 0).repeat_interleave(2, 1)
    assert torch.equal(result.info["masks"]["0.weight"], expected_mask)
    returned = result.info["model"][0].weight.detach()
    assert zero_outside(returned, final_mask)


def test_acdc_alternates_dense_and_sparse_in_the_documented_order(recorder):
    problem = make_problem()
    result = ss.solve(problem, solver="acdc", epochs=EPOCHS, batch_size=BATCH, lr=1e-2, n_cycles=2,
                      warmup_fraction=0.2, final_fraction=0.2)
    assert [t["phase"] for t in result.trace] == ACDC_PHASES
    assert [t["steps"] for t in result.trace] == [b - a for a, b in zip(ACDC_BOUNDS[:-1], ACDC_BOUNDS[1:])]
    assert [e["step"] for e in recorder] == list(range(TOTAL))
    fresh = [e["step"] for e in recorder if e["state_size"] == 0]
    assert fresh == ACDC_BOUNDS[:-1]  # the optimizer is reset at every phase
    for entry in recorder:
        kind, index, _ = phase_of(entry["step"], ACDC_PHASES, ACDC_BOUNDS)
        if kind == "dense":
            assert int(entry["mask"].sum()) == N_BLOCKS, entry["step"]
            continue
        if index == 0:  # a sparse phase keeps the top-k blocks by norm at its start
            norms = block_norms_naive(entry["stored"])
            top = torch.zeros(N_BLOCKS, dtype=torch.bool)
            top[torch.argsort(norms.reshape(-1), descending=True)[:kept_count(DENSITY)]] = True
            assert torch.equal(entry["mask"], top.reshape(GRID)), entry["step"]
            phase_mask = entry["mask"]
        assert torch.equal(entry["mask"], phase_mask)  # fixed within the phase
        assert zero_outside(entry["weight"], phase_mask)
    # pruned blocks keep their values and come back in the next dense phase
    before_sparse = recorder[ACDC_BOUNDS[2] - 1]  # the last step of the first sparse phase
    next_dense = recorder[ACDC_BOUNDS[2]]
    assert not zero_outside(next_dense["weight"], before_sparse["mask"])
