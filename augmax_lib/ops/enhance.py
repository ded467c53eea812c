"""Enhance ops (color, contrast, brightness, sharpness) as one per-image blend with a degenerate image.

``ImageEnhance.X(img).enhance(f)`` is ``Image.blend(degenerate, img, f)``; PIL computes the blend in
float32 and truncates, which the uint8 path reproduces exactly. Float images blend without
rounding and are differentiable with respect to the image and the factor.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ENHANCE_OPS", "grayscale", "degenerate", "blend", "enhance"]

ENHANCE_OPS = ("color", "contrast", "brightness", "sharpness")

# ITU-R 601-2 luma in PIL's 16-bit fixed point: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
_LUMA_FIXED = (19595, 38470, 7471)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``convert("L")``: (N, 1, H, W) luma, same dtype as ``x``."""
    if x.shape[1] == 1:
        return x
    if x.dtype == torch.uint8:
        r, g, b = x.int().unbind(1)
        luma = (r * _LUMA_FIXED[0] + g * _LUMA_FIXED[1] + b * _LUMA_FIXED[2] + 32768) >> 16
        return luma.unsqueeze(1).to(torch.uint8)
    # Scalar weights: no host-to-device copy per call.
    r, g, b = x.unbind(1)
    luma = r * (_LUMA_FIXED[0] / 65536.0) + g * (_LUMA_FIXED[1] / 65536.0) + b * (_LUMA_FIXED[2] / 65536.0)
    return luma.unsqueeze(1)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    # PIL's 3x3 filter leaves the one-pixel border as it was and rounds the interior to nearest.
    n, c, h, w = x.shape
    if h < 3 or w < 3:
        return x
    # ImageFilter.SMOOTH = [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13, built on the device (no host copy).
    kernel = torch.ones(3, 3, device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    kernel[1, 1] = 5.0
    src = x.to(kernel.dtype).reshape(n * c, 1, h, w)
    inner = F.conv2d(src, kernel.view(1, 1, 3, 3)).view(n, c, h - 2, w - 2)
    if x.dtype == torch.uint8:
        # sum/13 never lies exactly halfway between integers, so round-half-up is unambiguous.
        inner = torch.floor(inner / 13.0 + 0.5).to(torch.uint8)
    else:
        inner = (inner / 13.0).to(x.dtype)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = inner
    return out


def degenerate(x: torch.Tensor, name: str) -> torch.Tensor:
    """The image each enhance op blends towards (broadcastable to ``x``), in ``x``'s dtype."""
    if name == "color":
        return grayscale(x).expand_as(x)
    if name == "contrast":
        gray = grayscale(x)
        mean = gray.float().mean(dim=(1, 2, 3), keepdim=True) if x.dtype == torch.uint8 else \
            gray.mean(dim=(1, 2, 3), keepdim=True)
        if x.dtype == torch.uint8:
            # PIL: int(mean + 0.5) of the luma image, then a constant image of that grey.
            return torch.floor(mean.double() + 0.5).to(torch.uint8)
        return mean
    if name == "brightness":
        return torch.zeros((), dtype=x.dtype, device=x.device)
    if name == "sharpness":
        return _smooth(x)
    raise ValueError(f"name: expected one of {ENHANCE_OPS}, got {name!r}")


def blend(deg: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``deg + factor * (x - deg)`` per image (factor (N,)); uint8 as PIL (float32, truncate, clip)."""
    f = factor.view(-1, 1, 1, 1)
    if x.dtype == torch.uint8:
        d = deg.float()
        # Two separate ops, as PIL's C code rounds the product before the sum (no fused multiply-add).
        prod = f.float() * (x.float() - d)
        return (d + prod).floor_().clamp_(0, 255).to(torch.uint8)
    return (deg + f.to(x.dtype) * (x - deg)).clamp(0, 1)


def enhance(x: torch.Tensor, name: str, factor: torch.Tensor) -> torch.Tensor:
    """Apply enhance op ``name`` with a per-image ``factor`` (N,): 0 gives the degenerate image, 1 the input."""
    return blend(degenerate(x, name), x, factor)
