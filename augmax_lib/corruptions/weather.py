"""Weather corruptions: snow, frost, fog, and spatter (water or mud drops).

Kernels take float RGB images (N, 3, H, W) in [0, 1] and return float images in [0, 1]; each image
draws its own layer (snow flakes, frost crop, plasma fog, liquid) on the images' device.
"""
from __future__ import annotations

import numpy as np
import torch

from ._filters import cached, gaussian_blur, motion_blur_lines, quantize_floor, rgb_to_gray
from ._spatter_ops import box3, canny, chamfer_distance, equalize_hist, filter3_u8
from .blur import clipped_zoom_matrix
from .textures import load_frost_textures

__all__ = ["snow", "frost", "fog", "spatter", "plasma_fractal"]


def snow(x: torch.Tensor, params, generator=None) -> torch.Tensor:
    """Hendrycks' snow: a thresholded, zoomed Gaussian flake layer, motion-blurred per image, added
    twice (as is and rotated by 180 degrees) to the image brightened towards its greyscale."""
    mean, std, zoom, threshold, radius, sigma, weight = params
    n, _, h, w = x.shape
    layer = mean + std * torch.randn((n, 1, h, w), generator=generator, device=x.device, dtype=x.dtype)
    if zoom != 1:
        if h != w:
            raise ValueError(f"x: snow needs square images (the generators' clipped_zoom), got {h}x{w}")
        m = cached(clipped_zoom_matrix, h, float(zoom), device=x.device, dtype=x.dtype)
        layer = m @ layer @ m.t()
    layer = torch.where(layer < threshold, 0.0, layer)
    # The generator stores the layer as an 8-bit PNG (np.uint8: floor) for ImageMagick 6, whose blurred
    # 8-bit result is floored too, not rounded.
    layer = quantize_floor(layer.clamp(0, 1))
    angle = torch.rand(n, generator=generator, device=x.device) * 90.0 - 135.0
    layer = quantize_floor(motion_blur_lines(layer, radius, sigma, angle))
    brighter = torch.maximum(x, rgb_to_gray(x) * 1.5 + 0.5)
    x = weight * x + (1 - weight) * brighter
    return (x + layer + layer.flip(-1, -2)).clamp_(0, 1)


def frost(x: torch.Tensor, params, generator=None, *, scale: float) -> torch.Tensor:
    """``clip(a x + b frost)``, the frost being a random crop of one of five textures resized by ``scale``."""
    a, b = params
    n, _, h, w = x.shape
    textures, sizes, sizes_host = load_frost_textures(scale, x.device)
    small = sizes_host.min(0)
    if h >= small[0] or w >= small[1]:
        raise ValueError(f"x: frost textures at scale {scale} are {tuple(small.tolist())} at the smallest, "
                         f"too small for {h}x{w} images; use a preset made for this image size")
    pick = torch.randint(0, textures.shape[0], (n,), generator=generator, device=x.device)
    size = sizes[pick]
    u = torch.rand((n, 2), generator=generator, device=x.device, dtype=torch.float64)
    top = torch.floor(u[:, 0] * (size[:, 0] - h)).long()                            # randint(0, rows - h)
    left = torch.floor(u[:, 1] * (size[:, 1] - w)).long()
    rows = top[:, None] + torch.arange(h, device=x.device)                          # (N, H)
    cols = left[:, None] + torch.arange(w, device=x.device)                         # (N, W)
    crop = textures[pick[:, None, None], :, rows[:, :, None], cols[:, None, :]]    # (N, H, W, 3)
    crop = crop.permute(0, 3, 1, 2).to(x.dtype) / 255.0
    return (a * x + b * crop).clamp_(0, 1)


