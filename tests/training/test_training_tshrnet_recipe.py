"""``sparsesel train tshrnet`` uses TSHRNet's own recipe, the official ``train_4_networks.py``:
Adam, lr 1e-4, betas (0.5, 0.999), no weight decay, a constant rate, and the sum of five MSEs
of weight 1 on tensors normalised to [-1, 1] (the official script normalises the image and all
its targets with mean 0.5, std 0.5). The optimizer is inspected as the CLI builds it, and the
loss of the first step is recomputed by hand from the official formula on a copy of the network.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

from sparsesel.cli import main
from sparsesel.training import TrainConfig, trainer
from sparsesel.training.losses import OptimizerRecipe, training_recipe

TINY = ["--option", "width=4", "--option", "levels=2", "--option", "shared_repeats=1", "--option", "max_width_mult=2"]


def _official_loss(model: torch.nn.Module, batch: dict) -> float:
    """``L_total`` of train_4_networks.py, written out on the official [-1, 1] tensors."""
    norm = lambda t: (t - 0.5) / 0.5  # noqa: E731  (ImageTransform's Normalize((0.5,), (0.5,)))
    img = norm(batch["input"])
    with torch.no_grad():
        albedo, shading = model.albedo_net(img), model.shading_net(img)
        residue = img - albedo * shading
        refined = model.refine_net(torch.cat([albedo * shading, img], dim=1))
        toned = model.tone_net(torch.cat([refined, residue, img], dim=1))
        total = (
            F.mse_loss(albedo, norm(batch["albedo"]))
            + F.mse_loss(shading, norm(batch["shading"]))
            + F.mse_loss(residue, norm(batch["residue"]))
            + F.mse_loss(refined, norm(batch["diffuse"]))
            + F.mse_loss(toned, norm(batch["target"]))
        )
    return float(total)


def _spy(monkeypatch) -> dict:
    seen: dict = {"losses": []}
    build = trainer.make_optimizers

    def spying(config, model):
        steps, optimizers, schedules = build(config, model)
        seen.update(config=config, model=model, optimizers=optimizers, schedules=schedules)
        original = steps[0].loss

        def loss(model, batch, cache):
            expected = _official_loss(copy.deepcopy(model), batch)  # a copy: BatchNorm statistics stay untouched
            result = original(model, batch, cache)
            seen["losses"].append((float(result["loss"].detach()), expected))
            return result

        return [steps[0].__class__(steps[0].name, steps[0].parameters, loss)], optimizers, schedules

    monkeypatch.setattr(trainer, "make_optimizers", spying)
    return seen


def test_cli_trains_tshrnet_with_the_official_recipe(tmp_path, monkeypatch, capsys):
    seen = _spy(monkeypatch)
    out = tmp_path / "tshrnet.pt"
    args = ["train", "tshrnet", "--task", "specular", "--steps", "3", "--batch-size", "2", "--patch-size", "16", *TINY,
            "--eval-count", "0", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().err
    (optimizer,) = seen["optimizers"]
    assert type(optimizer) is torch.optim.Adam  # not AdamW (a subclass of Adam)
    (group,) = optimizer.param_groups
    assert group["betas"] == (0.5, 0.999) and group["weight_decay"] == 0
    assert group["lr"] == pytest.approx(1e-4, rel=1e-12)  # after 3 steps: the rate stays constant
    assert {id(p) for p in group["params"]} == {id(p) for p in seen["model"].parameters()}
    assert len(seen["losses"]) == 3
    for got, expected in seen["losses"]:
        assert got == pytest.approx(expected, rel=1e-5)
    meta = json.loads(out.with_suffix(".json").read_text())["train"]
    assert {k: meta[k] for k in ("optimizer", "lr", "betas", "weight_decay", "schedule")} == {
        "optimizer": "adam", "lr": 1e-4, "betas": [0.5, 0.999], "weight_decay": 0.0, "schedule": "constant"}


def test_cli_options_override_the_recipe(tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    args = ["train", "tshrnet", "--task", "specular", "--steps", "1", "--batch-size", "1", "--patch-size", "16", *TINY,
            "--lr", "3e-4", "--weight-decay", "0.01", "--eval-count", "0", "--threads", "1", "--no-progress",
            "--out", str(tmp_path / "t.pt")]
    assert main(args) == 0
    (group,) = seen["optimizers"][0].param_groups
    assert type(seen["optimizers"][0]) is torch.optim.Adam and group["lr"] == 3e-4 and group["weight_decay"] == 0.01


def test_recipes_are_values_the_trainer_reads():
    tshrnet = training_recipe("tshrnet")
    assert tshrnet.optimizer == OptimizerRecipe("adam", lr=1e-4, betas=(0.5, 0.999), weight_decay=0.0, schedule="constant")
    assert dict(tshrnet.loss_weights) == {"albedo": 1.0, "shading": 1.0, "residue": 1.0, "diffuse": 1.0, "diffuse_tc": 1.0}
    assert "train_4_networks.py" in tshrnet.source
    config = TrainConfig(net="tshrnet", task="specular")
    assert (config.optimizer, config.lr, config.betas, config.weight_decay, config.schedule) == ("adam", 1e-4, (0.5, 0.999), 0.0, "constant")
    uhdformer = TrainConfig(net="uhdformer", task="lowlight")
    assert (uhdformer.optimizer, uhdformer.lr, uhdformer.betas, uhdformer.weight_decay, uhdformer.schedule, uhdformer.eta_min) == (
        "adamw", 5e-4, (0.9, 0.99), 1e-3, "cosine", 1e-7)
    model = torch.nn.Linear(2, 2)
    _, (optimizer,), (schedule,) = trainer.make_optimizers(TrainConfig(net="csattn", task="haze", steps=4), model)
    assert type(optimizer) is torch.optim.AdamW and isinstance(schedule, torch.optim.lr_scheduler.CosineAnnealingLR)
    with pytest.raises(ValueError, match=r"optimizer must be one of \('adamw', 'adam'\), got 'sgd'"):
        TrainConfig(net="tshrnet", task="specular", optimizer="sgd")
    with pytest.raises(ValueError, match=r"schedule must be one of \('cosine', 'constant'\), got 'step'"):
        TrainConfig(net="tshrnet", task="specular", schedule="step")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        OptimizerRecipe("sgd", lr=1.0, betas=(0.9, 0.9), weight_decay=0.0, schedule="constant")


def test_mixed_data_stage_one_trains_with_the_four_mix_terms(tmp_path):
    from sparsesel.training import train

    config = TrainConfig(net="tshrnet", task="specular", steps=1, batch_size=1, patch_size=16, eval_count=0, threads=1,
                         net_options={"width": 4, "levels": 2, "shared_repeats": 1, "max_width_mult": 2, "stage_one": "direct"})
    seen = []
    train(config, tmp_path / "mix.pt", progress=False, callback=lambda step, logs: seen.append(logs))
    (logs,) = seen
    assert set(logs) == {"loss", "diffuse_coarse", "residue", "diffuse", "diffuse_tc"}
    assert logs["loss"] == pytest.approx(sum(v for k, v in logs.items() if k != "loss"), rel=1e-6)
