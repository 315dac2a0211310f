"""The one training loop (sparsesel.training.loop) and distillation as its recipe.

The reference is the distillation loop written out here with plain torch (AdamW, cosine schedule,
L1 + 0.1·FFT-L1 to the teacher and to the target): the fine-tuning must give its weights bit for
bit, and a run killed and resumed must give the uninterrupted run's weights bit for bit.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.compress.finetune import FinetuneConfig, finetune
from sparsesel.data.datasets import PairedPatchDataset
from sparsesel.training.loop import STATE_FORMAT, StateFile, Trainable, read_state, run_loop
from sparsesel.training.losses import OptimizerRecipe, TrainingStep

CONFIG = FinetuneConfig(steps=6, batch_size=2, patch_size=16, lr=1e-3, seed=4, checkpoint_every=2)


def tiny(seed: int) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1))


def l1_and_fft(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 + 0.1·L1 of the stacked real and imaginary parts of the 2-D real FFTs (the L1 first: the order
    in which autograd adds the two gradients into ``a`` changes the last bit)."""
    pixels = F.l1_loss(a, b)
    spectrum = F.l1_loss(torch.view_as_real(torch.fft.rfft2(a, dim=(-2, -1))), torch.view_as_real(torch.fft.rfft2(b, dim=(-2, -1))))
    return pixels + 0.1 * spectrum


def reference_distillation(student: nn.Module, teacher: nn.Module, config: FinetuneConfig) -> list[float]:
    """The distillation fine-tuning, written out."""
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.99))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.eta_min)
    data = PairedPatchDataset(config.task, split="train", patch_size=config.patch_size, length=config.steps * config.batch_size,
                              seed=config.seed)
    losses = []
    student.train()
    for t in range(config.steps):
        batch = data.batch(range(t * config.batch_size, (t + 1) * config.batch_size))
        with torch.no_grad():
            taught = teacher(batch["input"])
        out = student(batch["input"])
        loss = 1.0 * l1_and_fft(out, taught) + 1.0 * l1_and_fft(out, batch["target"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return losses


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


@pytest.fixture(scope="module")
def reference():
    student = tiny(1)
    losses = reference_distillation(student, tiny(0).eval(), CONFIG)
    return student, losses


def test_finetune_is_the_written_out_distillation_bit_for_bit(reference):
    student = tiny(1)
    result = finetune(student, tiny(0), CONFIG, progress=False)
    assert result["losses"] == reference[1]
    assert_same_weights(student, reference[0])
    assert not student.training


class Killed(Exception):
    pass


def kill_at(step: int):
    def callback(done, loss):
        if done == step:
            raise Killed

    return callback


def test_killed_and_resumed_fine_tuning_is_bit_exact(tmp_path, reference):
    state = tmp_path / "ft.state"
    with pytest.raises(Killed):
        finetune(tiny(1), tiny(0), CONFIG, state_file=state, callback=kill_at(5), progress=False, state_meta={"run": 7})
    saved = read_state(state)
    assert saved["format"] == STATE_FORMAT and saved["recipe"] == "distillation" and saved["step"] == 4
    assert saved["meta"] == {"run": 7} and saved["losses"] == reference[1][:4]
    resumed, seen = tiny(2), []
    result = finetune(resumed, tiny(0), CONFIG, state_file=state, resume=True, progress=False,
                      callback=lambda done, loss: seen.append(done))
    assert seen == [5, 6] and result["resumed_from"] == 4 and result["losses"] == reference[1]
    assert_same_weights(resumed, reference[0])
    assert not state.exists()


def test_kept_final_state_resumes_without_a_step(tmp_path, reference):
    state = tmp_path / "ft.state"
    finetune(tiny(1), tiny(0), CONFIG, state_file=state, keep_state=True, progress=False)
    assert read_state(state)["step"] == CONFIG.steps
    again, seen = tiny(3), []
    finetune(again, tiny(0), CONFIG, state_file=state, resume=True, keep_state=True, progress=False,
             callback=lambda done, loss: seen.append(done))
    assert seen == [] and state.exists()
    assert_same_weights(again, reference[0])


def test_state_of_the_earlier_fine_tuning_format_resumes(tmp_path, reference):
    """A state written by the fine-tuning loop of earlier versions (its own format) still resumes."""
    state = tmp_path / "ft.state"
    with pytest.raises(Killed):
        finetune(tiny(1), tiny(0), CONFIG, state_file=state, callback=kill_at(3), progress=False)
    new = torch.load(state, weights_only=True)
    old = {"format": "sparsesel.compress.finetune", "config": new["config"], "step": new["step"], "student": new["model"],
           "optimizer": new["optimizers"][0], "schedule": new["schedules"][0], "losses": new["losses"], "meta": {}}
    torch.save(old, state)
    resumed = tiny(2)
    finetune(resumed, tiny(0), CONFIG, state_file=state, resume=True, progress=False)
    assert_same_weights(resumed, reference[0])


def test_resume_refuses_other_settings_another_recipe_and_another_network(tmp_path):
    state = tmp_path / "ft.state"
    with pytest.raises(Killed):
        finetune(tiny(1), tiny(0), CONFIG, state_file=state, callback=kill_at(3), progress=False)
    changed = FinetuneConfig(**{**CONFIG.to_dict(), "lr": 2e-3, "steps": 8})
    with pytest.raises(ValueError, match=r"its configuration differs in \['steps', 'lr'\] \(steps: saved 6, now 8; lr: saved 0.001, now 0.002\)"):
        finetune(tiny(1), tiny(0), changed, state_file=state, resume=True, progress=False)
    wider = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))
    with pytest.raises(ValueError, match="it does not fit this network"):
        finetune(wider, tiny(0), CONFIG, state_file=state, resume=True, progress=False)
    other = StateFile(state, "csattn", CONFIG.to_dict(), ())
    with pytest.raises(ValueError, match="it is the state of a 'distillation' run, not of 'csattn'"):
        other.load_into(Trainable(tiny(1), (), [], []))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        finetune(tiny(1), tiny(0), CONFIG, state_file=tmp_path / "none.state", resume=True, progress=False)
    (tmp_path / "x.state").write_bytes(b"")
    torch.save({"format": "something else"}, tmp_path / "x.state")
    with pytest.raises(ValueError, match="is not a training state"):
        read_state(tmp_path / "x.state")


