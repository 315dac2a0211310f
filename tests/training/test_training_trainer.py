"""The trainer: a run killed mid-way and resumed ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from sparsesel.nets import zoo
from sparsesel.training import TrainConfig, state_path, train


def _config(**changes) -> TrainConfig:
    base = dict(
        net="csattn", task="lowlight", net_options={"width": 4, "heads": [1, 1, 2]}, steps=6, batch_size=2,
        patch_size=16, lr=2e-3, checkpoint_every=2, eval_count=1, eval_size=32, threads=1,
    )
    return TrainConfig(**{**base, **changes})


class Killed(Exception):
    pass


def _kill_at(step_to_die: int):
    def callback(step, logs):
        if step == step_to_die:
            raise Killed

    return callback


def test_resume_after_a_kill_continues_from_the_last_checkpoint(tmp_path):
    reference = train(_config(), tmp_path / "ref.pt", progress=False)
    out = tmp_path / "run.pt"
    with pytest.raises(Killed):
        train(_config(), out, progress=False, callback=_kill_at(5))  # the state of step 4 is on disk
    assert not out.exists() and state_path(out).exists()
    saved = torch.load(state_path(out), weights_only=True)
    assert saved["step"] == 4 and len(saved["losses"]) == 4
    seen = []
    resumed = train(_config(), out, resume=True, progress=False, callback=lambda step, logs: seen.append(step))
    assert seen == [5, 6] and resumed["resumed_from"] == 4
    assert resumed["losses"] == pytest.approx(reference["losses"], rel=1e-6, abs=1e-7)
    assert not state_path(out).exists()
    model, info = zoo.load_net(out)
    ref_model, _ = zoo.load_net(tmp_path / "ref.pt")
    for (name, a), (_, b) in zip(model.state_dict().items(), ref_model.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["net"] == "csattn" and meta["train"]["steps"] == 6
    assert set(meta["evaluation"]) == {"psnr_input", "psnr_output", "ssim_input", "ssim_output"}
    assert info["meta"]["evaluation"] == pytest.approx(meta["evaluation"])


def test_saved_network_reproduces_the_trained_outputs(tmp_path):
    out = tmp_path / "h.pt"
    config = _config(net="harmonizer", task="harmonize", net_options={"width": 4, "disc_width": 4, "levels": 2}, steps=2)
    train(config, out, progress=False)
    model, info = zoo.load_net(out)
    assert info["net"] == "harmonizer" and info["config"]["width"] == 4 and not model.training
    fresh = zoo.build_net("harmonizer", info["config"])
    fresh.load_state_dict(torch.load(out, weights_only=True)["state_dict"])
    fresh.eval()
    x, m = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16)
    torch.testing.assert_close(model(x, m)["image"], fresh(x, m)["image"])


def test_existing_outputs_and_states_are_protected(tmp_path):
    out = tmp_path / "m.pt"
    train(_config(steps=1, eval_count=0), out, progress=False)
    with pytest.raises(FileExistsError, match="exists; pass force=True"):
        train(_config(steps=1, eval_count=0), out, progress=False)
    train(_config(steps=1, eval_count=0), out, progress=False, force=True)
    other = tmp_path / "other.pt"
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(_config(), other, resume=True, progress=False)
    with pytest.raises(Killed):
        train(_config(), other, progress=False, callback=_kill_at(3))
    with pytest.raises(FileExistsError, match="interrupted run left"):
        train(_config(), other, progress=False)
    with pytest.raises(ValueError, match=r"configuration differs in \['lr'\]"):
        train(_config(lr=1e-3), other, resume=True, progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="task 'specular' is not one of csattn's tasks"):
        _config(task="specular")
    with pytest.raises(ValueError, match="unknown network"):
        _config(net="resnet")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        _config(steps=0)
    with pytest.raises(ValueError, match="betas"):
        _config(betas=(0.9, 1.5))


def test_unsafe_or_broken_checkpoints_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"format": "sparsesel.nets", "params": Evil()}, handle, protocol=2)
    with pytest.raises(ValueError, match="not a plain tensor checkpoint.*could run code"):
        zoo.load_net(evil)
    good = tmp_path / "good.pt"
    zoo.save_net(zoo.build_net("csattn", "small"), good, net="csattn")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        zoo.load_net(truncated)
    payload = torch.load(good, weights_only=True)
    payload["state_dict"].pop("enter.weight")
    payload["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(payload, tmp_path / "keys.pt")
    with pytest.raises(ValueError, match=r"keys\.pt does not fit csattn: missing key\(s\): enter.weight; unexpected key\(s\): extra.weight"):
        zoo.load_net(tmp_path / "keys.pt")
    payload = torch.load(good, weights_only=True)
    payload["config"]["width"] = 16
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(ValueError, match=r"shape\.pt does not fit csattn: the configuration's width=16 .*enter.weight: checkpoint \(8, 3, 3, 3\) vs network \(16, 3, 3, 3\)"):
        zoo.load_net(tmp_path / "shape.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        zoo.load_net(tmp_path / "missing.pt")
