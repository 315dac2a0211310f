"""Hostile option values for every documented command (issue 17, item 7: arguments).

Each command runs in this process on small files made here, with its expensive step (solving,
fitting, training, compressing, running a network) replaced by a sentinel that stops the run as
soon as the work would begin. Two kinds of cases:

* a table of values each option's help rules out (zero or negative counts, NaN, infinite or
  out-of-range numbers, unknown names): the command must refuse each one with exit status 2 and
  a one-line ``error:`` message, before the work starts;
* hypothesis-made values (negative, zero, NaN, inf, huge, empty, non-numeric, odd unicode, unknown
  names) for every numeric or string option: the run either reaches the work (the value was
  accepted), or finishes, or exits 2 with one ``error:`` line (argparse's usage block may precede
  it) — never a traceback or another exit status.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import run_cli

import sparsesel


class WorkReached(Exception):
    """Raised by the sentinel that replaces a command's expensive step: every option was accepted."""


# ------------------------------------------------------------------ the files the commands read
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from PIL import Image

    from sparsesel.attribution.models import DigitsCNN
    from sparsesel.nets import zoo

    root = tmp_path_factory.mktemp("fuzz-files")
    rng = np.random.default_rng(0)
    table = np.column_stack([rng.standard_normal((30, 4)), rng.standard_normal(30)])
    csv = root / "table.csv"
    csv.write_text("a,b,c,d,y\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in table) + "\n")
    tensor = root / "tensor.npy"
    np.save(tensor, rng.standard_normal((6, 5, 4)))
    torch.manual_seed(0)
    classifier = root / "digits.pt"
    torch.save({"arch": "digits-cnn", "state_dict": DigitsCNN().state_dict()}, classifier)
    image = root / "image.png"
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)).save(image)
    network = root / "net.pt"
    zoo.save_net(zoo.build_net("uhdformer", "small"), network, net="uhdformer")
    return {"csv": csv, "tensor": tensor, "classifier": classifier, "image": image, "network": network, "root": root}


def _fresh_dir(files) -> Path:
    """An empty folder for one run's outputs."""
    return Path(tempfile.mkdtemp(dir=files["root"]))


# ------------------------------------------------------------------ sentinels
def _solve_sentinel(problem, solver, **options):
    """Stands for ``sparsesel.solve``: the registry's own checks (solver name, option names), then stop."""
    valid = sparsesel.solver_options(problem, solver)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"solver {solver!r} got unknown option(s) {unknown}")
    raise WorkReached(solver)


def _stop(*args, **kwargs):
    raise WorkReached()


def _patch_solve(monkeypatch):
    monkeypatch.setattr(sparsesel, "solve", _solve_sentinel)


def _patch_aggregate(monkeypatch):
    from sparsesel import aggregate

    for name in ("BagLevelRegressor", "InstanceLevelRegressor", "InterpolatingRegressor",
                 "BagLevelClassifier", "InstanceLevelClassifier", "InterpolatingClassifier"):
        monkeypatch.setattr(getattr(aggregate, name), "fit", _stop)


def _patch_compress(monkeypatch):
    import sparsesel.compress.pipeline as pipeline

    monkeypatch.setattr(pipeline, "compress_model", _stop)


def _patch_restore(monkeypatch):
    import sparsesel.training.losses as losses

    monkeypatch.setattr(losses, "predict", _stop)


def _patch_train(monkeypatch):
    import sparsesel.training as training

    monkeypatch.setattr(training, "train", _stop)


# ------------------------------------------------------------------ the commands
@dataclass
class Command:
    """A documented command: a valid argv (before its options), the fuzzed options and its sentinel."""

    name: str
    base: Callable[[dict, Path], list[str]]
    options: dict[str, str]  # option -> kind: int, float, name, text, path
    patch: Callable
    ok_status: tuple[int, ...] = (0,)
    refused: dict[str, list[str]] = field(default_factory=dict)  # option -> values it must refuse