class Poisoned(nn.Module):
    def forward(self, x):
        return x * float("nan")


def test_a_loss_that_is_not_finite_stops_the_run_naming_the_step():
    with pytest.raises(FloatingPointError, match="distillation loss became nan at step 1"):
        finetune(tiny(1), Poisoned(), CONFIG, progress=False)


class Numbers:
    """A dataset whose sample ``i`` is the number ``i`` (to see which samples each step gets)."""

    def batch(self, indices):
        return {"x": torch.tensor([float(i) for i in indices])}


def test_two_step_recipe_runs_every_step_per_batch_in_order():
    """A GAN-like recipe: two steps, each with its own optimizer over its own parameters, a shared cache."""
    model = nn.ModuleDict({"a": nn.Linear(1, 1, bias=False), "b": nn.Linear(1, 1, bias=False)})
    seen = []

    def first(m, batch, cache):
        cache["x"] = batch["x"]
        seen.append(("first", batch["x"].tolist()))
        return {"loss": (m["a"].weight.sum() * batch["x"].sum()) ** 2}

    def second(m, batch, cache):
        seen.append(("second", cache["x"].tolist()))
        return {"loss": (m["b"].weight.sum() - 1.0) ** 2, "extra": torch.tensor(2.0)}

    steps = (TrainingStep("first", lambda m: m["a"].parameters(), first), TrainingStep("second", lambda m: m["b"].parameters(), second))
    trainable = Trainable.from_recipe(model, steps, OptimizerRecipe("adam", lr=0.1, betas=(0.9, 0.999), weight_decay=0.0, schedule="constant"), 2)
    outcome = run_loop(trainable, Numbers(), total_steps=2, batch_size=3, checkpoint_every=1, progress=False)
    assert seen == [("first", [0.0, 1.0, 2.0]), ("second", [0.0, 1.0, 2.0]), ("first", [3.0, 4.0, 5.0]), ("second", [3.0, 4.0, 5.0])]
    assert set(outcome.logs) == {"first_loss", "second_loss", "second_extra"} and outcome.logs["second_extra"] == 2.0
    assert len(outcome.losses) == 2 and outcome.losses[-1] == outcome.logs["first_loss"]
    assert [len(o.param_groups[0]["params"]) for o in trainable.optimizers] == [1, 1]
