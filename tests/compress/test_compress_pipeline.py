"""Tests of sparsesel.compress: factorized layers, plans, packing, apply/save/load, fine-tuning, CLI errors."""

import importlib
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorly as tl
import torch
from tensorly.decomposition import partial_tucker
from torch import nn

from sparsesel.compress import Plan, Tucker2Conv, apply, count_params, load_compressed, plan, save_compressed
from sparsesel.compress.factorized import factorize
from sparsesel.compress.finetune import FinetuneConfig, finetune
from sparsesel.nets import zoo

torch.set_num_threads(1)


def tiny_uhdformer(seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return zoo.build_net("uhdformer", "small").eval()


class Plain(nn.Module):
    """A small generic conv network (not of sparsesel.nets)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 12, 3, padding=1)
        self.b = nn.Conv2d(12, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.c = nn.Conv2d(16, 3, 1)
        self.fc = nn.Linear(3, 3)

    def forward(self, x):
        y = self.c(self.dw(torch.relu(self.b(torch.relu(self.a(x))))))
        return self.fc(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("stride,padding,kernel", [(1, 1, 3), (2, 2, 5), (1, 0, 3)])
def test_tucker2_conv_at_full_rank_equals_original(stride, padding, kernel):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, kernel, stride=stride, padding=padding).double()
    layer = Tucker2Conv.from_conv(conv, in_rank=6, out_rank=10)
    x = torch.randn(2, 6, 13, 11, dtype=torch.float64)
    assert (layer(x) - conv(x)).abs().max() <= 1e-5
    torch.testing.assert_close(layer.weight, conv.weight, atol=1e-10, rtol=0)


def test_truncated_tucker2_error_equals_tensorlys():
    torch.manual_seed(1)
    conv = nn.Conv2d(9, 14, 3, padding=1).double()
    layer = Tucker2Conv.from_conv(conv, in_rank=4, out_rank=6, n_iter_max=10)
    kernel = conv.weight.detach().numpy()
    (core, factors), _ = partial_tucker(kernel, rank=[6, 4], modes=[0, 1], n_iter_max=10, init="svd", tol=0.0)
    reference = tl.tenalg.multi_mode_dot(core, factors, modes=[0, 1])
    error_ref = np.linalg.norm(kernel - reference) ** 2 / np.linalg.norm(kernel) ** 2
    error_ours = float(((layer.weight - conv.weight).norm() ** 2 / conv.weight.norm() ** 2).detach())
    assert error_ours == pytest.approx(error_ref, rel=1e-6)
    assert 0 < error_ours < 1


@pytest.mark.parametrize("kernel, ranks", [(1, (2, 3)), (1, (3, 1)), (3, (1, 12))])
def test_tucker2_ranks_beyond_the_other_mode_are_valid_and_optimal(kernel, ranks):
    """R_in > R_out * area (or the reverse) gives a layer of the requested shape whose kernel is the
    closed-form optimum: for these ranks the best Tucker-2 is a truncated SVD of the output-mode
    unfolding (C_out, C_in * area) at rank min(R_out, R_in * area, R_in) (Eckart-Young)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(14, 9, kernel, padding=kernel // 2).double()
    r_out, r_in = ranks
    layer = factorize(conv, "tucker2", [r_out, r_in], n_iter_max=200)  # HOOI converges slowly at R_out = 1
    assert (layer.out_rank, layer.in_rank) == (r_out, r_in)
    weight = conv.weight.detach().numpy()
    u, sv, vt = np.linalg.svd(weight.reshape(9, -1), full_matrices=False)
    rank = min(r_out, r_in)
    best = ((u[:, :rank] * sv[:rank]) @ vt[:rank]).reshape(weight.shape)
    np.testing.assert_allclose(layer.weight.detach().numpy(), best, atol=1e-6)


def test_lowrank_linear_error_is_eckart_young():
    torch.manual_seed(2)
    linear = nn.Linear(8, 7).double()
    layer = factorize(linear, "lowrank", [3])
    s = np.linalg.svd(linear.weight.detach().numpy(), compute_uv=False)
    assert float((layer.weight - linear.weight).norm().detach() ** 2) == pytest.approx(float((s[3:] ** 2).sum()), rel=1e-9)


def brute_force(costs, errors, capacity):
    best = None
    for pick in itertools.product(*[range(len(c)) for c in costs]):
        cost = sum(c[j] for c, j in zip(costs, pick))
        if cost <= capacity:
            value = sum(e[j] for e, j in zip(errors, pick))
            if best is None or value < best[0] - 1e-12:
                best = (value, pick)
    return best


def test_plan_json_names_the_solver_that_produced_it(monkeypatch):
    """packing picks dp for a parameter budget, cp_sat above DP_CELLS; forced solvers give the same plan."""
    plan_module = importlib.import_module("sparsesel.compress.plan")  # the package exports a function of that name

    model = Plain().eval()
    by_dp = plan(model, 0.55)
    assert by_dp.solver["name"] == "dp" and by_dp.solver["status"] == "optimal"
    assert by_dp.solver["lower_bound"] == by_dp.solver["upper_bound"] == by_dp.solver["objective"]
    monkeypatch.setattr(plan_module, "DP_CELLS", 0)
    by_cp_sat = plan(model, 0.55)
    assert by_cp_sat.solver["name"] == "cp_sat" and by_cp_sat.solver["status"] == "optimal"
    assert by_cp_sat.solver["objective"] == pytest.approx(by_dp.solver["objective"], abs=1e-9)
    assert json.loads(by_cp_sat.to_json())["solver"]["name"] == "cp_sat"
    for method in ("dp", "cp_sat", "greedy", "uniform", "energy"):
        forced = plan(model, 0.55, method=method)
        assert forced.solver["name"] == method and forced.params_after <= forced.budget_cost
        assert forced.method == method


def test_plan_allocation_equals_brute_force_on_a_network():
    model = Plain().eval()
    p = plan(model, 0.55)
    from sparsesel.compress.plan import analyze

    layers, _ = analyze(model)
    capacity = p.budget_cost - (p.params_before - sum(layer.dense_params for layer in layers))
    value, pick = brute_force([layer.params for layer in layers], [layer.errors for layer in layers], capacity)
    assert p.solver["objective"] == pytest.approx(value, abs=1e-9)
    assert [layer.options[j][1] for layer, j in zip(layers, pick)] == [None if l.ranks is None else tuple(l.ranks) for l in p.layers]


@pytest.mark.parametrize("budget,calibrated", [(0.3, False), (0.5, True), (0.8, False)])
def test_budget_met_exactly_and_input_untouched(budget, calibrated):
    model = tiny_uhdformer()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calibration = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) if calibrated else None
    p = plan(model, budget, calibration=calibration)
    small = apply(model, p)
    assert count_params(small) == p.params_after <= int(budget * count_params(model))
    assert p.params_after > 0.9 * budget * count_params(model) or budget > 0.7
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(type(m) is not Tucker2Conv for m in model.modules())
    assert [s["name"] for s in p.skipped if "groups=" in s["reason"]]  # depthwise convs untouched
    assert p.skipped and all(isinstance(model.get_submodule(s["name"]), nn.Module) for s in p.skipped)


def test_plan_is_editable_json_and_full_rank_keeps_outputs():
    model = tiny_uhdformer()
    p = Plan.from_json(plan(model, 0.5).to_json())
    for layer in p.layers:  # edit: full ranks everywhere (exact factorizations)
        if layer.factorization == "tucker2":
            layer.ranks = [min(layer.shape[0], layer.max_ranks[0]), min(layer.shape[1], layer.max_ranks[1])]
        elif layer.factorization == "lowrank":
            layer.ranks = [layer.max_ranks[0]]
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert (apply(model, p)(x) - model(x)).abs().max() < 1e-4


def test_block_sparse_linear_keeps_the_largest_blocks():
    torch.manual_seed(3)
    linear = nn.Linear(12, 8)
    weight = linear.weight.detach().double().numpy()
    # reference by hand: 4x4 blocks of an (8, 12) matrix, 2 x 3 grid, row-major
    norms = {(i, j): np.linalg.norm(weight[4 * i:4 * i + 4, 4 * j:4 * j + 4]) for i in range(2) for j in range(3)}
    keep = sorted(norms, key=norms.get, reverse=True)[:2]
    expected = np.zeros_like(weight)
    for i, j in keep:
        expected[4 * i:4 * i + 4, 4 * j:4 * j + 4] = weight[4 * i:4 * i + 4, 4 * j:4 * j + 4]
    layer = factorize(linear, "blocks", [2, 4, 4])
    x = torch.randn(5, 12)
    with torch.no_grad():
        np.testing.assert_allclose(layer(x).numpy(), x.double().numpy() @ expected.T + linear.bias.double().numpy(), atol=1e-5)
    assert count_params(layer) == 2 * 16 + 8
    error = np.sum((weight - expected) ** 2) / np.sum(weight**2)
    from sparsesel.compress.plan import analyze

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = linear

        def forward(self, x):
            return self.fc(x)

    (layer_analysis,), _ = analyze(Net())
    j = layer_analysis.options.index(("blocks", (2, 4, 4)))
    assert layer_analysis.errors[j] == pytest.approx(error, rel=1e-9)
    assert layer_analysis.params[j] == 2 * 16 + 8
    loss = layer(x).pow(2).sum()
    loss.backward()
    assert layer.blocks.grad is not None and layer.blocks.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="does not tile"):
        factorize(linear, "blocks", [2, 3, 4])
    with pytest.raises(ValueError, match="kept blocks"):
        factorize(linear, "blocks", [7, 4, 4])


