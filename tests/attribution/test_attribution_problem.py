"""Validation of the Attribution problem: clear errors on bad input; inputs copied."""

import numpy as np
import pytest
import torch

import sparsesel as ss
from sparsesel.attribution import baselines



def linear(z):
    return z.reshape(len(z), -1) @ torch.arange(1.0, 1.0 + z[0].numel())


def test_k_larger_than_features():
    with pytest.raises(ValueError, match=r"k must be <= the number of features \(4\), got 5"):
        ss.Attribution(linear, torch.ones(4), k=5)
    with pytest.raises(ValueError, match=r"k must be <= the number of features \(6\)"):
        ss.Attribution(lambda z: z.sum(dim=(1, 2, 3)), torch.ones(3, 2, 3), k=7, groups="pixels")
    with pytest.raises(TypeError, match="k must be an integer"):
        ss.Attribution(linear, torch.ones(4), k=2.0)


def test_baseline_shape_mismatch():
    with pytest.raises(ValueError, match=r"baseline has shape \(3,\) but x has shape \(4,\)"):
        ss.Attribution(linear, torch.ones(4), baseline=np.zeros(3), k=1)
    with pytest.raises(ValueError, match="baseline must be one of"):
        ss.Attribution(linear, torch.ones(4), baseline="grey", k=1)
    with pytest.raises(ValueError, match="blurred baseline needs an image"):
        ss.Attribution(linear, torch.ones(4), baseline="blurred", k=1)


def test_non_differentiable_model_output():
    def through_numpy(z):
        return torch.from_numpy(z.detach().numpy().sum(axis=1))

    with pytest.raises(TypeError, match="not differentiable with respect to x"):
        ss.Attribution(through_numpy, torch.ones(4), k=1)
    with pytest.raises(TypeError, match="does not depend on the input"):
        ss.Attribution(lambda z: torch.ones(len(z), requires_grad=True) * 2, torch.ones(4), k=1)
    with pytest.raises(TypeError, match="model must return a torch.Tensor"):
        ss.Attribution(lambda z: z.sum().item(), torch.ones(4), k=1)


def test_target_and_output_shape_errors():
    net = torch.nn.Linear(4, 3)
    with pytest.raises(ValueError, match="target is required: the model returns 3 outputs"):
        ss.Attribution(net, torch.ones(4), k=1)
    with pytest.raises(ValueError, match="target must be <= 2"):
        ss.Attribution(net, torch.ones(4), k=1, target=3)
    with pytest.raises(ValueError, match=r"model must map a batch .* returned shape \(2, 3, 1\)"):
        ss.Attribution(lambda z: z.reshape(2, 3, -1).sum(-1, keepdim=True), torch.ones(6), k=1)
    with pytest.raises(ValueError, match="model failed on a batch of shape"):
        ss.Attribution(net, torch.ones(5), k=1, target=0)
    with pytest.raises(ValueError, match="x contains NaN"):
        ss.Attribution(net, torch.tensor([1.0, float("nan"), 0, 0]), k=1, target=0)
    with pytest.raises(ValueError, match="output must be one of"):
        ss.Attribution(net, torch.ones(4), k=1, target=0, output="probability")


def test_groups_validation_and_objective():
    x = torch.arange(6.0).reshape(2, 3)
    problem = ss.Attribution(linear, x, k=2, groups=np.array([0, 1, 2]))  # columns, broadcast over rows
    assert problem.n_features == 3 and problem.feature_shape == (3,)
    # G({1}) = sum over rows of column 1's weighted values: 2*1 + 5*4 (weights 1..6 row-major)
    assert problem.objective([1]) == pytest.approx(1 * 2 + 4 * 5)
    with pytest.raises(ValueError, match="groups must use every label 0..3; missing \\[2\\]"):
        ss.Attribution(linear, x, k=1, groups=np.array([0, 1, 3]))
    with pytest.raises(TypeError, match="groups must hold integer"):
        ss.Attribution(linear, x, k=1, groups=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="does not broadcast"):
        ss.Attribution(linear, x, k=1, groups=np.array([0, 1]))


def test_inputs_are_copied_and_baselines_have_known_values():
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    problem = ss.Attribution(lambda z: z.sum(dim=(1, 2, 3)), x, baseline="mean", k=3, groups="pixels")
    x.add_(1.0)
    assert torch.equal(problem.x, before)
    np.testing.assert_allclose(problem.baseline[:, 0, 0].numpy(), before.mean(dim=(1, 2)).numpy(), rtol=1e-6)
    assert torch.equal(baselines.black(before), torch.full_like(before, float(before.min())))
    from scipy.ndimage import gaussian_filter

    blurred = baselines.blurred(before, sigma=1.5).numpy()
    np.testing.assert_allclose(blurred[1], gaussian_filter(before[1].double().numpy(), 1.5), atol=1e-6)
    with pytest.raises(ValueError, match="unknown solver 'nope' for Attribution"):
        ss.solve(problem, "nope")
