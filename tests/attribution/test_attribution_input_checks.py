"""Attribution input checks: non-finite models along the path, training-mode modules, constant softmax,
uint8/bool inputs, bool baselines and unreadable CLI checkpoints/images are refused with a message naming
the problem; finite, well-formed inputs give the same results as independent references."""

import itertools

from pathlib import Path

import numpy as np
import pytest
import torch

import sparsesel as ss
from sparsesel.cli import main

captum_attr = pytest.importorskip("captum.attr")


# ------------------------------------------------------------------ B1: non-finite model along the path
def nan_inside(z: torch.Tensor) -> torch.Tensor:
    """``sum(z)`` at the corners x = 1 (sum 4) and b = 0 (sum 0), NaN for 0.5 < sum < 3.5 (the path's inside)."""
    total = z.reshape(z.shape[0], -1).sum(1)
    return torch.where((total > 0.5) & (total < 3.5), total * float("nan"), total)


def inf_inside(z: torch.Tensor) -> torch.Tensor:
    total = z.reshape(z.shape[0], -1).sum(1)
    return torch.where((total > 0.5) & (total < 3.5), total * float("inf"), total)


def sqrt_model(z: torch.Tensor) -> torch.Tensor:
    """Finite everywhere on [0, 1]^4, but its gradient ``1 / (2 sqrt z)`` is infinite where an element is 0."""
    return torch.sqrt(z).sum(1)


@pytest.mark.parametrize("model", [nan_inside, inf_inside])
def test_integrated_gradients_refuses_a_model_non_finite_inside_the_path(model):
    problem = ss.Attribution(model, torch.ones(4), k=2)  # accepted: finite at x and at the baseline
    with pytest.raises(ValueError, match=r"output became non-finite along the path .*\(integrated_gradients\)"):
        ss.solve(problem, "integrated_gradients")


@pytest.mark.parametrize("batch_size", [None, 7])
def test_greedy_pig_names_the_round_where_the_model_became_non_finite(batch_size):
    problem = ss.Attribution(nan_inside, torch.ones(4), k=2)
    with pytest.raises(ValueError, match=r"greedy_pig round 1 of 2 \(linear path\): .*output became non-finite"):
        ss.solve(problem, "greedy_pig", rounds=2, batch_size=batch_size)


def test_greedy_pig_imputed_path_refuses_a_non_finite_model():
    def image_nan_inside(z):  # sum is 16 at x, 0 at the baseline, NaN in between
        total = z.reshape(z.shape[0], -1).sum(1)
        return torch.where((total > 0.5) & (total < 15.5), total * float("nan"), total)

    problem = ss.Attribution(image_nan_inside, torch.ones(1, 4, 4), k=2, groups="pixels")
    with pytest.raises(ValueError, match=r"greedy_pig round 1 of 2 \(imputed path\): .*non-finite along the imputed"):
        ss.solve(problem, "greedy_pig", rounds=2, steps=4, path="imputed")


def test_brute_force_refuses_a_model_non_finite_at_a_subset():
    problem = ss.Attribution(nan_inside, torch.ones(4), k=2)  # every 2-subset has sum 2: NaN
    with pytest.raises(ValueError, match=r"output became non-finite at a k-subset .*\(brute_force\)"):
        ss.solve(problem, "brute_force")


@pytest.mark.parametrize("solver", ["gradient", "gradient_x_input", "integrated_gradients", "greedy_pig"])
def test_gradient_solvers_refuse_an_infinite_gradient(solver):
    x = torch.tensor([0.0, 1.0, 2.0, 3.0])  # sqrt'(0) = inf at x and along the whole path
    problem = ss.Attribution(sqrt_model, x, k=2)
    with pytest.raises(ValueError, match=r"gradient became non-finite"):
        ss.solve(problem, solver)


def test_random_needs_no_gradient_and_still_runs_on_a_nan_inside_model():
    result = ss.solve(ss.Attribution(nan_inside, torch.ones(4), k=2), "random")
    assert len(result.selected) == 2