COMMANDS = {
    "select": Command(
        "select",
        lambda f, out: ["select", "--data", f["csv"], "--target", "y", "--k", "2"],
        {"--k": "int", "--solver": "name", "--seed": "int", "--target": "name", "--data": "path", "--loss": "name"},
        _patch_solve,
        refused={"--k": ["0", "-1", "5"], "--seed": ["-1"], "--solver": ["nope", ""], "--target": ["nope", ""],
                 "--data": ["", "builtin:nope"]},
    ),
    "core-shape": Command(
        "core-shape",
        lambda f, out: ["core-shape", "--tensor", f["tensor"], "--budget", "60", "--solver", "ptas"],
        {"--budget": "text", "--solver": "name", "--tree": "name", "--epsilon": "float", "--time-limit": "float",
         "--tensor": "path"},
        _patch_solve,
        ok_status=(0, 1),  # 1: the documented "infeasible" answer
        refused={"--budget": ["0", "-5", "nan", "inf", "abc", ""], "--epsilon": ["0", "-1", "nan", "inf", "2"],
                 "--time-limit": ["0", "-1", "nan"], "--solver": ["nope"], "--tree": ["nope"],
                 "--tensor": ["", "builtin:nope"]},
    ),
    "aggregate": Command(
        "aggregate",
        lambda f, out: ["aggregate", "--data", "builtin:diabetes", "--bag-size", "10", "--out", out / "plot.png"],
        {"--bag-size": "int", "--rho": "text", "--alpha": "float", "--epsilon": "float", "--clip": "text",
         "--test-size": "float", "--seed": "int", "--target": "name", "--data": "path", "--task": "name",
         "--estimator": "name", "--model": "name"},
        _patch_aggregate,
        refused={"--bag-size": ["0", "-3", "100000"], "--epsilon": ["0", "-1", "nan", "inf"],
                 "--test-size": ["0", "1", "nan", "-0.5"], "--alpha": ["-1", "nan", "inf"],
                 "--rho": ["2", "-0.1", "nan", "abc"], "--seed": ["-1"], "--clip": ["0,1"],
                 "--data": ["", "builtin:nope"]},
    ),
    "attribute": Command(
        "attribute",
        lambda f, out: ["attribute", "--model", f["classifier"], "--image", f["image"], "--out", out, "--k", "20"],
        {"--k": "int", "--target": "int", "--steps": "int", "--rounds": "int", "--ranked": "float",
         "--method": "name", "--anchor-draws": "int", "--seed": "int", "--solver": "name", "--baseline": "name",
         "--schedule": "name", "--path": "name", "--output": "name", "--model": "path", "--image": "path",
         "--size": "text", "--target-region": "text", "--target-channel": "int", "--weights": "path",
         "--channels": "int"},
        _patch_solve,
        refused={"--k": ["0", "-1", "1025"], "--steps": ["0", "-1"], "--rounds": ["0", "-2"],
                 "--anchor-draws": ["0"], "--target": ["-1", "10", "1000000"], "--ranked": ["0", "-1", "nan", "inf"],
                 "--seed": ["-1"], "--model": ["", "builtin:nope"], "--image": [""], "--method": ["nope"],
                 "--size": ["0x32", "axb", "-32x32"], "--target-region": ["1,2,3", "5,5,1,1"]},
    ),
    "prune": Command(
        "prune",
        lambda f, out: ["prune", f["network"], "--density", "0.5", "--block", "4x4", "--min-blocks", "1",
                        "--out", out / "pruned.pt"],
        {"--density": "float", "--block": "text", "--min-blocks": "int", "--allocation": "name"},
        _patch_solve,
        refused={"--density": ["0", "-0.5", "1.5", "nan", "inf"], "--min-blocks": ["0", "-1"],
                 "--block": ["0x4", "abc", "", "-4x4"]},
    ),
    "compress": Command(
        "compress",
        lambda f, out: ["compress", f["network"], "--out", out / "run", "--no-progress"],
        {"--budget": "float", "--method": "name", "--finetune-steps": "int", "--task": "name", "--batch-size": "int",
         "--patch-size": "int", "--lr": "float", "--eval-count": "int", "--eval-size": "int", "--curve": "text",
         "--latency-size": "int", "--latency-repeats": "int", "--seed": "int", "--threads": "int",
         "--exclude": "text"},
        _patch_compress,
        refused={"--budget": ["0", "-1", "nan", "inf"], "--method": ["nope"], "--finetune-steps": ["-1"],
                 "--task": ["nope"], "--batch-size": ["0"], "--patch-size": ["0", "-8"], "--lr": ["-1", "nan", "inf"],
                 "--eval-count": ["0"], "--eval-size": ["0"], "--curve": ["abc", "nan", "0,2"],
                 "--latency-size": ["0"], "--latency-repeats": ["-1"], "--seed": ["-1"], "--threads": ["0", "-2", "100000", str(2**70)]},
    ),
    "restore": Command(
        "restore",
        lambda f, out: ["restore", f["image"], "--checkpoint", f["network"], "--out", out / "restored.png"],
        {"--threads": "int", "--mask": "path", "--checkpoint": "path"},
        _patch_restore,
        refused={"--threads": ["0", "-1", "100000", str(2**70)]},
    ),
    "train": Command(
        "train",
        lambda f, out: ["train", "uhdformer", "--task", "lowlight", "--out", out / "net.pt", "--no-progress"],
        {"--steps": "int", "--preset": "name", "--option": "text", "--batch-size": "int", "--patch-size": "int",
         "--lr": "float", "--weight-decay": "float", "--eta-min": "float", "--seed": "int",
         "--checkpoint-every": "int", "--eval-count": "int", "--eval-size": "int", "--threads": "int",
         "--task": "name"},
        _patch_train,
        refused={"--steps": ["-1"], "--batch-size": ["0"], "--patch-size": ["0"], "--lr": ["-1", "nan", "inf"],
                 "--weight-decay": ["-1", "nan"], "--eta-min": ["-1", "nan"], "--seed": ["-1"],
                 "--checkpoint-every": ["0"], "--eval-count": ["-1"], "--eval-size": ["0"],
                 "--threads": ["0", "100000", str(2**70)],
                 "--option": ["nope", "nope=1", "=1"]},
    ),
    "solvers": Command("solvers", lambda f, out: ["solvers"], {"--json": "flag"}, lambda monkeypatch: None),
    "demo": Command(
        "demo",
        lambda f, out: ["demo", "--out", out],
        {"--k": "int"},
        _patch_solve,
        refused={"--k": ["0", "-1", "65"]},
    ),
}


