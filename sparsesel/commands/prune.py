"""``sparsesel prune``: block-prune a network checkpoint of :mod:`sparsesel.nets` (data-free, by block norm)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sparsesel.atomic import write_text_atomic
from sparsesel.budget import Budget
from sparsesel.network_arguments import add_network_arguments, load_network
from sparsesel.outputs import check_output_file

#: ``--kernel`` values (those of :data:`sparsesel.block_speed.KERNEL_CHOICES`; not imported here: no torch at ``--help``)
KERNEL_CHOICES = ("auto", "dense", "block")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="block-prune a network checkpoint (keeps the largest blocks; writes a new checkpoint)",
        description=(
            "Keep a fraction --density of the BxB blocks of every Linear/Conv weight the blocks tile "
            "(conv kernels blocked over their (out, in) channels), choosing the blocks of largest norm. "
            "The input checkpoint is never modified. Outputs: the new checkpoint (--out, by default "
            "<stem>.pruned-d<DENSITY>-b<B1>x<B2><suffix> beside the input, e.g. model.pruned-d0.25-b8x8.pth) "
            "and a JSON summary <out>.prune.json beside it. Neither may be the input, and an existing "
            "output is refused unless --force; every output path is checked before anything is written. "
            "Each pruned Linear/Conv2d layer is timed at --latency-size in its dense form and in block-sparse "
            "kernels that run only the kept blocks (stored packed: a smaller checkpoint); --kernel auto keeps "
            "the block form only where it is measured faster, and the summary lists per layer and in total "
            "the block and dense times and where dense wins."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="a network file (sparsesel train, compress, prune) or an official UHDformer checkpoint")
    parser.add_argument("--density", required=True,
                        help="fraction of blocks kept, in (0, 1], written with a decimal point (0.25; 1.0 keeps every block)")
    parser.add_argument("--block", default="8x8", help="block shape, e.g. 8x8 or 4x16 (default 8x8)")
    parser.add_argument("--allocation", choices=("per_layer", "global"), default="per_layer",
                        help="same density in every weight (default) or one global budget")
    parser.add_argument("--min-blocks", type=int, default=100,
                        help="weights with fewer blocks stay dense (the paper's rule, default 100; 1 prunes all)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the new checkpoint (a file path, not a folder); default: "
                             "<stem>.pruned-d<DENSITY>-b<B1>x<B2><suffix> in the input's folder, "
                             "e.g. in.pth -> in.pruned-d0.25-b8x8.pth")
    parser.add_argument("--kernel", choices=KERNEL_CHOICES, default="auto",
                        help="block-sparse kernels: auto (per layer, where measured faster than dense; default), "
                             "block (every prunable Linear/Conv2d layer), dense (none: zeros in dense weights)")
    parser.add_argument("--latency-size", type=int, default=512, metavar="S",
                        help="time layers and network on an SxS input (default 512)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads while timing (default: torch's choice)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite the outputs (checkpoint and its .prune.json) if they exist; "
                             "the input is never overwritten")
    add_network_arguments(parser)
    parser.set_defaults(func=run)


def block_masks_of(result: Any, model: Any, block_shape: tuple[int, int]) -> dict[str, Any]:
    """``{parameter name: (R, C) block mask}`` of a block-sparsification ``result`` on ``model``."""
    from sparsesel.blocks import block_grid, block_mask_from_indices

    params = dict(model.named_parameters())
    return {name: block_mask_from_indices(idx, block_grid(params[name].shape, block_shape, name)) for name, idx in result.selected}


def check_timing_options(latency_size: int, threads: int | None) -> None:
    """``--latency-size`` positive (at most 8192), ``--threads`` within the machine's limit."""
    from sparsesel.validation import MAX_THREADS_PER_CPU, max_threads

    if not 1 <= latency_size <= 8192:
        raise ValueError(f"--latency-size must be between 1 and 8192 pixels, got {latency_size}")
    if threads is not None and not 1 <= threads <= max_threads():
        raise ValueError(f"--threads must be between 1 and {max_threads()} ({MAX_THREADS_PER_CPU} per CPU), got {threads}")


def prune_model(model: Any, density: float, block: str, allocation: str = "per_layer", min_blocks: int = 100) -> tuple[Any, Any]:
    """Magnitude block pruning of ``model`` (not modified); returns (pruned plain model, Result)."""
    import sparsesel as ss
    from sparsesel.blocks import bake_masks

    problem = ss.BlockSparsification(model, block_shape=block, density=density, allocation=allocation, min_blocks=min_blocks)
    result = ss.solve(problem, solver="magnitude", epochs=0)
    return bake_masks(result.info["model"]), result


def parse_density(text: str) -> float:
    """``--density``: a fraction of the blocks in ``(0, 1]`` (:class:`sparsesel.budget.Budget`, unit
    ``blocks``); a whole count is refused (the density applies to every weight, whatever its size).

    Raises
    ------
    ValueError
        Not a number, outside ``(0, 1]``, or a whole count.
    """
    message = (f"--density must be a fraction in (0, 1] of the blocks, written with a decimal point (e.g. 0.25; "
               f"1.0 keeps every block), got {text!r}")
    try:
        budget = Budget.parse(text, "blocks", name="--density")
    except ValueError:
        raise ValueError(message) from None
    if not budget.is_fraction:
        raise ValueError(message + " (a whole number is a count of blocks)")
    return float(budget.value)


