"""Helpers of the reliability suite: run the command line in this process and check how it refused."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass



@dataclass(frozen=True)
class CliRun:
    """What one in-process run of the ``sparsesel`` command line returned and printed."""

    status: int
    out: str
    err: str


def run_cli(argv: Sequence[str]) -> CliRun:
    """Run ``sparsesel ARGV`` in this process; an uncaught exception (a traceback) fails the test."""
    from sparsesel.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own usage errors
            status = exc.code if isinstance(exc.code, int) else 2
    return CliRun(int(status), out.getvalue(), err.getvalue())


def expect_clear_error(argv: Sequence[str], *fragments: str) -> CliRun:
    """Run the command line and check it refused the input clearly.

    Exit status 2, no traceback, and every ``fragment`` (case-insensitive) in standard error.
    """
    run = run_cli(argv)
    assert run.status == 2, f"expected exit status 2, got {run.status}\nstdout: {run.out}\nstderr: {run.err}"
    assert "Traceback" not in run.err, run.err
    lowered = run.err.lower()
    for fragment in fragments:
        assert fragment.lower() in lowered, f"{fragment!r} not in the error message:\n{run.err}"
    return run
