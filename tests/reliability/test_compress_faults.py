"""Process faults of ``sparsesel compress``: kill -9 and Ctrl-C at a given stage, resume, concurrent runs.

The runs are real processes of the ``sparsesel`` console script (``PYTHONPATH`` set to this tree)
on a small random UHDformer with tiny settings. A stage is reached deterministically through the
test hook ``SPARSESEL_TEST_PAUSE_AT_STAGE`` (the run prints ``paused at stage NAME`` and waits), or
by watching the files the run writes; nothing waits blindly. Every resumed result is compared with
an uninterrupted run of the same settings.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from output_commands import COMMANDS_BY_NAME, snapshot, uhdformer_bytes
from reliability_helpers import expect_clear_error, run_cli

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SPARSESEL = shutil.which("sparsesel", path=str(Path(sys.executable).parent)) or shutil.which("sparsesel")
#: Tiny settings, baselines included (their fine-tuning states must survive too).
OPTIONS = {"--budget": "0.5", "--method": "packing", "--finetune-steps": "2", "--eval-count": "1", "--eval-size": "64",
           "--curve": "", "--latency-repeats": "0", "--threads": "1"}
PAUSE = "SPARSESEL_TEST_PAUSE_AT_STAGE"
STATES = ("finetune.state", "finetune-uniform.state", "finetune-energy.state", "finetune-magnitude.state")


def compress_argv(checkpoint: Path, out: Path, *extra: str, **changes: str) -> list[str]:
    options = {**OPTIONS, **{f"--{k.replace('_', '-')}": v for k, v in changes.items()}}
    argv = ["compress", str(checkpoint), "--out", str(out), "--no-progress"]
    for flag, value in options.items():
        argv += [flag, value]
    return [*argv, *extra]


class Run:
    """A ``sparsesel`` process in its own session, its stderr collected as it comes."""

    def __init__(self, argv: list[str], *, pause: str | None = None, cwd: Path | None = None):
        assert SPARSESEL, "the sparsesel console script is not installed beside this Python"
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        env.pop(PAUSE, None)
        if pause:
            env[PAUSE] = pause
        self.process = subprocess.Popen([SPARSESEL, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=env, cwd=cwd, start_new_session=True)
        self.err, self.out = "", ""
        self._readers = [threading.Thread(target=self._read, args=(self.process.stderr, "err"), daemon=True),
                         threading.Thread(target=self._read, args=(self.process.stdout, "out"), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, name: str) -> None:
        for chunk in iter(lambda: stream.read(1), ""):
            setattr(self, name, getattr(self, name) + chunk)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        """Until ``text`` appears on stderr (fails if the process ends first)."""
        deadline = time.monotonic() + timeout
        while text not in self.err:
            if self.process.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)
                raise AssertionError(f"{text!r} never came (status {self.process.poll()}):\n{self.err}\n{self.out}")
            time.sleep(0.05)

    def finish(self, timeout: float = 300) -> int:
        status = self.process.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return status

    def session_alive(self) -> list[int]:
        """Pids still running in this run's session (the run and any worker it started)."""
        alive = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.process.pid and fields[0] != "Z":  # process group = the run's session leader
                    alive.append(int(entry.name))
        return alive


def error_lines(err: str) -> list[str]:
    """The lines of stderr that are not the test hook's pause line."""
    return [line for line in err.splitlines() if line.strip() and "paused at stage" not in line]


def weights(path: Path) -> dict[str, torch.Tensor]:
    from sparsesel.compress import load_compressed

    model, _ = load_compressed(path)
    return model.state_dict()


def assert_same_result(out: Path, reference: Path) -> None:
    """Same weights (exactly) and the same report figures as the uninterrupted run."""
    ours, theirs = weights(out / "compressed.pt"), weights(reference / "compressed.pt")
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    a, b = json.loads((out / "report.json").read_text()), json.loads((reference / "report.json").read_text())
    for key in ("params_after", "psnr_after", "ssim_after"):
        assert a[key] == b[key], key
    for name, row in b["baselines"].items():
        assert a["baselines"][name]["psnr"] == row["psnr"], name


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("input") / "model.pt"
    path.write_bytes(uhdformer_bytes())
    return path


