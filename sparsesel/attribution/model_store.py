"""Weights of the built-in image classifiers, trained once: shipped with the package or cached.

:func:`~sparsesel.attribution.models.digits_cnn` and :func:`~sparsesel.attribution.models.crops_cnn`
train in seconds (~1 s and ~8 s on one CPU core), too long to repeat on every
``sparsesel attribute`` call. :func:`builtin_classifier` therefore returns

1. for seed 0 (the default), the state dict shipped in ``sparsesel/assets/``
   (``attribution_<name>_seed0.pt``, 96–150 kB; how it was made is in the JSON beside it);
2. for another seed, the state dict cached in the user's cache folder, keyed by the
   sparsesel and torch versions (:func:`cache_path`), trained and written there on
   first use.

Every file is read with ``torch.load(..., weights_only=True)`` (it cannot run code) and
loaded strictly into the architecture; an unreadable or mismatched cache file is
trained again and replaced (a cache holds nothing that cannot be rebuilt).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch
from torch import nn

from sparsesel.atomic import write_atomic, write_text_atomic

#: Built-in classifier names (as the CLI spells them) and their architectures' class names in
#: :mod:`sparsesel.attribution.models`.
ARCHITECTURES: dict[str, str] = {"digits-cnn": "DigitsCNN", "crops-cnn": "CropsCNN"}
#: Seeds whose weights ship with the package.
SHIPPED_SEEDS: tuple[int, ...] = (0,)
ASSETS = Path(__file__).resolve().parents[1] / "assets"


def architecture(name: str) -> nn.Module:
    """A fresh (untrained) module of built-in architecture ``name``."""
    from sparsesel.attribution import models

    if name not in ARCHITECTURES:
        raise ValueError(f"unknown built-in model {name!r}; choose from {sorted(ARCHITECTURES)}")
    return getattr(models, ARCHITECTURES[name])()


def asset_path(name: str, seed: int) -> Path:
    """Where the shipped weights of ``name`` trained with ``seed`` lie (they exist for :data:`SHIPPED_SEEDS`)."""
    return ASSETS / f"attribution_{name.replace('-', '_')}_seed{seed}.pt"


def cache_root() -> Path:
    """The user cache folder: ``$SPARSESEL_CACHE``, else ``$XDG_CACHE_HOME/sparsesel``, else ``~/.cache/sparsesel``."""
    if os.environ.get("SPARSESEL_CACHE"):
        return Path(os.environ["SPARSESEL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "sparsesel"


def cache_path(name: str, seed: int) -> Path:
    """The cache file of ``name`` trained with ``seed``, keyed by the sparsesel and torch versions."""
    import sparsesel

    torch_version = torch.__version__.split("+")[0]
    return cache_root() / f"sparsesel-{sparsesel.__version__}" / f"torch-{torch_version}" / "attribution" / \
        f"{name}-seed{seed}.pt"


def builtin_classifier(name: str, seed: int = 0) -> nn.Module:
    """The trained built-in classifier ``name`` (``"digits-cnn"`` or ``"crops-cnn"``), in eval mode, frozen.

    Shipped weights for :data:`SHIPPED_SEEDS`, else cached ones (trained and cached on first use).
    The digits CNN reads ``(B, 1, 8, 8)`` images, the crops CNN ``(B, 3, H, W)`` of any size.
    """
    model = architecture(name)
    if seed in SHIPPED_SEEDS and asset_path(name, seed).is_file():
        state = _read_state(asset_path(name, seed))
        if state is None:
            raise ValueError(f"the shipped weights {asset_path(name, seed)} are unreadable; reinstall sparsesel")
    else:
        path = cache_path(name, seed)
        state = _read_state(path) if path.is_file() else None
        if state is None or not _fits(model, state):
            state = trained_state(name, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda stream: torch.save(state, stream), force=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def trained_state(name: str, seed: int) -> dict[str, torch.Tensor]:
    """Train built-in model ``name`` with ``seed`` (:mod:`sparsesel.attribution.models`) and return its state dict."""
    from sparsesel.attribution import models

    if name not in models.BUILTIN:
        raise ValueError(f"unknown built-in model {name!r}; choose from {sorted(models.BUILTIN)}")
    trained = models.BUILTIN[name](seed)
    return {key: value.detach().clone() for key, value in trained.model.state_dict().items()}


def write_assets(seeds: tuple[int, ...] = SHIPPED_SEEDS) -> list[Path]:
    """Train the built-in classifiers and write their shipped weights and a JSON record beside each (maintainers)."""
    from sparsesel.attribution import models

    written = []
    for name in ARCHITECTURES:
        for seed in seeds:
            trained = models.BUILTIN[name](seed)
            state = {key: value.detach().clone() for key, value in trained.model.state_dict().items()}
            path = asset_path(name, seed)
            write_atomic(path, lambda stream: torch.save(state, stream), force=True)
            record = {
                "model": name, "seed": seed, "made_by": "python -c 'from sparsesel.attribution.model_store "
                "import write_assets; write_assets()' (sparsesel.attribution.models." + models.BUILTIN[name].__name__
                + f"({seed}))", "test_accuracy": trained.test_accuracy, "torch": torch.__version__,
                "machine": platform.platform(), "parameters": sum(v.numel() for v in state.values()),
            }
            write_text_atomic(path.with_suffix(".json"), json.dumps(record, indent=1) + "\n", force=True)
            written.append(path)
    return written


def _read_state(path: Path) -> dict[str, torch.Tensor] | None:
    """A weights-only state dict from ``path``, or ``None`` if the file is unreadable or holds something else."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # corrupt or truncated: the caller rebuilds it
        return None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    return state


def _fits(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` has exactly the keys and shapes of ``model``'s state dict."""
    expected = model.state_dict()
    return set(state) == set(expected) and all(state[k].shape == expected[k].shape for k in expected)
