"""CSAttn: the three-stage attention against a NumPy transcription of the formulas; shapes; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.special import erf, softmax

from sparsesel.nets.csattn import CSAttn, CSAttnBlock, CSAttnConfig, ContinuousScalingAttention


def _numpy_attention(module: ContinuousScalingAttention, x: np.ndarray) -> np.ndarray:
    """Stage 1: MDTA; stages 2-3: the previous stage's output queries V2 / V3 with GELU values."""
    c = x.shape[0]
    heads = module.heads
    w = module.project.weight.detach().numpy()[:, :, 0, 0]
    y = np.einsum("oc,chw->ohw", w, x)
    dw = module.depthwise.weight.detach().numpy()[:, 0]
    y = np.stack([ndimage.correlate(y[i], dw[i], mode="constant") for i in range(5 * c)])
    q, k, v, v2, v3 = (t.reshape(heads, c // heads, -1) for t in np.split(y, 5))
    scale = module.scaling.detach().numpy()[:, :, 0, 0]  # (3, heads)

    def norm(t):
        return t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)

    def gelu(t):
        return 0.5 * t * (1 + erf(t / np.sqrt(2)))

    def attend(query, key, value, s):
        a = softmax(np.einsum("hiN,hjN->hij", norm(query), norm(key)) * s[:, None, None], axis=-1)
        return np.einsum("hij,hjN->hiN", a, value)

    first = attend(q, k, v, scale[0])
    second = attend(first, v2, gelu(v2), scale[1])
    third = attend(second, v3, gelu(v3), scale[2])
    out = third.reshape(c, *x.shape[1:])
    return np.einsum("oc,chw->ohw", module.project_out.weight.detach().numpy()[:, :, 0, 0], out)


def test_attention_matches_the_numpy_formulas():
    torch.manual_seed(0)
    module = ContinuousScalingAttention(8, heads=2).double()
    with torch.no_grad():
        module.scaling.copy_(torch.tensor([0.7, 1.5, 2.0]).view(3, 1, 1, 1).repeat(1, 2, 1, 1) * torch.tensor([1.0, 1.3]).view(1, 2, 1, 1))
    x = torch.randn(1, 8, 6, 7, dtype=torch.float64)
    expected = _numpy_attention(module, x[0].numpy())
    np.testing.assert_allclose(module(x)[0].detach().numpy(), expected, rtol=1e-9, atol=1e-10)


def test_blocks_have_no_feed_forward_network():
    block = CSAttnBlock(8, 2, CSAttnConfig.small())
    assert [name for name, _ in block.named_children()] == ["norm", "attention"]
    projections = [m for m in block.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [p.out_channels for p in projections] == [40, 8]  # one projection to Q, K, V, V2, V3, one output


def test_multiscale_outputs_and_restore_shapes():
    torch.manual_seed(1)
    net = CSAttn(CSAttnConfig.small()).eval()
    x = torch.rand(2, 3, 16, 24)
    full, half, quarter = net.forward_multiscale(x)
    assert full.shape == (2, 3, 16, 24) and half.shape == (2, 3, 8, 12) and quarter.shape == (2, 3, 4, 6)
    for size in [(13, 21), (5, 3), (31, 32)]:
        assert net.restore(torch.rand(3, *size)).shape == (3, *size)
    # restore of an admissible size is the plain forward pass
    torch.testing.assert_close(net.restore(x), net(x))


def test_config_round_trip_and_errors():
    config = CSAttnConfig(width=12, blocks=(1, 2, 1), heads=(3, 2, 4))
    assert CSAttnConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"heads\[1\]=5 must divide the level's width 16"):
        CSAttnConfig(width=8, heads=(1, 5, 1))
    with pytest.raises(ValueError, match="blocks must be 3 positive"):
        CSAttnConfig(blocks=(1, 1))
    with pytest.raises(ValueError, match="value_activation"):
        CSAttnConfig(value_activation="tanh")
    with pytest.raises(ValueError, match="unknown CSAttnConfig options"):
        CSAttnConfig.from_dict({"width": 8, "depth": 3})
    with pytest.raises(TypeError, match="must be a CSAttnConfig"):
        CSAttn({"width": 8})
    net = CSAttn(CSAttnConfig.small())
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.rand(1, 3, 10, 12))
    with pytest.raises(ValueError, match=r"shape \(B, 3, H, W\)"):
        net(torch.rand(3, 16, 16))
