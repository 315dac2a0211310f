"""The ``sparsesel`` command line: thin wrappers that parse, call the API and print.

Each subcommand lives in its own module of :mod:`sparsesel.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function
``func(args) -> int``.

Exit status: 0 success (some commands use 1 for a valid but unmet goal), 2 bad input, a path
that cannot be written or read, or any other ``OSError`` (one line ``sparsesel CMD: error: ...``,
no traceback), 130 interrupted by Ctrl-C (one line ``sparsesel CMD: interrupted ...``; a command
that keeps a resumable state says how to continue). ``args.argv`` holds the command line, so
that a command can spell out how to resume it.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from sparsesel import __version__


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser, with every subcommand of :mod:`sparsesel.commands`."""
    import sparsesel.commands as commands

    parser = argparse.ArgumentParser(
        prog="sparsesel",
        description="Discrete subset selection: features, blocks, ranks, pixels.",
    )
    parser.add_argument("--version", action="version", version=f"sparsesel {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{module.name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 success, 2 bad input or an OSError, 130 Ctrl-C; see the module docstring)."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:  # Ctrl-C while the commands are imported
        print("sparsesel: interrupted", file=sys.stderr)
        return 130
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    args.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        detail = str(exc)
        print(f"sparsesel {args.command}: interrupted" + (f"; {one_line(detail)}" if detail else ""), file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError) as exc:  # OSError: missing, existing, unreadable, unwritable, over-long paths
        from sparsesel.outputs import describe_os_error

        message = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"sparsesel {args.command}: error: {one_line(message)}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """``message`` with every non-printable character (newlines, controls in a file name) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues the run of ``args``: its own, without ``--force`` and with
    ``--resume`` (shell-quoted)."""
    import shlex

    argv = [a for a in getattr(args, "argv", None) or [] if a != "--force"]
    if "--resume" not in argv:
        argv.append("--resume")
    return shlex.join(["sparsesel", *argv])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
