"""Normalisation layers of AugMax: DuBN, DuBIN and IBN, the ``route`` switch and a running-variance reader.

DuBN keeps two BatchNorms: route "M" (main: clean and AugMix images) and route "A" (auxiliary: AugMax
images). The route is a plain Python attribute read once per forward call, so ``torch.compile`` guards on
it and keeps one graph per route (two graphs, not one per batch; see ``bench/models_compile.py``).
State-dict keys follow the reference code: DuBN ``bn.0`` (main), ``bn.1`` (auxiliary); DuBIN and IBN
``IN`` (first ``int(ratio * C)`` channels) and ``BN`` (the remaining channels).
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator

import torch
from torch import nn

__all__ = ["ROUTES", "NORMS", "DuBN", "DuBIN", "IBN", "make_norm", "route", "eval_mode", "dual_layers",
           "running_variances"]

ROUTES = ("M", "A")
NORMS = ("bn", "ibn", "dubn", "dubin")


def _check_route(value, name: str = "route") -> str:
    if value not in ROUTES:
        raise ValueError(f"{name}: expected 'M' (main: clean/AugMix) or 'A' (auxiliary: AugMax), got {value!r}")
    return value


def _instance_channels(num_features: int, ratio: float) -> int:
    """Number of channels that go through InstanceNorm: ``int(ratio * C)``, as the reference."""
    if not isinstance(num_features, int) or num_features < 2:
        raise ValueError(f"num_features: expected an int >= 2, got {num_features!r}")
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"ratio: expected a fraction in (0, 1) of the channels for InstanceNorm, got {ratio!r}")
    half = int(ratio * num_features)
    if half < 1 or half >= num_features:
        raise ValueError(f"ratio: int({ratio} * {num_features}) = {half} leaves no channels for one of the two halves")
    return half


class DuBN(nn.Module):
    """Dual BatchNorm: ``bn[0]`` normalises under route "M", ``bn[1]`` under route "A"; the route holds for a whole call."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features = num_features
        self.bn = nn.ModuleList([nn.BatchNorm2d(num_features, eps=eps, momentum=momentum),
                                 nn.BatchNorm2d(num_features, eps=eps, momentum=momentum)])
        self.route = "M"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A Python string compare: dynamo turns it into a guard, so each route gets its own compiled graph.
        if self.route == "M":
            return self.bn[0](x)
        if self.route == "A":
            return self.bn[1](x)
        raise ValueError(f"DuBN.route: expected 'M' or 'A', got {self.route!r}")

    def extra_repr(self) -> str:
        return f"{self.num_features}, route={self.route!r}"


class _SplitNorm(nn.Module):
    """InstanceNorm (affine, no running statistics) on the first ``int(ratio * C)`` channels, ``BN`` on the rest."""

    def __init__(self, num_features: int, ratio: float, rest: nn.Module):
        super().__init__()
        self.num_features = num_features
        self.ratio = ratio
        self.half = _instance_channels(num_features, ratio)
        self.IN = nn.InstanceNorm2d(self.half, affine=True, track_running_stats=False)
        self.BN = rest

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = torch.split(x, [self.half, self.num_features - self.half], dim=1)
        out = torch.cat([self.IN(first), self.BN(rest)], dim=1)
        # InstanceNorm returns NCHW even for a channels-last input, so cat does too; hand the next layer its
        # input's layout back (a mixed-layout ReLU backward on the CPU costs 3x, measured in bench/README.md).
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            out = out.contiguous(memory_format=torch.channels_last)
        return out

    def extra_repr(self) -> str:
        return f"{self.num_features}, instance_channels={self.half}"


class DuBIN(_SplitNorm):
    """Dual Batch-and-Instance Norm: IN on the first ``int(ratio * C)`` channels (shared by both routes), DuBN on the rest."""

    def __init__(self, num_features: int, ratio: float = 0.5):
        super().__init__(num_features, ratio, DuBN(num_features - _instance_channels(num_features, ratio)))


class IBN(_SplitNorm):
    """IBN-a: IN on the first ``int(ratio * C)`` channels, one plain BatchNorm on the rest (the AugMix-IBN ablation)."""

    def __init__(self, num_features: int, ratio: float = 0.5):
        super().__init__(num_features, ratio, nn.BatchNorm2d(num_features - _instance_channels(num_features, ratio)))


def make_norm(norm: str, num_features: int, instance_site: bool = False) -> nn.Module:
    """The norm layer of kind ``norm`` for ``num_features`` channels; ``instance_site`` marks where IBN/DuBIN go.

    ``bn``: BatchNorm2d everywhere; ``dubn``: DuBN everywhere; ``ibn``: IBN at instance sites, BatchNorm2d
    elsewhere; ``dubin``: DuBIN at instance sites, DuBN elsewhere.
    """
    if norm == "bn":
        return nn.BatchNorm2d(num_features)
    if norm == "dubn":
        return DuBN(num_features)
    if norm == "ibn":
        return IBN(num_features) if instance_site else nn.BatchNorm2d(num_features)
    if norm == "dubin":
        return DuBIN(num_features) if instance_site else DuBN(num_features)
    raise ValueError(f"norm: expected one of {', '.join(NORMS)}, got {norm!r}")


def dual_layers(model: nn.Module) -> Iterator[tuple[str, DuBN]]:
    """Every DuBN of ``model`` (including those inside DuBIN) with its qualified name."""
    for name, module in model.named_modules():
        if isinstance(module, DuBN):
            yield name, module


@contextlib.contextmanager
def route(model: nn.Module, which: str):
    """Switch every DuBN of ``model`` to route ``which`` ("M" or "A") and restore each layer's route on exit.

    The previous routes come back also when the body raises. A model without dual layers is left as it is.
    """
    _check_route(which, "which")
    layers = [layer for _, layer in dual_layers(model)]
    previous = [layer.route for layer in layers]
    try:
        for layer in layers:
            layer.route = which
        yield model
    finally:
        for layer, old in zip(layers, previous):
            layer.route = old


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Every module in eval mode and every dual norm on route "M"; the previous modes come back on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with route(model, "M"):
            yield model
    finally:
        for m, training in modes:
            m.training = training


def running_variances(model: nn.Module) -> Dict[str, Dict[str, torch.Tensor]]:
    """Running variances per DuBN layer: ``{layer name: {"M": bn[0].running_var, "A": bn[1].running_var}}`` (copies).

    Inside a DuBIN the name ends in ``.BN`` and the variances cover its BatchNorm channels only. This is
    what the poster's Table 1 compares between DuBN and DuBIN models.
    """
    return {name: {"M": layer.bn[0].running_var.detach().clone(), "A": layer.bn[1].running_var.detach().clone()}
            for name, layer in dual_layers(model)}
