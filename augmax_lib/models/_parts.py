"""Pieces the ResNet-family backbones share: the stem-stride check, the projection shortcut, the stages."""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..norm import make_norm


def check_stem_stride(stem_stride: int) -> None:
    """Raise unless the stem stride is 1 (32x32 CIFAR) or 2 (64x64 Tiny-ImageNet)."""
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride: expected 1 (32x32 CIFAR) or 2 (64x64 Tiny-ImageNet), got {stem_stride!r}")


def projection(in_planes: int, out_planes: int, stride: int, norm: str) -> nn.Sequential | None:
    """1x1 convolution + norm where a block changes shape (keys ``.0``, ``.1``), else None."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), make_norm(norm, out_planes))


def residual_stages(make_block: Callable[..., nn.Module], blocks_per_stage, in_planes: int, width: int,
                    expansion: int, instance_stages: int) -> tuple[list[nn.Sequential], int]:
    """Stages of residual blocks and the channel count they end with.

    Stage ``s`` has ``width * 2**s`` planes; its first block strides by 2 (stage 0 keeps the stem's
    resolution); blocks of the first ``instance_stages`` stages are IBN/DuBIN sites.
    ``make_block(in_planes, planes, stride, instance_site)`` builds one block.
    """
    stages = []
    for stage, num_blocks in enumerate(blocks_per_stage):
        planes = width * 2 ** stage
        blocks = []
        for index in range(num_blocks):
            stride = 2 if stage > 0 and index == 0 else 1
            blocks.append(make_block(in_planes, planes, stride, stage < instance_stages))
            in_planes = planes * expansion
        stages.append(nn.Sequential(*blocks))
    return stages, in_planes


def init_convs_he_fan_out(model: nn.Module) -> None:
    """He-normal initialisation of every convolution, std sqrt(2 / (k * k * out_channels)), as the
    reference's CIFAR models and torchvision's ResNets do (norm layers keep their unit/zero defaults)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
