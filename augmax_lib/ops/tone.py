"""Tone ops (autocontrast, equalize, posterize, solarize) as one per-image, per-channel lookup table.

The tables reproduce PIL's ``ImageOps`` exactly on uint8 images. Float images are quantised to the
256 levels to look up, and pass gradients straight through (the tables are steps, so their true
gradient is zero almost everywhere; an identity gradient keeps earlier ops of a chain attackable).
"""
from __future__ import annotations

import torch

__all__ = ["TONE_OPS", "level_index", "histograms", "tone_luts", "apply_lut"]

TONE_OPS = ("autocontrast", "equalize", "posterize", "solarize")

_LEVELS = 256


def level_index(x: torch.Tensor) -> torch.Tensor:
    """Grey levels (N, C, H*W) int64 of a batch; float images are quantised to the nearest level."""
    n, c = x.shape[:2]
    if x.dtype != torch.uint8:
        x = x.detach().mul(255.0).round_().clamp_(0, 255)
    return x.reshape(n, c, -1).long()


def histograms(levels: torch.Tensor) -> torch.Tensor:
    """Per-image, per-channel 256-bin histograms (N, C, 256) int32 of ``level_index`` output."""
    n, c, _ = levels.shape
    hist = torch.zeros(n, c, _LEVELS, dtype=torch.int32, device=levels.device)
    # An expanded ones tensor costs no memory; bincount would sync with the host on CUDA.
    return hist.scatter_add_(2, levels, torch.ones(1, 1, 1, dtype=torch.int32, device=levels.device).expand_as(levels))


def _first_last_nonzero(hist: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    nonzero = hist > 0
    levels = torch.arange(_LEVELS, device=hist.device, dtype=torch.int32)
    lo = torch.where(nonzero, levels, _LEVELS).amin(-1)
    hi = torch.where(nonzero, levels, -1).amax(-1)
    return lo, hi


# The tables are built as uint8 (every entry is a grey level): a quarter or less of the memory
# traffic of int64 tables, which on a CPU costs about as much as the lookups themselves.

def _autocontrast_lut(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    # PIL: scale = 255 / (hi - lo), offset = -lo * scale, lut[i] = int(i * scale + offset), clipped.
    dtype = torch.float64 if lo.device.type != "mps" else torch.float32
    span = (hi - lo).clamp(min=1).to(dtype)
    # tensor / tensor: `255.0 / span` would multiply by a rounded reciprocal and miss PIL's lut.
    scale = (torch.full_like(span, 255.0) / span).unsqueeze(-1)
    offset = -lo.to(dtype).unsqueeze(-1) * scale
    levels = torch.arange(_LEVELS, device=lo.device, dtype=dtype)
    lut = torch.trunc(levels * scale + offset).clamp_(0, 255).to(torch.uint8)
    identity = torch.arange(_LEVELS, device=lo.device, dtype=torch.uint8)
    return torch.where((hi <= lo).unsqueeze(-1), identity, lut)


def _equalize_lut(hist: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    # PIL: step = (count - count of the last non-empty bin) // 255; lut[i] = (step // 2 + cdf_excl[i]) // step.
    total = hist.sum(-1, dtype=torch.int32)
    last = hist.gather(-1, hi.clamp(min=0).long().unsqueeze(-1)).squeeze(-1)
    step = (total - last) // 255
    cdf_excl = hist.cumsum(-1, dtype=torch.int32) - hist
    lut = ((step // 2).unsqueeze(-1) + cdf_excl).div_(step.clamp(min=1).unsqueeze(-1), rounding_mode="floor")
    lut = lut.clamp_(max=255).to(torch.uint8)
    identity = torch.arange(_LEVELS, device=hist.device, dtype=torch.uint8)
    return torch.where((step == 0).unsqueeze(-1), identity, lut)


def _posterize_lut(bits: torch.Tensor) -> torch.Tensor:
    # PIL: keep the top `bits` bits: lut[i] = i & ~(2 ** (8 - bits) - 1). One table per image.
    drop = (8 - bits.round().long().clamp(0, 8)).view(-1, 1, 1)
    levels = torch.arange(_LEVELS, device=bits.device).view(1, 1, -1)
    return ((levels >> drop) << drop).to(torch.uint8)


def _solarize_lut(threshold: torch.Tensor) -> torch.Tensor:
    # PIL: lut[i] = i if i < threshold else 255 - i. One table per image.
    levels = torch.arange(_LEVELS, device=threshold.device).view(1, 1, -1)
    below = levels < threshold.view(-1, 1, 1)
    return torch.where(below, levels, 255 - levels).to(torch.uint8)


def tone_luts(hist: torch.Tensor, op_index: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Lookup tables (N, C, 256) uint8 for each image's tone op (index into TONE_OPS) and value,
    given the images' histograms (only autocontrast and equalize read them)."""
    n = hist.shape[0]
    op = op_index.view(n, 1, 1)
    lo, hi = _first_last_nonzero(hist)
    lut = torch.where(op == 0, _autocontrast_lut(lo, hi), _equalize_lut(hist, hi))
    lut = torch.where(op == 2, _posterize_lut(value), lut)
    return torch.where(op == 3, _solarize_lut(value), lut)


def apply_lut(x: torch.Tensor, lut: torch.Tensor, levels: torch.Tensor | None = None) -> torch.Tensor:
    """Map each image's channels through its table ``lut`` (N, C, 256); same dtype and device out.

    ``levels`` is ``level_index(x)`` when the caller already has it.
    """
    levels = level_index(x) if levels is None else levels
    mapped = lut.gather(2, levels).view_as(x)
    if x.dtype == torch.uint8:
        return mapped
    return x + (mapped.to(x.dtype) / 255.0 - x).detach()
