"""Outputs and faults, in this process: every command that writes files, fed hostile output paths.

Each hostile path (a folder where a file goes, a file where a folder goes, a path under a file, the
input itself or a link to it, a folder holding the input, a name too long, an existing output without
``--force``) must be refused with a clear one-line error *before any work*: the command's first
working function is replaced by one that fails the test, and the whole tree of the test's folder,
inputs included, must be unchanged afterwards. Hypothesis makes further path shapes, with an
independent oracle of which are valid (the file system's own name limit).

Also here: the command line turns every OSError and Ctrl-C of every command into one line; a
TorchScript archive or a pickle that would run code is refused unless ``--trust-code``; the lock of an
output folder; ``compress --force`` replaces only its own files.
"""

from __future__ import annotations

import errno
import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from output_commands import COMMANDS, COMMANDS_BY_NAME, Command, default_out, snapshot
from reliability_helpers import expect_clear_error, run_cli

FILE_COMMANDS = [c for c in COMMANDS if c.kind == "file"]
FOLDER_COMMANDS = [c for c in COMMANDS if c.kind == "folder"]
NAME_MAX = os.pathconf(tempfile.gettempdir(), "PC_NAME_MAX")


class WorkStarted(AssertionError):
    """The command began its work before refusing its output path."""


@pytest.fixture
def no_work(monkeypatch):
    """``no_work(command)``: make the command's first working function fail the test."""

    def install(command: Command) -> None:
        module, attribute = command.work
        target = importlib.import_module(module)

        def started(*args, **kwargs):
            raise WorkStarted(f"{command.name} started its work ({module}.{attribute}) before refusing")

        monkeypatch.setattr(target, attribute, started)

    return install


# ------------------------------------------------------------------ hostile output paths, every command
def _hostile_out(shape: str, command: Command, folder: Path, inputs: dict[str, Path]) -> tuple[Path, str, list[str]]:
    """(output path, expected fragment of the error, extra argv) for ``shape``, made in ``folder``."""
    extra: list[str] = []
    if shape == "folder_as_file":
        out = folder / "a_folder"
        out.mkdir()
        (out / "keep.txt").write_text("keep")
        return out, "is a folder", ["--force"]
    if shape == "file_as_folder":
        out = folder / "a_file"
        out.write_text("keep")
        return out, "is a file", ["--force"]
    if shape == "under_file":
        blocker = folder / "blocker"
        blocker.write_text("keep")
        return blocker / "sub" / default_out(command, folder).name, "is not a folder", extra
    if shape.startswith("equal_input:"):
        return inputs[shape.split(":", 1)[1]], "is the input", ["--force"]
    if shape.startswith("symlink_input:"):
        link = folder / ("link" + inputs[shape.split(":", 1)[1]].suffix)
        link.symlink_to(inputs[shape.split(":", 1)[1]])
        return link, "is the input", ["--force"]
    if shape.startswith("hardlink_input:"):
        link = folder / ("hard" + inputs[shape.split(":", 1)[1]].suffix)
        os.link(inputs[shape.split(":", 1)[1]], link)
        return link, "is the input", ["--force"]
    if shape == "holds_input":
        return next(iter(inputs.values())).parent, "holds the input", ["--force"]
    if shape == "holds_input_via_link":
        link = folder / "linked_inputs"
        link.symlink_to(next(iter(inputs.values())).parent, target_is_directory=True)
        return link, "holds the input", ["--force"]
    if shape == "fifo":
        out = folder / "a_pipe"
        os.mkfifo(out)
        return out, "special file" if command.kind == "file" else "is a file", ["--force"]
    if shape == "under_link_loop":
        (folder / "loop_a").symlink_to(folder / "loop_b")
        (folder / "loop_b").symlink_to(folder / "loop_a")
        return folder / "loop_a" / default_out(command, folder).name, "is not a folder", ["--force"]
    if shape == "long_name":
        return folder / ("n" * (NAME_MAX + 1)), "bytes long", ["--force"]
    if shape == "exists_without_force":
        out = default_out(command, folder)
        if command.kind == "folder":
            out.mkdir()
            (out / command.own_files[0]).write_text("earlier")
        else:
            out.write_text("earlier")
        return out, "--force", extra
    raise AssertionError(shape)


