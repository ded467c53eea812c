"""The authors' CIFAR/Tiny-ImageNet ResNet18 with DuBIN, written out again from VITA-Group/AugMax
(models/cifar10/resnet_DuBIN.py and resnet_DuBN.py): the same module names, so that its state dict
under ``nn.DataParallel`` has the key layout of their ``best_SA.pth``. A test oracle, kept as plain as
theirs: ``init_stride`` 1 for 32x32 CIFAR, 2 for 64x64 Tiny-ImageNet; ``ibn`` 'a' in the first three
stages; a fixed 4x4 average pool before the linear head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ROUTES = ("M", "A")


class DualBN(nn.Module):
    """Two BatchNorms (keys ``bn.0`` main, ``bn.1`` auxiliary); ``route`` picks one."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.ModuleList([nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)])
        self.route = "M"

    def forward(self, x):
        return self.bn[ROUTES.index(self.route)](x)


class DuBIN(nn.Module):
    """InstanceNorm on the first ``int(0.5 * C)`` channels (``IN``), DualBN on the rest (``BN``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.half = int(channels * 0.5)
        self.IN = nn.InstanceNorm2d(self.half, affine=True)
        self.BN = DualBN(channels - self.half)

    def forward(self, x):
        first, second = torch.split(x, self.half, 1)
        return torch.cat((self.IN(first.contiguous()), self.BN(second.contiguous())), 1)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, ibn: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = DuBIN(cout) if ibn else DualBN(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = DualBN(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), DualBN(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18DuBIN(nn.Module):
    def __init__(self, num_classes: int = 10, init_stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=init_stride, padding=1, bias=False)
        self.bn1 = DualBN(64)
        cin = 64
        for i, (planes, stride, ibn) in enumerate(((64, 1, True), (128, 2, True), (256, 2, True), (512, 2, False))):
            stage = nn.Sequential(Block(cin, planes, stride, ibn), Block(planes, planes, 1, ibn))
            setattr(self, f"layer{i + 1}", stage)
            cin = planes
        self.linear = nn.Linear(512, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        return self.linear(out.view(out.size(0), -1))
