"""The training solvers: shared budget, determinism, schedules, data forms, SA++ mechanics."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import sparsesel as ss
from solvers import block_training as bt
from solvers.block_sequential_attention_pp import sapp_schedule

torch.set_num_threads(1)
TRAINING = ["magnitude", "acdc", "group_regularized", "powerpropagation", "sequential_attention_pp"]


def classification(seed=0, n=96):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 16)).astype(np.float32)
    y = (X[:, :3].argmax(axis=1)).astype(np.int64)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 3))
    return model, X, y


@pytest.mark.parametrize("solver", TRAINING)
def test_same_seed_same_answer_and_training_helps(solver):
    model, X, y = classification()
    problem = ss.BlockSparsification(model, (4, 4), density=0.5, data=(X, y), loss="cross_entropy", params=["0.weight"])
    options = {"epochs": 6, "batch_size": 32, "lr": 1e-2}
    if solver == "magnitude":
        options["schedule"] = "gradual"
    a = ss.solve(problem, solver=solver, seed=3, **options)
    b = ss.solve(problem, solver=solver, seed=3, **options)
    assert a.selected == b.selected and a.objective == b.objective
    untrained = ss.solve(problem, solver="magnitude", epochs=0)
    assert a.objective < untrained.objective  # training with the mask lowers the loss
    assert sum(t["steps"] for t in a.trace) == 6 * 3  # the shared budget: epochs × steps per epoch


@pytest.mark.parametrize("solver", TRAINING)
def test_epochs_zero_prunes_the_model_as_it_is(solver):
    model, X, y = classification(1)
    problem = ss.BlockSparsification(model, (4, 8), density=0.25, min_blocks=1, data=(X, y), loss="cross_entropy")
    reference = ss.solve(problem, solver="magnitude")
    result = ss.solve(problem, solver=solver, epochs=0)
    assert result.selected == reference.selected
    named = dict(model.named_parameters())
    X_t = torch.as_tensor(X)
    with torch.no_grad():
        expected = model[2](model[1](nn.functional.linear(X_t, named["0.weight"] * result.info["masks"]["0.weight"], named["0.bias"])))
    if "2.weight" in result.info["masks"]:
        pytest.skip("both layers pruned")  # pragma: no cover - 2.weight (3x32) is not tiled by 4x8
    assert torch.allclose(result.info["model"](X_t), expected, atol=1e-6)


def test_dataloader_and_callable_loss():
    model, X, y = classification(2)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y)), batch_size=32)

    def smoothed(output, target):
        return nn.functional.cross_entropy(output, target, label_smoothing=0.1)

    problem = ss.BlockSparsification(model, (4, 4), density=0.25, min_blocks=1, data=loader, loss=smoothed)
    result = ss.solve(problem, solver="sequential_attention_pp", epochs=3)
    assert result.info["density"] == 0.25
    assert math.isfinite(result.objective)
    assert sum(t["steps"] for t in result.trace) == 3 * len(loader)


def test_global_allocation_meets_the_total_budget():
    model, X, y = classification(3)
    problem = ss.BlockSparsification(model, (1, 4), density=0.2, min_blocks=1, data=(X, y), loss="cross_entropy", allocation="global")
    for solver in ("sequential_attention_pp", "acdc"):
        result = ss.solve(problem, solver=solver, epochs=2)
        total = sum(problem.n_blocks.values())
        assert sum(len(k) for _, k in result.selected) == round(0.2 * total)


@pytest.mark.parametrize("penalty,lam,method", [
    ("group_lasso", 3.0, "proximal"), ("group_log", 1.0, "proximal"), ("group_mcp", 3.0, "proximal"),
    ("group_scad", 3.0, "proximal"), ("group_lq", 3.0, "proximal"),
    ("group_lasso", 0.02, "subgradient"), ("group_log", 0.02, "subgradient")])
def test_group_penalties_concentrate_the_weights_on_few_blocks(penalty, lam, method):
    model, X, y = classification(4)
    problem = ss.BlockSparsification(model, (4, 4), density=0.25, data=(X, y), loss="cross_entropy", params=["0.weight"])
    strong = ss.solve(problem, solver="group_regularized", penalty=penalty, lam=lam, epochs=40, lr=1e-2,
                      finetune_fraction=0.0, method=method)
    # the proximal step zeroes whole blocks exactly; the subgradient never does
    assert (strong.trace[0]["zero_blocks"] > 0) == (method == "proximal")
    weak = ss.solve(problem, solver="magnitude", schedule="one_shot", epochs=40, lr=1e-2, finetune_fraction=0.0)
    # the penalty drives the pruned blocks' share of the weight energy down
    kept_energy = []
    for res in (strong, weak):
        w = res.info["model"].get_submodule("0").parametrizations.weight.original.detach()
        mask = res.info["masks"]["0.weight"]
        kept_energy.append(float((w[mask] ** 2).sum() / (w**2).sum()))
    assert kept_energy[0] > kept_energy[1] + 0.1


def test_schedules():
    assert bt.exponential_sparsity(0.0, 0.9) == 0.0
    assert bt.exponential_sparsity(1.0, 0.9) == pytest.approx(0.9)
    u = 0.25
    assert bt.exponential_sparsity(u, 0.9, c=4.0) == pytest.approx(0.9 * (1 - math.exp(-1)) / (1 - math.exp(-4)))
    assert bt.cubic_sparsity(0.5, 0.8) == pytest.approx(0.8 * (1 - 0.125))
    assert sum(bt.phase_lengths(101, [0.2, 0.3, 0.5])) == 101
    phases = sapp_schedule(0.2, 3, 0.2)
    kinds = [k for k, _ in phases]
    assert kinds == ["dense", "sparsification", "sparse", "dense", "sparsification", "sparse", "dense", "sparsification", "final"]
    assert sum(f for _, f in phases) == pytest.approx(1.0)
    basic = [k for k, _ in sapp_schedule(0.2, 2, 0.2, sparsification=False)]
    assert basic == ["dense", "sparse", "dense", "sparse", "dense", "final"]


def test_attention_has_mean_one_and_is_clipped():
    gate = bt.BlockGate((8, 8), (2, 2), attention=True, clip=(0.25, 4.0))
    with torch.no_grad():
        gate.logits.copy_(torch.randn(4, 4) * 0.1)
    assert float(gate.attention().detach().mean()) == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        gate.logits.copy_(torch.randn(4, 4) * 10)
    a = gate.attention().detach()
    assert float(a.min()) >= 0.25 - 1e-7 and float(a.max()) <= 4.0 + 1e-6
    w = torch.randn(8, 8)
    expected = w * torch.repeat_interleave(torch.repeat_interleave(a, 2, 0), 2, 1)
    assert torch.allclose(gate(w), expected)


def test_powerprop_reparametrisation_keeps_the_function():
    model, X, _ = classification(5)
    problem = ss.BlockSparsification(model, (4, 4), density=0.5, min_blocks=1)
    before = model(torch.tensor(X))
    copy = bt.fresh_copy(problem)
    bt.install_gates(problem, copy, power_alpha=2.0)
    assert torch.allclose(copy(torch.tensor(X)), before, atol=1e-5)
    stored = copy.get_submodule("0").parametrizations.weight.original
    # W_b = V_b·‖V_b‖: the stored block norms are the square roots of the weight's
    from sparsesel.blocks import block_norms

    assert torch.allclose(block_norms(stored, (4, 4)) ** 2, block_norms(model[0].weight, (4, 4)), rtol=1e-4)


def test_sapp_sparsification_prunes_on_the_exponential_schedule():
    model, X, y = classification(6)
    problem = ss.BlockSparsification(model, (2, 2), density=0.1, data=(X, y), loss="cross_entropy", params=["0.weight"])
    result = ss.solve(problem, solver="sequential_attention_pp", epochs=10, n_cycles=1)
    kinds = [t["phase"] for t in result.trace]
    assert kinds == ["dense", "sparsification", "final"]
    assert set(result.info["attention"]) == {"0.weight"}
    assert result.info["density"] == pytest.approx(0.1, abs=0.5 / 128)


def test_result_serialises_and_progress_runs(capsys):
    model, X, y = classification(7)
    problem = ss.BlockSparsification(model, (4, 4), density=0.5, min_blocks=1, data=(X, y), loss="cross_entropy")
    result = ss.solve(problem, solver="acdc", epochs=1, progress=True)
    text = json.dumps(result.to_dict())
    assert '"density": 0.5' in text
    assert result.selected[0][0] == "0.weight" and all(isinstance(i, int) for i in result.selected[0][1])


def test_proximal_sgd_group_lasso_converges_to_the_scipy_minimiser():
    """Prox training with SGD, full batch, is ISTA: it must reach the group-lasso minimiser found by scipy."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    n, groups, size = 50, 4, 2
    X = rng.normal(size=(n, groups * size))
    beta = np.array([2.0, -1.5, 0.0, 0.0, 0.3, 0.2, 0.0, 0.0])
    y = X @ beta + 0.3 * rng.normal(size=n)
    lam = 0.4
    # the solver's objective: mse = (1/n)‖Xw − y‖², plus λ Σ_g ‖w_g‖ (epigraph form, smooth for SLSQP)
    def objective(z):
        w, t = z[:groups * size], z[groups * size:]
        return np.mean((X @ w - y) ** 2) + lam * t.sum()
    constraints = [{"type": "ineq", "fun": (lambda z, g=g: z[groups * size + g]
                                            - np.sqrt(z[g * size:(g + 1) * size] @ z[g * size:(g + 1) * size] + 1e-30))}
                   for g in range(groups)]  # t_g >= ‖w_g‖: a convex cone
    least_squares = np.linalg.lstsq(X, y, rcond=None)[0]
    start = np.concatenate([least_squares, np.linalg.norm(least_squares.reshape(groups, size), axis=1) + 0.1])
    reference = minimize(objective, start, constraints=constraints, method="SLSQP",
                         options={"ftol": 1e-12, "maxiter": 300}).x[:groups * size]
    for g in (1, 3):  # these groups are thresholded away at this λ
        assert np.linalg.norm(reference[g * size:(g + 1) * size]) < 1e-5
    assert np.linalg.norm(reference[4:6]) > 0.1
    step = 1.0 / (2 * np.linalg.eigvalsh(X.T @ X / n).max())  # 1/L of the mse
    model = nn.Linear(groups * size, 1, bias=False)
    problem = ss.BlockSparsification(model, (1, size), density=1.0, data=(X, y), loss="mse", min_blocks=1)
    result = ss.solve(problem, solver="group_regularized", penalty="group_lasso", lam=lam, epochs=400, lr=step,
                      batch_size=n, optimizer="sgd", finetune_fraction=0.0)
    w = result.info["model"].get_submodule("").parametrizations.weight.original.detach().double().numpy().ravel()
    assert np.allclose(w, reference, atol=1e-4)
    assert np.all(w[[2, 3, 6, 7]] == 0.0)  # exact zeros from the prox, not just small values
    assert result.trace[0]["zero_blocks"] == 2
    subgradient = ss.solve(problem, solver="group_regularized", penalty="group_lasso", lam=lam, epochs=400,
                           lr=step, batch_size=n, optimizer="sgd", finetune_fraction=0.0, method="subgradient")
    assert subgradient.trace[0]["zero_blocks"] == 0


