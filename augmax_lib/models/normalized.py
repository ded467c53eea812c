"""A wrapper that lets a backbone which expects normalised images take images in [0, 1]."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["NormalizedInput"]


class NormalizedInput(nn.Module):
    """``net((x - mean) / std)``: lets a backbone that expects normalised images take [0, 1] images."""

    def __init__(self, net: nn.Module, mean, std):
        super().__init__()
        self.net = net
        # Not persistent: the state dict stays the backbone's (keys "net.*") plus nothing else.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean.to(x.dtype)) / self.std.to(x.dtype))
