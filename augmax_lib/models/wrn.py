"""Wide ResNet 40-2 (pre-activation, dropout 0) in the reference's layout and names.

Stem ``conv1`` (16 channels), three groups ``block{1,2,3}.layer.{0..5}`` of widths 32/64/128, final ``bn1``,
``fc`` head. DuBIN/IBN sites: the pre-activation ``bn1`` of every block in groups 1-2 (REFERENCE.md section 3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..norm import make_norm
from ._parts import check_stem_stride, init_convs_he_fan_out

__all__ = ["WideResNet", "PreActBlock", "wrn40_2"]


class PreActBlock(nn.Module):
    """Pre-activation block: bn1-relu-conv1-bn2-relu-conv2 plus a residual.

    When the shape changes, the 1x1 ``conv_shortcut`` takes the pre-activated input (as the reference);
    otherwise the raw input is added.
    """

    def __init__(self, in_planes: int, out_planes: int, stride: int, norm: str, instance_site: bool,
                 drop_rate: float = 0.0):
        super().__init__()
        self.bn1 = make_norm(norm, in_planes, instance_site)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = make_norm(norm, out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.conv_shortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride,
                                                                      bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        out = self.conv2(out)
        residual = x if self.conv_shortcut is None else self.conv_shortcut(pre)
        return residual + out


class _Group(nn.Module):
    """One group of blocks, held under ``layer`` so the keys read ``block1.layer.0...`` as in the reference."""

    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int, norm: str,
                 instance_site: bool, drop_rate: float):
        super().__init__()
        self.layer = nn.Sequential(*[
            PreActBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, norm,
                        instance_site, drop_rate)
            for i in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-k; ``width`` is the stem channel count (16 in the paper), groups have width*k, 2*width*k, 4*width*k."""

    def __init__(self, depth: int = 40, widen_factor: int = 2, num_classes: int = 10, norm: str = "bn",
                 width: int = 16, drop_rate: float = 0.0, instance_groups: int = 2, stem_stride: int = 1):
        super().__init__()
        check_stem_stride(stem_stride)
        if (depth - 4) % 6 != 0:
            raise ValueError(f"depth: expected 6n + 4 (e.g. 16, 28, 40), got {depth!r}")
        num_blocks = (depth - 4) // 6
        widths = [width, width * widen_factor, 2 * width * widen_factor, 4 * width * widen_factor]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=stem_stride, padding=1, bias=False)
        self.block1 = _Group(num_blocks, widths[0], widths[1], 1, norm, instance_groups >= 1, drop_rate)
        self.block2 = _Group(num_blocks, widths[1], widths[2], 2, norm, instance_groups >= 2, drop_rate)
        self.block3 = _Group(num_blocks, widths[2], widths[3], 2, norm, instance_groups >= 3, drop_rate)
        self.bn1 = make_norm(norm, widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        # The reference's initialisation: He-normal convs (fan_out), unit/zero norms, zero head bias.
        init_convs_he_fan_out(self)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


def wrn40_2(num_classes: int = 10, norm: str = "bn", width: int = 16, drop_rate: float = 0.0,
            stem_stride: int = 1) -> WideResNet:
    """WRN-40-2 as in AugMix/AugMax; ``width`` narrows the stem (16 in the paper) for CPU runs, ``stem_stride=2`` for 64x64."""
    return WideResNet(40, 2, num_classes=num_classes, norm=norm, width=width, drop_rate=drop_rate,
                      stem_stride=stem_stride)
