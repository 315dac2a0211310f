"""``sparsesel solvers``: list the solvers per problem kind (bundled ones from the registry's table: no solver is imported)."""

from __future__ import annotations

import argparse
import json

import sparsesel


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("solvers", help="list the solvers of every problem kind")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    table = sparsesel.all_solvers()
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    for kind, rows in table.items():
        print(kind)
        width = max(map(len, rows))
        for name, line in rows.items():
            print(f"  {name:<{width}}  {line}")
    return 0
