"""Noise corruptions: Gaussian, shot (Poisson), impulse (salt and pepper), speckle.

Each kernel takes float images (N, C, H, W) in [0, 1], its severity's parameter and a generator,
and draws every pixel's noise independently on the images' device.
"""
from __future__ import annotations

import torch

__all__ = ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise"]


def _randn(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def gaussian_noise(x: torch.Tensor, sigma: float, generator=None) -> torch.Tensor:
    """``clip(x + N(0, sigma^2))``."""
    return (x + sigma * _randn(x, generator)).clamp_(0, 1)


def shot_noise(x: torch.Tensor, rate: float, generator=None) -> torch.Tensor:
    """``clip(Poisson(x * rate) / rate)``: photon counting noise with ``rate`` photons at full intensity."""
    return (torch.poisson(x * rate, generator=generator) / rate).clamp_(0, 1)


def impulse_noise(x: torch.Tensor, amount: float, generator=None) -> torch.Tensor:
    """scikit-image's ``random_noise(mode="s&p")``: each value flips with p = ``amount``, half to 0, half to 1."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    # One uniform decides both whether a value flips (u < amount) and which way (the lower half -> 0).
    out = torch.where(u < amount, (u >= 0.5 * amount).to(x.dtype), x)
    return out.clamp_(0, 1)


def speckle_noise(x: torch.Tensor, scale: float, generator=None) -> torch.Tensor:
    """``clip(x + x * N(0, scale^2))``: multiplicative noise."""
    return (x + x * (scale * _randn(x, generator))).clamp_(0, 1)
