"""``sparsesel prune``: block-prune a network checkpoint of :mod:`sparsesel.nets` (data-free, by block norm)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparsesel.atomic import write_atomic, write_text_atomic


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="block-prune a network checkpoint (keeps the largest blocks; writes a new checkpoint)",
        description=(
            "Keep a fraction --density of the BxB blocks of every Linear/Conv weight the blocks tile "
            "(conv kernels blocked over their (out, in) channels), choosing the blocks of largest norm. "
            "The input checkpoint is never modified."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="a checkpoint that sparsesel.nets.load_uhdformer loads")
    parser.add_argument("--density", type=float, required=True, help="fraction of blocks kept, in (0, 1]")
    parser.add_argument("--block", default="8x8", help="block shape, e.g. 8x8 or 4x16 (default 8x8)")
    parser.add_argument("--allocation", choices=("per_layer", "global"), default="per_layer",
                        help="same density in every weight (default) or one global budget")
    parser.add_argument("--min-blocks", type=int, default=100,
                        help="weights with fewer blocks stay dense (the paper's rule, default 100; 1 prunes all)")
    parser.add_argument("--out", type=Path, required=True, help="the new checkpoint")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    parser.set_defaults(func=run)


def prune_model(model: Any, density: float, block: str, allocation: str = "per_layer", min_blocks: int = 100) -> tuple[Any, Any]:
    """Magnitude block pruning of ``model`` (not modified); returns (pruned plain model, Result)."""
    import sparsesel as ss
    from sparsesel.blocks import bake_masks

    problem = ss.BlockSparsification(model, block_shape=block, density=density, allocation=allocation, min_blocks=min_blocks)
    result = ss.solve(problem, solver="magnitude", epochs=0)
    return bake_masks(result.info["model"]), result


def run(args: argparse.Namespace) -> int:
    import torch

    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    if args.out.resolve() == args.checkpoint.resolve():
        raise ValueError("--out is the input checkpoint; the input is never overwritten, choose another path")
    if args.out.exists() and not args.force:
        raise FileExistsError(f"{args.out} exists; pass --force to overwrite it")
    try:
        from sparsesel.nets import load_uhdformer
    except ImportError as exc:
        raise ValueError(f"sparsesel.nets is not available ({exc}); prune needs its checkpoint loader") from None
    model = load_uhdformer(args.checkpoint)
    pruned, result = prune_model(model, args.density, args.block, args.allocation, args.min_blocks)
    summary = {
        "input": str(args.checkpoint),
        "block": args.block,
        "target_density": args.density,
        "achieved_density": result.info["density"],
        "layer_density": result.info["layer_density"],
        "kept_blocks": result.info["kept_blocks"],
        "total_blocks": result.info["total_blocks"],
        "discarded_energy": result.objective,
        "selected": [[name, list(idx)] for name, idx in result.selected],
    }
    from sparsesel import nets

    saver = getattr(nets, "save_checkpoint", None)
    if callable(saver):
        saver(pruned, args.out, meta={"prune": summary}, overwrite=bool(args.force))
    else:  # the official wrapper layout, which load_uhdformer reads
        state = {k: v.detach().clone() for k, v in pruned.state_dict().items()}
        write_atomic(args.out, lambda stream: torch.save({"params": state}, stream), force=True)
    sidecar = args.out.with_name(args.out.name + ".prune.json")
    write_text_atomic(sidecar, json.dumps(summary, indent=1), force=True)
    print(
        f"pruned {len(result.selected)} weights of {args.checkpoint}: kept {result.info['kept_blocks']}/"
        f"{result.info['total_blocks']} blocks of {args.block} (density {result.info['density']:.4f}), "
        f"discarded energy {result.objective:.4f}; wrote {args.out} and {sidecar}"
    )
    return 0