def plasma_fractal(n: int, map_size: int, decay: float, generator=None, device=None,
                   dtype=torch.float32) -> torch.Tensor:
    """Diamond-square height maps (N, S, S) in [0, 1], one per image, on a wrapping grid (Hendrycks' fog)."""
    if map_size & (map_size - 1):
        raise ValueError(f"map_size: expected a power of two, got {map_size}")
    m = torch.zeros((n, map_size, map_size), device=device, dtype=dtype)
    step, wibble = map_size, 100.0

    def wibbled_mean(total):
        noise = torch.rand(total.shape, generator=generator, device=device, dtype=dtype) * (2 * wibble) - wibble
        return total / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        m[:, half::step, half::step] = wibbled_mean(squares)
        centres = m[:, half::step, half::step]
        corners = m[:, 0::step, 0::step]
        m[:, 0::step, half::step] = wibbled_mean(centres + centres.roll(1, dims=1)
                                                 + corners + corners.roll(-1, dims=2))
        m[:, half::step, 0::step] = wibbled_mean(centres + centres.roll(1, dims=2)
                                                 + corners + corners.roll(-1, dims=1))
        step //= 2
        wibble /= decay
    low = m.amin(dim=(1, 2), keepdim=True)
    m = m - low
    return m / m.amax(dim=(1, 2), keepdim=True)


def fog(x: torch.Tensor, params, generator=None, *, map_size: int) -> torch.Tensor:
    """``clip((x + a plasma) max(x) / (max(x) + a))`` with a plasma map per image, cropped to the image."""
    amplitude, decay = params
    n, _, h, w = x.shape
    size = map_size
    while size < max(h, w):
        size *= 2
    plasma = plasma_fractal(n, size, decay, generator, x.device, x.dtype)[:, None, :h, :w]
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    return ((x + amplitude * plasma) * peak / (peak + amplitude)).clamp_(0, 1)


# Colours in the image's own channel order (the generator adds them to an RGB array it calls BGR).
_WATER = (175 / 255.0, 238 / 255.0, 238 / 255.0)
_MUD = (63 / 255.0, 42 / 255.0, 20 / 255.0)


def _colour(rgb: tuple) -> np.ndarray:
    return np.asarray(rgb, dtype=np.float64)


def spatter(x: torch.Tensor, params, generator=None) -> torch.Tensor:
    """Hendrycks' spatter: a blurred, thresholded liquid layer per image, drawn as shaded water drops
    (Canny edges, chamfer distance, equalised, embossed) or as opaque mud."""
    mean, std, sigma, threshold, strength, mud = params
    n, _, h, w = x.shape
    liquid = mean + std * torch.randn((n, h, w), generator=generator, device=x.device, dtype=x.dtype)
    liquid = gaussian_blur(liquid, sigma)
    liquid = torch.where(liquid < threshold, 0.0, liquid)
    if not mud:
        # (liquid * 255).astype(np.uint8): truncation, and values past 255 wrap around.
        as_u8 = torch.remainder(torch.floor(liquid * 255.0), 256.0)
        dist = torch.where(canny(as_u8, 50, 150), 0.0, 255.0)
        dist = chamfer_distance(dist == 0, 20.0)
        dist = torch.floor(box3(dist))
        dist = equalize_hist(dist)
        dist = filter3_u8(dist, ((-2, -1, 0), (-1, 1, 1), (0, 1, 2)))
        dist = torch.round(box3(dist))
        layer = liquid * dist
        peak = layer.amax(dim=(1, 2), keepdim=True)
        layer = torch.where(peak > 0, layer / peak.clamp(min=1e-12), 0.0) * strength
        colour = cached(_colour, _WATER, device=x.device, dtype=x.dtype)[None, :, None, None]
        return (x + layer[:, None] * colour).clamp_(0, 1)
    m = (liquid > threshold).to(x.dtype)
    m = gaussian_blur(m, strength)
    m = torch.where(m < 0.8, 0.0, m)[:, None]
    colour = cached(_colour, _MUD, device=x.device, dtype=x.dtype)[None, :, None, None]
    return (x * (1 - m) + colour * m).clamp_(0, 1)
