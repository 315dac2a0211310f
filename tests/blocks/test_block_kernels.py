"""Block-sparse layer forms (issue 20, item 2): packed layers compute the masked dense layer.

References are independent of the code under test: the dense weight is masked here with
``repeat_interleave`` of the block mask (cut at the weight's edge for block shapes that do not
tile it) and run through ``F.linear`` / ``F.conv2d``; the stored blocks are compared with slices
of the weight taken here.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsesel.block_layers import (
    EDIT_KIND,
    PackedBlockConv2d,
    PackedBlockLinear,
    ceil_grid,
    dense_layer,
    kernels_for,
    pack_layer,
    packed_from_dense,
    unpack_layer,
)

torch.set_num_threads(1)


def masked_weight(weight: torch.Tensor, block_mask: torch.Tensor, block_shape: tuple[int, int]) -> torch.Tensor:
    """``weight`` with every entry of a dropped block set to zero (the reference)."""
    b1, b2 = block_shape
    full = block_mask.repeat_interleave(b1, 0).repeat_interleave(b2, 1)[: weight.shape[0], : weight.shape[1]]
    return weight * full.reshape(*full.shape, *([1] * (weight.dim() - 2))).to(weight.dtype)


def random_mask(grid: tuple[int, int], density: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    count = max(1, round(density * grid[0] * grid[1]))
    mask = torch.zeros(grid[0] * grid[1], dtype=torch.bool)
    mask[torch.randperm(mask.numel(), generator=generator)[:count]] = True
    return mask.reshape(grid)


SHAPES = [(16, 16), (24, 40), (10, 12), (48, 8)]  # (out, in); 10x12 and 48x8 are cut by some block shapes
BLOCKS = [(4, 4), (8, 8), (3, 5), (16, 2)]
DENSITIES = [0.05, 0.3, 1.0]
CASES = list(itertools.product(SHAPES, BLOCKS, DENSITIES))


def _close(got: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,block,density", CASES, ids=[f"{s[0]}x{s[1]}-b{b[0]}x{b[1]}-d{d}" for s, b, d in CASES])
def test_linear_equals_the_masked_dense_layer(shape, block, density):
    torch.manual_seed(0)
    out, inp = shape
    dense = nn.Linear(inp, out)
    mask = random_mask(ceil_grid(shape, block), density, seed=out * inp)
    reference = masked_weight(dense.weight.detach(), mask, block)
    layer = packed_from_dense(dense, mask, block)
    for kernel in kernels_for(layer):
        layer.set_kernel(kernel)
        for x in (torch.randn(1, inp), torch.randn(7, inp), torch.randn(2, 5, 3, inp)):
            with torch.no_grad():
                _close(layer(x), F.linear(x, reference, dense.bias))


CONVS = [  # (kernel, stride, padding, padding_mode)
    (1, 1, 0, "zeros"),
    (3, 1, 1, "zeros"),
    (4, 2, 1, "zeros"),
    (3, 2, 0, "zeros"),
    (3, 1, 1, "reflect"),
]
CONV_CASES = list(itertools.product(SHAPES[:3], BLOCKS[:3], DENSITIES, CONVS))


@pytest.mark.parametrize("shape,block,density,conv", CONV_CASES,
                         ids=[f"{s[0]}x{s[1]}-b{b[0]}x{b[1]}-d{d}-k{c[0]}s{c[1]}p{c[2]}{c[3]}" for s, b, d, c in CONV_CASES])
def test_conv_equals_the_masked_dense_layer(shape, block, density, conv):
    """Batch 1 and 3, channels-first and channels-last memory, every kernel that applies."""
    torch.manual_seed(1)
    out, inp = shape
    size, stride, padding, mode = conv
    dense = nn.Conv2d(inp, out, size, stride=stride, padding=padding, padding_mode=mode)
    mask = random_mask(ceil_grid(shape, block), density, seed=out + inp)
    reference = nn.Conv2d(inp, out, size, stride=stride, padding=padding, padding_mode=mode)
    with torch.no_grad():
        reference.weight.copy_(masked_weight(dense.weight, mask, block))
        reference.bias.copy_(dense.bias)
    layer = packed_from_dense(dense, mask, block)
    x = torch.randn(3, inp, 9, 11)
    inputs = [x, x[:1], x.contiguous(memory_format=torch.channels_last), x[:1].contiguous(memory_format=torch.channels_last)]
    for kernel in kernels_for(layer):
        layer.set_kernel(kernel)
        for value in inputs:
            with torch.no_grad():
                _close(layer(value), reference(value))


def test_density_one_and_zero_blocks():
    """All blocks kept is the dense layer; no block kept leaves the bias."""
    torch.manual_seed(2)
    conv = nn.Conv2d(8, 12, 3, padding=1)
    x = torch.randn(2, 8, 6, 6)
    full = packed_from_dense(conv, torch.ones(3, 2, dtype=torch.bool), (4, 4))
    empty = packed_from_dense(conv, torch.zeros(3, 2, dtype=torch.bool), (4, 4))
    linear = packed_from_dense(nn.Linear(8, 12), torch.zeros(3, 2, dtype=torch.bool), (4, 4))
    with torch.no_grad():
        _close(full(x), conv(x))
        _close(empty(x), conv.bias.view(1, -1, 1, 1).expand(2, 12, 6, 6))
        assert torch.equal(linear(torch.randn(5, 8)), linear.bias.expand(5, 12))


def test_only_the_kept_blocks_are_stored():
    torch.manual_seed(3)
    conv = nn.Conv2d(16, 24, 3, padding=1)
    mask = random_mask((3, 4), 0.25, seed=7)  # 8x4 blocks over (24, 16)
    layer = packed_from_dense(conv, mask, (8, 4))
    state = layer.state_dict()
    assert set(state) == {"blocks", "index", "bias"}
    kept = torch.nonzero(mask.reshape(-1)).reshape(-1)
    assert torch.equal(state["index"], kept)
    assert state["blocks"].shape == (len(kept), 8, 4, 3, 3)
    for k, flat in enumerate(kept.tolist()):
        r, c = divmod(flat, 4)
        assert torch.equal(state["blocks"][k], conv.weight.detach()[r * 8:(r + 1) * 8, c * 4:(c + 1) * 4])
    assert sum(t.numel() for t in state.values()) < conv.weight.numel() / 3


def test_gradients_equal_the_masked_dense_layer():
    """The gather kernels are differentiable: input and block gradients match the masked dense layer's."""
    torch.manual_seed(4)
    conv = nn.Conv2d(12, 16, 3, padding=1)
    mask = random_mask((4, 3), 0.4, seed=1)
    for kernel in ("grouped", "rows"):
        layer = packed_from_dense(conv, mask, (4, 4), kernel)
        weight = masked_weight(conv.weight.detach(), mask, (4, 4)).requires_grad_(True)
        x = torch.randn(2, 12, 5, 5, requires_grad=True)
        x_ref = x.detach().clone().requires_grad_(True)
        layer(x).square().sum().backward()
        F.conv2d(x_ref, weight, conv.bias.detach(), padding=1).square().sum().backward()
        _close(x.grad, x_ref.grad)
        kept = torch.nonzero(mask.reshape(-1)).reshape(-1).tolist()
        for k, flat in enumerate(kept):
            r, c = divmod(flat, 3)
            _close(layer.blocks.grad[k], weight.grad[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4])


