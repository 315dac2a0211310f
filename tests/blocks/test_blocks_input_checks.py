"""Input checks of BlockSparsification and the shared training loop (issue 6, audit items 4-9).

Each test feeds one kind of bad input (DataLoader batch layout, missing len(), empty or
non-finite data, a diverging run, weight_norm / tied weights, out-of-range labels, a
float64 model) and checks a clear error, or, where the input is legitimate, a result
checked against a hand computation. The last tests pin the masks and objectives of
normal small runs, recorded with the code as it was before these checks were added.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

import sparsesel as ss

torch.set_num_threads(1)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def tensors(n=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, generator=gen), torch.randint(0, 4, (n,), generator=gen)


def loader(*arrays, batch_size=8, **kwargs):
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*arrays), batch_size=batch_size, **kwargs)


def problem(data, **kwargs):
    kwargs.setdefault("loss", "cross_entropy")
    return ss.BlockSparsification(mlp(), (4, 4), 0.5, min_blocks=1, data=data, **kwargs)


# ------------------------------------------------------------ 4: batch layout
class DictDataset(torch.utils.data.Dataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return {"x": self.X[i], "y": self.y[i]}


def test_dict_batches_are_refused_naming_the_keys():
    X, y = tensors()
    dl = torch.utils.data.DataLoader(DictDataset(X, y), batch_size=8)
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pair.*dict with keys \['x', 'y'\].*yields \(x, y\)"):
        problem(dl)


def test_three_tuple_batches_are_refused():
    X, y = tensors()
    with pytest.raises(TypeError, match=r"\(inputs, targets\) pair.*length 3"):
        problem(loader(X, y, y))


def test_wrong_feature_width_fails_at_construction_naming_the_shape():
    _, y = tensors()
    with pytest.raises(ValueError, match=r"do not fit together: the model cannot take inputs of shape \(8, 7\)"):
        problem(loader(torch.randn(32, 7), y))


def test_loss_failure_on_first_batch_names_the_shapes():
    X, _ = tensors()
    with pytest.raises(ValueError, match=r"loss fails on model output of shape \(8, 4\) and targets of shape \(8, 3\)"):
        problem(loader(X, torch.randn(32, 3)), loss="mse")


def test_building_with_a_dataloader_changes_no_random_state():
    X, y = tensors()
    gen = torch.Generator().manual_seed(5)
    dl = loader(X, y, shuffle=True, generator=gen)
    model = mlp()
    torch.manual_seed(11)
    np.random.seed(11)
    global_before, loader_before = torch.random.get_rng_state(), gen.get_state()
    numpy_before = np.random.get_state()[1].copy()
    ss.BlockSparsification(model, (4, 4), 0.5, min_blocks=1, data=dl, loss="cross_entropy")
    assert torch.equal(torch.random.get_rng_state(), global_before)
    assert torch.equal(gen.get_state(), loader_before)
    assert np.array_equal(np.random.get_state()[1], numpy_before)


# ---------------------------------------------------------- 5: no len()
class Stream(torch.utils.data.IterableDataset):
    def __init__(self, X, y):
        self.X, self.y = X, y

    def __iter__(self):
        for i in range(0, len(self.X), 8):
            yield self.X[i : i + 8], self.y[i : i + 8]


class SizedStream(Stream):
    def __len__(self):
        return math.ceil(len(self.X) / 8)


def test_iterable_dataset_without_len_is_refused():
    X, y = tensors()
    dl = torch.utils.data.DataLoader(Stream(X, y), batch_size=None)
    with pytest.raises(ValueError, match=r"no len\(\).*batches per epoch.*IterableDataset that defines __len__"):
        problem(dl)


def test_iterable_dataset_with_len_trains_for_len_steps_per_epoch():
    X, y = tensors()
    dl = torch.utils.data.DataLoader(SizedStream(X, y), batch_size=None)
    result = ss.solve(problem(dl), solver="acdc", epochs=2)
    assert sum(t["steps"] for t in result.trace) == 2 * 4  # 32 rows / 8 per batch, 2 epochs
    assert math.isfinite(result.objective)


# ------------------------------------------------- 6: empty, NaN/inf batches
def test_empty_dataloader_is_refused():
    dl = loader(torch.zeros(0, 8), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="empty DataLoader"):
        problem(dl)


@pytest.mark.parametrize("which", ["inputs", "targets"])
def test_non_finite_batch_stops_training_naming_epoch_and_step(which):
    X, y = tensors()
    targets = torch.randn(32, 4)
    if which == "inputs":
        X = X.clone()
        X[13, 2] = float("nan")  # batch 2 of 4 (rows 8-15)
    else:
        targets[13, 0] = float("inf")
    p = problem(loader(X, targets), loss="mse")
    with pytest.raises(ValueError, match=rf"acdc: training epoch 1, step 2 of 4: the batch's {which} contain NaN"):
        ss.solve(p, solver="acdc", epochs=1)


def test_non_finite_batch_in_a_later_epoch():
    X, y = tensors()
    bad = X.clone()
    bad[30, 0] = float("nan")
    calls = {"n": 0}

    class SwapsInEpochTwo(torch.utils.data.Dataset):  # clean in epoch 1, NaN in epoch 2
        def __len__(self):
            return 32

        def __getitem__(self, i):
            calls["n"] += 1
            return (X if calls["n"] <= 32 + 8 else bad)[i], y[i]  # +8: the construction probe's batch

    p = problem(torch.utils.data.DataLoader(SwapsInEpochTwo(), batch_size=8))
    with pytest.raises(ValueError, match=r"epoch 2, step 4 of 4: the batch's inputs contain NaN"):
        ss.solve(p, solver="magnitude", schedule="gradual", epochs=3)


# ------------------------------------------------------------ 7: divergence
@pytest.mark.parametrize("solver, options", [
    ("acdc", {}), ("magnitude", {"schedule": "gradual"}), ("powerpropagation", {}),
    ("group_regularized", {}), ("sequential_attention_pp", {}),
])
def test_diverging_loss_raises_naming_method_epoch_step(solver, options):
    X, y = tensors(64)
    calls = {"n": 0}

    def loss(output, target):
        calls["n"] += 1
        value = nn.functional.cross_entropy(output, target)
        return value * float("nan") if calls["n"] == 6 else value  # call 1 is the construction probe

    p = problem((X, y), loss=loss)
    calls["n"] = 0
    with pytest.raises(FloatingPointError, match=rf"{solver}.*loss became nan.*epoch 1, step 6 of 8.*lower learning rate"):
        ss.solve(p, solver=solver, epochs=2, batch_size=8, **options)


def test_huge_learning_rate_is_reported_not_returned():
    torch.manual_seed(0)
    X = torch.randn(64, 16) * 1e3
    Y = torch.randn(64, 3) * 1e3
    model = nn.Sequential(nn.Linear(16, 40), nn.ReLU(), nn.Linear(40, 3))
    p = ss.BlockSparsification(model, (2, 2), 0.25, data=(X, Y), loss="mse", params=["0.weight"])
    with pytest.raises(FloatingPointError, match="lower learning rate"):
        ss.solve(p, solver="acdc", epochs=3, lr=1e30)


def test_no_result_from_non_finite_weights():
    model = mlp()
    p = ss.BlockSparsification(model, (4, 4), 0.5, min_blocks=1)  # candidate weights are finite
    with torch.no_grad():
        p.model[0].bias[0] = float("nan")  # a weight that is not a candidate goes bad
    with pytest.raises(FloatingPointError, match=r"parameter '0.bias' has 1 NaN"):
        ss.solve(p, solver="magnitude")


# ------------------------------------------------- 8: weight_norm, tied weights
def test_parametrized_weight_is_skipped_by_default_and_refused_by_name():
    from torch.nn.utils.parametrizations import weight_norm

    model = nn.Sequential(weight_norm(nn.Linear(8, 16)), nn.ReLU(), nn.Linear(16, 4))
    p = ss.BlockSparsification(model, (4, 4), 0.5, min_blocks=1)
    assert p.params == ("2.weight",)
    assert ss.solve(p, solver="magnitude").info["density"] == 0.5
    with pytest.raises(ValueError, match=r"'0.weight', which is computed by a parametrization.*remove it first"):
        ss.BlockSparsification(model, (4, 4), 0.5, min_blocks=1, params=["0.weight"])


@pytest.mark.filterwarnings("ignore:.*weight_norm.* is deprecated:FutureWarning")
def test_deprecated_weight_norm_is_refused_clearly():
    model = nn.Sequential(torch.nn.utils.weight_norm(nn.Linear(8, 16)), nn.ReLU(), nn.Linear(16, 4))
    with pytest.raises(ValueError, match=r"deprecated torch.nn.utils.weight_norm on \['0.weight'\]"):
        ss.BlockSparsification(model, (4, 4), 0.5, min_blocks=1)


def test_buffer_in_params_is_refused():
    model = nn.Sequential(nn.BatchNorm1d(8), nn.Linear(8, 16))
    with pytest.raises(ValueError, match="'0.running_mean', a tensor that is not a registered parameter"):
        ss.BlockSparsification(model, (4, 4), 0.5, min_blocks=1, params=["0.running_mean"])


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_tied_weight_is_listed_once_and_pruned_in_every_use():
    torch.manual_seed(0)
    model = Tied()
    X = torch.randn(32, 8)
    p = ss.BlockSparsification(model, (4, 4), 0.5, min_blocks=1, data=(X, X))
    assert p.params == ("a.weight",)
    result = ss.solve(p, solver="magnitude")
    # hand reference: keep the 2 of 4 blocks with the largest Frobenius norm
    W = model.a.weight.detach()
    norms = torch.stack([W[r * 4 : r * 4 + 4, c * 4 : c * 4 + 4].norm() for r in range(2) for c in range(2)])
    expected = tuple(sorted(torch.topk(norms, 2).indices.tolist()))
    assert result.selected == (("a.weight", expected),)
    mask = result.info["masks"]["a.weight"]
    Wm = W * mask
    with torch.no_grad():
        reference = torch.relu(X @ Wm.T + model.a.bias) @ Wm.T + model.b.bias  # both uses masked
        assert torch.allclose(result.info["model"](X), reference, atol=1e-6)
    assert result.objective == pytest.approx(float(((reference - X) ** 2).mean()), rel=1e-6)


def test_tied_alias_in_params_names_the_first_name():
    with pytest.raises(ValueError, match=r"'b.weight', which is the same tensor as 'a.weight' \(tied weights\)"):
        ss.BlockSparsification(Tied(), (4, 4), 0.5, min_blocks=1, params=["a.weight", "b.weight"])


# ----------------------------------------------- 9: labels, dtypes
def test_out_of_range_label_in_a_late_row_is_named():
    X, y = tensors()
    y = y.clone()
    y[20] = 9
    with pytest.raises(ValueError, match=r"class label 9 in row 20, but the model outputs 4 classes"):
        problem((X, y))


def test_out_of_range_label_in_the_first_dataloader_batch():
    X, y = tensors()
    y = y.clone()
    y[3] = 4
    with pytest.raises(ValueError, match=r"first batch has class label 4 in row 3"):
        problem(loader(X, y))


def test_float_labels_from_a_dataloader_with_cross_entropy():
    X, y = tensors()
    with pytest.raises(ValueError, match="cross_entropy needs integer class labels, got float32 targets"):
        problem(loader(X, y.float()))


def test_class_probabilities_from_a_dataloader_are_accepted():
    X, y = tensors()
    probabilities = nn.functional.one_hot(y, 4).float()
    result = ss.solve(problem(loader(X, probabilities)), solver="acdc", epochs=1)
    assert math.isfinite(result.objective)


def test_float64_model_trains_on_float64_data():
    model = mlp().double()
    X, y = tensors()
    p = ss.BlockSparsification(model, (4, 4), 0.5, min_blocks=1, data=(X.numpy(), y.numpy()), loss="cross_entropy")
    assert p.data[0].dtype == torch.float64
    result = ss.solve(p, solver="magnitude")  # epochs=0: the objective is a plain forward pass
    masks = result.info["masks"]
    W0 = model[0].weight.detach() * masks["0.weight"]
    W2 = model[2].weight.detach() * masks["2.weight"]
    X64 = X.double()
    logits = torch.relu(X64 @ W0.T + model[0].bias.detach()) @ W2.T + model[2].bias.detach()
    reference = float(nn.functional.cross_entropy(logits, y))
    assert result.objective == pytest.approx(reference, rel=1e-12)
    trained = ss.solve(p, solver="sequential_attention_pp", epochs=1)
    assert math.isfinite(trained.objective)
