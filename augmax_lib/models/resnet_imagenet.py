"""ImageNet ResNet18/50 in torchvision's layout and names (``conv1``/``bn1`` stem, ``layer1..4``, ``downsample``, ``fc``).

7x7 stride-2 stem with max-pool; ResNet50 uses the v1.5 bottleneck (stride on the 3x3 conv), as torchvision.
DuBIN/IBN sites: ``bn1`` of every block in stages 1-3 (REFERENCE.md section 3). Inputs are normalised images.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..norm import make_norm
from ._parts import init_convs_he_fan_out, projection, residual_stages

__all__ = ["ImageNetResNet", "BasicBlock", "Bottleneck", "resnet18_imagenet", "resnet50_imagenet"]


class BasicBlock(nn.Module):
    """torchvision's BasicBlock: two 3x3 convolutions, stride on the first."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, instance_site: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm, planes, instance_site)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.downsample = projection(in_planes, planes, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class Bottleneck(nn.Module):
    """torchvision's v1.5 Bottleneck: 1x1 reduce, 3x3 with the stride, 1x1 expand to ``4 * planes``."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int, norm: str, instance_site: bool):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = make_norm(norm, planes, instance_site)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = make_norm(norm, planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = make_norm(norm, out_planes)
        self.downsample = projection(in_planes, out_planes, stride, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class ImageNetResNet(nn.Module):
    """torchvision-layout ResNet; ``width`` is the stem/stage-1 channel count (64 in the paper)."""

    def __init__(self, block, blocks_per_stage, num_classes: int = 1000, norm: str = "bn", width: int = 64,
                 instance_stages: int = 3):
        super().__init__()
        if len(blocks_per_stage) != 4:
            raise ValueError(f"blocks_per_stage: expected four stage lengths, got {blocks_per_stage!r}")
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, width)
        stages, in_planes = residual_stages(lambda i, p, s, site: block(i, p, s, norm, site),
                                            blocks_per_stage, width, width, block.expansion, instance_stages)
        for k, stage in enumerate(stages):
            self.add_module(f"layer{k + 1}", stage)
        self.fc = nn.Linear(in_planes, num_classes)
        # torchvision's initialisation: He-normal convs (fan_out, relu), unit/zero norms, default head.
        init_convs_he_fan_out(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.max_pool2d(out, kernel_size=3, stride=2, padding=1)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


def resnet18_imagenet(num_classes: int = 1000, norm: str = "bn", width: int = 64) -> ImageNetResNet:
    """ResNet18 with torchvision's layout and names; ``width`` narrows it for CPU runs."""
    return ImageNetResNet(BasicBlock, (2, 2, 2, 2), num_classes=num_classes, norm=norm, width=width)


def resnet50_imagenet(num_classes: int = 1000, norm: str = "bn", width: int = 64) -> ImageNetResNet:
    """ResNet50 (v1.5) with torchvision's layout and names; ``width`` narrows it for CPU runs."""
    return ImageNetResNet(Bottleneck, (3, 4, 6, 3), num_classes=num_classes, norm=norm, width=width)
