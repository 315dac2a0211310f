"""``sparsesel export CHECKPOINT --format pt2|onnx --out FILE``: a plain artefact that runs without sparsesel."""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsesel.network_arguments import add_network_arguments, check_network_argument, load_network


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a network (compressed or not) to torch.export (pt2) or ONNX",
        description=(
            "Write the network stored in CHECKPOINT (any file `sparsesel train`, `compress` or `prune` writes, "
            "or an official UHDformer release) as a torch.export program (--format pt2; load it with "
            "torch.export.load(FILE).module()) or an ONNX model (--format onnx), with dynamic height and width "
            "(multiples of the network's size multiple). The artefact is checked against the network at two "
            "sizes before it is written."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="network file")
    parser.add_argument("--format", required=True, choices=("pt2", "onnx"), help="artefact format")
    parser.add_argument("--out", required=True, type=Path, help="output file")
    parser.add_argument("--example-size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"),
                        help="size of the example input the export traces (default 64 64)")
    parser.add_argument("--static", action="store_true", help="fix the input size to the example size")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    add_network_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import warnings

    from sparsesel.export import DenseFallbackWarning, export_model
    from sparsesel.outputs import check_output_file

    if args.checkpoint.is_dir():
        raise ValueError(f"checkpoint {args.checkpoint} is a folder, not a network file")
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    # every output check (folder, under a file, name length, writable, the input itself, existing) before the slow load
    check_output_file(args.out, label="--out", inputs={"CHECKPOINT": args.checkpoint}, force=args.force)
    check_network_argument(args.net)
    model, info = load_network(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DenseFallbackWarning)
        path = export_model(model, args.out, format=args.format, example_size=tuple(args.example_size), dynamic=not args.static,
                            device=args.device, force=args.force)
    for warning in caught:
        if issubclass(warning.category, DenseFallbackWarning):
            print(f"note: {warning.message}")
    print(f"wrote {path} ({info['net']}, {args.format}, {'static' if args.static else 'dynamic'} size)")
    return 0
