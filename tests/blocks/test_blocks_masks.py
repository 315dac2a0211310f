"""Block indexing, masks, budgets, magnitude selection, shrinking, and input errors."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

import sparsesel as ss
from sparsesel.blocks import apply_masks, apply_result, bake_masks, block_norms, parse_block_shape, shrink

torch.set_num_threads(1)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.Tanh(), nn.Linear(24, 3))


def test_parse_block_shape():
    assert parse_block_shape("8x8") == (8, 8)
    assert parse_block_shape("4x16") == (4, 16)
    assert parse_block_shape(2) == (2, 2)
    with pytest.raises(ValueError, match="must look like '8x8'"):
        parse_block_shape("8by8")
    with pytest.raises(ValueError, match="sides must be >= 1"):
        parse_block_shape((0, 4))


def test_block_norms_by_hand():
    w = torch.arange(24.0).reshape(4, 6)
    norms = block_norms(w, (2, 3))
    expected = np.array([[np.linalg.norm(w.numpy()[r * 2:(r + 1) * 2, c * 3:(c + 1) * 3]) for c in range(2)] for r in range(2)])
    assert np.allclose(norms.numpy(), expected)


def test_conv_blocks_cover_whole_kernels():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1))
    problem = ss.BlockSparsification(conv, block_shape=(4, 2), density=0.5, min_blocks=1)
    assert problem.params == ("0.weight",) and problem.grid("0.weight") == (2, 2)
    result = ss.solve(problem, solver="magnitude")
    w = conv[0].weight.detach().numpy()
    norms = {(r, c): np.linalg.norm(w[r * 4:(r + 1) * 4, c * 2:(c + 1) * 2]) for r in range(2) for c in range(2)}
    kept = sorted(norms, key=norms.get, reverse=True)[:2]
    assert set(result.selected[0][1]) == {r * 2 + c for r, c in kept}
    mask = result.info["masks"]["0.weight"]
    assert mask.shape == w.shape
    for r in range(2):
        for c in range(2):
            block = mask[r * 4:(r + 1) * 4, c * 2:(c + 1) * 2]
            assert bool(block.all()) == ((r, c) in kept) and bool(block.any()) == ((r, c) in kept)


def test_magnitude_equals_hand_top_k_per_layer_and_global():
    model = mlp()
    names = ["0.weight", "2.weight"]
    block = (8, 4)
    norms = {}
    for name in names:
        w = dict(model.named_parameters())[name].detach().numpy()
        R, C = w.shape[0] // 8, w.shape[1] // 4
        norms[name] = np.array([np.linalg.norm(w[r * 8:(r + 1) * 8, c * 4:(c + 1) * 4]) for r in range(R) for c in range(C)])
    per_layer = ss.solve(ss.BlockSparsification(model, block, density=0.25, params=names), solver="magnitude")
    for name, kept in per_layer.selected:
        k = round(0.25 * norms[name].size)
        assert set(kept) == set(np.argsort(-norms[name])[:k].tolist())
    glob = ss.solve(ss.BlockSparsification(model, block, density=0.25, params=names, allocation="global"), solver="magnitude")
    allnorms = np.concatenate([norms[n] for n in names])
    k = round(0.25 * allnorms.size)
    threshold = np.sort(allnorms)[::-1][k - 1]
    kept_norms = np.concatenate([norms[n][list(idx)] for n, idx in glob.selected])
    assert kept_norms.size == k and kept_norms.min() >= threshold


@pytest.mark.parametrize("density", [0.125, 0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("solver", ["magnitude", "acdc", "sequential_attention_pp", "powerpropagation", "group_regularized"])
def test_density_achieved_exactly(density, solver):
    model = mlp()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 16))
    y = rng.integers(0, 3, 64)
    problem = ss.BlockSparsification(model, (4, 4), density=density, data=(X, y), loss="cross_entropy",
                                     params=["0.weight", "2.weight"])
    result = ss.solve(problem, solver=solver, epochs=2, batch_size=32)
    # 0.weight: 8x4 = 32 blocks, 2.weight: 6x8 = 48 blocks; density·n is an integer for every density here
    assert result.info["density"] == density
    for name, kept in result.selected:
        assert len(kept) == density * problem.n_blocks[name]
        mask = result.info["masks"][name]
        assert mask.sum().item() == len(kept) * 16


def test_masks_zero_blocks_and_their_gradients():
    model = mlp()
    problem = ss.BlockSparsification(model, (8, 8), density=0.5, params=["0.weight", "2.weight"])
    result = ss.solve(problem, solver="magnitude")
    masked = result.info["model"]
    X = torch.randn(10, 16)
    masked(X).pow(2).sum().backward()
    for name, mask in result.info["masks"].items():
        module = masked.get_submodule(name.rsplit(".", 1)[0])
        weight = module.weight  # the parametrized (effective) weight
        assert torch.all(weight[~mask] == 0)
        assert torch.all(weight[mask] == dict(model.named_parameters())[name][mask])
        grad = module.parametrizations.weight.original.grad
        assert torch.all(grad[~mask] == 0) and torch.any(grad[mask] != 0)
    # the forward pass equals the dense model with the weights zeroed by hand
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for name, mask in result.info["masks"].items():
            dict(reference.named_parameters())[name].mul_(mask)
    assert torch.allclose(masked(X), reference(X))
    assert torch.allclose(bake_masks(masked)(X), reference(X))


def test_model_and_inputs_never_mutated():
    model = mlp()
    before = copy.deepcopy(model.state_dict())
    X = np.random.default_rng(0).normal(size=(40, 16))
    y = np.random.default_rng(1).integers(0, 3, 40)
    X_copy = X.copy()
    problem = ss.BlockSparsification(model, (4, 4), density=0.25, min_blocks=1, data=(X, y), loss="cross_entropy")
    for solver in ["magnitude", "sequential_attention_pp"]:
        ss.solve(problem, solver=solver, epochs=2)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert not any(hasattr(m, "parametrizations") for m in model.modules())
    assert np.array_equal(X, X_copy)
    for key, value in problem.model.state_dict().items():
        assert torch.equal(value, before[key])


def test_shrink_removes_dead_units_and_keeps_the_function():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.GELU(), nn.Linear(16, 4))
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    masks["0.weight"][:4] = False  # 4 dead rows of layer 0: constant act(bias), folded into layer 2
    masks["2.weight"][:, 10:] = False  # 6 dead input columns of layer 2: units 10..15 of layer 0 go
    masks["4.weight"][:, :3] = False  # 3 dead input columns of layer 4: units 0..2 of layer 2 go
    masked = bake_masks(apply_masks(model, masks))
    small = shrink(masked)
    X = torch.randn(32, 8)
    assert torch.allclose(small(X), masked(X), atol=1e-6)
    assert small[0].out_features == 6 and small[2].in_features == 6
    assert small[2].out_features == 13 and small[4].in_features == 13
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_shrink_conv_pair():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1))
    problem = ss.BlockSparsification(model, (4, 4), density=0.5, params=["2.weight"])
    result = ss.solve(problem, solver="magnitude")  # 2.weight has 1x2 blocks: one (out 0..3, in 0..3 or 4..7) kept
    small = apply_result(model, result, shrink_model=True)
    X = torch.randn(3, 2, 6, 6)
    assert torch.allclose(small(X), result.info["model"](X), atol=1e-5)
    assert small[0].out_channels == 4 and small[2].in_channels == 4


@pytest.mark.parametrize("conv, shape", [(nn.Conv1d, (3, 2, 9)), (nn.Conv3d, (2, 2, 4, 5, 5))])
def test_shrink_conv1d_and_conv3d_pairs(conv, shape):
    """Zeroed input channels of the second convolution go, in 1-D and 3-D as in 2-D; the function is the same."""
    torch.manual_seed(0)
    model = nn.Sequential(conv(2, 8, 3, padding=1), nn.ReLU(), conv(8, 4, 3, padding=1))
    with torch.no_grad():
        model[2].weight[:, [1, 4, 6]] = 0.0  # three hidden channels the second layer never reads
    X = torch.randn(*shape)
    small = shrink(model)
    assert small[0].out_channels == 5 and small[2].in_channels == 5
    assert small[0].weight.shape[0] == 5 and small[2].weight.shape[1] == 5
    torch.testing.assert_close(small(X), model(X), rtol=1e-5, atol=1e-6)
    grouped = nn.Sequential(conv(2, 8, 3, padding=1, groups=2), nn.ReLU(), conv(8, 4, 3, padding=1))
    assert shrink(grouped)[0].out_channels == 8  # grouped convolutions are left as they are


def test_bad_inputs_raise_clear_errors():
    model = mlp()
    with pytest.raises(ValueError, match=r"block shape 5x5 does not divide parameter '0.weight'"):
        ss.BlockSparsification(model, (5, 5), density=0.5, params=["0.weight"])
    with pytest.raises(ValueError, match="no Linear/Conv weight"):
        ss.BlockSparsification(model, (7, 7), density=0.5)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"density must be in \(0, 1\]"):
            ss.BlockSparsification(model, (4, 4), density=bad, min_blocks=1)
    with pytest.raises(TypeError, match="density must be a number"):
        ss.BlockSparsification(model, (4, 4), density="half", min_blocks=1)
    with pytest.raises(ValueError, match="no Linear/Conv weight"):
        ss.BlockSparsification(nn.Sequential(nn.ReLU(), nn.Tanh()), (1, 1), density=0.5)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ss.BlockSparsification("resnet", (4, 4), density=0.5)
    with pytest.raises(ValueError, match="unknown parameter"):
        ss.BlockSparsification(model, (4, 4), density=0.5, params=["9.weight"])
    with pytest.raises(ValueError, match="loss must be one of"):
        ss.BlockSparsification(model, (4, 4), density=0.5, min_blocks=1, loss="hinge")
    with pytest.raises(ValueError, match="they must match"):
        ss.BlockSparsification(model, (4, 4), density=0.5, min_blocks=1, data=(np.zeros((5, 16)), np.zeros(4)))
    with pytest.raises(ValueError, match="model and data do not fit"):
        ss.BlockSparsification(model, (4, 4), density=0.5, min_blocks=1, data=(np.zeros((5, 7)), np.zeros(5)))
    with pytest.raises(ValueError, match="integer class labels"):
        ss.BlockSparsification(model, (4, 4), density=0.5, min_blocks=1, data=(np.zeros((5, 16)), np.full(5, 0.5)), loss="cross_entropy")
    problem = ss.BlockSparsification(model, (4, 4), density=0.5, min_blocks=1)
    with pytest.raises(ValueError, match="training needs data"):
        ss.solve(problem, solver="acdc", epochs=1)
    with pytest.raises(ValueError, match="unknown option"):
        ss.solve(problem, solver="magnitude", epoch=3)
    with pytest.raises(ValueError, match="schedule must be one of"):
        ss.solve(problem, solver="magnitude", schedule="fast")


def test_corrupt_weights_are_rejected_naming_the_parameter():
    for name, value in (("0.weight", float("nan")), ("2.weight", float("inf"))):
        model = mlp()
        with torch.no_grad():
            dict(model.named_parameters())[name][1, 2] = value
        with pytest.raises(ValueError, match=rf"parameter '{name}' has 1 NaN or infinite"):
            ss.BlockSparsification(model, (4, 4), density=0.5, min_blocks=1)


def test_callable_loss_gets_integer_labels_and_float_targets():
    torch.manual_seed(0)
    X = torch.randn(40, 16)
    labels = torch.randint(0, 4, (40,))
    seen = []

    def loss(output, target):
        seen.append(target.dtype)
        return nn.functional.cross_entropy(output, target)

    model = nn.Sequential(nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    result = ss.solve(ss.BlockSparsification(model, (4, 4), 0.5, data=(X, labels), loss=loss, min_blocks=1),
                      solver="magnitude", epochs=1)
    assert set(seen) == {torch.int64} and result.info["density"] == 0.5
    problem = ss.BlockSparsification(model, (4, 4), 0.5, data=(X, np.asarray(labels) * 0.5),
                                     loss=lambda o, t: ((o[:, 0] - t) ** 2).mean(), min_blocks=1)
    assert problem.data[1].dtype == torch.float32


def test_apply_result_to_the_returned_masked_model_and_shrink():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    X = np.random.default_rng(0).normal(size=(64, 16))
    y = np.random.default_rng(1).integers(0, 4, 64)
    problem = ss.BlockSparsification(model, (8, 8), 0.25, data=(X, y), loss="cross_entropy", params=["0.weight", "2.weight"])
    result = ss.solve(problem, solver="acdc", epochs=2)
    small = apply_result(result.info["model"], result, shrink_model=True)
    x = torch.as_tensor(X[:8], dtype=torch.float32)
    assert torch.allclose(small(x), result.info["model"](x), atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters())


def test_baking_a_copy_leaves_the_masked_original_working():
    model = mlp()
    result = ss.solve(ss.BlockSparsification(model, (8, 8), 0.5, params=["0.weight"]), solver="magnitude")
    masked = result.info["model"]
    x = torch.randn(4, 16)
    before = masked(x)
    baked = bake_masks(masked)
    assert torch.allclose(baked(x), before) and torch.allclose(masked(x), before)
    assert hasattr(masked[0], "parametrizations") and not hasattr(baked[0], "parametrizations")