def _hostile_cases():
    for command in COMMANDS:
        shapes = ["under_file", "under_link_loop", "fifo", "long_name", "exists_without_force"]
        shapes.append("folder_as_file" if command.kind == "file" else "file_as_folder")
        names = {"compress": ["checkpoint"], "attribute": ["model", "image"], "aggregate": ["data"], "core-shape": ["tensor"],
                 "prune": ["checkpoint"], "restore": ["image", "checkpoint"]}.get(command.name, [])
        for name in names:
            shapes.append(f"equal_input:{name}")
            if command.kind == "file":
                shapes += [f"symlink_input:{name}", f"hardlink_input:{name}"]
        if command.kind == "folder" and names:
            shapes += ["holds_input", "holds_input_via_link"]
        for shape in shapes:
            yield pytest.param(command, shape, id=f"{command.name}-{shape}")


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("command, shape", list(_hostile_cases()))
def test_hostile_output_path_is_refused_before_any_work(command, shape, tmp_path, no_work):
    inputs = command.make_inputs(tmp_path)
    out, fragment, extra = _hostile_out(shape, command, tmp_path, inputs)
    before = snapshot(tmp_path)
    no_work(command)
    expect_clear_error([*command.argv(inputs, out), *extra], fragment)
    assert snapshot(tmp_path) == before  # nothing written, nothing removed, the inputs untouched


# ------------------------------------------------------------------ hypothesis: path shapes with an oracle
_segment = st.text(alphabet="abcxyz019_é字", min_size=1, max_size=8).filter(lambda s: not s.startswith("-"))


@st.composite
def output_paths(draw):
    """A path shape relative to a test folder: (kind, parts, long name or None)."""
    kind = draw(st.sampled_from(["fresh", "under_file", "long", "holds_input", "input_beside"]))
    parts = draw(st.lists(_segment, min_size=1, max_size=3))
    long_name = None
    if kind == "long":
        char = draw(st.sampled_from(["n", "é", "字"]))
        width = len(char.encode())
        count = draw(st.integers(min_value=(NAME_MAX - 20) // width, max_value=(NAME_MAX + 12) // width))
        long_name = char * count
    return kind, parts, long_name


def _oracle(command: Command, out: Path) -> bool:
    """Whether every file the command writes at ``out`` has names the file system accepts."""
    return all(len(os.fsencode(part)) <= NAME_MAX for path in command.outputs(out) for part in path.parts)


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("command", COMMANDS, ids=str)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=output_paths())
def test_generated_output_paths_are_refused_or_accepted_as_the_file_system_says(command, shape, no_work):
    """A valid path reaches the command's work (the checks pass); a hostile one is refused before it."""
    kind, parts, long_name = shape
    if command.name in ("aggregate", "restore"):  # their suffix picks the image format
        parts = [*parts[:-1], parts[-1] + ".png"]
    no_work(command)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        inputs = command.make_inputs(folder / "in")
        out = folder.joinpath(*parts)
        expected = None  # None: valid
        if kind == "under_file":
            blocker = folder / "blocker"
            blocker.write_text("keep")
            out = blocker.joinpath(*parts)
            expected = "is not a folder"
        elif kind == "long":
            out = folder.joinpath(*parts[:-1], long_name + (".png" if command.name in ("aggregate", "restore") else ""))
            expected = None if _oracle(command, out) else "bytes long"
        elif kind == "holds_input" and inputs:
            moved = {key: folder.joinpath(*parts, "deep", path.name) for key, path in inputs.items()}
            for key, path in inputs.items():
                moved[key].parent.mkdir(parents=True, exist_ok=True)
                path.rename(moved[key])
            inputs = moved
            out = folder.joinpath(*parts)
            if command.kind == "folder":
                expected = "holds the input"
            else:  # a file output at the folder that holds the inputs
                expected = "is a folder"
        elif kind == "input_beside" and command.kind == "file":
            out = folder / "in" / "inputs" / parts[-1]
        before = snapshot(folder)
        if expected is None:
            with pytest.raises(WorkStarted):
                run_cli(command.argv(inputs, out))
        else:
            expect_clear_error(command.argv(inputs, out), expected)
        assert snapshot(folder) == before


@pytest.mark.reliability("right_result")
def test_an_output_name_at_the_file_systems_limit_is_written(tmp_path):
    """The longest name the file system takes is written whole (the temporary file's name must fit too)."""
    import json

    command = COMMANDS_BY_NAME["core-shape"]
    inputs = command.make_inputs(tmp_path)
    out = tmp_path / ("r" * (NAME_MAX - 5) + ".json")
    assert len(os.fsencode(out.name)) == NAME_MAX
    run = run_cli(command.argv(inputs, out))
    assert run.status == 0, run.err
    assert json.loads(out.read_text())["ranks"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["inputs", out.name])


# ------------------------------------------------------------------ unwritable places, unreadable inputs
def _without_permission_override() -> dict:
    """subprocess options under which permission bits bind this user too.

    Root writes and reads anywhere (capabilities CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH): for root,
    the child drops both from its capability bounding set before it executes Python, which then runs
    as a root without them.
    """
    if os.geteuid() != 0:
        return {}
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def drop() -> None:
        for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
            if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")

    return {"preexec_fn": drop}


def _run_cli_process(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "sparsesel.cli", *argv], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=240, **_without_permission_override())