@pytest.mark.parametrize("factorization, ranks, module", [
    ("blocks", [2], nn.Linear(8, 8)), ("lowrank", [2, 3], nn.Linear(8, 8)), ("tucker2", [2], nn.Conv2d(4, 4, 3)),
    ("lowrank", [2.5], nn.Linear(8, 8)), ("svd", [2], nn.Linear(8, 8)),
])
def test_malformed_ranks_are_clear_errors(factorization, ranks, module):
    with pytest.raises(ValueError, match="needs ranks|a factorized layer is"):
        factorize(module, factorization, ranks)


def test_block_sparse_plan_saves_and_loads(tmp_path):
    model = tiny_uhdformer()
    p = plan(model, 0.6)
    linears = [layer for layer in p.layers if layer.module == "Linear"]
    for layer in linears:
        out, inp = layer.shape
        layer.factorization, layer.ranks = "blocks", [max(1, (out // 2) * (inp // 2) // 2), 2, 2]
    small = apply(model, p)
    assert linears and all(type(small.get_submodule(layer.name)).__name__ == "BlockSparseLinear" for layer in linears)
    path = save_compressed(small, tmp_path / "c.pt")
    loaded, _ = load_compressed(path)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x))
        assert not torch.equal(small(x), apply(model, plan(model, 0.6))(x))  # the block edit took effect


def test_save_load_same_outputs(tmp_path):
    import sparsesel.nets as nets

    model = tiny_uhdformer()
    small = apply(model, plan(model, 0.5))
    save_compressed(small, tmp_path / "c.pt")
    loaded, info = load_compressed(tmp_path / "c.pt")
    again = nets.load_uhdformer(tmp_path / "c.pt")  # the nets format records the structure
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), small(x)) and torch.equal(again(x), small(x))
    assert info["plan"]["params_after"] == count_params(loaded)
    with pytest.raises(FileExistsError, match="exists"):
        save_compressed(small, tmp_path / "c.pt")


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt"):
        load_compressed(bad)


