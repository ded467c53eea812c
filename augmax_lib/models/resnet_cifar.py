"""ResNet18 for 32x32 (CIFAR) and 64x64 (Tiny-ImageNet) images, in the reference's layout and names.

3x3 stem (stride 1, or 2 for 64x64 inputs), no max-pool, four stages of two BasicBlocks, global average
pooling, ``linear`` head. DuBIN/IBN sites: ``bn1`` of every block in stages 1-3 (REFERENCE.md section 3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..norm import make_norm
from ._parts import check_stem_stride, projection, residual_stages

__all__ = ["CifarResNet", "BasicBlock", "resnet18"]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual; ``shortcut`` (1x1 conv + norm) when the shape changes."""

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, instance_site: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, planes, instance_site)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(norm, planes)
        # An empty Sequential is the identity and adds no keys, as in the reference.
        self.shortcut = projection(in_planes, planes, stride, norm) or nn.Sequential()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR-style ResNet with BasicBlocks; ``width`` is the stem/stage-1 channel count (64 in the paper)."""

    def __init__(self, blocks_per_stage=(2, 2, 2, 2), num_classes: int = 10, norm: str = "bn",
                 width: int = 64, stem_stride: int = 1, instance_stages: int = 3):
        super().__init__()
        if len(blocks_per_stage) != 4:
            raise ValueError(f"blocks_per_stage: expected four stage lengths, got {blocks_per_stage!r}")
        check_stem_stride(stem_stride)
        self.conv1 = nn.Conv2d(3, width, 3, stride=stem_stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, width)
        stages, in_planes = residual_stages(lambda i, p, s, site: BasicBlock(i, p, s, norm, site),
                                            blocks_per_stage, width, width, 1, instance_stages)
        for k, stage in enumerate(stages):
            self.add_module(f"layer{k + 1}", stage)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        # Global average pooling: on 32x32 inputs the final map is 4x4, as the reference's avg_pool2d(out, 4).
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.linear(out)


def resnet18(num_classes: int = 10, norm: str = "bn", width: int = 64, stem_stride: int = 1) -> CifarResNet:
    """ResNet18 for CIFAR (``stem_stride=1``) or 64x64 Tiny-ImageNet (``stem_stride=2``); ``width`` narrows it for CPU runs."""
    return CifarResNet((2, 2, 2, 2), num_classes=num_classes, norm=norm, width=width, stem_stride=stem_stride)