def _expect_one_line_error(run: subprocess.CompletedProcess, *fragments: str) -> None:
    assert run.returncode == 2, f"status {run.returncode}\n{run.stdout}\n{run.stderr}"
    assert "Traceback" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip() and "Warning" not in line and not line.startswith("  ")]
    assert len(lines) == 1 and lines[0].startswith("sparsesel "), run.stderr
    for fragment in fragments:
        assert fragment.lower() in run.stderr.lower(), run.stderr


@pytest.mark.slow
@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(command, tmp_path):
    inputs = command.make_inputs(tmp_path)
    locked = tmp_path / "read_only"
    locked.mkdir()
    os.chmod(locked, 0o555)
    out = default_out(command, locked)
    before = snapshot(tmp_path)
    run = _run_cli_process(command.argv(inputs, out), tmp_path)
    _expect_one_line_error(run, "permission denied", str(locked))
    assert snapshot(tmp_path) == before


@pytest.mark.slow
@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("command", [c for c in COMMANDS if c.name not in ("demo", "train")], ids=str)
def test_an_unreadable_input_is_a_one_line_error(command, tmp_path):
    inputs = command.make_inputs(tmp_path)
    for path in inputs.values():
        os.chmod(path, 0o000)
    out = default_out(command, tmp_path / "outputs")
    run = _run_cli_process(command.argv(inputs, out), tmp_path)
    _expect_one_line_error(run)
    assert "permission denied" in run.stderr.lower() or "cannot be read" in run.stderr.lower(), run.stderr
    assert not (tmp_path / "outputs").exists()


