"""Test weights for small networks whose channel norms differ widely (a fresh init has near-tied norms)."""

import torch
from torch import nn


def spread_weights(model: nn.Module, seed: int) -> nn.Module:
    """``model`` (in place, returned in eval mode) with Gaussian weights scaled per output channel by U(0, 0.3).

    Every module's ``gamma`` (UHDformer's residual scales) is set to 0.5.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3 * torch.rand(p.shape[:1] + (1,) * (p.dim() - 1), generator=g))
        for m in model.modules():
            if hasattr(m, "gamma"):
                m.gamma.fill_(0.5)
    return model.eval()
