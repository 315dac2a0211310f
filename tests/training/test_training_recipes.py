"""Every network of the zoo trains: a few AdamW steps on one tiny batch lower its recipe's loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.nets import zoo
from sparsesel.training.losses import fft_l1_loss, l1_fft_loss, predict, recipe

TINY = {
    "uhdformer": ("lowlight", {}),
    "csattn": ("haze", {"width": 4, "heads": [1, 1, 2]}),
    "tshrnet": ("specular", {"width": 4, "levels": 2, "shared_repeats": 1, "max_width_mult": 2}),
    "harmonizer": ("harmonize", {"width": 4, "disc_width": 4}),
}


@pytest.mark.parametrize("net", sorted(TINY))
def test_loss_goes_down_on_a_fixed_batch(net):
    task, options = TINY[net]
    torch.manual_seed(0)
    model = zoo.build_net(net, "small", **options)
    batch = PairedPatchDataset(task, patch_size=32, length=2, seed=0).batch([0, 1])
    steps = recipe(net)
    optimizers = [torch.optim.AdamW(list(s.parameters(model)), lr=3e-3, weight_decay=0.0) for s in steps]
    # the GAN's total includes the adversarial game; watch its supervised terms (L1 + shadow L1)
    watched = ("l1", "shadow") if net == "harmonizer" else ("loss",)
    history = []
    for _ in range(24 if net == "harmonizer" else 12):
        cache: dict = {}
        for step, optimizer in zip(steps, optimizers):
            optimizer.zero_grad(set_to_none=True)
            logs = step.loss(model, batch, cache)
            logs["loss"].backward()
            optimizer.step()
            if step.name in ("main", "generator"):
                history.append(sum(float(logs[key].detach()) for key in watched))
    assert np.isfinite(history).all()
    assert np.mean(history[-3:]) < 0.8 * np.mean(history[:2]), [round(h, 4) for h in history]
    model.eval()
    out = predict(net, model, {k: v[:1, ..., :20, :28] for k, v in batch.items()})
    assert out.shape == (1, 3, 20, 28)


def test_fft_loss_matches_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 8, 10)), rng.normal(size=(2, 3, 8, 10))
    fa, fb = np.fft.rfft2(a), np.fft.rfft2(b)
    expected = np.mean(np.abs(np.stack([fa.real - fb.real, fa.imag - fb.imag])))
    got = fft_l1_loss(torch.from_numpy(a), torch.from_numpy(b))
    assert float(got) == pytest.approx(expected, rel=1e-12)
    total = l1_fft_loss(torch.from_numpy(a), torch.from_numpy(b))
    assert float(total) == pytest.approx(np.mean(np.abs(a - b)) + 0.1 * expected, rel=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        fft_l1_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))


def test_unknown_network_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown network 'unet'; choose one of \('csattn', 'harmonizer', 'tshrnet', 'uhdformer'\)"):
        zoo.build_net("unet")
    with pytest.raises(ValueError, match="preset must be one of"):
        zoo.build_net("csattn", "large")
    with pytest.raises(ValueError, match="unknown network 'unet'"):
        recipe("unet")
