"""``sparsesel attribute``: explain an image model's output by k pixels; write a heatmap PNG and JSON.

What is explained depends on what the model returns for one image:

* class scores ``(1, C)`` (the built-in classifiers, classifier checkpoints, most factories):
  class ``--target`` (default: the predicted one), through ``--output`` (default softmax);
* one number ``(1,)`` or ``(1, 1)``: that number;
* an image ``(1, C, H, W)`` (the restoration networks of :mod:`sparsesel.nets`, image-to-image
  factories): the mean output intensity in the box ``--target-region X0,Y0,X1,Y1`` of output
  pixels (default: the whole output), over ``--target-channel`` (default: all channels)
  (:class:`~sparsesel.attribution.image_targets.RegionMean`).

Every option is checked, alone and in combination, before the model is loaded or any
gradient is computed.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOLVERS = ("greedy_pig", "integrated_gradients", "gradient", "gradient_x_input", "random")
#: Options that only Greedy PIG reads, with their defaults (the parser's defaults are None to see what was given).
GREEDY_DEFAULTS = {"rounds": None, "schedule": "uniform", "ranked": None, "path": "linear", "anchor_draws": 1}
#: Input size the built-in classifiers' architectures are fed by default (the crops CNN was trained on 32x32 crops).
BUILTIN_SIZE = (32, 32)
#: Channels of the built-in architectures.
BUILTIN_CHANNELS = {"digits-cnn": 1, "crops-cnn": 3}
#: Gradient evaluations a solver spends by default (Greedy PIG: split over its rounds).
DEFAULT_BUDGET = 50
#: Default of --max-pixels (kept literal: building the parser imports no sparsesel.data).
DEFAULT_MAX_PIXELS = 8192 * 8192


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "attribute",
        help="attribute an image model's output to k pixels (Greedy PIG, IG, ...)",
        description="Select the k pixels that explain an image model's output and write DIR/heatmap.png and "
        "DIR/attribution.json. Classifiers: the target class's score. Image-to-image networks (restoration): the "
        "mean output intensity in --target-region. Every option is checked before any work.",
    )
    parser.add_argument("--model", required=True,
                        help="builtin:digits-cnn or builtin:crops-cnn (trained once: shipped or cached); a checkpoint "
                        "file: {'arch': 'digits-cnn'|'crops-cnn', 'state_dict': ...} or a network of sparsesel.nets "
                        "(written by `sparsesel train`, or an official UHDformer release), read weights-only; or "
                        "package.module:factory, a function returning an nn.Module (see --weights, --channels); "
                        "a TorchScript archive or a pickled whole module only with --trust-code")
    parser.add_argument("--trust-code", action="store_true",
                        help="allow --model to be a TorchScript archive or a whole pickled module: both hold code "
                             "that runs on this machine with your permissions (TorchScript when the model is called, "
                             "a pickle already when it is loaded); give it only for a file from a source you trust. "
                             "Without it such files are refused unread")
    parser.add_argument("--weights", default=None,
                        help="with --model MODULE:FACTORY: a state dict file (read weights-only) loaded into the module")
    parser.add_argument("--channels", type=int, default=None, choices=(1, 3),
                        help="with --model MODULE:FACTORY: input channels (default 3)")
    parser.add_argument("--image", required=True,
                        help="image file (any format Pillow reads, any size), or builtin:NAME for an image that "
                        "scikit-image/scikit-learn ship (e.g. builtin:chelsea)")
    parser.add_argument("--size", default=None, metavar="WxH",
                        help="resize the image to W x H pixels first (default: 32x32 for the built-in classifiers "
                        "and their checkpoints, the image's own size otherwise)")
    parser.add_argument("--k", type=int, default=200, help="pixels to select (default 200; at most W*H)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help="refuse images with more than N pixels, checked before decoding (default 67,108,864 = 8192x8192)")
    parser.add_argument("--solver", default="greedy_pig", choices=SOLVERS)
    parser.add_argument("--target", type=int, default=None,
                        help="classifiers: the class to explain (default: the predicted class)")
    parser.add_argument("--target-region", default=None, metavar="X0,Y0,X1,Y1",
                        help="image-to-image models: explain the mean output in the box of output pixels "
                        "X0 <= x < X1, Y0 <= y < Y1 (default: the whole output)")
    parser.add_argument("--target-channel", type=int, default=None,
                        help="image-to-image models: average only this output channel (default: all)")
    parser.add_argument("--baseline", default="zeros", choices=("zeros", "black", "blurred", "mean"))
    parser.add_argument("--steps", type=int, default=None,
                        help="gradient evaluations (IG: total, default 50; Greedy PIG: per round, default "
                             "50 // rounds, raised to --anchor-draws)")
    parser.add_argument("--rounds", type=int, default=None, help="Greedy PIG rounds (default 5; 8 with --schedule sic)")
    parser.add_argument("--schedule", default=None, choices=("uniform", "geometric", "sic"),
                        help="how Greedy PIG splits the selected pixels over its rounds (default uniform); 'sic' "
                             "ends the rounds at SIC's reveal fractions (0.5%%, 2%%, ..., 75%%; use with --ranked 0.75)")
    parser.add_argument("--ranked", type=float, default=None,
                        help="pixels Greedy PIG's rounds fix: a count >= k or a fraction of the pixels in (0, 1] "
                             "(default k)")
    parser.add_argument("--method", default=None,
                        help="quadrature rule of IG and Greedy PIG: Captum's names (riemann_left, riemann_right, riemann_middle, "
                             "riemann_trapezoid, gausslegendre; same weights as Captum) or trapezoid (the textbook rule); "
                             "default gausslegendre")
    parser.add_argument("--path", default=None, choices=("linear", "imputed"),
                        help="Greedy PIG's path: 'linear' (default; the paper's: absent pixels at the baseline) or "
                             "'imputed' (absent pixels interpolated from present ones, the set function SIC scores)")
    parser.add_argument("--anchor-draws", type=int, default=None,
                        help="with --path imputed: draws of the imputer's random anchor pixels, one per quadrature "
                             "node in turn (1..steps; default 1; the benchmark's image setting uses 8)")
    parser.add_argument("--output", default=None, choices=("raw", "softmax", "log_softmax"),
                        help="classifiers: explain the logit, the softmax (default) or the log-softmax of the target; "
                             "other models: raw only")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the random solver, and of the built-in models (seed 0 ships with the package, "
                        "others are trained once and cached)")
    parser.add_argument("--out", required=True, help="output folder (created if needed; must not hold --model, --weights "
                        "or --image); only heatmap.png and attribution.json in it are written")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class ModelSpec:
    """What ``--model`` names: ``kind`` is ``"builtin"``, ``"file"`` or ``"factory"``."""

    kind: str
    value: str


@dataclass(frozen=True)
class LoadedModel:
    """The model as the problem calls it, its input channels and what its target is."""

    model: object
    channels: int
    description: str


# ------------------------------------------------------------------------------------------ checks (no work)
def check_arguments(args: argparse.Namespace) -> tuple[ModelSpec, dict]:
    """Every check that needs neither the image nor the model; returns the model spec and the solver options.

    Solver options are resolved here (defaults included) so that their combination is checked too.
    """
    for flag, value in (("--steps", args.steps), ("--rounds", args.rounds), ("--anchor-draws", args.anchor_draws),
                        ("--k", args.k)):
        if value is not None and value < 1:  # `--steps 0` must not fall back to the default
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if args.target is not None and args.target < 0:
        raise ValueError(f"--target must be >= 0, got {args.target}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.target_channel is not None and args.target_channel < 0:
        raise ValueError(f"--target-channel must be >= 0, got {args.target_channel}")
    image_flags = [flag for flag, value in (("--target-region", args.target_region),
                                            ("--target-channel", args.target_channel)) if value is not None]
    if image_flags and args.target is not None:
        raise ValueError(f"--target (a class of a classifier) and {image_flags[0]} (a region of an image-to-image "
                         "model's output) exclude each other")
    if image_flags and args.output not in (None, "raw"):
        raise ValueError(f"--output {args.output} needs class scores; {image_flags[0]} explains an image model's "
                         "mean output, which takes --output raw (the default)")
    parse_box(args.target_region)
    parse_size(args.size)
    spec = parse_model_spec(args.model)
    if spec.kind != "factory":
        for flag, value in (("--weights", args.weights), ("--channels", args.channels)):
            if value is not None:
                raise ValueError(f"{flag} applies to --model package.module:factory only, not to {args.model!r}")
    if args.weights is not None and not Path(args.weights).is_file():
        raise FileNotFoundError(f"--weights {args.weights!r} not found")
    if args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be a positive integer, got {args.max_pixels}")
    check_image_argument(args.image, args.max_pixels)
    return spec, solver_options(args)


def solver_options(args: argparse.Namespace) -> dict:
    """The chosen solver's options from the flags; flags of another solver are refused."""
    given_greedy = [f"--{name.replace('_', '-')}" for name in GREEDY_DEFAULTS if getattr(args, name) is not None]
    if args.solver != "greedy_pig" and given_greedy:
        raise ValueError(f"{given_greedy[0]} applies to --solver greedy_pig only, not to {args.solver}")
    if args.solver in ("gradient", "gradient_x_input", "random"):
        for flag, value in (("--steps", args.steps), ("--method", args.method)):
            if value is not None:
                raise ValueError(f"{flag} applies to --solver integrated_gradients or greedy_pig, not to {args.solver} "
                                 "(it takes no path integral)")
    from sparsesel.attribution.paths.quadrature import METHODS

    method = args.method or "gausslegendre"
    if method not in METHODS:
        raise ValueError(f"--method must be one of {METHODS}, got {method!r}")
    if args.solver == "integrated_gradients":
        return {"steps": args.steps or DEFAULT_BUDGET, "method": method}
    if args.solver == "random":
        return {"seed": args.seed}
    if args.solver != "greedy_pig":
        return {}
    return greedy_options(args, method)


