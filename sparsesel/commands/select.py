"""``sparsesel select``: feature selection on a builtin dataset, a CSV or an NPZ file."""

from __future__ import annotations

import argparse
import json

import sparsesel as ss
from sparsesel.tabular import BUILTIN, load_table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "select",
        help="select k features of a table",
        description="Select k features of a table and print them with the objective and the time.",
    )
    parser.add_argument(
        "--data", required=True, help=f"builtin:NAME ({', '.join(BUILTIN)}), FILE.csv or FILE.npz"
    )
    parser.add_argument("--target", help="response column (CSV) or array key (NPZ; default 'y')")
    parser.add_argument("--k", type=int, required=True, help="number of features to select")
    parser.add_argument("--solver", default="omp", help="solver name (see `sparsesel solvers`); default omp")
    parser.add_argument("--loss", choices=("squared", "logistic"), default="squared")
    parser.add_argument("--no-intercept", action="store_true", help="fit without an intercept")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed, for the solvers that take one (lasso, sequential_attention); an error for the others")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.seed is not None:
        _check_solver_takes_seed(args.solver)
    table = load_table(args.data, args.target)
    problem = ss.FeatureSelection(table.X, table.y, k=args.k, loss=args.loss, fit_intercept=not args.no_intercept)
    options = {}
    if args.seed is not None:  # checked above: the solver takes a seed
        options["seed"] = args.seed
    result = ss.solve(problem, solver=args.solver, **options)
    names = [table.feature_names[i] for i in result.selected]
    if args.json:
        payload = result.to_dict()
        payload["feature_names"] = names
        print(json.dumps(payload, indent=2))
        return 0
    print(f"{args.solver} selected {len(result.selected)} of {problem.n_features} features ({result.status}):")
    for rank, (index, name) in enumerate(zip(result.selected, names), start=1):
        print(f"  {rank:>3}. [{index}] {name}")
    print(f"objective ({args.loss} loss of the refit model): {result.objective:.6g}")
    print(f"time: {result.wall_time:.3f} s")
    return 0


def _check_solver_takes_seed(solver: str) -> None:
    """Refuse ``--seed`` for a solver without a ``seed`` option, naming those that have one."""
    if "seed" in ss.solver_options(ss.FeatureSelection, solver):
        return
    seeded = [name for name in ss.solvers_for(ss.FeatureSelection) if "seed" in ss.solver_options(ss.FeatureSelection, name)]
    raise ValueError(
        f"--seed: solver {solver!r} takes no seed (it is deterministic); drop --seed, or use a solver that "
        f"takes one: {', '.join(seeded)}"
    )