# ------------------------------------------------------------------ the property
def _check_outcome(command: Command, argv: list) -> str:
    """Run ``argv``; return ``"work"``, ``"ok"`` or ``"refused"``, failing on anything else."""
    threads = torch.get_num_threads()
    try:
        run = run_cli(argv)
    except WorkReached:
        return "work"
    except BaseException as exc:  # noqa: BLE001 - a traceback on the command line is the failure
        pytest.fail(f"sparsesel {' '.join(map(str, argv))!r} raised {type(exc).__name__}: {exc}")
    finally:
        torch.set_num_threads(threads)
    assert "Traceback" not in run.err, run.err
    if run.status in command.ok_status:
        return "ok"
    assert run.status == 2, f"exit status {run.status} for {argv}\nstderr: {run.err}"
    lines = [line for line in run.err.split("\n") if line.strip()]
    # argparse reports unrecognised arguments from the top-level parser ("sparsesel: error: ...")
    errors = [line for line in lines if line.startswith((f"sparsesel {command.name}: error: ", "sparsesel: error: "))]
    assert len(errors) == 1 and lines[-1] == errors[0], f"not one error line:\n{run.err}"
    usage = lines[:-1]  # argparse's usage block, indented continuation lines
    assert all(line.startswith(("usage:", " ")) for line in usage), f"unexpected lines:\n{run.err}"
    return "refused"


REFUSED_CASES = [
    pytest.param(name, option, value, id=f"{name}{option}={value}")
    for name, command in COMMANDS.items()
    for option, values in command.refused.items()
    for value in values
]


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize(("name", "option", "value"), REFUSED_CASES)
def test_a_value_the_help_rules_out_is_refused_before_any_work(name, option, value, files, monkeypatch):
    command = COMMANDS[name]
    command.patch(monkeypatch)
    argv = [*command.base(files, _fresh_dir(files)), f"{option}={value}"]
    assert _check_outcome(command, argv) == "refused", f"{option}={value!r} was accepted: {argv}"


# ------------------------------------------------------------------ hypothesis-made values
def _text(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=max_size)


HOSTILE_NUMBERS = ["-1", "0", "-0", "1e3", "1.5", "nan", "NaN", "-nan", "inf", "-inf", "1e309", "1e-320", "",
                   " ", "abc", "0x10", "1,2", "٣", "²", str(2**63), str(-(2**63) - 1), "9" * 40]
VALUES = {
    "int": st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.integers(-(2**70), 2**70).map(str), _text(6)),
    "float": st.one_of(st.sampled_from(HOSTILE_NUMBERS), st.floats().map(repr), _text(6)),
    "text": st.one_of(st.sampled_from(HOSTILE_NUMBERS + ["0,1", "nan,nan", "1,0", "x=1", "width=4096", "="]),
                      _text(12)),
    "name": st.one_of(st.sampled_from(["", "nope", "OMP", " omp", "../x", "a" * 300, "builtin:", "é", "-"]),
                      _text(12)),
    "path": st.one_of(st.sampled_from(["", ".", "/", "/nonexistent/x.csv", "builtin:", "builtin:nope", "x" * 300,
                                       "/dev/null", "é.npy"]), _text(12)),
}


@pytest.mark.reliability("clear_error")
@pytest.mark.parametrize("name", list(COMMANDS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_option_values_never_give_a_traceback(name, data, files, monkeypatch):
    command = COMMANDS[name]
    command.patch(monkeypatch)
    option = data.draw(st.sampled_from(sorted(command.options)), label="option")
    kind = command.options[option]
    if kind == "flag":  # a flag given a value, or a stray argument
        extra = [data.draw(st.sampled_from([f"{option}=1", "--nope", "stray", "-x"]), label="argument")]
    else:
        extra = [f"{option}={data.draw(VALUES[kind], label='value')}"]
    _check_outcome(command, [*command.base(files, _fresh_dir(files)), *extra])


@pytest.mark.reliability("right_result")
@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "solvers"])
def test_the_base_arguments_reach_the_work(name, files, monkeypatch):
    """The fuzz starts from valid arguments: unchanged, every command gets to its work."""
    command = COMMANDS[name]
    command.patch(monkeypatch)
    assert _check_outcome(command, command.base(files, _fresh_dir(files))) == "work"


def test_the_sentinel_sees_the_registry_checks():
    """The stand-in for ``solve`` refuses unknown option names as ``solve`` does (else the table could pass wrongly)."""
    problem = sparsesel.FeatureSelection(np.eye(4), np.arange(4.0), 1)
    with pytest.raises(ValueError, match="unknown option"):
        _solve_sentinel(problem, "omp", nope=1)
    with pytest.raises(WorkReached):
        _solve_sentinel(problem, "omp")
    assert math.isfinite(problem.objective([0]))
