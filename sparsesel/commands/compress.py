"""``sparsesel compress CHECKPOINT --budget 0.5 --out DIR``: plan, apply, fine-tune and report.

Writes into ``DIR``: ``compressed.pt`` (the one network format, :mod:`sparsesel.nets.zoo`: every command
reads it; :func:`sparsesel.compress.load_compressed`, :func:`sparsesel.nets.load_net`), ``plan.json`` (editable), ``report.json``, ``report.md`` and PNG plots; nothing else in
``DIR`` is touched. Until those are written, ``DIR/finetune*.state`` allow ``--resume`` after an
interruption (Ctrl-C, ``kill -9``) at any stage, and ``DIR/.sparsesel.lock`` keeps a second run out
of ``DIR``. Under ``torchrun --nproc_per_node=N`` the fine-tuning is data-parallel (rank 0 writes the files).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparsesel.budget import Budget
from sparsesel.network_arguments import add_network_arguments, check_network_argument

METHODS = ("packing", "uniform", "energy", "magnitude")
DEMO_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "uhdformer_lowlight.pt"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compress",
        help="compress a trained network under a global parameter budget (plan, apply, fine-tune, report)",
        description=(
            "Factorize every dense conv (Tucker-2) and linear / 1x1 layer (low rank) of CHECKPOINT, with the "
            "global budget split across layers by an exact multiple-choice knapsack, fine-tune by "
            "distillation from the original, and report parameters, MACs, latency and PSNR/SSIM against baselines. "
            "The input checkpoint is never modified."
        ),
    )
    parser.add_argument("checkpoint", type=Path, nargs="?",
                        help="a network file (sparsesel train, compress, prune; an official UHDformer release; with "
                             "--net package.module:function also a plain state dict of your own network)")
    parser.add_argument("--demo", action="store_true", help=f"use the shipped demo checkpoint ({DEMO_CHECKPOINT.name})")
    parser.add_argument("--budget", default="0.5",
                        help="parameters to keep: a fraction written with a decimal point (0.5; 1.0 keeps the whole "
                             "network; rounded down) or a whole count (500000); default 0.5")
    parser.add_argument("--method", default="packing", help=f"one of {', '.join(METHODS)} (default packing)")
    parser.add_argument("--finetune-steps", type=int, default=None, help="distillation steps (default 100, --demo 60; 0: none)")
    parser.add_argument("--task", default=None, help="degradation used for calibration, fine-tuning and evaluation (default: the network's own task)")
    parser.add_argument("--batch-size", type=int, default=4, help="global batch of the fine-tuning")
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--eval-count", type=int, default=24, help="held-out 128x128 patches for PSNR/SSIM (6 gave +-1 dB noise)")
    parser.add_argument("--eval-size", type=int, default=128)
    parser.add_argument("--curve", default="0.25,0.5,0.75",
                        help="budgets of the quality-vs-size curve, written as --budget ('' for none)")
    parser.add_argument("--no-baselines", action="store_true", help="skip the baselines")
    parser.add_argument("--latency-size", type=int, default=512)
    parser.add_argument("--latency-repeats", type=int, default=3, help="0 skips the latency measurement")
    parser.add_argument("--exclude", action="append", default=[], help="layer name or pattern to leave untouched (repeatable)")
    parser.add_argument("--selector", default="sa++",
                        help="which channels a latency plan keeps: sa++ (default: 30 distillation steps of SequentialAttention++ "
                             "before the fine-tuning), magnitude, taylor or random (benchmarks/compress_selectors.py compares them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--resume", action="store_true",
                        help="continue the interrupted run in --out (same settings; no fine-tuning step is redone)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (required unless --demo: compress-demo); created if missing; must not hold CHECKPOINT")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty --out, replacing only this command's own files there "
                             "(and discarding the state of an interrupted run); nothing else in it is touched")
    parser.add_argument("--no-progress", action="store_true")
    add_network_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.method not in METHODS:
        raise ValueError(f"unknown method {args.method!r}; choose one of {METHODS}")
    if args.demo:
        if args.checkpoint is not None:
            raise ValueError("give either CHECKPOINT or --demo, not both")
        if not DEMO_CHECKPOINT.is_file():
            raise FileNotFoundError(
                f"the demo checkpoint {DEMO_CHECKPOINT} is not installed yet (it is trained by `sparsesel train uhdformer "
                "--task lowlight`); pass a CHECKPOINT instead"
            )
        args.checkpoint = DEMO_CHECKPOINT
        args.out = args.out or Path("compress-demo")
    if args.checkpoint is None:
        raise ValueError("CHECKPOINT is required (or --demo)")
    check_network_argument(args.net)
    if args.finetune_steps is None:
        args.finetune_steps = 60 if args.demo else 100
    if args.finetune_steps < 0:
        raise ValueError(f"--finetune-steps must be >= 0, got {args.finetune_steps}")
    if args.out is None:
        raise ValueError("--out DIR is required")
    budget = Budget.parse(args.budget, "params", name="--budget")
    try:
        curve = [Budget.parse(b, "params", name="--curve budget") for b in args.curve.split(",") if b.strip()]
    except ValueError as exc:
        raise ValueError(f"--curve must be comma-separated budgets such as 0.25,0.5,0.75 (or ''): {exc}") from None
    from sparsesel.compress.pipeline import compress_checkpoint

    try:
        summary = compress_checkpoint(
            args.checkpoint, args.out, budget=budget, method=args.method, finetune_steps=args.finetune_steps, task=args.task,
            batch_size=args.batch_size, patch_size=args.patch_size, lr=args.lr, eval_count=args.eval_count, eval_size=args.eval_size,
            curve=curve, baselines=not args.no_baselines,
            latency_size=args.latency_size, latency_repeats=args.latency_repeats, exclude=args.exclude, seed=args.seed,
            threads=args.threads, resume=args.resume, force=args.force, progress=not args.no_progress,
            net=args.net, trust_code=args.trust_code, selector=args.selector,
        )
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_interrupted(args)) from None
    if summary is not None:
        print(summary)
    return 0




def _interrupted(args: argparse.Namespace) -> str:
    """What an interrupted run kept, and how to continue it."""
    from sparsesel.cli import resume_command
    from sparsesel.compress.run_folder import state_files

    states = state_files(args.out) if args.out.is_dir() else []
    if not states:
        return "no fine-tuning state was saved yet; run the command again to start over"
    return f"the fine-tuning state is kept in {states[0]}; to continue: {resume_command(args)}"
