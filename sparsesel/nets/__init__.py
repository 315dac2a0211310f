"""Restoration networks (pure torch modules) and their checkpoint I/O.

* :class:`UHDformer` (AAAI 2024) — loads official checkpoints via :func:`load_uhdformer`.
* :class:`CSAttn` — attention without FFN, three continuous attention stages.
* :class:`TSHRNet` (alias :class:`SpecularRemoval`) — three-stage specular-highlight removal; loads
  official checkpoints via :func:`load_tshrnet`.
* :class:`Harmonizer` — SI-GAN / DIH-GAN illumination harmonization.

:mod:`sparsesel.nets.zoo` builds any of them by name and saves/loads them generically.
"""

from sparsesel.nets.checkpoints import load_checkpoint, load_uhdformer, save_checkpoint
from sparsesel.nets.csattn import CSAttn, CSAttnConfig
from sparsesel.nets.harmonization import Harmonizer, HarmonizerConfig
from sparsesel.nets.tshrnet import SpecularRemoval, TSHRNet, TSHRNetConfig
from sparsesel.nets.tshrnet_checkpoints import load_tshrnet, save_tshrnet_official
from sparsesel.nets.uhdformer import UHDformer, UHDformerConfig
from sparsesel.nets.zoo import build_net, load_net, net_names, save_net

__all__ = [
    "CSAttn",
    "CSAttnConfig",
    "Harmonizer",
    "HarmonizerConfig",
    "SpecularRemoval",
    "TSHRNet",
    "TSHRNetConfig",
    "UHDformer",
    "UHDformerConfig",
    "build_net",
    "load_checkpoint",
    "load_net",
    "load_tshrnet",
    "load_uhdformer",
    "net_names",
    "save_checkpoint",
    "save_net",
    "save_tshrnet_official",
]
