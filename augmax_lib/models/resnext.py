"""ResNeXt-29 (cardinality 4, base width 32) for CIFAR, in the reference's layout and names.

Stem ``conv_1_3x3``/``bn_1`` (64 channels), three stages ``stage_{1,2,3}`` of three bottlenecks with
1024 output channels at the end, ``classifier`` head. DuBIN/IBN sites: ``bn_reduce`` (after the 1x1 reduce)
of every block in stages 1-2 (REFERENCE.md section 3).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..norm import make_norm
from ._parts import check_stem_stride, init_convs_he_fan_out, projection, residual_stages

__all__ = ["CifarResNeXt", "ResNeXtBottleneck", "resnext29"]


class ResNeXtBottleneck(nn.Module):
    """1x1 reduce, grouped 3x3 (carries the stride), 1x1 expand to ``4 * planes``; ``downsample`` when the shape changes."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, cardinality: int, base_width: int, stride: int, norm: str,
                 instance_site: bool):
        super().__init__()
        inner = cardinality * int(math.floor(planes * base_width / 64.0))
        out_planes = planes * self.expansion
        self.conv_reduce = nn.Conv2d(in_planes, inner, 1, bias=False)
        self.bn_reduce = make_norm(norm, inner, instance_site)
        self.conv_conv = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn = make_norm(norm, inner)
        self.conv_expand = nn.Conv2d(inner, out_planes, 1, bias=False)
        self.bn_expand = make_norm(norm, out_planes)
        self.downsample = projection(in_planes, out_planes, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_reduce(self.conv_reduce(x)))
        out = F.relu(self.bn(self.conv_conv(out)))
        out = self.bn_expand(self.conv_expand(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(residual + out)


class CifarResNeXt(nn.Module):
    """ResNeXt for 32x32 images; ``width`` is the stem and stage-1 ``planes`` (64 in the paper)."""

    def __init__(self, depth: int = 29, cardinality: int = 4, base_width: int = 32, num_classes: int = 10,
                 norm: str = "bn", width: int = 64, instance_stages: int = 2, stem_stride: int = 1):
        super().__init__()
        check_stem_stride(stem_stride)
        if (depth - 2) % 9 != 0:
            raise ValueError(f"depth: expected 9n + 2 (e.g. 29, 38), got {depth!r}")
        num_blocks = (depth - 2) // 9
        self.conv_1_3x3 = nn.Conv2d(3, width, 3, stride=stem_stride, padding=1, bias=False)
        self.bn_1 = make_norm(norm, width)
        stages, in_planes = residual_stages(
            lambda i, p, s, site: ResNeXtBottleneck(i, p, cardinality, base_width, s, norm, site),
            (num_blocks,) * 3, width, width, ResNeXtBottleneck.expansion, instance_stages)
        for k, stage in enumerate(stages):
            self.add_module(f"stage_{k + 1}", stage)
        self.classifier = nn.Linear(in_planes, num_classes)
        # The reference's initialisation: He-normal convs (fan_out), unit/zero norms, He-normal head, zero bias.
        init_convs_he_fan_out(self)
        nn.init.kaiming_normal_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_1(self.conv_1_3x3(x)))
        out = self.stage_3(self.stage_2(self.stage_1(out)))
        # Global average pooling: the final map is 8x8 on 32x32 inputs, as the reference's AvgPool2d(8).
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.classifier(out)


def resnext29(num_classes: int = 10, norm: str = "bn", width: int = 64, cardinality: int = 4,
              base_width: int = 32, stem_stride: int = 1) -> CifarResNeXt:
    """ResNeXt-29 4x32d as in AugMix/AugMax; ``width`` narrows the stem/stage planes (64 in the paper) for CPU runs,
    ``stem_stride=2`` for 64x64 images."""
    return CifarResNeXt(29, cardinality, base_width, num_classes=num_classes, norm=norm, width=width,
                        stem_stride=stem_stride)
