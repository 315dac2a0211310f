"""TSHRNet checkpoints in the official layout (``fu123456/TSHRNet``).

The official ``train_4_networks.py`` saves one file per U-Net every 10 epochs::

    checkpoints_<dataset>/UNet1_<epoch>.pth   albedo U-Net    (3 → 3)
    checkpoints_<dataset>/UNet2_<epoch>.pth   shading U-Net   (3 → 3)
    checkpoints_<dataset>/UNet3_<epoch>.pth   refinement      (6 → 3)
    checkpoints_<dataset>/UNet4_<epoch>.pth   tone correction (9 → 3)

each a plain ``state_dict`` of the official ``models/UNet.py`` (keys ``Cv0.conv.weight``,
``Cv1.after.running_mean``, ``CvT6.conv.bias``, …), prefixed with ``module.`` when it was
trained under ``DataParallel`` (the test script strips that prefix, and so does
:func:`load_tshrnet`). The released ``checkpoints_SSHR`` use epoch 60.

Name map for a configuration of ``L`` levels (official ``L = 4``): ``Cv0 … Cv{L-1}`` the
encoder, ``Cv{L}`` the shared middle (absent when ``shared_repeats = 0``), ``Cv{L+1}`` the
innermost convolution, ``CvT{L+2}`` its transposed mirror, ``CvT{L+3}`` the shared decoder
layer, ``CvT{L+4} … CvT{2L+2}`` the decoder, ``CvT{2L+3}`` the output layer; inside each,
``conv`` is the (transposed) convolution and ``after`` the BatchNorm.

The files of ``train_4_networks_mix.py`` (the ``mix_SSHR_SHIQ_PSD``, SHIQ and PSD releases)
have the same layout but another stage-1 wiring (U-Net 1 predicts the diffuse image and
U-Net 2 the residue). The files cannot tell the two apart: load those with
``stage_one="direct"`` (the default ``"intrinsic"`` is ``train_4_networks.py``'s, the
``checkpoints_SSHR`` release).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from sparsesel.atomic import refuse_existing, write_atomic
from sparsesel.nets.tshrnet import HighlightUNet, TSHRNet, TSHRNetConfig
from sparsesel.nets.zoo import load_checkpoint_file

__all__ = [
    "OFFICIAL_STAGE_FILES",
    "infer_tshrnet_config",
    "load_tshrnet",
    "official_unet_names",
    "save_tshrnet_official",
    "tshrnet_from_official",
    "tshrnet_to_official",
]

#: (official file stem, attribute of :class:`TSHRNet`, input channels), in the official order
OFFICIAL_STAGE_FILES = (("UNet1", "albedo_net", 3), ("UNet2", "shading_net", 3), ("UNet3", "refine_net", 6), ("UNet4", "tone_net", 9))
_PARALLEL_PREFIX = "module."
_FILE_PATTERN = re.compile(r"^UNet([1-4])_(.+)\.pth$")


def official_unet_names(config: TSHRNetConfig) -> dict[str, str]:
    """Module prefixes of one :class:`HighlightUNet`: ``{official prefix: our prefix}``.

    Each value names a :class:`torch.nn.Conv2d` / ``ConvTranspose2d`` (``conv``) or a
    ``BatchNorm2d`` (``after``), e.g. ``{"Cv1.conv.": "encoder.1.1.", "Cv1.after.": "encoder.1.2.", ...}``.
    """
    levels = config.levels
    names = {"Cv0.conv.": "encoder.0.0."}
    for i in range(1, levels):
        names[f"Cv{i}.conv."] = f"encoder.{i}.1."
        names[f"Cv{i}.after."] = f"encoder.{i}.2."
    if config.shared_repeats:
        names[f"Cv{levels}.conv."] = "shared_down.1."
        names[f"Cv{levels}.after."] = "shared_down.2."
    names[f"Cv{levels + 1}.conv."] = "innermost.1."
    names[f"CvT{levels + 2}.conv."] = "innermost_up.1."
    names[f"CvT{levels + 2}.after."] = "innermost_up.2."
    if config.shared_repeats:
        names[f"CvT{levels + 3}.conv."] = "shared_up.1."
        names[f"CvT{levels + 3}.after."] = "shared_up.2."
    for j in range(levels - 1):
        names[f"CvT{levels + 4 + j}.conv."] = f"decoder.{j}.1."
        names[f"CvT{levels + 4 + j}.after."] = f"decoder.{j}.2."
    names[f"CvT{2 * levels + 3}.conv."] = "out.1."
    return names


def _rename(state: Mapping[str, torch.Tensor], names: Mapping[str, str], what: str) -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for key, value in state.items():
        prefix = next((p for p in names if key.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
        else:
            out[names[prefix] + key[len(prefix):]] = value
    if unknown:
        shown = ", ".join(unknown[:8]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 8 else "")
        raise ValueError(f"{what}: keys that are not parameters of the official UNet: [{shown}]")
    return out


def _clean_state(state: object, what: str) -> dict[str, torch.Tensor]:
    """A plain ``{name: tensor}`` dict without ``module.`` prefixes (the official ``fix_model_state_dict``)."""
    if not isinstance(state, Mapping) or not state:
        raise ValueError(f"{what}: expected a non-empty state dict of the official UNet, got {type(state).__name__}")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{what}: entries that are not named tensors: {bad[:5]}")
    return {k.removeprefix(_PARALLEL_PREFIX): v for k, v in state.items()}


def infer_tshrnet_config(states: Sequence[Mapping[str, torch.Tensor]], *, shared_repeats: int = 3,
                         value_space: str = "official", stage_one: str = "intrinsic") -> TSHRNetConfig:
    """The :class:`TSHRNetConfig` of four official-layout state dicts (``module.`` already stripped).

    Width, levels and the width cap are read from the tensors; ``shared_repeats`` cannot be
    (the shared layers hold one set of weights however often they run), so it is given
    (official 3) and must be 0 exactly when the files have no shared layer; nor can
    ``stage_one`` (same layout for both official trainings), which is given too.
    """
    first = states[0]
    if "Cv0.conv.weight" not in first:
        raise ValueError("UNet1: no 'Cv0.conv.weight'; this is not an official TSHRNet UNet state dict")
    width = int(first["Cv0.conv.weight"].shape[0])
    transposed = [int(m.group(1)) for key in first if (m := re.match(r"^CvT(\d+)\.conv\.weight$", key))]
    if not transposed or (max(transposed) - 3) % 2 or max(transposed) < 5:
        raise ValueError(f"UNet1: cannot read the number of levels from its CvT layers {sorted(transposed)}")
    levels = (max(transposed) - 3) // 2
    has_shared = f"Cv{levels}.after.weight" in first and f"CvT{levels + 3}.conv.weight" in first
    if has_shared != bool(shared_repeats):
        raise ValueError(
            f"UNet1 {'has' if has_shared else 'has no'} shared middle layer (Cv{levels}) but shared_repeats={shared_repeats}"
        )
    deepest = f"Cv{levels - 1}.conv.weight"
    if deepest not in first:
        raise ValueError(f"UNet1: missing {deepest!r} of a {levels}-level UNet")
    return TSHRNetConfig(width=width, levels=levels, shared_repeats=shared_repeats,
                         max_width_mult=max(1, int(first[deepest].shape[0]) // width), value_space=value_space,
                         stage_one=stage_one)


def tshrnet_from_official(states: Sequence[Mapping[str, torch.Tensor]], *, config: TSHRNetConfig | None = None,
                          shared_repeats: int = 3, value_space: str = "official", stage_one: str = "intrinsic",
                          names: Sequence[str] | None = None) -> TSHRNet:
    """A :class:`TSHRNet` (eval mode) holding four official-layout state dicts.

    Parameters
    ----------
    states : sequence of 4 mappings
        The state dicts of ``UNet1`` … ``UNet4`` (with or without ``module.`` prefixes).
    config : TSHRNetConfig, optional
        Default: inferred (:func:`infer_tshrnet_config`; the released files give
        ``TSHRNetConfig.paper()``).
    shared_repeats, value_space, stage_one
        Passed to :func:`infer_tshrnet_config` when ``config`` is not given.
    names : sequence of 4 str, optional
        How to name each state dict in errors (default ``UNet1`` … ``UNet4``).
    """
    if isinstance(states, Mapping) or len(states) != 4:
        raise ValueError("states must be a sequence of the four official state dicts UNet1..UNet4")
    names = [stem for stem, _, _ in OFFICIAL_STAGE_FILES] if names is None else list(names)
    clean = [_clean_state(state, name) for state, name in zip(states, names)]
    if config is None:
        config = infer_tshrnet_config(clean, shared_repeats=shared_repeats, value_space=value_space, stage_one=stage_one)
    model = TSHRNet(config)
    table = official_unet_names(config)
    for state, name, (_, attribute, _) in zip(clean, names, OFFICIAL_STAGE_FILES):
        _load_unet(getattr(model, attribute), _rename(state, table, name), name)
    return model.eval()


def _load_unet(unet: HighlightUNet, state: dict[str, torch.Tensor], what: str) -> None:
    expected = unet.state_dict()
    inverse = {ours: official for official, ours in official_unet_names(unet.config).items()}

    def official(key: str) -> str:
        prefix = next(p for p in inverse if key.startswith(p))
        return inverse[prefix] + key[len(prefix):]

    missing = [official(k) for k in expected if k not in state]
    unexpected = [official(k) for k in state if k not in expected]
    wrong = [f"{official(k)} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
             for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    problems = [f"{label} {items[:6]}" for label, items in
                (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes (file vs network)", wrong)) if items]
    if problems:
        raise ValueError(f"{what}: does not fit the TSHRNet configuration {unet.config}: " + "; ".join(problems))
    unet.load_state_dict(state, strict=True)


def tshrnet_to_official(model: TSHRNet) -> list[dict[str, torch.Tensor]]:
    """The four state dicts of ``model`` in the official layout (no ``module.`` prefix), UNet1 … UNet4."""
    if not isinstance(model, TSHRNet):
        raise TypeError(f"model must be a TSHRNet, got {type(model).__name__}")
    inverse = {ours: official for official, ours in official_unet_names(model.config).items()}
    states = []
    for _, attribute, _ in OFFICIAL_STAGE_FILES:
        state = getattr(model, attribute).state_dict()
        states.append({_rename_one(key, inverse): value.detach().cpu().clone() for key, value in state.items()})
    return states


def _rename_one(key: str, table: Mapping[str, str]) -> str:
    prefix = next(p for p in table if key.startswith(p))
    return table[prefix] + key[len(prefix):]


def save_tshrnet_official(model: TSHRNet, directory: str | os.PathLike, *, epoch: int | str, force: bool = False) -> list[Path]:
    """Write ``UNet1_<epoch>.pth`` … ``UNet4_<epoch>.pth`` into ``directory`` (official layout).

    The official test script (and :func:`load_tshrnet`) reads them back. Existing files are
    refused unless ``force``; each file is written atomically.
    """
    if model.config.value_space != "official":
        raise ValueError("only a TSHRNet with value_space='official' computes what the official code computes with these weights")
    directory = Path(directory)
    paths = [directory / f"{stem}_{epoch}.pth" for stem, _, _ in OFFICIAL_STAGE_FILES]
    for path in paths:
        refuse_existing(path, force)
    for path, state in zip(paths, tshrnet_to_official(model)):
        write_atomic(path, lambda stream, state=state: torch.save(state, stream), force=force)
    return paths


def _official_files(source: str | os.PathLike | Sequence[str | os.PathLike], epoch: int | str | None) -> list[Path]:
    if isinstance(source, (str, os.PathLike)):
        directory = Path(source)
        if not directory.is_dir():
            raise FileNotFoundError(f"TSHRNet checkpoint folder not found: {directory} (expected UNet1_<epoch>.pth ... UNet4_<epoch>.pth)")
        if epoch is None:
            epochs = sorted({m.group(2) for p in directory.iterdir() if (m := _FILE_PATTERN.match(p.name))})
            if not epochs:
                raise FileNotFoundError(f"{directory} holds no official TSHRNet files UNet1_<epoch>.pth ... UNet4_<epoch>.pth")
            if len(epochs) > 1:
                raise ValueError(f"{directory} holds the epochs {epochs}; pass epoch= to choose one")
            epoch = epochs[0]
        paths = [directory / f"{stem}_{epoch}.pth" for stem, _, _ in OFFICIAL_STAGE_FILES]
    else:
        paths = [Path(p) for p in source]
        if len(paths) != 4:
            raise ValueError(f"expected the four files UNet1..UNet4, got {len(paths)} paths")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"TSHRNet checkpoint file not found: {path}")
    return paths


def load_tshrnet(source: str | os.PathLike | Sequence[str | os.PathLike], *, epoch: int | str | None = None,
                 config: TSHRNetConfig | None = None, shared_repeats: int = 3, stage_one: str = "intrinsic") -> TSHRNet:
    """Load an official TSHRNet checkpoint (four files) into a :class:`TSHRNet` in eval mode.

    Parameters
    ----------
    source : path or sequence of 4 paths
        A folder holding ``UNet1_<epoch>.pth`` … ``UNet4_<epoch>.pth`` (e.g. the released
        ``checkpoints_SSHR``), or the four files in the order UNet1 … UNet4.
    epoch : int or str, optional
        Which files of the folder; needed only when it holds several epochs.
    config : TSHRNetConfig, optional
        Default: inferred from the tensors, with ``value_space="official"``.
    shared_repeats : int
        Applications of the shared middle layers when inferring (official 3).
    stage_one : {"intrinsic", "direct"}
        When inferring: ``"intrinsic"`` for files of ``train_4_networks.py`` (``checkpoints_SSHR``),
        ``"direct"`` for files of ``train_4_networks_mix.py`` (``checkpoints_mix_SSHR_SHIQ_PSD``,
        SHIQ, PSD); the files do not say which.

    Returns
    -------
    TSHRNet
        Takes and returns ``[0, 1]`` images; computes in the official ``[−1, 1]`` space.
    """
    paths = _official_files(source, epoch)
    states = [load_checkpoint_file(path) for path in paths]
    return tshrnet_from_official(states, config=config, shared_repeats=shared_repeats, stage_one=stage_one,
                                 names=[str(p) for p in paths])
