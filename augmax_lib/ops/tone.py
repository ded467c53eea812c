"""Tone ops (autocontrast, equalize, posterize, solarize), each image with its own parameter.

autocontrast and equalize are per-image, per-channel lookup tables; posterize and solarize single
uint8 passes. All reproduce PIL's ``ImageOps`` exactly on uint8 images. Float images are quantised
to the 256 levels first, and pass gradients straight through (the tables are steps, so their true
gradient is zero almost everywhere; an identity gradient keeps earlier ops of a chain attackable).
"""
from __future__ import annotations

import torch

__all__ = ["TONE_OPS", "level_index", "histograms", "channel_range", "autocontrast_luts", "equalize_luts",
           "apply_lut", "as_levels", "autocontrast", "equalize", "posterize_masks", "solarize_first_levels", "posterize",
           "solarize"]

TONE_OPS = ("autocontrast", "equalize", "posterize", "solarize")

_LEVELS = 256


def level_index(x: torch.Tensor) -> torch.Tensor:
    """Grey levels (N, C, H*W) of a batch: uint8 images as they are, float images quantised to the
    nearest level (int32). Narrow integers on purpose: on a CPU, widening every pixel to int64
    costs more than the lookups themselves."""
    n, c = x.shape[:2]
    if x.dtype != torch.uint8:
        x = x.detach().mul(255.0).round_().clamp_(0, 255).to(torch.int32)
    return x.reshape(n, c, -1)


def _flat_index(levels: torch.Tensor) -> torch.Tensor:
    """``levels`` as int32 indices into the flattened (N, C, 256) tables: row (image, channel) * 256 + level.

    Widening first and adding in int32 is one same-dtype pass; a uint8 + int32 add is a mixed-dtype
    kernel, several times slower on a CPU.
    """
    n, c, _ = levels.shape
    index_dtype = torch.int32 if n * c * _LEVELS < 2 ** 31 else torch.long
    rows = torch.arange(0, n * c * _LEVELS, _LEVELS, device=levels.device, dtype=index_dtype).view(n, c, 1)
    return levels.to(index_dtype, copy=True).add_(rows)  # copy: int32 levels of float images stay as they are


def histograms(levels: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image, per-channel 256-bin histograms (N, C, 256) int32 of ``level_index`` output.

    ``flat`` is ``_flat_index(levels)`` when the caller already has it.
    """
    n, c, _ = levels.shape
    flat = _flat_index(levels) if flat is None else flat
    # index_add_ takes the int32 flat index as it is (scatter_add_ would want int64, eight bytes a
    # pixel); an expanded ones tensor costs no memory; bincount would sync with the host on CUDA.
    hist = torch.zeros(n * c * _LEVELS, dtype=torch.int32, device=levels.device)
    ones = torch.ones(1, dtype=torch.int32, device=levels.device).expand(flat.numel())
    return hist.index_add_(0, flat.view(-1), ones).view(n, c, _LEVELS)


def channel_range(levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowest and highest grey level (N, C) int32 of each image channel (autocontrast needs no histogram)."""
    # Two reductions: on a CPU, aminmax over uint8 runs an order of magnitude slower than amin and amax.
    return levels.amin(-1).to(torch.int32), levels.amax(-1).to(torch.int32)


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
    # int() then clipping, as PIL does, equals clipping then the cast (which truncates) for every value.
    lut = (levels * scale).add_(offset).clamp_(0, 255).to(torch.uint8)
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


def autocontrast_luts(levels: torch.Tensor) -> torch.Tensor:
    """Autocontrast's lookup tables (N, C, 256) uint8 from ``level_index`` output (each channel's level range)."""
    return _autocontrast_lut(*channel_range(levels))


def equalize_luts(levels: torch.Tensor, flat: torch.Tensor | None = None) -> torch.Tensor:
    """Equalize's lookup tables (N, C, 256) uint8 from ``level_index`` output (each channel's histogram)."""
    hist = histograms(levels, flat)
    return _equalize_lut(hist, levels.amax(-1))


def apply_lut(x: torch.Tensor, lut: torch.Tensor, levels: torch.Tensor | None = None,
              flat: torch.Tensor | None = None) -> torch.Tensor:
    """Map each image's channels through its table ``lut`` (N, C, 256); same dtype and device out.

    ``levels`` is ``level_index(x)`` and ``flat`` its ``_flat_index`` when the caller already has them.
    """
    if flat is None:
        flat = _flat_index(level_index(x) if levels is None else levels)
    # One flat lookup with int32 indices: gather would want int64 ones, eight bytes a pixel.
    mapped = lut.reshape(-1).index_select(0, flat.view(-1)).view_as(x)
    return mapped if x.dtype == torch.uint8 else _from_levels(x, mapped)


def autocontrast(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.autocontrast`` (cutoff 0) on every image: each channel stretched to 0..255."""
    levels = level_index(x)
    return apply_lut(x, autocontrast_luts(levels), levels)


def equalize(x: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.equalize`` on every image: each channel through its own histogram's table."""
    levels = level_index(x)
    flat = _flat_index(levels)
    return apply_lut(x, equalize_luts(levels, flat), flat=flat)


def _from_levels(x: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """A float image from the mapped grey levels of float ``x``, with a straight-through gradient."""
    out = mapped.to(x.dtype).div_(255.0)
    if torch.is_grad_enabled() and x.requires_grad:
        return x + (out - x).detach()  # see the module docstring
    return out


def as_levels(x: torch.Tensor) -> torch.Tensor:
    """uint8 grey levels of a uint8 or float image batch (float rounds to the nearest level)."""
    if x.dtype == torch.uint8:
        return x
    return x.detach().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


# posterize and solarize are one uint8 pass each with a per-image constant: cheaper than any lookup.

def posterize_masks(bits: torch.Tensor) -> torch.Tensor:
    """The uint8 mask (N,) that keeps the top ``bits`` (rounded, 0..8) of a level."""
    drop = 8 - bits.detach().round().clamp(0, 8).to(torch.int32)
    return ((255 << drop) & 255).to(torch.uint8)


def solarize_first_levels(threshold: torch.Tensor) -> torch.Tensor:
    """The lowest level (N,) int32 that ``threshold`` inverts: ceil(threshold) in 0..256 (256: none)."""
    return torch.ceil(threshold.detach()).clamp(0, 256).to(torch.int32)


def posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.posterize`` with per-image ``bits`` (N,): keep the top bits of every level."""
    out = torch.bitwise_and(as_levels(x), posterize_masks(bits).view(-1, 1, 1, 1))
    return out if x.dtype == torch.uint8 else _from_levels(x, out)


def solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageOps.solarize`` with per-image ``threshold`` (N,): levels >= threshold become 255 - level."""
    first = solarize_first_levels(threshold)
    levels = as_levels(x)
    flip = torch.ge(levels, first.clamp(max=255).to(torch.uint8).view(-1, 1, 1, 1))
    # 255 - level is level XOR 255: an XOR mask of 255 where a pixel flips (0 in images whose threshold
    # is above 255) takes three cheap uint8 passes, where torch.where over uint8 costs several times more.
    inverts = torch.where(first <= 255, 255, 0).to(torch.uint8).view(-1, 1, 1, 1)
    out = flip.view(torch.uint8).mul_(inverts).bitwise_xor_(levels)
    return out if x.dtype == torch.uint8 else _from_levels(x, out)