def greedy_options(args: argparse.Namespace, method: str) -> dict:
    """Greedy PIG's options: defaults resolved, and the combinations that need no image size checked."""
    schedule = args.schedule or "uniform"
    path = args.path or "linear"
    draws = 1 if args.anchor_draws is None else args.anchor_draws
    if draws > 1 and path != "imputed":
        raise ValueError(f"--anchor-draws {draws} needs --path imputed: only the imputed path has anchor pixels")
    if schedule == "sic" and args.rounds is not None and args.rounds != 8:
        raise ValueError(f"--schedule sic has 8 rounds (its 8 SIC reveal fractions), got --rounds {args.rounds}; "
                         "drop --rounds or choose another schedule")
    rounds = args.rounds if args.rounds is not None else (8 if schedule == "sic" else 5)
    if args.steps is None:
        steps = max(1, DEFAULT_BUDGET // rounds, draws)
    else:
        steps = args.steps
        if draws > steps:
            raise ValueError(f"--anchor-draws {draws} needs --steps >= {draws}: each of a round's {steps} quadrature "
                             "nodes uses one anchor draw in turn, so a round cannot use more draws than it has "
                             f"steps; raise --steps to {draws} or lower --anchor-draws")
    ranked = args.ranked
    if ranked is not None:
        if not 0 < ranked < float("inf"):  # NaN too
            raise ValueError(f"--ranked must be a fraction in (0, 1] or a count >= k, got {ranked}")
        if ranked > 1:
            if not float(ranked).is_integer():
                raise ValueError(f"--ranked must be a whole count of pixels or a fraction in (0, 1], got {ranked}")
            ranked = int(ranked)
    return {"rounds": rounds, "steps": steps, "method": method, "path": path, "schedule": schedule,
            "ranked": ranked, "anchor_draws": draws}


def check_budget(args: argparse.Namespace, options: dict, size: tuple[int, int]) -> None:
    """Checks that need the number of pixels ``W·H``: ``--k``, ``--ranked`` and Greedy PIG's rounds."""
    width, height = size
    n_pixels = width * height
    if not 1 <= args.k <= n_pixels:
        raise ValueError(f"--k must be between 1 and {n_pixels} (the model input has {width}x{height} pixels), "
                         f"got {args.k}")
    if args.solver == "greedy_pig":
        from solvers.attribution_greedy_pig import plan_rounds

        try:
            plan_rounds(n_pixels, args.k, **{key: options[key] for key in
                                             ("rounds", "steps", "ranked", "schedule", "path", "anchor_draws", "method")})
        except ValueError as exc:
            message = str(exc)
            for name in ("rounds", "ranked", "anchor_draws", "steps", "schedule"):
                if message.startswith(name + " "):
                    message = f"--{name.replace('_', '-')}{message[len(name):]}"
            raise ValueError(f"{message} (with --k {args.k} on {width}x{height} = {n_pixels} pixels)") from None


def parse_box(text: str | None) -> tuple[int, int, int, int] | None:
    """``"X0,Y0,X1,Y1"`` as four ints with ``0 <= X0 < X1`` and ``0 <= Y0 < Y1``."""
    if text is None:
        return None
    parts = text.split(",")
    try:
        box = tuple(int(part) for part in parts)
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ValueError(f"--target-region must be four integers X0,Y0,X1,Y1 (output pixels), got {text!r}")
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise ValueError(f"--target-region {text!r} must have 0 <= X0 < X1 and 0 <= Y0 < Y1 (a non-empty box)")
    return box


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"WxH"`` as ``(width, height)``, both positive."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise ValueError(f"--size must be WxH with positive integers (e.g. 64x48), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_model_spec(text: str) -> ModelSpec:
    """Which kind of model ``--model`` names; a built-in name or a file is checked to exist."""
    from sparsesel.attribution.model_store import ARCHITECTURES

    if text.startswith("builtin:"):
        name = text.split(":", 1)[1]
        if name not in ARCHITECTURES:
            raise ValueError(f"unknown built-in model {name!r}; choose from {sorted(ARCHITECTURES)}")
        return ModelSpec("builtin", name)
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"model checkpoint {text!r} is a directory, not a checkpoint file")
    if path.is_file():
        return ModelSpec("file", text)
    from sparsesel.nets.adapter import is_factory_spec

    if is_factory_spec(text):
        return ModelSpec("factory", text)
    raise FileNotFoundError(f"model checkpoint {text!r} not found (or use builtin:digits-cnn, or "
                            "package.module:factory for a function that returns an nn.Module)")