def test_bsr_layers_train_through_the_gather_kernel():
    """A BSR layer needing a gradient computes with the grouped kernel: its gradients are the masked dense layer's."""
    torch.manual_seed(6)
    linear = nn.Linear(16, 8)
    mask = random_mask((2, 4), 0.5, seed=3)
    layer = packed_from_dense(linear, mask, (4, 4), "bsr")
    weight = masked_weight(linear.weight.detach(), mask, (4, 4)).requires_grad_(True)
    x = torch.randn(6, 16)
    layer(x).square().sum().backward()
    F.linear(x, weight, linear.bias.detach()).square().sum().backward()
    kept = torch.nonzero(mask.reshape(-1)).reshape(-1).tolist()
    for k, flat in enumerate(kept):
        r, c = divmod(flat, 4)
        _close(layer.blocks.grad[k], weight.grad[r * 4:(r + 1) * 4, c * 4:(c + 1) * 4])


@pytest.mark.parametrize("kernel", ["bsr", "grouped", "rows"])
def test_a_used_packed_layer_deep_copies_and_pickles(kernel):
    """After a forward pass (kernel weights cached; a BSR tensor has no storage to copy), deepcopy and
    torch.save/torch.load give a layer computing the masked dense layer."""
    import copy
    import io

    torch.manual_seed(8)
    linear = nn.Linear(16, 8)
    mask = random_mask((2, 4), 0.5, seed=4)
    layer = packed_from_dense(linear, mask, (4, 4), kernel).eval()
    x = torch.randn(5, 16)
    expected = F.linear(x, masked_weight(linear.weight.detach(), mask, (4, 4)), linear.bias.detach())
    with torch.no_grad():
        _close(layer(x), expected)
        buffer = io.BytesIO()
        torch.save(layer, buffer)
        buffer.seek(0)
        for twin in (copy.deepcopy(layer), torch.load(buffer, weights_only=False)):
            _close(twin(x), expected)


