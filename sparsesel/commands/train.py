"""``sparsesel train NET --task TASK --steps N --out FILE``: train a restoration network on synthetic data."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparsesel.nets.adapter import net_names

# the adapters' names, read without importing torch (building the parser must not: checked by the tests)
NETS = net_names()
TASKS = ("lowlight", "haze", "blur", "specular", "harmonize")
PRESETS = ("small", "paper")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a restoration network on degraded bundled images",
        description=(
            "Train NET on TASK (synthetic degradations of the images bundled with scikit-image and "
            "scikit-learn) with NET's training recipe (uhdformer, csattn, harmonizer: AdamW lr 5e-4, "
            "weight decay 1e-3, cosine annealing; tshrnet: the official Adam lr 1e-4, betas (0.5, 0.999), "
            "constant rate); writes OUT (the network), OUT.json (how it was made, held-out PSNR/SSIM) "
            "and, while running, OUT.state (resumable with --resume)."
        ),
    )
    parser.add_argument("net", metavar="NET",
                        help=f"network: one of {', '.join(NETS)}, or your own network's factory package.module:function "
                             "(imported: its code runs; trained with the default recipe on an image-to-image task)")
    parser.add_argument("--task", required=True, choices=TASKS, help="degradation to learn to undo")
    parser.add_argument("--out", required=True, type=Path, help="output network file (.pt)")
    parser.add_argument("--steps", type=int, default=1000, help="optimisation steps (default 1000)")
    parser.add_argument("--preset", choices=PRESETS, default="small", help="network size (default small)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="override a network config field (JSON value), e.g. --option width=16; repeatable")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: NET's recipe)")
    parser.add_argument("--weight-decay", type=float, default=None, help="weight decay (default: NET's recipe)")
    parser.add_argument("--eta-min", type=float, default=None,
                        help="final learning rate of a cosine schedule (default: NET's recipe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=50, help="steps between saves of OUT.state")
    parser.add_argument("--eval-count", type=int, default=8, help="held-out patches to score at the end (0: none)")
    parser.add_argument("--eval-size", type=int, default=256, help="side of the held-out patches")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run of OUT.state")
    parser.add_argument("--force", action="store_true", help="overwrite OUT and discard OUT.state")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def _options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    from sparsesel.training import TrainConfig, train

    config = TrainConfig(
        net=args.net,
        task=args.task,
        preset=args.preset,
        net_options=_options(args.option),
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        eta_min=args.eta_min,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        eval_count=args.eval_count,
        eval_size=args.eval_size,
        threads=args.threads,
    )
    try:
        summary = train(config, args.out, resume=args.resume, force=args.force, progress=not args.no_progress)
    except KeyboardInterrupt:
        from sparsesel.cli import resume_command
        from sparsesel.training import state_path

        state = state_path(args.out)
        if state.is_file():
            raise KeyboardInterrupt(f"the training state is kept in {state}; to continue: {resume_command(args)}") from None
        raise KeyboardInterrupt("no training state was saved yet; run the command again to start over") from None
    print(f"wrote {summary['out']} after {summary['steps']} steps ({summary['wall_time']:.1f} s of training)")
    evaluation = summary["evaluation"]
    if evaluation:
        print(
            f"held-out PSNR {evaluation['psnr_input']:.2f} dB (degraded) -> {evaluation['psnr_output']:.2f} dB, "
            f"SSIM {evaluation['ssim_input']:.4f} -> {evaluation['ssim_output']:.4f}"
        )
    return 0
