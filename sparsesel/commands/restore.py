"""``sparsesel restore IMAGE --checkpoint FILE --out FILE``: run a restoration network on an image file."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from sparsesel.network_arguments import add_network_arguments, check_network_argument, load_network

# the value, not an import of sparsesel.data (building the parser must not import numpy/torch)
DEFAULT_MAX_PIXELS = 8192 * 8192


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "restore",
        help="restore an image file with a trained network",
        description=(
            "Run the network stored in CHECKPOINT (written by `sparsesel train`, `compress` or `prune`, an "
            "official UHDformer release or a folder of official TSHRNet files) on IMAGE and write the result to OUT. The image may have any size. "
            "The harmonizer also needs --mask (the foreground, white on black)."
        ),
    )
    parser.add_argument("image", type=Path,
                        help="input image file (PNG, JPEG, TIFF, ...; 8/16-bit, grey, palette, CMYK, float TIFF in [0, 1]; "
                             "EXIF orientation applied, alpha dropped)")
    parser.add_argument("--checkpoint", required=True, type=Path, help="network file")
    parser.add_argument("--out", required=True, type=Path,
                        help="output image file, 8 bits per channel (never one of the inputs); the suffix picks the "
                             "format: .png, .tif, .bmp, .ppm, .webp (lossless) or .jpg (lossy)")
    parser.add_argument("--mask", type=Path, default=None, help="foreground mask image (harmonizer only)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help=f"refuse images with more than N pixels, checked before decoding (default {DEFAULT_MAX_PIXELS:,} "
                             "= 8192x8192)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    add_network_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from sparsesel.data.image_files import output_format, read_image, write_image
    from sparsesel.nets.adapter import get_adapter
    from sparsesel.nets.checkpoint_checks import finite_or_explain
    from sparsesel.training.losses import predict
    from sparsesel.validation import MAX_THREADS_PER_CPU, max_threads

    from sparsesel.outputs import check_output_file

    check_output_file(args.out, inputs={"IMAGE": args.image, "--checkpoint": args.checkpoint, "--mask": args.mask}, force=args.force)
    output_format(args.out)  # an unknown suffix is refused before any work
    check_network_argument(args.net)
    if args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be a positive integer, got {args.max_pixels}")
    if args.threads is not None:
        if not 1 <= args.threads <= max_threads():
            raise ValueError(f"--threads must be between 1 and {max_threads()} ({MAX_THREADS_PER_CPU} per CPU), got {args.threads}")
        torch.set_num_threads(args.threads)
    image = read_image(args.image, max_pixels=args.max_pixels)
    model, info = load_network(args)  # any network file, compressed, pruned or not
    net = info["net"]
    adapter = get_adapter(net)
    batch = {"input": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]}
    if adapter.takes_mask:
        if args.mask is None:
            raise ValueError(f"the {net} needs --mask (the foreground of the composite)")
        mask = read_image(args.mask, max_pixels=args.max_pixels).mean(axis=2)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"--mask has size {mask.shape[1]}x{mask.shape[0]}, the image {image.shape[1]}x{image.shape[0]}")
        batch["mask"] = torch.from_numpy((mask > 0.5).astype(np.float32))[None, None]
    elif args.mask is not None:
        raise ValueError(f"--mask is only used by networks that take a foreground mask (the harmonizer), not by {net}")
    try:
        output = predict(net, model, batch)  # the adapter's restore, without gradients
    except (MemoryError, RuntimeError) as exc:
        reason = _out_of_memory(exc)
        if reason is None:
            raise
        raise ValueError(
            f"not enough memory to run {net} on the {image.shape[1]}x{image.shape[0]} image {args.image} ({reason}); "
            "use a smaller image (or a machine with more memory)"
        ) from None
    finite_or_explain(output, model, str(args.checkpoint))
    output = output.clamp(0.0, 1.0)[0].permute(1, 2, 0).numpy()
    write_image(args.out, output, force=args.force)
    print(f"wrote {args.out} ({image.shape[1]}x{image.shape[0]}, {net})")
    return 0


def _out_of_memory(exc: BaseException) -> str | None:
    """A one-line reason if ``exc`` is the allocator giving up, else ``None``."""
    if isinstance(exc, MemoryError):
        return "MemoryError"
    text = str(exc).strip()
    if re.search(r"can't allocate memory|out of memory|not enough memory", text, re.IGNORECASE):
        return text.splitlines()[0]
    return None