@pytest.fixture(scope="module")
def reference(checkpoint, tmp_path_factory) -> Path:
    """An uninterrupted run of the same settings."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run = Run(compress_argv(checkpoint, out))
    assert run.finish() == 0, run.err
    return out


@pytest.fixture(scope="module")
def killed_while_evaluating(checkpoint, tmp_path_factory) -> Path:
    """A run killed with SIGKILL in its evaluation stage, after every fine-tuning finished."""
    out = tmp_path_factory.mktemp("killed") / "run"
    run = Run(compress_argv(checkpoint, out), pause="evaluate")
    run.wait_for("paused at stage evaluate")
    run.process.send_signal(signal.SIGKILL)
    assert run.finish() == -signal.SIGKILL
    return out


def files_of(folder: Path) -> dict[str, str]:
    """:func:`snapshot` without the lock file (a stale one is removed by the next run that takes the lock)."""
    return {key: value for key, value in snapshot(folder).items() if key != ".sparsesel.lock"}


def copy_of(folder: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(folder, out, symlinks=True)
    return out


# ------------------------------------------------------------------ kill -9 after fine-tuning
@pytest.mark.reliability("right_result")
def test_kill_9_while_evaluating_keeps_every_state_and_resume_finishes_without_fine_tuning(
        killed_while_evaluating, checkpoint, reference, tmp_path):
    out = copy_of(killed_while_evaluating, tmp_path)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".state") == sorted(STATES)
    run = Run(compress_argv(checkpoint, out, "--resume"))
    assert run.finish() == 0, run.err
    report = json.loads((out / "report.json").read_text())
    assert report["finetune"]["resumed_from"] == 2  # the last step: no step was run again
    assert {name: row["finetune_resumed_from"] for name, row in report["baselines"].items()} == {
        "uniform": 2, "energy": 2, "magnitude": 2}
    assert_same_result(out, reference)
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())  # states and lock gone


# ------------------------------------------------------------------ --resume with other settings
CHANGES = {
    "budget": ({"budget": "0.4"}, "--budget 0.5 (now 0.4)"),
    "method": ({"method": "uniform"}, "--method 'packing' (now 'uniform')"),
    "finetune_steps": ({"finetune_steps": "3"}, "--finetune-steps 2 (now 3)"),
    "seed": ({"seed": "1"}, "--seed 0 (now 1)"),
    "lr": ({"lr": "0.001"}, "--lr 0.0002 (now 0.001)"),
    "batch_size": ({"batch_size": "2"}, "--batch-size 4 (now 2)"),
    "patch_size": ({"patch_size": "32"}, "--patch-size 64 (now 32)"),
    "task": ({"task": "haze"}, "--task 'lowlight' (now 'haze')"),
    "exclude": ({"exclude": "groups.0"}, "--exclude [] (now [groups.0])"),
    "two_at_once": ({"budget": "0.3", "method": "energy"}, "--budget 0.5 (now 0.3); --method 'packing' (now 'energy')"),
}


class WorkStarted(AssertionError):
    pass


@pytest.fixture
def no_analysis(monkeypatch):
    import sparsesel.compress.pipeline as pipeline

    def started(*args, **kwargs):
        raise WorkStarted("the analysis started")

    monkeypatch.setattr(pipeline, "compress_model", started)


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("change", list(CHANGES), ids=str)
def test_resume_with_other_settings_is_refused_at_once_naming_each_change(change, killed_while_evaluating, checkpoint,
                                                                          tmp_path, no_analysis):
    out = copy_of(killed_while_evaluating, tmp_path)
    changes, message = CHANGES[change]
    before = files_of(out)
    expect_clear_error(compress_argv(checkpoint, out, "--resume", **changes), "cannot resume", message, "--force")
    assert files_of(out) == before


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("change", ["no_baselines", "other_checkpoint"], ids=str)
def test_resume_without_baselines_or_from_another_checkpoint_is_refused(change, killed_while_evaluating, checkpoint,
                                                                        tmp_path, no_analysis):
    out = copy_of(killed_while_evaluating, tmp_path)
    before = files_of(out)
    if change == "no_baselines":
        expect_clear_error(compress_argv(checkpoint, out, "--resume", "--no-baselines"),
                           "--no-baselines (baselines fine-tuned) True (now False)")
    else:
        from sparsesel.nets import zoo

        model, _ = zoo.load_net(checkpoint)
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        other = zoo.save_net(model, tmp_path / "other.pt", net="uhdformer")
        expect_clear_error(compress_argv(other, out, "--resume"), "CHECKPOINT: not the file the interrupted run started from")
    assert files_of(out) == before


@pytest.mark.reliability("right_result")
def test_resume_may_change_what_is_only_measured(killed_while_evaluating, checkpoint, tmp_path, no_analysis):
    """Evaluation settings do not touch the fine-tuning: a resume with others goes on to the work."""
    out = copy_of(killed_while_evaluating, tmp_path)
    with pytest.raises(WorkStarted):
        run_cli(compress_argv(checkpoint, out, "--resume", eval_count="2", latency_repeats="1", curve="0.5"))


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("folder", ["empty", "finished", "missing"])
def test_resume_with_nothing_to_resume_says_so(folder, checkpoint, reference, tmp_path):
    out = tmp_path / "run"
    if folder == "empty":
        out.mkdir()
    elif folder == "finished":
        shutil.copytree(reference, out)
    run = expect_clear_error(compress_argv(checkpoint, out, "--resume"), "nothing to resume")
    assert ("finished" in run.err) == (folder == "finished")


# ------------------------------------------------------------------ Ctrl-C
@pytest.mark.reliability("right_result")
def test_ctrl_c_while_evaluating_is_one_line_keeps_the_states_and_its_resume_command_finishes(checkpoint, reference, tmp_path):
    out = tmp_path / "run"
    run = Run(compress_argv(checkpoint, out), pause="evaluate")
    run.wait_for("paused at stage evaluate")
    os.killpg(run.process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    assert run.finish() == 130
    lines = error_lines(run.err)
    assert len(lines) == 1 and "Traceback" not in run.err, run.err
    assert lines[0].startswith("sparsesel compress: interrupted; the fine-tuning state is kept in")
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".state") == sorted(STATES)
    command = shlex.split(lines[0].split("to continue: ", 1)[1])
    assert command[0] == "sparsesel" and command[-1] == "--resume"
    resumed = Run(command[1:])
    assert resumed.finish() == 0, resumed.err
    assert json.loads((out / "report.json").read_text())["finetune"]["resumed_from"] == 2
    assert_same_result(out, reference)


@pytest.mark.reliability("clear_error")
def test_ctrl_c_while_workers_fine_tune_is_one_line_stops_them_and_keeps_the_state(checkpoint, tmp_path):
    """Two worker processes fine-tune side by side; Ctrl-C reaches all three; none prints a traceback."""
    out = tmp_path / "run"
    argv = compress_argv(checkpoint, out, threads="2", finetune_steps="2000", patch_size="32", batch_size="2")
    run = Run(argv)
    deadline = time.monotonic() + 400
    while not (out / "finetune.state").is_file():  # written by a worker at step 25
        assert run.process.poll() is None and time.monotonic() < deadline, run.err
        time.sleep(0.1)
    os.killpg(run.process.pid, signal.SIGINT)
    assert run.finish(timeout=60) == 130
    assert "Traceback" not in run.err and "KeyboardInterrupt" not in run.err, run.err
    lines = error_lines(run.err)
    assert len(lines) == 1 and lines[0].startswith("sparsesel compress: interrupted; the fine-tuning state is kept in"), run.err
    deadline = time.monotonic() + 30
    while run.session_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert run.session_alive() == []
    from sparsesel.compress.finetune import read_state

    state = read_state(out / "finetune.state")
    assert 25 <= state["step"] < 2000 and state["step"] % 25 == 0
    assert not (out / ".sparsesel.lock").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ------------------------------------------------------------------ two runs, one folder
@pytest.mark.reliability("clear_error")
def test_a_second_run_to_a_locked_folder_fails_at_once_and_a_killed_holder_does_not_block(checkpoint, tmp_path, no_analysis):
    out = tmp_path / "run"
    holder = Run(compress_argv(checkpoint, out), pause="finetune")
    try:
        holder.wait_for("paused at stage finetune")
        expect_clear_error(compress_argv(checkpoint, out), "is in use by another run", f"pid {holder.process.pid}",
                           str(out / ".sparsesel.lock"))
        expect_clear_error(compress_argv(checkpoint, out, "--force"), "is in use by another run")
    finally:
        holder.process.send_signal(signal.SIGKILL)
        holder.finish()
    assert (out / ".sparsesel.lock").exists()  # left by the killed run ...
    with pytest.raises(WorkStarted):  # ... and stale: the next run goes on to its work
        run_cli(compress_argv(checkpoint, out))
    assert not (out / ".sparsesel.lock").exists()


@pytest.mark.reliability("right_result")
def test_two_runs_started_together_one_succeeds_and_the_other_fails_clearly(checkpoint, tmp_path):
    out = tmp_path / "run"
    runs = [Run(compress_argv(checkpoint, out, method=method)) for method in ("packing", "uniform")]
    statuses = sorted(run.finish() for run in runs)
    assert statuses == [0, 2], [run.err for run in runs]
    loser = next(run for run in runs if run.process.returncode == 2)
    winner = next(run for run in runs if run.process.returncode == 0)
    assert "is in use by another run" in loser.err and "Traceback" not in loser.err
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == ("packing" if winner is runs[0] else "uniform")
    assert not [p for p in out.iterdir() if p.suffix == ".state" or p.name == ".sparsesel.lock"]


# ------------------------------------------------------------------ --force replaces only compress's own files
@pytest.mark.reliability("right_result")
def test_force_replaces_only_its_own_files(checkpoint, reference, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    (out / "quality_vs_size.png").write_bytes(b"an earlier run's curve")  # this run draws no curve
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    run = run_cli(compress_argv(checkpoint, out, "--force", "--no-baselines", method="uniform", budget="0.6"))
    assert run.status == 0, run.err
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "data.bin").read_bytes() == b"\x00\x01"
    assert not (out / "quality_vs_size.png").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["method"] == "uniform" and report["budget"] == 0.6 and report["baselines"] == {}


@pytest.mark.reliability("clear_error")
def test_force_with_the_checkpoint_inside_out_deletes_nothing(tmp_path):
    """The issue's reproduction: `compress DIR/model.pt --out DIR --force` used to delete DIR whole."""
    command = COMMANDS_BY_NAME["compress"]
    out = tmp_path / "work"
    out.mkdir()
    model = out / "model.pt"
    model.write_bytes(uhdformer_bytes())
    (out / "unrelated.txt").write_text("keep")
    before = snapshot(tmp_path)
    expect_clear_error(command.argv({"checkpoint": model}, out) + ["--force"], "holds the input checkpoint")
    assert snapshot(tmp_path) == before


@pytest.mark.reliability("right_result")
def test_an_interrupted_run_removes_the_temporary_file_of_a_worker_stopped_mid_write(tmp_path, monkeypatch):
    """Ctrl-C terminates the fine-tuning workers at once; one stopped while it wrote its state leaves
    ``.finetune-uniform.state.<random>.tmp``: the run removes it (and keeps the finished states)."""
    import sparsesel.compress.pipeline as pipeline

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read: the work is replaced below")
    out = tmp_path / "run"

    def interrupted(checkpoint, out, **options):
        (out / "finetune.state").write_bytes(b"a finished state")
        (out / ".finetune-uniform.state.x1y2z3.tmp").write_bytes(b"half a state")  # a worker terminated mid-write
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_compress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        pipeline.compress_checkpoint(checkpoint, out, threads=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["finetune.state"]
