"""``sparsesel select``: feature selection on a builtin dataset, a CSV or an NPZ file."""

from __future__ import annotations

import argparse
import json

import sparsesel as ss
from sparsesel.budget import Budget
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
    parser.add_argument("--k", required=True,
                        help="features to select: a whole count (5) or a fraction of the features written with a "
                             "decimal point (0.1; rounded down)")
    parser.add_argument("--solver", default="omp", help="solver name (see `sparsesel solvers`); default omp")
    parser.add_argument("--loss", choices=("squared", "logistic"), default="squared")
    parser.add_argument("--no-intercept", action="store_true", help="fit without an intercept")
    parser.add_argument(
        "--seed", type=int, default=None,
        help="seed (>= 0) for the solvers that take one (e.g. sequential_attention, lasso); deterministic "
             "solvers (omp, greedy_forward, brute_force) give the same answer for any seed and ignore it",
    )
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    budget = Budget.parse(args.k, "features", name="--k")
    table = load_table(args.data, args.target)
    k = budget.resolve(table.X.shape[1], name="--k")
    problem = ss.FeatureSelection(table.X, table.y, k=k, loss=args.loss, fit_intercept=not args.no_intercept)
    options = {}
    # --seed goes only to solvers with a seed option: the others are deterministic, so any
    # seed reproduces their answer (a script looping over solvers with one --seed keeps working)
    if args.seed is not None and "seed" in ss.solver_options(problem, args.solver):
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
