"""The output folder of one ``sparsesel compress`` run: its files, its checks, its resumable state.

A run writes into ``--out`` only the files named here (:data:`OUTPUT_FILES`, the fine-tuning
states ``finetune.state`` and ``finetune-<baseline>.state``, and the lock ``.sparsesel.lock``);
nothing else in the folder is ever replaced or removed. The states are kept until every final
output is written, each with the run's settings (:func:`run_settings`), so that ``--resume``
after an interruption at any stage continues without redoing a fine-tuning step, and ``--resume``
with other settings is refused at once, naming each setting that changed.

For tests of process faults, the environment variable :data:`PAUSE_VARIABLE` set to a stage name
(:data:`STAGES`) makes the run print a line and wait (until it is killed) when it reaches that stage.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sparsesel.outputs import OutputLock, check_output_folder, remove_leftover_temporaries

__all__ = [
    "OUTPUT_FILES",
    "PAUSE_VARIABLE",
    "STAGES",
    "check_resume_settings",
    "enter_stage",
    "finish",
    "prepare",
    "remove_temporaries",
    "run_settings",
    "start",
    "state_file",
    "state_files",
]

#: Final outputs of a run (plan.json: not with ``--method magnitude``; quality_vs_size.png: with a curve).
OUTPUT_FILES = ("compressed.pt", "plan.json", "report.json", "report.md", "quality_vs_size.png", "layer_ranks.png")
#: Set to a stage name to make the run wait there (tests of kill -9 / Ctrl-C at a given stage).
PAUSE_VARIABLE = "SPARSESEL_TEST_PAUSE_AT_STAGE"
#: The stages of a run, in order.
STAGES = ("analyze", "baselines", "finetune", "evaluate", "curve", "write")
_STAGE_TEXT = {
    "analyze": "analyzing the layers and planning",
    "baselines": "building the baselines",
    "finetune": "fine-tuning",
    "evaluate": "measuring quality, size and latency",
    "curve": "measuring the quality-vs-size curve",
    "write": "writing the outputs",
}
#: Settings that must be equal for a resume: (key, how the command line spells it).
_RESUME_SETTINGS = (
    ("checkpoint_sha256", "CHECKPOINT (its contents)"), ("task", "--task"), ("budget", "--budget"), ("method", "--method"),
    ("exclude", "--exclude"), ("seed", "--seed"), ("finetune_steps", "--finetune-steps"), ("batch_size", "--batch-size"),
    ("patch_size", "--patch-size"), ("lr", "--lr"), ("baselines", "--no-baselines (baselines fine-tuned)"),
    ("selector", "--selector"),
)
_BASELINES = ("uniform", "energy", "magnitude")


def state_file(out: str | os.PathLike, model: str = "ours") -> Path:
    """The fine-tuning state of ``model`` (``"ours"`` or a baseline's name) in ``out``."""
    return Path(out) / ("finetune.state" if model == "ours" else f"finetune-{model}.state")


def state_files(out: str | os.PathLike) -> list[Path]:
    """The fine-tuning states present in ``out`` (ours first)."""
    candidates = [state_file(out), *(state_file(out, name) for name in _BASELINES)]
    return [path for path in candidates if path.is_file()]


def _own_names() -> list[str]:
    return [*OUTPUT_FILES, *(state_file(".", m).name for m in ("ours", *_BASELINES))]


def prepare(out: str | os.PathLike, checkpoint: str | os.PathLike, *, force: bool, resume: bool) -> None:
    """Every check of ``out`` and ``checkpoint`` that needs no network, before any work.

    Raises
    ------
    FileNotFoundError
        ``checkpoint`` is missing, or ``resume`` finds no state to continue.
    ValueError
        ``out`` is a file, lies under a file, has a name too long, or holds the checkpoint.
    PermissionError
        ``out`` cannot be written.
    FileExistsError
        ``out`` is not empty and neither ``force`` nor ``resume``
        (:class:`~sparsesel.outputs.OutputLockedError`: a live run holds its lock).
    """
    out, checkpoint = Path(out), Path(checkpoint)
    if checkpoint.is_dir():
        raise ValueError(f"checkpoint {checkpoint} is a directory, not a checkpoint file")
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    check_output_folder(out, inputs={"checkpoint": checkpoint}, files=OUTPUT_FILES, force=True)
    OutputLock(out, "sparsesel compress").refuse_if_held()  # a run at work there: say so, not "not empty"
    states = state_files(out)
    if resume:
        if not states:
            finished = " (the run there finished: its report.json is there)" if (out / "report.json").is_file() else ""
            raise FileNotFoundError(f"nothing to resume: {out} holds no fine-tuning state ({state_file(out).name}){finished}")
        return
    from sparsesel.outputs import LOCK_NAME

    others = sorted(entry.name for entry in out.iterdir() if entry.name != LOCK_NAME) if out.is_dir() else []
    if others and not force:
        if states:
            raise FileExistsError(f"{out} holds the state of an interrupted run ({states[0].name}): pass --resume to continue it, "
                                  "or --force to start over")
        raise FileExistsError(
            f"{out} exists and is not empty; pass --force to write into it (only compress's own files are replaced: "
            f"{', '.join(OUTPUT_FILES)}; nothing else is touched), or --resume to continue an interrupted run, or choose another --out"
        )


def remove_temporaries(out: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of this command's files in ``out`` that a process stopped mid-write left
    (a fine-tuning worker terminated by Ctrl-C while it wrote its state); returns them. Call it only when
    no writer of ``out`` is alive."""
    return remove_leftover_temporaries(out, _own_names())


def start(out: str | os.PathLike, *, force: bool, resume: bool) -> None:
    """Once the lock is held: remove what killed runs left half-written, and with ``force`` (no ``resume``)
    the states of an earlier run (the final outputs stay until this run replaces them)."""
    remove_temporaries(out)
    if force and not resume:
        for path in state_files(out):
            path.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def run_settings(checkpoint: str | os.PathLike, **settings: Any) -> dict[str, Any]:
    """The settings stored with the fine-tuning states: ``settings`` and the checkpoint's SHA-256.

    Values are plain data (tuples become lists), as :func:`check_resume_settings` compares them.
    """
    plain = {key: list(value) if isinstance(value, tuple) else value for key, value in settings.items()}
    return {"checkpoint_sha256": _sha256(Path(checkpoint)), **plain}


def check_resume_settings(out: str | os.PathLike, settings: dict[str, Any]) -> None:
    """Refuse a resume whose settings differ from the interrupted run's, naming every change.

    Reads the settings stored with each state in ``out`` (states written before settings were
    stored are not compared here; the training loop (:class:`sparsesel.training.loop.StateFile`) still checks its own
    configuration).

    Raises
    ------
    ValueError
        A setting differs: ``--budget 0.5 (now 0.4)``, ...
    """
    from sparsesel.training.loop import read_state

    for path in state_files(out):
        saved = read_state(path)["meta"].get("compress_settings")
        if not isinstance(saved, dict):
            continue
        changed = []
        for key, flag in _RESUME_SETTINGS:
            if key in saved and saved[key] != settings.get(key):
                if key == "checkpoint_sha256":
                    changed.append("CHECKPOINT: not the file the interrupted run started from (other contents)")
                else:
                    changed.append(f"{flag} {_show(saved[key])} (now {_show(settings.get(key))})")
        if changed:
            raise ValueError(
                f"cannot resume {out}: the interrupted run used other settings: {'; '.join(changed)}. Rerun with the "
                "interrupted run's settings and --resume, or pass --force instead of --resume to start over"
            )


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def enter_stage(name: str, progress: bool) -> None:
    """Announce stage ``name`` on stderr (if ``progress``); wait there if :data:`PAUSE_VARIABLE` names it."""
    if progress:
        print(f"compress: {_STAGE_TEXT[name]}", file=sys.stderr, flush=True)
    if os.environ.get(PAUSE_VARIABLE) == name:
        print(f"compress: paused at stage {name} ({PAUSE_VARIABLE} is set; pid {os.getpid()})", file=sys.stderr, flush=True)
        while True:
            time.sleep(60)


def finish(out: str | os.PathLike, written: Iterable[str]) -> None:
    """After the final outputs are written: remove this folder's outputs of an earlier run that this
    run did not write (so none contradicts the new report), then the fine-tuning states."""
    out, written = Path(out), set(written)
    for name in OUTPUT_FILES:
        if name not in written:
            (out / name).unlink(missing_ok=True)
    for path in state_files(out):
        path.unlink(missing_ok=True)