def test_dense_layer_and_unpack_restore_a_plain_layer():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 1))
    reference = nn.Sequential(*[m for m in model])
    mask = random_mask((2, 2), 0.5, seed=2)
    expected_weight = masked_weight(model[0].weight.detach(), mask, (4, 4))
    layer = pack_layer(model, "0", mask, (4, 4))
    assert isinstance(model[0], PackedBlockConv2d) and model.structure[-1]["kind"] == EDIT_KIND
    assert model.structure[-1]["args"] == {"name": "0", "block_shape": [4, 4], "kept": 2, "kernel": "grouped"}
    plain = dense_layer(layer)
    assert type(plain) is nn.Conv2d and torch.equal(plain.weight, expected_weight)
    unpack_layer(model, "0")
    assert type(model[0]) is nn.Conv2d and model.structure == []
    assert torch.equal(model[0].weight, expected_weight) and reference is not None


@pytest.mark.parametrize("bad,match", [
    (lambda: PackedBlockLinear(8, 8, 5, (4, 4)), r"kept blocks must lie in \[0, 4\]"),
    (lambda: PackedBlockLinear(8, 8, 1, (0, 4)), "block_shape sides must be >= 1"),
    (lambda: PackedBlockLinear(8, 8, 1, (4, 4), kernel="fast"), "kernel must be one of"),
    (lambda: PackedBlockConv2d(8, 8, 3, 1, (4, 4), kernel="bsr"), "kernel 'bsr' does not apply"),
    (lambda: PackedBlockLinear(8, 8, 1, (4, 2), kernel="bsr"), "kernel 'bsr' does not apply"),
    (lambda: packed_from_dense(nn.Conv2d(8, 8, 3, groups=2), torch.ones(2, 1, dtype=torch.bool), (4, 4)), "grouped convolution"),
    (lambda: packed_from_dense(nn.Linear(8, 8), torch.eye(3, 2, dtype=torch.bool), (4, 4)), r"block grid is \(2, 2\)"),
    (lambda: PackedBlockLinear(8, 8, 2, (4, 4))(torch.randn(3, 5)), r"expects \(\.\.\., 8\) inputs"),
])
def test_bad_layers_are_refused(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad()


def test_a_corrupt_index_is_refused_on_load():
    layer = PackedBlockLinear(8, 8, 2, (4, 4))
    state = layer.state_dict()
    state["index"] = torch.tensor([3, 3])
    with pytest.raises(ValueError, match="distinct block positions"):
        layer.load_state_dict(state)