def test_budget_too_small_and_unknown_method():
    model = tiny_uhdformer()
    with pytest.raises(ValueError, match="too small: the smallest plan costs"):
        plan(model, 0.01)
    with pytest.raises(ValueError, match="unknown method 'svd'"):
        plan(model, 0.5, method="svd")
    with pytest.raises(ValueError, match="match no module"):
        plan(model, 0.5, exclude=["nope*"])


def test_resume_after_kill_continues_from_last_checkpoint(tmp_path):
    teacher = tiny_uhdformer()
    config = FinetuneConfig(steps=6, batch_size=2, patch_size=32, checkpoint_every=2, lr=1e-3)
    reference = apply(teacher, plan(teacher, 0.6))
    finetune(reference, teacher, config, progress=False)

    student = apply(teacher, plan(teacher, 0.6))
    state = tmp_path / "ft.state"

    def kill(step, loss):
        if step == 5:
            raise KeyboardInterrupt  # the process dies after step 5; the last state is step 4

    with pytest.raises(KeyboardInterrupt):
        finetune(student, teacher, config, state_file=state, callback=kill, progress=False)
    assert state.exists()
    resumed = apply(teacher, plan(teacher, 0.6))
    steps_seen = []
    result = finetune(resumed, teacher, config, state_file=state, resume=True, progress=False, callback=lambda s, l: steps_seen.append(s))
    assert result["resumed_from"] == 4 and steps_seen == [5, 6]
    for (k, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=k)
    assert not state.exists()


