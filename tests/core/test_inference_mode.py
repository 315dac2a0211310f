"""check_inference_mode recognises every torch layer whose training mode changes its outputs.

The reference is torch itself: for each layer kind, two calls on the same batch in
training mode either change the layer (running statistics) or give random outputs,
and the check must refuse exactly those kinds.
"""

import pytest
import torch
from torch import nn

from sparsesel.validation import check_inference_mode

STATEFUL_NORMS = [
    lambda: nn.BatchNorm1d(3), lambda: nn.BatchNorm2d(3), lambda: nn.BatchNorm3d(3), lambda: nn.SyncBatchNorm(3),
    lambda: nn.LazyBatchNorm1d(), lambda: nn.LazyBatchNorm2d(), lambda: nn.LazyBatchNorm3d(),
    lambda: nn.InstanceNorm1d(3, track_running_stats=True), lambda: nn.InstanceNorm2d(3, track_running_stats=True),
    lambda: nn.InstanceNorm3d(3, track_running_stats=True),
    lambda: nn.LazyInstanceNorm1d(track_running_stats=True), lambda: nn.LazyInstanceNorm2d(track_running_stats=True),
    lambda: nn.LazyInstanceNorm3d(track_running_stats=True),
]
DROPOUTS = [lambda: nn.Dropout(0.5), lambda: nn.Dropout1d(0.5), lambda: nn.Dropout2d(0.5), lambda: nn.Dropout3d(0.5),
            lambda: nn.AlphaDropout(0.5), lambda: nn.FeatureAlphaDropout(0.5)]
HARMLESS = [lambda: nn.InstanceNorm1d(3), lambda: nn.InstanceNorm2d(3, affine=True), lambda: nn.GroupNorm(1, 3),
            lambda: nn.LayerNorm(3), lambda: nn.Linear(3, 3), lambda: nn.ReLU()]


def _ids(factories):
    return [type(f()).__name__ + ("+stats" if getattr(f(), "track_running_stats", False) else "") for f in factories]


@pytest.mark.parametrize("make", STATEFUL_NORMS, ids=_ids(STATEFUL_NORMS))
def test_norms_with_running_statistics_in_training_mode_are_refused(make):
    model = nn.Sequential(nn.Identity(), make()).train()
    with pytest.raises(ValueError, match=rf"training mode: submodule '1' \({type(model[1]).__name__}\) "
                                         r"updates its running statistics.*call model.eval\(\) first"):
        check_inference_mode(model, "first")
    check_inference_mode(model.eval(), "first")


@pytest.mark.parametrize("make", DROPOUTS, ids=_ids(DROPOUTS))
def test_dropout_in_training_mode_is_refused(make):
    layer = make().train()
    x = torch.ones({nn.Dropout1d: (2, 8, 4), nn.Dropout2d: (2, 8, 4, 4)}.get(type(layer), (2, 8, 4, 4, 4)))
    torch.manual_seed(0)
    assert not torch.equal(layer(x), x)  # torch's own word: training mode changes the outputs
    with pytest.raises(ValueError, match=rf"the model itself \({type(layer).__name__}\) zeroes random units"):
        check_inference_mode(layer, "first")
    check_inference_mode(layer.eval(), "first")


@pytest.mark.parametrize("make", HARMLESS, ids=_ids(HARMLESS))
def test_layers_that_behave_the_same_in_both_modes_are_accepted(make):
    layer = make().train()
    assert not getattr(layer, "track_running_stats", False)
    check_inference_mode(nn.Sequential(layer), "first")


def test_a_subclass_of_a_public_layer_is_recognised():
    class MyBatchNorm(nn.BatchNorm2d):
        pass

    with pytest.raises(ValueError, match=r"\(MyBatchNorm\)"):
        check_inference_mode(MyBatchNorm(3).train(), "first")