def test_small_layers_stay_dense_and_density_is_accounted():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 40), nn.ReLU(), nn.Linear(40, 8))  # 4x4 blocks: 10x16 = 160 and 2x10 = 20
    problem = ss.BlockSparsification(model, (4, 4), density=0.25)
    assert problem.param_names == ("0.weight",) and problem.dense_params == ("2.weight",)
    result = ss.solve(problem, solver="magnitude")
    assert "2.weight" not in result.info["masks"]
    baked = result.info["model"]
    assert torch.equal(baked[2].weight, model[2].weight)  # untouched
    assert result.info["density"] == 40 / 160
    assert result.info["density_with_dense"] == (40 + 20) / (160 + 20)
    assert result.info["weight_density"] == (40 * 16 + 40 * 8) / (64 * 40 + 40 * 8)
    every = ss.BlockSparsification(model, (4, 4), density=0.25, min_blocks=1)
    assert every.param_names == ("0.weight", "2.weight") and every.dense_params == ()
    named = ss.BlockSparsification(model, (4, 4), density=0.25, params=["2.weight"])  # naming overrides the rule
    assert named.param_names == ("2.weight",)
    with pytest.raises(ValueError, match="fewer than min_blocks=200 blocks"):
        ss.BlockSparsification(model, (4, 4), density=0.25, min_blocks=200)
    with pytest.raises(ValueError, match="min_blocks must be >= 1"):
        ss.BlockSparsification(model, (4, 4), density=0.25, min_blocks=0)
