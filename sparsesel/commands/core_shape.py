"""``sparsesel core-shape``: choose Tucker (or tree-network) ranks of a tensor within a size budget."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

import sparsesel
from sparsesel.atomic import write_text_atomic
from sparsesel.budget import Budget
from sparsesel.outputs import check_output_file


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "core-shape",
        help="optimal Tucker core shape / tree-network ranks within a size budget",
        description=(
            "Choose one rank per mode (Tucker) or per edge (tree tensor network) minimising the discarded "
            "spectral energy within a size budget. Examples: sparsesel core-shape --tensor builtin:digits "
            "--budget 0.1 ; sparsesel core-shape --tensor X.npy --budget 5000 --tree tt --evaluate --json. Exit status: 0 solved, 1 infeasible budget, 2 bad input."
        ),
    )
    parser.add_argument("--tensor", required=True, help="FILE.npy or builtin:NAME (" + ", ".join(_builtin_names()) + ")")
    parser.add_argument("--budget", required=True, help="entries: a whole count (e.g. 5000) or a fraction of the tensor size written with a decimal "
                             "point (e.g. 0.1 or 1.0; rounded down); 1 is one entry")
    parser.add_argument("--solver", default="ilp", help="a solver name (see `sparsesel solvers`); default ilp")
    parser.add_argument("--tree", default=None, help="tt (tensor train), tucker (star) or a JSON file {\"edges\": [[u, v], ...], \"modes\": {node: mode}}; default: Tucker core shape")
    parser.add_argument("--epsilon", type=float, default=None, help="epsilon of the ptas solver")
    parser.add_argument("--time-limit", type=float, default=None, help="time limit (s) of the ilp / ptas / greedy solvers")
    parser.add_argument("--evaluate", action="store_true", help="also compute the true squared relative error (HOOI / TT-SVD / hierarchical SVD)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument("--output", default=None, help="also write the JSON result to this file (atomically)")
    parser.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    parser.set_defaults(func=run)


def _builtin_names() -> list[str]:
    from sparsesel.tensors.datasets import DATASETS

    return sorted(DATASETS)


def load_tensor_argument(spec: str) -> tuple[np.ndarray, str]:
    """``builtin:NAME`` or a ``.npy`` path; returns the tensor and a label."""
    if spec.startswith("builtin:"):
        from sparsesel.tensors.datasets import load_tensor

        return load_tensor(spec.split(":", 1)[1]), spec
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"--tensor {spec}: no such file")
    if path.suffix != ".npy":
        raise ValueError(f"--tensor must be a .npy file or builtin:NAME, got {spec!r}")
    if path.is_dir():
        raise ValueError(f"--tensor {spec}: is a directory, not a .npy file")
    try:
        with open(path, "rb") as stream:
            magic = stream.read(6)
    except OSError as exc:
        raise ValueError(f"--tensor {spec}: cannot be read ({exc.strerror or exc})") from None
    if magic != b"\x93NUMPY":
        raise ValueError(
            f"--tensor {spec}: not a readable .npy array (not a .npy file: it does not start with the NumPy magic bytes; "
            "save the array with numpy.save)"
        )
    try:
        X = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"--tensor {spec}: not a readable .npy array of numbers ({exc})") from None
    return X, str(path)


def load_tree_argument(spec: str, n_modes: int):
    from sparsesel.tensors.tree_networks import path_tree, star_tree

    if spec == "tt":
        return path_tree(n_modes)
    if spec == "tucker":
        return star_tree(n_modes)
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"--tree {spec}: not tt, tucker or an existing JSON file")
    import networkx as nx

    if path.is_dir():
        raise ValueError(f"--tree {spec}: is a directory, not tt, tucker or a JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--tree {spec}: cannot be read as a UTF-8 JSON file ({exc})") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("edges"), list) or not isinstance(data.get("modes", {}), dict):
            raise TypeError("the top level must be an object with a list 'edges' and an object 'modes'")
        tree = nx.Graph()
        for i, edge in enumerate(data["edges"]):
            if not isinstance(edge, list) or len(edge) != 2:
                raise ValueError(f"--tree {spec}: edges[{i}] = {edge!r} is not a pair [u, v] of node names")
            tree.add_edge(str(edge[0]), str(edge[1]))
        for node, mode in data.get("modes", {}).items():
            if str(node) not in tree:
                raise ValueError(f"--tree {spec}: mode given for node {node!r} that is on no edge")
            tree.nodes[str(node)]["mode"] = mode
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"--tree {spec}: expected JSON {{\"edges\": [[u, v], ...], \"modes\": {{node: mode}}}} ({exc})") from None
    return tree


def _check_output(args: argparse.Namespace) -> None:
    """Refuse, before any work, an ``--output`` that is a folder, an input, unwritable, or exists without ``--force``."""
    inputs = {"--tensor": None if args.tensor.startswith("builtin:") else args.tensor,
              "--tree": args.tree if args.tree not in (None, "tt", "tucker") else None}
    check_output_file(args.output, label="--output", inputs=inputs, force=args.force)


def _check_solver_numbers(args: argparse.Namespace) -> None:
    """``--epsilon`` in (0, 1] and ``--time-limit`` > 0 (``inf``: none), refused before any work."""
    if args.epsilon is not None and not 0 < args.epsilon <= 1:
        raise ValueError(f"--epsilon must be in (0, 1], got {args.epsilon}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise ValueError(f"--time-limit must be > 0 seconds (inf for none), got {args.time_limit}")


def run(args: argparse.Namespace) -> int:
    _check_solver_numbers(args)
    if args.output:  # refuse before any work
        _check_output(args)
    budget = Budget.parse(args.budget, "entries", name="--budget")  # refused before the tensor is read
    X, label = load_tensor_argument(args.tensor)
    options: dict[str, Any] = {}
    if args.epsilon is not None:
        options["epsilon"] = args.epsilon
    if args.time_limit is not None:
        options["time_limit"] = args.time_limit
    if args.tree is None:
        problem = sparsesel.CoreShape.from_tensor(X, budget)
    else:
        problem = sparsesel.TreeNetworkRanks.from_tensor(X, load_tree_argument(args.tree, np.ndim(X)), budget)
    result = sparsesel.solve(problem, args.solver, **options)
    report: dict[str, Any] = {
        "tensor": label,
        "shape": list(problem.shape),
        "budget": problem.budget,
        "solver": result.solver,
        "status": result.status,
        "ranks": list(result.selected),
        "size": result.info.get("size"),
        "discarded_energy": result.objective,
        "relative_error_bound": result.info.get("relative_error_bound"),
        "lower_bound": result.lower_bound,
        "upper_bound": result.upper_bound,
        "guarantee": result.guarantee,
        "seconds": result.wall_time,
    }
    if args.tree is not None:
        report["edges"] = [[str(u), str(v)] for u, v in problem.edges]
    if result.status == "infeasible":
        report["message"] = result.info.get("message")
    elif args.evaluate:
        if args.tree is None:
            from sparsesel.tensors.tucker import tucker_relative_error

            report["true_relative_error"] = tucker_relative_error(problem.tensor, result.selected)
        else:
            from sparsesel.tensors.tree_networks import tree_relative_error

            report["true_relative_error"] = tree_relative_error(problem.tensor, problem.tree, problem.edges, result.selected)
    text = json.dumps(sparsesel.result.jsonable(report), indent=2)
    if args.output:
        write_text_atomic(args.output, text + "\n", force=args.force)
    if args.json:
        print(text)
        return 1 if result.status == "infeasible" else 0
    if result.status == "infeasible":
        print(f"infeasible: {report['message']}")
        return 1
    print(f"tensor {label} shape {tuple(problem.shape)}  budget {problem.budget} entries")
    print(f"solver {result.solver}: status {result.status}, {result.wall_time:.3g} s")
    print(f"ranks {tuple(result.selected)}  size {report['size']}")
    print(f"discarded energy {result.objective:.6g}  relative error bound {report['relative_error_bound']:.6g}")
    if result.lower_bound is not None:
        print(f"optimal discarded energy >= {result.lower_bound:.6g} (proven)")
    if result.guarantee is not None:
        print(f"guarantee: {result.guarantee}")
    if "true_relative_error" in report:
        print(f"true squared relative error {report['true_relative_error']:.6g}")
    return 0
