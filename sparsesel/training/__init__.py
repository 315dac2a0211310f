"""Training of the restoration networks: losses, per-network recipes, the distillation recipe and one
resumable training loop (:mod:`sparsesel.training.loop`) that every recipe runs in."""

from __future__ import annotations

from sparsesel.training.losses import fft_l1_loss, l1_fft_loss
from sparsesel.training.trainer import TrainConfig, evaluate, state_path, train

__all__ = ["TrainConfig", "evaluate", "fft_l1_loss", "l1_fft_loss", "state_path", "train"]
