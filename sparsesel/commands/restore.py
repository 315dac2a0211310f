"""``sparsesel restore IMAGE --checkpoint FILE --out FILE``: run a restoration network on an image file."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore an image file with a trained network",
        description=(
            "Run the network stored in CHECKPOINT (written by `sparsesel train`, or an official "
            "UHDformer release) on IMAGE and write the result to OUT. The image may have any size. "
            "The harmonizer also needs --mask (the foreground, white on black)."
        ),
    )
    parser.add_argument("image", type=Path, help="input image file (PNG, JPEG, TIFF ...)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="network file")
    parser.add_argument("--out", required=True, type=Path, help="output image file; the suffix picks the format (never one of the inputs)")
    parser.add_argument("--mask", type=Path, default=None, help="foreground mask image (harmonizer only)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from sparsesel.data.images import read_image, write_image
    from sparsesel.nets.zoo import load_net
    from sparsesel.training.losses import predict

    from sparsesel.outputs import check_output_file

    check_output_file(args.out, inputs={"IMAGE": args.image, "--checkpoint": args.checkpoint, "--mask": args.mask}, force=args.force)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    image = read_image(args.image)
    model, info = load_net(args.checkpoint)
    net = info["net"]
    batch = {"input": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]}
    if net == "harmonizer":
        if args.mask is None:
            raise ValueError("the harmonizer needs --mask (the foreground of the composite)")
        mask = read_image(args.mask).mean(axis=2)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"--mask has size {mask.shape[1]}x{mask.shape[0]}, the image {image.shape[1]}x{image.shape[0]}")
        batch["mask"] = torch.from_numpy((mask > 0.5).astype(np.float32))[None, None]
    elif args.mask is not None:
        raise ValueError(f"--mask is only used by the harmonizer, not by {net}")
    output = predict(net, model, batch).clamp(0.0, 1.0)[0].permute(1, 2, 0).numpy()
    write_image(args.out, output, force=args.force)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}, {net})")
    return 0
