"""An independent, deliberately plain functional UHDformer for the tests (no tests in this file).

It follows the official code's computation step by step (``femasr_arch.py``,
class ``Net``), on a state dict with the *official* parameter names, with none
of the fusions, tiling or renaming of ``sparsesel.nets.uhdformer``.  The
matching uses the official sort-based selection.  It was checked against the
official output stored in ``shared/fixtures`` (see the tests).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class RecordingDict(dict):
    """A dict that remembers which keys were read (to check every official key is used)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: set[str] = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        if key in self:
            return self[key]
        return default


def _conv(sd, prefix, x, **kwargs):
    return F.conv2d(x, sd[prefix + "weight"], sd.get(prefix + "bias"), **kwargs)


def _layer_norm(x, weight, bias):
    tokens = x.flatten(2).transpose(1, 2)  # (B, HW, C)
    var = tokens.var(-1, keepdim=True, unbiased=False)
    if bias is None:
        out = tokens / torch.sqrt(var + 1e-5) * weight
    else:
        out = (tokens - tokens.mean(-1, keepdim=True)) / torch.sqrt(var + 1e-5) * weight + bias
    return out.transpose(1, 2).reshape(x.shape)


def _convnext(sd, prefix, x):
    y = _conv(sd, prefix + "dwconv.", x, padding=1).permute(0, 2, 3, 1)
    y = F.gelu(F.linear(y, sd[prefix + "pwconv1.weight"], sd[prefix + "pwconv1.bias"]))
    y = F.linear(y, sd[prefix + "pwconv2.weight"], sd[prefix + "pwconv2.bias"])
    return x + (sd[prefix + "gamma"] * y).permute(0, 3, 1, 2)


def _match(x, candidates, keep):
    batch, _, height, width = x.shape
    xf, cf = x.flatten(2), candidates.flatten(2)
    values, index = torch.cdist(xf, cf).topk(1, largest=False)
    values, index = values[..., 0], index[..., 0]
    order = torch.argsort(values, dim=1)
    rows = []
    for b in range(batch):
        chosen = sorted(order[b, :keep].tolist())
        rows.append(cf[b, index[b, chosen]])
    return torch.stack(rows).reshape(batch, keep, height, width)


def _dual(sd, prefix, x, perception, scale):
    keep = sd[prefix + "conv12.weight"].shape[1] // 2
    hidden = sd[prefix + "dwconv.0.weight"].shape[0]
    reduced = _conv(sd, prefix + "perception.", perception)
    cat = torch.cat([_match(x, F.max_pool2d(reduced, scale), keep), _match(x, F.avg_pool2d(reduced, scale), keep)], 1)
    gate = _conv(sd, prefix + "dwconv.0.", cat)
    gate = F.gelu(_conv(sd, prefix + "dwconv.1.", gate, padding=1, groups=hidden))
    gate = _conv(sd, prefix + "dwconv.3.", gate)
    return _conv(sd, prefix + "conv12.", gate * cat)


def _attention(sd, prefix, x, perception, cfg):
    batch, channels, height, width = x.shape
    qkv = _conv(sd, prefix + "qkv_dwconv.", _conv(sd, prefix + "qkv.", x), padding=1, groups=3 * channels)
    q, k, v = qkv.chunk(3, dim=1)
    if cfg["attention_matching"]:
        q = _dual(sd, prefix + "matching_transformation.", q, perception, cfg["scale_factor"])
    heads = sd[prefix + "temperature"].shape[0]
    q, k, v = (t.reshape(batch, heads, channels // heads, height * width) for t in (q, k, v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = torch.softmax(q @ k.transpose(-2, -1) * sd[prefix + "temperature"], dim=-1)
    return _conv(sd, prefix + "project_out.", (attn @ v).reshape(batch, channels, height, width))


def _ffn(sd, prefix, x, perception, cfg):
    channels = x.shape[1]
    if cfg["ffn_restormer"]:
        y = _conv(sd, prefix + "project_in.", x)
        a, b = _conv(sd, prefix + "dwconv.", y, padding=1, groups=y.shape[1]).chunk(2, dim=1)
        return _conv(sd, prefix + "project_out.", F.gelu(a) * b)
    y = _conv(sd, prefix + "project_in.1.", _conv(sd, prefix + "project_in.0.", x), padding=1, groups=channels)
    if cfg["ffn_matching"]:
        y = _dual(sd, prefix + "matching_transformation.", y, perception, cfg["scale_factor"])
    return _conv(sd, prefix + "project_out.1.", _conv(sd, prefix + "project_out.0.", y, padding=1, groups=channels))


def reference_forward(sd, cfg, x):
    """Official UHDformer forward.

    Parameters
    ----------
    sd : mapping
        Official parameter names without the ``restoration_network.`` prefix.
    cfg : dict
        ``number_block, unit_num, scale_factor, attention_matching, ffn_matching, ffn_restormer``.
    x : torch.Tensor, shape (B, 3, H, W)
    """
    s = cfg["scale_factor"]
    enter = _conv(sd, "enter.0.", x, padding=1)
    shallow = _convnext(sd, "shallow.", enter)
    middle = _convnext(sd, "middle.", shallow)
    deep = _convnext(sd, "deep.", middle)
    cat = torch.cat([shallow, middle, deep], 1)
    spread = _conv(sd, "perception_fusion.dwconv.", _conv(sd, "perception_fusion.conv11.", cat), padding=1, groups=cat.shape[1])
    gate, shift = spread.chunk(2, dim=1)
    perception = torch.softmax(gate, dim=1) * cat + shift
    trunk = _conv(sd, "downsample.body.0.", enter, stride=s)
    start = trunk
    for i in range(cfg["number_block"]):
        y = trunk
        for j in range(cfg["unit_num"]):
            p = f"block.{i}.TransformerBlock.{j}."
            perc = _layer_norm(perception, sd[p + "LayerNorm.body.weight"], sd[p + "LayerNorm.body.bias"])
            y = y + _attention(sd, p + "attn.", _layer_norm(y, sd[p + "norm1.body.weight"], sd.get(p + "norm1.body.bias")), perc, cfg)
            y = y + _ffn(sd, p + "ffn.", _layer_norm(y, sd[p + "norm2.body.weight"], sd.get(p + "norm2.body.bias")), perc, cfg)
        trunk = 0.2 * y + trunk
    trunk = start + trunk
    up = F.pixel_shuffle(_conv(sd, "upsample.body.0.", trunk, padding=1), s)
    fused = _conv(sd, "fusion.", torch.cat([up, deep], 1))
    fused = _convnext(sd, "out.1.", _convnext(sd, "out.0.", fused))
    return _conv(sd, "out.2.", fused, padding=1) + x
