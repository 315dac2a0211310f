"""The ``sparsesel`` command line: thin wrappers that parse, call the API and print.

Each subcommand lives in its own module of :mod:`sparsesel.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a function
``func(args) -> int``.
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
    """Run the command line; returns the exit status (0 success, 2 bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, OSError) as exc:  # OSError: missing, existing, unreadable, over-long paths
        print(f"sparsesel {args.command}: error: {one_line(str(exc))}", file=sys.stderr)
        return 2


def one_line(message: str) -> str:
    """``message`` with every non-printable character (newlines, controls in a file name) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in message)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