def _finite_mlp(seed: int = 0) -> torch.nn.Module:
    generator = torch.Generator().manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    return net


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_middle"])
def test_finite_model_attributions_still_match_captum(method):
    net = _finite_mlp()
    x = torch.randn(6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    baseline = torch.linspace(-0.5, 0.5, 6, dtype=torch.float64)
    problem = ss.Attribution(net, x, baseline=baseline, target=1, k=3)
    theirs = captum_attr.IntegratedGradients(net).attribute(
        x[None], baselines=baseline[None], target=1, n_steps=20, method=method
    )[0].detach().numpy()
    # a naive float64 loop over the nodes of the same rule (Captum builds its alphas in float32: ~1e-9 apart)
    if method == "gausslegendre":
        nodes, node_weights = np.polynomial.legendre.leggauss(20)
        alphas, weights = (nodes + 1) / 2, node_weights / 2
    else:
        alphas, weights = (np.arange(20) + 0.5) / 20, np.full(20, 1 / 20)
    naive = torch.zeros(6, dtype=torch.float64)
    for alpha, weight in zip(alphas, weights):
        point = (baseline + float(alpha) * (x - baseline)).requires_grad_(True)
        (grad,) = torch.autograd.grad(net(point[None])[0, 1], point)
        naive += float(weight) * grad
    naive = (naive * (x - baseline)).numpy()
    for batch_size in (None, 6):
        ours = ss.solve(problem, "integrated_gradients", steps=20, method=method, batch_size=batch_size)
        np.testing.assert_allclose(ours.info["attribution"], theirs, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(ours.info["attribution"], naive, rtol=1e-12, atol=1e-14)
        assert ours.selected == tuple(np.argsort(-naive, kind="stable")[:3])
    # Greedy PIG with one round is IG's top-k with the same rule
    one_round = ss.solve(problem, "greedy_pig", rounds=1, steps=20, method=method)
    np.testing.assert_allclose(one_round.info["attribution"], naive, rtol=1e-12, atol=1e-14)
    saliency = captum_attr.Saliency(net).attribute(x[None].clone().requires_grad_(), target=1, abs=False)[0]
    np.testing.assert_allclose(ss.solve(problem, "gradient").info["attribution"], saliency.detach().numpy(),
                               rtol=1e-10, atol=1e-12)


def test_finite_model_brute_force_matches_a_naive_loop():
    net = _finite_mlp(2)
    x = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    problem = ss.Attribution(net, x, target=0, k=2)
    best_value, best_subset = -np.inf, None
    for subset in itertools.combinations(range(6), 2):
        point = torch.zeros(6, dtype=torch.float64)
        point[list(subset)] = x[list(subset)]
        with torch.no_grad():
            value = float(net(point[None])[0, 0])
        if value > best_value:
            best_value, best_subset = value, subset
    result = ss.solve(problem, "brute_force", batch_size=4)
    assert result.selected == best_subset
    assert result.objective == pytest.approx(best_value, rel=1e-12)


# ------------------------------------------------------------------ B2: training-mode batch norm / dropout
def test_batchnorm_in_training_mode_is_refused_and_left_unchanged():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))  # train mode
    bn = net[1]
    mean, var, tracked = bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)
    with pytest.raises(ValueError, match=r"submodule '1' \(BatchNorm1d\).*call model\.eval\(\)"):
        ss.Attribution(net, torch.randn(4), target=0, k=2)
    assert torch.equal(bn.running_mean, mean) and torch.equal(bn.running_var, var)
    assert int(bn.num_batches_tracked) == tracked == 0
    net.eval()  # accepted in eval mode, and the statistics still do not move
    ss.solve(ss.Attribution(net, torch.randn(4), target=0, k=2), "integrated_gradients", steps=8)
    assert torch.equal(bn.running_mean, mean) and int(bn.num_batches_tracked) == 0


@pytest.mark.parametrize(
    ("layer", "name"),
    [
        (torch.nn.Dropout(0.5), "Dropout"),
        (torch.nn.AlphaDropout(0.5), "AlphaDropout"),
        (torch.nn.InstanceNorm1d(3, track_running_stats=True), "InstanceNorm1d"),
    ],
)
def test_dropout_and_tracked_norms_in_training_mode_are_refused(layer, name):
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Sequential(torch.nn.Tanh(), layer))
    with pytest.raises(ValueError, match=rf"submodule '1\.1' \({name}\).*model\.eval\(\)"):
        ss.Attribution(net, torch.randn(2, 4), target=0, k=2)


def test_a_bare_batchnorm_module_is_named_as_the_model_itself():
    with pytest.raises(ValueError, match=r"the model itself \(BatchNorm1d\)"):
        ss.Attribution(torch.nn.BatchNorm1d(4), torch.randn(4), target=0, k=1)


def test_training_mode_without_batch_statistics_or_dropout_is_accepted():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.LayerNorm(3))
    assert net.training
    problem = ss.Attribution(net, torch.randn(4), target=2, k=2)
    assert problem.target == 2
    # an instance norm without running statistics computes the same thing in both modes
    inorm = torch.nn.Sequential(torch.nn.Unflatten(1, (2, 3)), torch.nn.InstanceNorm1d(2), torch.nn.Flatten())
    assert ss.Attribution(inorm, torch.randn(6), target=0, k=1).k == 1


# ------------------------------------------------------------------ B3: softmax over one output
@pytest.mark.parametrize(("output", "constant"), [("softmax", "1"), ("log_softmax", "0")])
def test_softmax_over_a_single_output_column_is_refused(output, constant):
    model = lambda z: z.sum(1, keepdim=True)  # noqa: E731  (B, 1)
    assert torch.softmax(model(torch.ones(2, 4)), 1).eq(1).all()  # the reason: identically 1
    with pytest.raises(ValueError, match=rf"output='{output}' over a single output column is constant \({constant}.*output='raw'"):
        ss.Attribution(model, torch.ones(4), k=1, output=output)
    raw = ss.Attribution(model, torch.ones(4), k=1, output="raw")
    np.testing.assert_allclose(ss.solve(raw, "integrated_gradients").info["attribution"], np.ones(4), rtol=1e-6)