def check_image_argument(text: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
    """The image exists (a file) or is a known bundled image, and its header reads as an image."""
    if text.startswith("builtin:"):
        from sparsesel.data.images import bundled_image_names

        if text.split(":", 1)[1] not in bundled_image_names():
            raise ValueError(f"unknown bundled image {text!r}; choose one of "
                             f"{['builtin:' + name for name in bundled_image_names()]}")
        return
    if Path(text).is_dir():
        raise ValueError(f"image {text!r} is a directory, not an image file")
    if not Path(text).is_file():
        raise FileNotFoundError(f"image {text!r} not found")
    image_size(text, max_pixels)


def check_outputs(args: argparse.Namespace, spec: ModelSpec) -> tuple[Path, Path]:
    """The heatmap and JSON paths, checked (:func:`sparsesel.outputs.check_output_folder`): --out is a
    folder one can write, holding none of the inputs; existing outputs only with --force."""
    from sparsesel.outputs import check_output_folder

    out = Path(args.out)
    png, js = out / "heatmap.png", out / "attribution.json"
    inputs = {"--model": spec.value if spec.kind == "file" else None, "--weights": args.weights,
              "--image": None if args.image.startswith("builtin:") else args.image}
    check_output_folder(out, inputs=inputs, files=[png.name, js.name], force=args.force)
    return png, js


# --------------------------------------------------------------------------------------- image and model
def read_input_image(text: str, channels: int, size: tuple[int, int] | None,
                     max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image as float32 ``(channels, H, W)`` in ``[0, 1]``, resized to ``size = (W, H)`` if given.

    Read by :func:`sparsesel.data.images.read_image` (RGB); one channel is the ITU-R 601 luma
    ``0.299 R + 0.587 G + 0.114 B`` (Pillow's ``"L"``); resizing is bilinear with antialiasing.
    """
    import torch

    from sparsesel.data.images import bundled_image_path, read_image

    path = bundled_image_path(text.split(":", 1)[1]) if text.startswith("builtin:") else Path(text)
    rgb = read_image(path, max_pixels=max_pixels).transpose(2, 0, 1)
    image = (np.tensordot(np.array([0.299, 0.587, 0.114], dtype=np.float32), rgb, axes=1)[None]
             if channels == 1 else rgb)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    if size is not None and (tensor.shape[2], tensor.shape[1]) != size:
        width, height = size
        tensor = torch.nn.functional.interpolate(tensor[None], size=(height, width), mode="bilinear",
                                                 align_corners=False, antialias=True)[0].clamp(0.0, 1.0)
    return tensor.numpy()


def image_size(text: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """``(W, H)`` of an image file or bundled image as it will be read (EXIF orientation applied), from its header."""
    from sparsesel.data.image_files import image_size as file_image_size
    from sparsesel.data.images import bundled_image_path

    path = bundled_image_path(text.split(":", 1)[1]) if text.startswith("builtin:") else text
    return file_image_size(path, max_pixels=max_pixels)


def input_size(args: argparse.Namespace, classifier: bool) -> tuple[int, int]:
    """``(W, H)`` the model reads: ``--size``, else 32×32 for the built-in classifiers, else the image's own size."""
    return parse_size(args.size) or (BUILTIN_SIZE if classifier else image_size(args.image, args.max_pixels))


def load_model(spec: ModelSpec, args: argparse.Namespace) -> tuple[object, int, str]:
    """The model, its input channels and its family (``"classifier"``, ``"net:NAME"`` or ``"factory"``)."""
    if spec.kind == "builtin":
        from sparsesel.attribution.model_store import builtin_classifier

        return _as_cli_classifier(spec.value, builtin_classifier(spec.value, args.seed)), \
            BUILTIN_CHANNELS[spec.value], "classifier"
    if spec.kind == "factory":
        return _factory_model(spec.value, args.weights), args.channels or 3, "factory"
    return _checkpoint_model(spec.value, trust_code=args.trust_code)


def _as_cli_classifier(arch: str, model):
    """The digits CNN reads 8×8 digits: the CLI averages any image down to 8×8 first (32×32: 4×4 blocks)."""
    from torch import nn

    if arch == "digits-cnn":
        return nn.Sequential(nn.AdaptiveAvgPool2d(8), model).eval()
    return model.eval()


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with a ``code/`` folder or ``constants.pkl``), read
    from its zip directory only (nothing in it is loaded)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError):
        return False
    return any("/code/" in name or name.endswith("/constants.pkl") for name in names)


def _refuse_code(spec: str, what: str) -> ValueError:
    return ValueError(
        f"--model {spec!r} is {what}, which holds code that would run on this machine; it is not loaded unless you "
        "pass --trust-code (only for a file from a source you trust). A checkpoint {'arch': ..., 'state_dict': "
        "model.state_dict()} or a network file of sparsesel.nets needs no such trust"
    )


def _code_model(spec: str, torchscript: bool) -> tuple[object, int, str]:
    """A TorchScript archive or a pickled whole module (``--trust-code`` given): the model, its channels
    (its ``input_layout[0]`` attribute, else 3) and its family."""
    import torch

    try:
        if torchscript:
            model = torch.jit.load(spec, map_location="cpu")
        else:
            model = torch.load(spec, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - whatever the file's own code raised
        raise ValueError(f"--model {spec!r} could not be loaded even with --trust-code ({type(exc).__name__}: {exc})") from None
    if not torchscript and not isinstance(model, torch.nn.Module):
        raise ValueError(f"--model {spec!r} holds a {type(model).__name__}, not a torch module")
    channels = int(tuple(getattr(model, "input_layout", (3,)))[0])
    return model.eval(), channels, "torchscript" if torchscript else "pickled module"


def _checkpoint_model(spec: str, trust_code: bool = False) -> tuple[object, int, str]:
    """A classifier checkpoint ``{'arch', 'state_dict'}`` or a network file of :mod:`sparsesel.nets`
    (weights only); a TorchScript archive or a pickled module only with ``trust_code``."""
    from sparsesel.nets.zoo import load_checkpoint_file, load_net

    if is_torchscript(spec):
        if not trust_code:
            raise _refuse_code(spec, "a TorchScript archive")
        return _code_model(spec, torchscript=True)
    try:
        payload = load_checkpoint_file(spec)
    except ValueError as exc:
        if "could run code" not in str(exc) or "references the Python object" not in str(exc):
            raise  # corrupt, truncated, not a torch file
        if not trust_code:
            raise _refuse_code(spec, "a torch file holding pickled objects other than tensors (e.g. a whole module "
                                     f"saved with torch.save(model)) ({exc})") from None
        return _code_model(spec, torchscript=False)
    expected = "a classifier checkpoint {'arch': 'digits-cnn'|'crops-cnn', 'state_dict': ...} or a network file of sparsesel.nets"
    if not isinstance(payload, dict):
        raise ValueError(f"{spec!r} is a readable torch file but holds a {type(payload).__name__}, not {expected}")
    if "arch" in payload:
        from sparsesel.attribution.model_store import ARCHITECTURES, architecture

        arch = payload["arch"]
        if arch not in ARCHITECTURES:
            raise ValueError(f"checkpoint arch {arch!r} unknown; expected one of {sorted(ARCHITECTURES)}")
        if "state_dict" not in payload:
            raise ValueError(f"{spec!r} is a readable torch file but lacks the key(s) 'state_dict' of a checkpoint "
                             "{'arch': 'digits-cnn'|'crops-cnn', 'state_dict': ...}")
        model = architecture(arch)
        try:
            model.load_state_dict(payload["state_dict"])
        except (KeyError, RuntimeError, TypeError, AttributeError) as exc:
            raise ValueError(f"checkpoint {spec!r} does not fit {arch}: {exc}") from None
        return _as_cli_classifier(arch, model), BUILTIN_CHANNELS[arch], "classifier"
    try:
        network, info = load_net(spec, trust_code=trust_code)
    except ValueError as exc:
        keys = ", ".join(repr(key) for key in list(payload)[:20]) + (", ..." if len(payload) > 20 else "")
        raise ValueError(f"{spec!r} is a readable torch file but lacks the key(s) 'arch' of a checkpoint "
                         f"{{'arch', 'state_dict'}} (it has the keys [{keys}]) and is not a network of "
                         f"sparsesel.nets either: {exc}") from None
    from sparsesel.attribution.image_targets import RestorationOutput

    return RestorationOutput(info["net"], network.eval()).eval(), 3, f"net:{info['net']}"


def _factory_model(spec: str, weights: str | None):
    """The module ``package.module:factory`` builds (:class:`sparsesel.nets.adapter.FactoryAdapter`, which
    imports the module and calls ``factory()``); load ``weights`` (a state dict, weights only) if given."""
    import torch

    from sparsesel.nets.adapter import FactoryAdapter

    try:
        model = FactoryAdapter(spec).build()
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"--model: {exc}") from None
    if weights is not None:
        from sparsesel.nets.zoo import load_checkpoint_file

        state = load_checkpoint_file(weights)
        for key in ("state_dict", "params"):
            if isinstance(state, dict) and isinstance(state.get(key), dict):
                state = state[key]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"--weights {weights!r} is not a state dict (a dict of tensors, or one under "
                             "'state_dict' or 'params')")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"--weights {weights!r} does not fit {spec}: {str(exc).splitlines()[0]}") from None
    return model.eval()


