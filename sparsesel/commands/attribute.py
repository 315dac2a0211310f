"""``sparsesel attribute``: explain an image classifier's prediction; write a heatmap PNG and JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SOLVERS = ("greedy_pig", "integrated_gradients", "gradient", "gradient_x_input", "random")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attribute",
        help="attribute an image classifier's output to k pixels (Greedy PIG, IG, ...)",
        description="Select the k pixels that explain a classifier's output and write DIR/heatmap.png and "
        "DIR/attribution.json.",
    )
    parser.add_argument("--model", required=True,
                        help="builtin:digits-cnn, builtin:crops-cnn, or a checkpoint: a .pt file holding "
                        "{'arch': 'digits-cnn'|'crops-cnn', 'state_dict': ...} (read as plain tensors: it cannot run "
                        "code); a TorchScript archive or a pickled module only with --trust-code (input 3x32x32 "
                        "unless it has an input_layout attribute); both built-ins read 32x32 images")
    parser.add_argument("--trust-code", action="store_true",
                        help="allow --model to be a TorchScript archive or a whole pickled module: both hold code "
                             "that runs on this machine with your permissions (TorchScript when the model is called, "
                             "a pickle already when it is loaded); give it only for a file from a source you trust. "
                             "Without it such files are refused unread")
    parser.add_argument("--image", required=True, help="image file (any format Pillow reads); resized to the model's input")
    parser.add_argument("--k", type=int, default=200, help="pixels to select (default 200; at most H*W of the model input)")
    parser.add_argument("--solver", default="greedy_pig", choices=SOLVERS)
    parser.add_argument("--target", type=int, default=None, help="class to explain (default: the predicted class)")
    parser.add_argument("--baseline", default="zeros", choices=("zeros", "black", "blurred", "mean"))
    parser.add_argument("--steps", type=int, default=None,
                        help="gradient evaluations (IG: total, default 50; Greedy PIG: per round, default 50/rounds)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="Greedy PIG rounds (default 5; 8 with --schedule sic)")
    parser.add_argument("--schedule", default="uniform", choices=("uniform", "geometric", "sic"),
                        help="how Greedy PIG splits the selected pixels over its rounds; 'sic' ends the rounds at "
                             "SIC's reveal fractions (0.5%%, 2%%, ..., 75%%; use with --ranked 0.75)")
    parser.add_argument("--ranked", type=float, default=None,
                        help="pixels Greedy PIG's rounds fix: a count >= k or a fraction of the pixels in (0, 1] "
                             "(default k)")
    parser.add_argument("--method", default="gausslegendre", help="quadrature rule (Captum's names)")
    parser.add_argument("--path", default="linear", choices=("linear", "imputed"),
                        help="Greedy PIG's path: 'linear' (the paper's: absent pixels at the baseline) or 'imputed' "
                             "(absent pixels interpolated from present ones, the set function SIC scores)")
    parser.add_argument("--anchor-draws", type=int, default=1,
                        help="with --path imputed: draws of the imputer's random anchor pixels, one per quadrature "
                             "node in turn (1..steps; default 1; the benchmark's image setting uses 8)")
    parser.add_argument("--output", default="softmax", choices=("raw", "softmax", "log_softmax"),
                        help="explain the logit, the softmax (default) or the log-softmax of the target")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random solver and of built-in model training")
    parser.add_argument("--out", required=True, help="output folder (created if needed; must not hold --model or --image); "
                        "only heatmap.png and attribution.json in it are written")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(func=run)


#: Input layout (channels, height, width) of the built-in architectures as the CLI feeds them.
LAYOUTS = {"digits-cnn": (1, 32, 32), "crops-cnn": (3, 32, 32)}


def _as_cli_model(arch: str, model):
    """The digits CNN reads 8×8 digits; the CLI gives it 32×32 images through a fixed 4×4 average pool."""
    from torch import nn

    if arch == "digits-cnn":
        return nn.Sequential(nn.AvgPool2d(4), model).eval()
    return model.eval()


def _is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder or ``constants.pkl``), without loading it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError):
        return False
    return any("/code/" in name or name.endswith("/constants.pkl") for name in names)


def _refuse_code(spec: str, what: str) -> ValueError:
    return ValueError(
        f"{spec!r} is {what}, which holds code that would run on this machine; it is not loaded unless you pass "
        "--trust-code (only for a file from a source you trust). A checkpoint {'arch': ..., 'state_dict': "
        "model.state_dict()} needs no such trust"
    )


def _load_code(spec: str, path: Path, torchscript: bool):
    """A TorchScript archive or a pickled whole module (``--trust-code`` given): the model and its layout."""
    import torch

    try:
        if torchscript:
            model = torch.jit.load(str(path), map_location="cpu")
        else:
            model = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any failure of foreign code is the file's
        raise ValueError(f"{spec!r} could not be loaded even with --trust-code ({type(exc).__name__}: {exc})") from None
    if not isinstance(model, torch.nn.Module) and not torchscript:
        raise ValueError(f"{spec!r} holds a {type(model).__name__}, not a torch module")
    layout = tuple(getattr(model, "input_layout", (3, 32, 32)))
    return model.eval(), layout


def _load_model(spec: str, seed: int, trust_code: bool = False):
    """The model and its input layout ``(channels, height, width)``.

    A file is first read with ``weights_only=True`` (tensors and plain containers only: no code can
    run). A TorchScript archive or a pickle of other objects is loaded only with ``trust_code``.
    """
    import torch

    from sparsesel.attribution import models

    if spec.startswith("builtin:"):
        name = spec.split(":", 1)[1]
        if name not in models.BUILTIN:
            raise ValueError(f"unknown built-in model {name!r}; choose from {sorted(models.BUILTIN)}")
        return _as_cli_model(name, models.BUILTIN[name](seed).model), LAYOUTS[name]
    path = Path(spec)
    if path.is_dir():
        raise ValueError(f"model checkpoint {spec!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"model checkpoint {spec!r} not found (or use builtin:digits-cnn)")
    import pickle

    if _is_torchscript(path):
        if not trust_code:
            raise _refuse_code(spec, "a TorchScript archive")
        return _load_code(spec, path, torchscript=True)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL " not in str(exc):  # not a refused class or function: the file is corrupt
            raise ValueError(f"{spec!r} is neither a {{'arch', 'state_dict'}} checkpoint nor a TorchScript archive "
                             "(not a readable torch file: corrupt or of another format)") from None
        # a torch.save file, but of objects beyond tensors: unpickling it could run code
        if not trust_code:
            raise _refuse_code(spec, "a torch file holding pickled objects other than tensors (e.g. a whole module "
                                     "saved with torch.save(model))") from None
        return _load_code(spec, path, torchscript=False)
    except OSError:  # unreadable: the command line names the file and the reason
        raise
    except Exception as exc:  # noqa: BLE001 - corrupt or not a torch file at all
        raise ValueError(f"{spec!r} is neither a {{'arch', 'state_dict'}} checkpoint nor a TorchScript archive "
                         f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else 'unreadable'})") from None
    _check_checkpoint(spec, checkpoint)
    arch = checkpoint["arch"]
    classes = {"digits-cnn": models.DigitsCNN, "crops-cnn": models.CropsCNN}
    if not isinstance(arch, str) or arch not in classes:
        raise ValueError(f"checkpoint arch {arch!r} unknown; expected one of {sorted(classes)}")
    model = classes[arch]()
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
        raise ValueError(f"checkpoint {spec!r} does not fit {arch}: {exc}") from None
    return _as_cli_model(arch, model), LAYOUTS[arch]


def _check_checkpoint(spec: str, checkpoint) -> None:
    """A file ``torch.load`` read must be a dict with the keys ``'arch'`` and ``'state_dict'``."""
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f"{spec!r} is a readable torch file but holds a {type(checkpoint).__name__}, not a checkpoint dict "
            "{'arch': 'digits-cnn'|'crops-cnn', 'state_dict': ...} (nor a TorchScript archive)"
        )
    missing = [key for key in ("arch", "state_dict") if key not in checkpoint]
    if missing:
        keys = ", ".join(repr(key) for key in list(checkpoint)[:20]) + (", ..." if len(checkpoint) > 20 else "")
        raise ValueError(
            f"{spec!r} is a readable torch file but lacks the key(s) {', '.join(map(repr, missing))} of a "
            f"checkpoint {{'arch': 'digits-cnn'|'crops-cnn', 'state_dict': ...}}; it has the keys [{keys}]"
        )


def _read_image(path: str, layout: tuple[int, int, int]) -> np.ndarray:
    """The image as float32 ``(C, H, W)`` in ``[0, 1]``, converted and resized to ``layout``."""
    from PIL import Image

    if Path(path).is_dir():
        raise ValueError(f"image {path!r} is a directory, not an image file")
    if not Path(path).is_file():
        raise FileNotFoundError(f"image {path!r} not found")
    channels, height, width = layout
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"image {path!r} could not be read as an image ({exc})") from None
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _heatmap_png(path, image: np.ndarray, attribution: np.ndarray, selected_mask: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(shown, cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1)
    axes[0].set_title("input")
    bound = float(np.abs(attribution).max()) or 1.0
    im = axes[1].imshow(attribution, cmap="bwr", vmin=-bound, vmax=bound)
    axes[1].set_title("attribution")
    fig.colorbar(im, ax=axes[1], fraction=0.046)
    masked = shown * (selected_mask[..., None] if shown.ndim == 3 else selected_mask)
    axes[2].imshow(masked, cmap="gray" if image.shape[0] == 1 else None, vmin=0, vmax=1)
    axes[2].set_title(f"selected k={int(selected_mask.sum())}")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    import torch

    import sparsesel

    from sparsesel.atomic import write_atomic
    from sparsesel.outputs import check_output_folder

    out = Path(args.out)
    png, js = out / "heatmap.png", out / "attribution.json"
    inputs = {"--model": None if args.model.startswith("builtin:") else args.model, "--image": args.image}
    check_output_folder(out, inputs=inputs, files=[png.name, js.name], force=args.force)
    for flag, value in (("--steps", args.steps), ("--rounds", args.rounds), ("--anchor-draws", args.anchor_draws)):
        if value is not None and value < 1:  # checked here: `--steps 0` must not fall back to the default
            raise ValueError(f"{flag} must be >= 1, got {value}")

    model, layout = _load_model(args.model, args.seed, trust_code=args.trust_code)
    image = _read_image(args.image, layout)
    x = torch.from_numpy(image)
    with torch.no_grad():
        probs = torch.softmax(model(x[None]), dim=1)[0]
    predicted = int(probs.argmax())
    target = predicted if args.target is None else args.target
    n_pixels = layout[1] * layout[2]
    if not 1 <= args.k <= n_pixels:
        raise ValueError(f"--k must be between 1 and {n_pixels} (the model input has {layout[1]}x{layout[2]} pixels), got {args.k}")
    problem = sparsesel.Attribution(model, x, baseline=args.baseline, target=target, k=args.k, groups="pixels",
                                    output=args.output)
    options: dict = {}
    if args.solver == "integrated_gradients":
        options = {"steps": args.steps or 50, "method": args.method}
    elif args.solver == "greedy_pig":
        rounds = args.rounds if args.rounds is not None else (8 if args.schedule == "sic" else 5)
        ranked = args.ranked
        if ranked is not None and ranked > 1:
            if not float(ranked).is_integer():
                raise ValueError(f"--ranked must be a whole count of pixels or a fraction in (0, 1], got {ranked}")
            ranked = int(ranked)
        options = {"rounds": rounds, "steps": args.steps or max(1, 50 // rounds), "method": args.method,
                   "path": args.path, "schedule": args.schedule, "ranked": ranked, "anchor_draws": args.anchor_draws}
    elif args.solver == "random":
        options = {"seed": args.seed}
    result = sparsesel.solve(problem, solver=args.solver, **options)

    attribution = np.asarray(result.info["attribution"], dtype=np.float64)
    mask = np.zeros(n_pixels)
    mask[list(result.selected)] = 1.0
    mask = mask.reshape(layout[1], layout[2])
    record = {
        "model": args.model,
        "image": str(args.image),
        "input_shape": list(layout),
        "target": target,
        "predicted": predicted,
        "target_probability": float(probs[target]),
        "k": args.k,
        "solver": args.solver,
        "options": options,
        "baseline": args.baseline,
        "output": args.output,
        "selected": list(result.selected),
        "objective": result.objective,
        "status": result.status,
        "wall_time": result.wall_time,
        "gradient_evaluations": result.info.get("gradient_evaluations"),
        "attribution": attribution.tolist(),
    }
    out.mkdir(parents=True, exist_ok=True)
    title = f"{args.solver}: target {target} (p={float(probs[target]):.3f}), G(S)={result.objective:.3f}"
    write_atomic(png, lambda stream: _heatmap_png(stream, image, attribution, mask, title), force=True)
    write_atomic(js, lambda stream: stream.write(json.dumps(record, indent=2).encode()), force=True)
    print(f"target {target}: {args.solver} selected {args.k} pixels, G(S) = {result.objective:.4f} "
          f"({args.output}); wrote {png} and {js}")
    return 0