# ------------------------------------------------------------------ B5: uint8 / bool inputs
@pytest.mark.parametrize("as_numpy", [False, True])
def test_uint8_x_is_refused_with_a_hint_to_scale(as_numpy):
    image = np.full((3, 2, 2), 200, dtype=np.uint8)
    x = image if as_numpy else torch.from_numpy(image)
    with pytest.raises(ValueError, match=r"x has dtype uint8 .*x / 255"):
        ss.Attribution(lambda z: z.sum((1, 2, 3)), x, k=1)


def test_uint8_baseline_array_is_refused():
    with pytest.raises(ValueError, match=r"baseline has dtype uint8"):
        ss.Attribution(lambda z: z.sum(1), torch.ones(4), baseline=np.zeros(4, dtype=np.uint8), k=1)


@pytest.mark.parametrize("x", [np.array([True, False, True]), torch.tensor([True, False, True])])
def test_bool_x_is_refused(x):
    with pytest.raises(ValueError, match=r"x has dtype bool; convert it to a float"):
        ss.Attribution(lambda z: z.sum(1), x, k=1)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16])
def test_integer_counts_still_become_float32(dtype):
    counts = np.array([3, 0, 5, 1], dtype=dtype)
    weights = torch.tensor([1.0, 2.0, -1.0, 0.5])
    problem = ss.Attribution(lambda z: z @ weights, counts, k=2)
    assert problem.x.dtype == torch.float32
    np.testing.assert_array_equal(problem.x.numpy(), counts.astype(np.float32))
    # linear model: IG = (x - 0) * w exactly
    ig = ss.solve(problem, "integrated_gradients").info["attribution"]
    np.testing.assert_allclose(ig, counts * weights.numpy(), rtol=1e-6)


# ------------------------------------------------------------------ B6: bool baseline
@pytest.mark.parametrize("baseline", [True, False, np.bool_(True)])
def test_bool_baseline_is_refused(baseline):
    with pytest.raises(TypeError, match=r"a bool is not a valid baseline; pass one of .*a number .*array shaped like x"):
        ss.Attribution(lambda z: z.sum(1), torch.ones(4), baseline=baseline, k=1)


# ------------------------------------------------------------------ B7/B8: CLI checkpoints and images
def _cli(tmp_path, model, image):
    if str(image).endswith("img.png") and not Path(image).exists():  # options and files are checked before the model
        from PIL import Image

        Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(image)
    return main(["attribute", "--model", str(model), "--image", str(image), "--solver", "gradient", "--k", "3",
                 "--out", str(tmp_path / "out")])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"state_dict": {}}, "is a readable torch file but lacks the key(s) 'arch' of a checkpoint"),
        ({"arch": "digits-cnn"}, "is a readable torch file but lacks the key(s) 'state_dict'"),
        ({"weights": torch.zeros(2), "epoch": 3}, "it has the keys ['weights', 'epoch']"),
        ([1, 2, 3], "is a readable torch file but holds a list, not a classifier checkpoint"),
        (torch.zeros(3), "is a readable torch file but holds a Tensor"),
    ],
)
def test_cli_names_a_readable_torch_file_that_is_not_a_checkpoint(tmp_path, capsys, content, message):
    path = tmp_path / "model.pt"
    torch.save(content, path)
    assert _cli(tmp_path, path, tmp_path / "img.png") == 2
    err = capsys.readouterr().err
    assert message in err
    assert "corrupted" not in err and not (tmp_path / "out").exists()


def test_cli_keeps_the_corrupt_file_message_and_explains_a_pickled_module(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a zip archive at all" * 10)
    assert _cli(tmp_path, corrupt, tmp_path / "img.png") == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    module = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), module)
    assert _cli(tmp_path, module, tmp_path / "img.png") == 2
    assert "Python objects whose unpickling could run code; it was not unpickled" in capsys.readouterr().err


def test_cli_says_a_directory_is_not_an_image_or_a_checkpoint(tmp_path, capsys):
    from sparsesel.attribution.models import DigitsCNN

    checkpoint = tmp_path / "digits.pt"
    torch.save({"arch": "digits-cnn", "state_dict": DigitsCNN().state_dict()}, checkpoint)
    folder = tmp_path / "images"
    folder.mkdir()
    assert _cli(tmp_path, checkpoint, folder) == 2
    assert f"image {str(folder)!r} is a directory, not an image file" in capsys.readouterr().err
    assert _cli(tmp_path, folder, folder) == 2
    assert "is a directory, not a checkpoint file" in capsys.readouterr().err
    assert _cli(tmp_path, checkpoint, tmp_path / "missing.png") == 2
    assert "not found" in capsys.readouterr().err