def test_cli_errors(tmp_path, capsys, monkeypatch):
    from sparsesel.cli import main

    assert main(["compress", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "missing.pt"), "--method", "svd", "--out", str(tmp_path / "o")]) == 2
    assert "unknown method 'svd'" in capsys.readouterr().err
    import sparsesel.commands.compress as command

    monkeypatch.setattr(command, "DEMO_CHECKPOINT", tmp_path / "absent.pt")
    assert main(["compress", "--demo"]) == 2
    err = capsys.readouterr().err
    assert "demo checkpoint" in err and "not installed" in err
    existing = tmp_path / "out"
    existing.mkdir()
    (existing / "x").write_text("x")
    model = tiny_uhdformer()
    zoo.save_net(model, tmp_path / "m.pt", net="uhdformer")
    assert main(["compress", str(tmp_path / "m.pt"), "--out", str(existing)]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.slow
def test_two_process_torchrun_equals_one_process(tmp_path):
    worker = Path(__file__).with_name("compress_ddp_worker.py")
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    subprocess.run([sys.executable, str(worker), str(one)], check=True, timeout=120)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone", str(worker), str(two)],
                   check=True, timeout=120, capture_output=True)
    a, b = torch.load(one), torch.load(two)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-4, msg=key)


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_evaluate_quality_is_the_mean_over_patches_of_an_independent_psnr(batch_size):
    """Batched evaluation = per-patch PSNR (scikit-image, on the BT.601 luma with a 1-pixel crop) averaged."""
    from skimage.metrics import peak_signal_noise_ratio

    from sparsesel.compress.report import evaluate_quality
    from sparsesel.data.datasets import PairedPatchDataset

    dataset = PairedPatchDataset("lowlight", split="test", patch_size=32, length=5, seed=3, augment=False)
    torch.manual_seed(0)
    model = Plain().eval()
    got = evaluate_quality(model, dataset, batch_size=batch_size)

    def luma(image):  # (3, H, W) in [0, 1] -> BT.601 Y in [16/255, 235/255], cropped by one pixel
        r, g, b = image.double().numpy()
        return ((16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0)[1:-1, 1:-1]

    expected = []
    with torch.no_grad():
        for i in range(len(dataset)):
            sample = dataset[i]
            out = model(sample["input"][None])[0].clamp(0, 1)
            expected.append(peak_signal_noise_ratio(luma(sample["target"]), luma(out), data_range=1.0))
    assert got["psnr"] == pytest.approx(float(np.mean(expected)), abs=1e-4)
    assert 0.0 < got["ssim"] <= 1.0


def test_evaluate_quality_rejects_a_bad_batch_size():
    from sparsesel.compress.report import evaluate_quality
    from sparsesel.data.datasets import PairedPatchDataset

    dataset = PairedPatchDataset("lowlight", split="test", patch_size=32, length=2, seed=0, augment=False)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_quality(Plain(), dataset, batch_size=0)


def test_model_macs_is_the_closed_form_count_of_convs_and_linears():
    from sparsesel.compress.plan import model_macs

    h, w = 20, 24
    # Plain: conv 3->12 (3x3), 12->16 (3x3), depthwise 16 (3x3), 1x1 16->3, then Linear 3->3 per pixel
    expected = h * w * (12 * 3 * 9 + 16 * 12 * 9 + 16 * 1 * 9 + 3 * 16 + 3 * 3)
    assert model_macs(Plain(), (h, w)) == expected


class DataDependent(nn.Module):
    """A forward whose shapes depend on the values (meta tensors cannot run it)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = self.conv(x)
        keep = int((y > -1e9).sum().item()) // y[0, 0].numel()  # = 4 channels, read from the values
        return y[:, :keep][:, :3]


def test_model_macs_falls_back_to_real_tensors_when_the_forward_needs_values():
    from sparsesel.compress.plan import model_macs

    assert model_macs(DataDependent(), (8, 8)) == 8 * 8 * 4 * 3


def test_analyze_refuses_an_impossible_budget_before_any_calibration_pass():
    """The budget check needs only the layers' options: it must fire before the calibration forward passes
    (here a calibration batch the network cannot even run would fail with a shape error if it came first)."""
    from sparsesel.compress.plan import analyze

    model = Plain().eval()
    unrunnable = torch.zeros(2, 5, 8, 8)  # 5 channels: the first conv needs 3
    with pytest.raises(ValueError, match="too small: the smallest plan costs"):
        analyze(model, calibration=unrunnable, budget=0.01)
    with pytest.raises(RuntimeError):  # a feasible budget goes on to the calibration passes
        analyze(model, calibration=unrunnable, budget=0.9)
    layers, _ = analyze(model, budget=0.9)  # and without calibration the analysis is returned
    assert layers


def test_finetune_several_in_worker_processes_equals_one_after_the_other():
    """Two students fine-tuned side by side in worker processes (one thread each, like this test
    process) end with the weights of plain sequential finetune() calls."""
    from sparsesel.compress.finetune import finetune_several

    teacher = tiny_uhdformer()
    config = FinetuneConfig(steps=3, batch_size=2, patch_size=32, lr=1e-3)
    menus = ((0.6, "packing"), (0.5, "uniform"))
    reference = [apply(teacher, plan(teacher, b, method=m)) for b, m in menus]
    for student in reference:
        finetune(student, teacher, config, progress=False)
    parallel = [apply(teacher, plan(teacher, b, method=m)) for b, m in menus]
    results = finetune_several(parallel, teacher, config, options=[{"progress": False}] * 2, processes=2)
    assert [len(r["losses"]) for r in results] == [3, 3]
    for a, b in zip(reference, parallel):
        assert not b.training
        for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), k


def test_finetune_several_rejects_bad_arguments():
    from sparsesel.compress.finetune import finetune_several

    teacher = tiny_uhdformer()
    config = FinetuneConfig(steps=1, batch_size=2, patch_size=32)
    students = [apply(teacher, plan(teacher, 0.6)) for _ in range(2)]
    with pytest.raises(ValueError, match="options has 1 entries for 2 students"):
        finetune_several(students, teacher, config, options=[{}])
    with pytest.raises(ValueError, match="processes must be a positive int"):
        finetune_several(students, teacher, config, processes=0)
    with pytest.raises(ValueError, match=r"\['callback'\] cannot be passed to worker processes"):
        finetune_several(students, teacher, config, options=[{"callback": print}, {}], processes=2)


def test_calibration_in_worker_processes_equals_in_process():
    """Layers dealt to worker processes (one thread each, like this test process) get exactly the
    objectives and noise sensitivities of the in-process passes."""
    from sparsesel.compress.plan import analyze, calibrate_layers

    model = tiny_uhdformer()
    calibration = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    serial, _ = analyze(model, calibration=calibration)
    parallel, _ = analyze(model)
    calibrate_layers(model, parallel, calibration, processes=2)
    assert len(serial) == len(parallel) > 2
    for a, b in zip(serial, parallel):
        assert a.name == b.name
        np.testing.assert_array_equal(a.objective, b.objective)
        assert a.sensitivity == b.sensitivity
    with pytest.raises(ValueError, match="processes must be a positive int"):
        calibrate_layers(model, parallel, calibration, processes=0)


def test_noise_probes_have_the_relative_size_epsilon_and_follow_the_seed():
    from sparsesel.compress.plan import analyze, noise_probes

    model = Plain()
    layers, _ = analyze(model)
    probes = noise_probes(model, layers, epsilon=0.05, seed=3)
    for layer, probe in zip(layers, probes):
        weight = model.get_submodule(layer.name).weight.detach()
        assert probe.shape == weight.shape
        assert float(probe.norm()) == pytest.approx(0.05 * float(weight.norm()), rel=1e-5)
    again = noise_probes(model, layers, epsilon=0.05, seed=3)
    other = noise_probes(model, layers, epsilon=0.05, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(probes, again))
    assert not torch.equal(probes[0], other[0])