# ------------------------------------------------------------------ the command line: OSError and Ctrl-C, every command
_MINIMAL_ARGV = {
    "aggregate": ["--data", "builtin:diabetes", "--bag-size", "2"],
    "attribute": ["--model", "builtin:digits-cnn", "--image", "x.png", "--out", "o"],
    "compress": ["x.pt", "--out", "o"],
    "core-shape": ["--tensor", "builtin:digits", "--budget", "0.1"],
    "demo": [],
    "export": ["x.pt", "--format", "onnx", "--out", "o.onnx"],
    "prune": ["x.pt", "--density", "0.5"],
    "restore": ["x.png", "--checkpoint", "x.pt", "--out", "o.png"],
    "select": ["--data", "builtin:diabetes", "--k", "1"],
    "solvers": [],
    "train": ["uhdformer", "--task", "lowlight", "--out", "o.pt"],
}
_OS_ERRORS = {
    "permission": (PermissionError(errno.EACCES, "Permission denied", "/data/out/x.png"), "permission denied"),
    "is_a_directory": (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/out"), "it is a folder"),
    "not_a_directory": (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/data/file/x"), "is a file, not a folder"),
    "name_too_long": (OSError(errno.ENAMETOOLONG, "File name too long", "/data/" + "n" * 300), "longer than the file system allows"),
    "no_space": (OSError(errno.ENOSPC, "No space left on device", "/data/out.pt"), "no space left"),
}


def _command_module(name: str):
    return importlib.import_module(f"sparsesel.commands.{name.replace('-', '_')}")


def test_every_command_is_covered_by_the_minimal_argv():
    import pkgutil

    import sparsesel.commands as commands

    names = {m.name.replace("_", "-") for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")}
    assert names == set(_MINIMAL_ARGV)
    assert {c.name for c in COMMANDS} == names - {"select", "solvers"}  # the two that write no file


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("error", list(_OS_ERRORS), ids=str)
@pytest.mark.parametrize("name", list(_MINIMAL_ARGV), ids=str)
def test_an_os_error_of_any_command_is_one_clear_line(name, error, monkeypatch):
    exc, words = _OS_ERRORS[error]

    def fail(args):
        raise exc

    monkeypatch.setattr(_command_module(name), "run", fail)
    run = expect_clear_error([name, *_MINIMAL_ARGV[name]], words, exc.filename[:20])
    assert len(run.err.strip().splitlines()) == 1 and run.err.startswith(f"sparsesel {name}: error: ")


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("name", list(_MINIMAL_ARGV), ids=str)
def test_ctrl_c_in_any_command_is_one_line_and_status_130(name, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(_command_module(name), "run", interrupted)
    run = run_cli([name, *_MINIMAL_ARGV[name]])
    assert run.status == 130
    assert run.err.strip() == f"sparsesel {name}: interrupted"


@pytest.mark.reliability("right_result")
def test_ctrl_c_after_trainings_last_step_keeps_the_state_and_resume_redoes_no_step(tmp_path, monkeypatch):
    """train: interrupted while evaluating, the state of the last step survives; --resume runs no step."""
    import json

    import sparsesel.training.trainer as trainer

    command = COMMANDS_BY_NAME["train"]
    out = tmp_path / "net.pt"
    real_evaluate = trainer.evaluate

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "evaluate", interrupt)
    run = run_cli(command.argv({}, out))
    assert run.status == 130 and len(run.err.strip().splitlines()) == 1, run.err
    state = out.with_name("net.pt.state")
    assert state.is_file() and "--resume" in run.err and str(state) in run.err
    assert not out.exists()
    monkeypatch.setattr(trainer, "evaluate", real_evaluate)
    run = run_cli([*command.argv({}, out), "--resume"])
    assert run.status == 0, run.err
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["steps_done_in_this_process"] == 0 and not state.exists()


# ------------------------------------------------------------------ code in model files: only with --trust-code
class MarkerModel(torch.nn.Module):
    """A classifier whose forward pass creates a file (torch.from_file with shared=True creates it)."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = marker

    def forward(self, x):
        touched = torch.from_file(self.marker, shared=True, size=1, dtype=torch.uint8)
        return x.flatten(1)[:, :10] * 1.0 + touched.float().sum() * 0.0


class PickledPayload:
    """A pickle whose loading creates a file (any call could be there)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _attribute_argv(tmp_path: Path, model: Path, *extra: str) -> list[str]:
    image = COMMANDS_BY_NAME["attribute"].make_inputs(tmp_path)["image"]
    return ["attribute", "--model", str(model), "--image", str(image), "--k", "3", "--solver", "gradient",
            "--output", "raw", "--out", str(tmp_path / "result"), *extra]


@pytest.fixture
def torchscript_model(tmp_path):
    import warnings

    marker = tmp_path / "marker"
    path = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        torch.jit.script(MarkerModel(str(marker))).save(str(path))
    assert not marker.exists()
    return path, marker


@pytest.mark.reliability("clear_error")
def test_a_torchscript_model_is_refused_unless_trust_code(torchscript_model, tmp_path):
    path, marker = torchscript_model
    expect_clear_error(_attribute_argv(tmp_path, path), "TorchScript archive", "--trust-code")
    assert not marker.exists() and not (tmp_path / "result").exists()


@pytest.mark.reliability("right_result")
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_a_torchscript_model_runs_with_trust_code(torchscript_model, tmp_path):
    path, marker = torchscript_model
    run = run_cli(_attribute_argv(tmp_path, path, "--trust-code"))
    assert run.status == 0, run.err
    assert marker.exists() and (tmp_path / "result" / "attribution.json").is_file()


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("payload", ["module", "reduce_call"])
def test_a_pickle_that_could_run_code_is_refused_unread_unless_trust_code(payload, tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "pickled.pt"
    content = torch.nn.Linear(3, 10) if payload == "module" else {"arch": "digits-cnn", "state_dict": PickledPayload(str(marker))}
    torch.save(content, path)
    expect_clear_error(_attribute_argv(tmp_path, path), "pickled objects", "--trust-code")
    assert not marker.exists()


@pytest.mark.reliability("right_result")
def test_attribute_help_explains_trust_code():
    run = run_cli(["attribute", "--help"])
    help_text = " ".join(run.out.split())
    assert run.status == 0
    assert "--trust-code" in help_text and "runs on this machine" in help_text and "source you trust" in help_text


# ------------------------------------------------------------------ the lock of an output folder
def _start_token(pid: int) -> str:
    """Field 22 of /proc/PID/stat (the process's start time), read here independently."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()[19]


def _write_record(folder: Path, **record) -> Path:
    import json

    from sparsesel.outputs import LOCK_NAME

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    path.write_text(json.dumps(record))
    return path


@pytest.mark.reliability("clear_error")
def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    import socket

    from sparsesel.outputs import OutputLock, OutputLockedError

    with OutputLock(tmp_path / "out", "sparsesel compress"):
        with pytest.raises(OutputLockedError, match=rf"in use by another run \(sparsesel compress, pid {os.getpid()} "
                                                    rf"on host {socket.gethostname()}.*delete .*\.sparsesel\.lock"):
            OutputLock(tmp_path / "out", "sparsesel compress").acquire()
    assert list((tmp_path / "out").iterdir()) == []  # released: the lock file is gone


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("record", ["dead_pid", "reused_pid", "empty", "garbage"])
def test_a_stale_or_unreadable_lock_does_not_block(record, tmp_path):
    import json
    import socket

    from sparsesel.outputs import OutputLock

    folder = tmp_path / "out"
    if record == "dead_pid":
        finished = subprocess.Popen(["true"])
        finished.wait()  # reaped: its pid names no process
        path = _write_record(folder, pid=finished.pid, host=socket.gethostname(), started=None)
    elif record == "reused_pid":  # our parent lives, but started long before the recorded time
        path = _write_record(folder, pid=os.getppid(), host=socket.gethostname(), started="1")
    else:
        folder.mkdir()
        path = folder / ".sparsesel.lock"
        path.write_text("" if record == "empty" else "{not json")
    lock = OutputLock(folder, "test")
    lock.acquire()
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not path.exists()


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("where", ["live_process_here", "another_host"])
def test_a_lock_recorded_by_a_live_or_unknowable_process_blocks(where, tmp_path):
    import socket

    from sparsesel.outputs import OutputLock, OutputLockedError

    folder = tmp_path / "out"
    if where == "live_process_here":
        sleeper = subprocess.Popen(["sleep", "60"])
        try:
            _write_record(folder, pid=sleeper.pid, host=socket.gethostname(), started=_start_token(sleeper.pid), command="x")
            with pytest.raises(OutputLockedError, match=f"pid {sleeper.pid}"):
                OutputLock(folder, "test").acquire()
        finally:
            sleeper.kill()
            sleeper.wait()
    else:
        _write_record(folder, pid=1, host="elsewhere.example", started="5", command="sparsesel compress")
        with pytest.raises(OutputLockedError, match="on host elsewhere.example.*If no such run is going on, delete"):
            OutputLock(folder, "test").acquire()