# ------------------------------------------------------------------------------------------ target
def explained_function(args: argparse.Namespace, model, x) -> tuple[object, int | None, str, dict]:
    """The callable the problem explains, its target, the output transform and a record of the target.

    One forward pass on the image tells what the model returns (class scores, a number or an image);
    the target options are checked against it.
    """
    import torch

    with torch.no_grad():
        raw = model(x[None])
    if not isinstance(raw, torch.Tensor):
        raise TypeError(f"the model returns {type(raw).__name__} for an image, not a tensor")
    image_flags = args.target_region is not None or args.target_channel is not None
    if raw.ndim == 4:
        if args.target is not None:
            raise ValueError(f"--target {args.target} picks a class, but the model returns an image "
                             f"{tuple(raw.shape[1:])}; use --target-region X0,Y0,X1,Y1 (and --target-channel)")
        if args.output not in (None, "raw"):
            raise ValueError(f"--output {args.output} needs class scores; the model returns an image, whose mean "
                             "over --target-region is explained raw")
        from sparsesel.attribution.image_targets import RegionMean

        channels = None if args.target_channel is None else [args.target_channel]
        scalar = RegionMean(model, parse_box(args.target_region), channels).eval()
        scalar.check_output(tuple(raw.shape))
        box = parse_box(args.target_region) or (0, 0, raw.shape[3], raw.shape[2])
        with torch.no_grad():
            value = float(scalar(x[None])[0])
        return scalar, None, "raw", {"kind": "region_mean", "region": list(box), "channel": args.target_channel,
                                     "output_shape": list(raw.shape[1:]), "value": value}
    if image_flags:
        raise ValueError(f"--target-region/--target-channel explain an image output, but the model returns shape "
                         f"{tuple(raw.shape)}; use --target for a class")
    if raw.ndim == 2 and raw.shape[1] >= 2:
        probs = torch.softmax(raw, dim=1)[0]
        predicted = int(probs.argmax())
        target = predicted if args.target is None else args.target
        if target >= raw.shape[1]:
            raise ValueError(f"--target must be < {raw.shape[1]} (the model returns {raw.shape[1]} classes), got {target}")
        return model, target, args.output or "softmax", {
            "kind": "class", "predicted": predicted, "target_probability": float(probs[target])}
    if raw.ndim == 1 or (raw.ndim == 2 and raw.shape[1] == 1):
        if args.target not in (None, 0):
            raise ValueError(f"--target {args.target}: the model returns one number per image, there is no class")
        if args.output not in (None, "raw"):
            raise ValueError(f"--output {args.output} needs class scores; the model returns one number per image")
        return model, None, "raw", {"kind": "scalar", "value": float(raw.reshape(-1)[0])}
    raise ValueError(f"the model returns shape {tuple(raw.shape)} for one image; attribute explains class scores "
                     "(1, C), a number (1,) or an image (1, C, H, W)")