def default_output(checkpoint: Path, density: float, block_shape: tuple[int, int]) -> Path:
    """The default ``--out``: ``<stem>.pruned-d<density>-b<b1>x<b2><suffix>`` beside ``checkpoint``.

    Parameters
    ----------
    checkpoint : Path
        The input checkpoint.
    density : float
        The kept fraction of blocks, written with ``format(density, "g")`` (0.25 → ``0.25``).
    block_shape : (int, int)
        The parsed block shape.

    Returns
    -------
    Path
        E.g. ``ck/model.pth`` → ``ck/model.pruned-d0.25-b8x8.pth``.
    """
    tag = f".pruned-d{format(density, 'g')}-b{block_shape[0]}x{block_shape[1]}"
    return checkpoint.with_name(checkpoint.stem + tag + checkpoint.suffix)


def sidecar_path(out: Path) -> Path:
    """The JSON summary written beside the new checkpoint: ``<out>.prune.json``."""
    return out.with_name(out.name + ".prune.json")


def check_outputs(checkpoint: Path, outputs: list[tuple[str, Path]], force: bool) -> None:
    """Refuse, before any work, every output that is the input, a folder, unwritable, or exists without ``force``.

    Parameters
    ----------
    checkpoint : Path
        The input (never written).
    outputs : list of (str, Path)
        ``(label, path)`` of every file the command will write.
    force : bool
        Allow replacing existing outputs (never the input).

    Raises
    ------
    ValueError
        An output is the input, or a folder, or lies under a file, or has a name too long.
    PermissionError
        An output's folder cannot be written.
    FileExistsError
        An output exists and ``force`` is false.
    """
    for label, path in outputs:
        check_output_file(path, label=label, inputs={"checkpoint": checkpoint}, force=force)


def run(args: argparse.Namespace) -> int:
    from sparsesel.blocks import parse_block_shape

    if args.checkpoint.is_dir():
        raise ValueError(f"checkpoint {args.checkpoint} is a directory, not a checkpoint file")
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    density = parse_density(args.density)
    block_shape = parse_block_shape(args.block, "--block")
    check_timing_options(args.latency_size, args.threads)
    out = args.out if args.out is not None else default_output(args.checkpoint, density, block_shape)
    sidecar = sidecar_path(out)
    check_outputs(args.checkpoint, [("--out", out), ("the summary", sidecar)], bool(args.force))
    from sparsesel.nets.edits import record_edit
    from sparsesel.nets.zoo import save_net

    model, info = load_network(args)  # any network file, or an official UHDformer file
    pruned, result = prune_model(model, density, args.block, args.allocation, args.min_blocks)
    for parameter, kept in result.selected:  # the zeros, in the network's edit log
        record_edit(pruned, "block_mask", {"parameter": parameter, "block_shape": list(block_shape), "kept": [int(i) for i in kept]})
    from sparsesel.block_speed import pack_model

    pruned, speed = pack_model(pruned, block_masks_of(result, pruned, block_shape), block_shape, kernel=args.kernel,
                               example_size=(args.latency_size, args.latency_size), threads=args.threads)
    summary = {
        "input": str(args.checkpoint),
        "net": info["net"],
        "block": args.block,
        "target_density": density,
        "achieved_density": result.info["density"],
        "layer_density": result.info["layer_density"],
        "kept_blocks": result.info["kept_blocks"],
        "total_blocks": result.info["total_blocks"],
        "discarded_energy": result.objective,
        "selected": [[name, list(idx)] for name, idx in result.selected],
        "speed": speed,
    }
    recorded = {key: value for key, value in summary.items() if key != "selected"}  # the kept blocks are in the edits
    save_net(pruned, out, net=info["net"], config=info["config"], meta={**info["meta"], "prune": recorded}, force=bool(args.force))
    write_text_atomic(sidecar, json.dumps(summary, indent=1), force=bool(args.force))
    print(
        f"pruned {len(result.selected)} weights of {args.checkpoint}: kept {result.info['kept_blocks']}/"
        f"{result.info['total_blocks']} blocks of {args.block} (density {result.info['density']:.4f}), "
        f"discarded energy {result.objective:.4f}; wrote {out} and {sidecar}"
    )
    print(speed_summary(speed))
    return 0


def speed_summary(speed: dict) -> str:
    """The lines ``prune`` prints about the measured block vs dense times (``speed``: :func:`sparsesel.block_speed.pack_model`'s report)."""
    total = speed["total"]
    size = "x".join(str(v) for v in speed["example_size"])
    lines = [f"kernel {speed['kernel']}: {total['block_layers']} of {len(speed['layers'])} layers in block-sparse form "
             f"(timed at {size}, {speed['threads']} thread(s), best of {speed['repeats']})"]
    for entry in speed["layers"]:
        if entry["ms_dense"] is None:
            lines.append(f"  {entry['name']}: dense ({entry['note']})")
            continue
        lines.append(f"  {entry['name']} ({entry['layer']}, {entry['kept_blocks']}/{entry['total_blocks']} blocks): "
                     f"dense {entry['ms_dense']:.3f} ms, block {entry['ms_block']:.3f} ms ({entry['block_kernel']}), "
                     f"x{entry['speedup'] or 0:.2f} -> {entry['form']}" + ("" if (entry["speedup"] or 0) > 1 else "  [dense wins]"))
    if total["network_ms_dense"] is not None:
        lines.append(f"network: dense {total['network_ms_dense']:.2f} ms, chosen {total['network_ms_chosen']:.2f} ms"
                     + ("  [block layers reverted: the network was slower with them]" if total["reverted"] else ""))
    dense_wins = speed["dense_wins"]
    lines.append(f"dense wins in {len(dense_wins)} of {sum(e['ms_dense'] is not None for e in speed['layers'])} timed layers")
    return "\n".join(lines)