# ------------------------------------------------------------------------------------------ output
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
    from sparsesel.atomic import write_atomic, write_text_atomic

    # 1. every check that needs no model: flags, their combinations, files, the pixel budget
    spec, options = check_arguments(args)
    png, js = check_outputs(args, spec)
    if spec.kind != "file":  # a checkpoint file says what it holds (classifier or network) when read
        check_budget(args, options, input_size(args, spec.kind == "builtin"))

    # 2. the model (built-ins: shipped or cached weights), the image and the target (one forward pass)
    model, channels, family = load_model(spec, args)
    size = input_size(args, family == "classifier")
    check_budget(args, options, size)
    image = read_input_image(args.image, channels, size, args.max_pixels)
    x = torch.from_numpy(image)
    explained, target, output, target_record = explained_function(args, model, x)

    # 3. the attribution
    problem = sparsesel.Attribution(explained, x, baseline=args.baseline, target=target, k=args.k, groups="pixels",
                                    output=output)
    result = sparsesel.solve(problem, solver=args.solver, **options)

    height, width = image.shape[1:]
    attribution = np.asarray(result.info["attribution"], dtype=np.float64)
    mask = np.zeros(height * width)
    mask[list(result.selected)] = 1.0
    mask = mask.reshape(height, width)
    record = {
        "model": args.model,
        "model_family": family,
        "image": str(args.image),
        "input_shape": list(image.shape),
        "target": target,
        "target_definition": target_record,
        **({key: target_record[key] for key in ("predicted", "target_probability") if key in target_record}),
        "k": args.k,
        "solver": args.solver,
        "options": options,
        "baseline": args.baseline,
        "output": output,
        "selected": list(result.selected),
        "objective": result.objective,
        "status": result.status,
        "wall_time": result.wall_time,
        "gradient_evaluations": result.info.get("gradient_evaluations"),
        "attribution": attribution.tolist(),
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    what = (f"target {target} (p={target_record['target_probability']:.3f})" if target_record["kind"] == "class"
            else f"mean output in {target_record.get('region')}" if target_record["kind"] == "region_mean"
            else "the model's output")
    title = f"{args.solver}: {what}, G(S)={result.objective:.3f}"
    write_atomic(png, lambda stream: _heatmap_png(stream, image, attribution, mask, title), force=True)
    write_text_atomic(js, json.dumps(record, indent=2), force=True)
    print(f"{what}: {args.solver} selected {args.k} pixels, G(S) = {result.objective:.4f} ({output}); "
          f"wrote {png} and {js}")
    return 0
