"""Blur corruptions: defocus (anti-aliased disk), glass (blur, local pixel copies, blur), motion, zoom, Gaussian.

Kernels take float images (N, C, H, W) in [0, 1] and return float images in [0, 1].
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from ._filters import cached, filter_matrix, motion_blur_lines, quantize_floor
from ._filters import gaussian_blur as _gaussian

__all__ = ["defocus_blur", "glass_blur", "motion_blur", "zoom_blur", "gaussian_blur",
           "disk_kernel", "clipped_zoom_matrix", "shuffle_schedule", "glass_blur_offsets",
           "local_shuffle_source"]


@lru_cache(maxsize=None)
def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The generators' ``disk``: a normalised aliased disk smoothed by OpenCV's GaussianBlur, zero border trimmed."""
    if radius <= 8:
        support, ksize = np.arange(-8, 9), 3
    else:
        support, ksize = np.arange(-radius, radius + 1), 5
    xx, yy = np.meshgrid(support, support)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    t = np.arange(ksize) - ksize // 2
    g = np.exp(-(t * t) / (2.0 * alias_blur * alias_blur))
    m = filter_matrix(len(support), tuple(g / g.sum()), "reflect101")   # GaussianBlur's default border
    kernel = m @ disk @ m.T
    # Exact zeros contribute nothing, so a trimmed kernel with the same border rule gives the same result.
    nonzero = np.argwhere(kernel != 0)
    r = int(np.abs(nonzero - len(support) // 2).max())
    c = len(support) // 2
    return kernel[c - r:c + r + 1, c - r:c + r + 1]


def defocus_blur(x: torch.Tensor, params, generator=None) -> torch.Tensor:
    """Correlation of every channel with ``disk_kernel(radius, alias_blur)``, OpenCV's reflect-101 border."""
    radius, alias_blur = params
    kernel = cached(disk_kernel, float(radius), float(alias_blur), device=x.device, dtype=x.dtype)
    r = kernel.shape[0] // 2
    n, c, h, w = x.shape
    flat = x.reshape(n * c, 1, h, w)
    if r:
        flat = F.pad(flat, (r, r, r, r), mode="reflect")
    out = F.conv2d(flat, kernel[None, None])
    return out.reshape(n, c, h, w).clamp_(0, 1)


@lru_cache(maxsize=None)
def shuffle_schedule(h: int, w: int, delta: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """Positions of glass blur's pixel loop, regrouped into waves of steps that touch disjoint pixels.

    The generators visit (row, col) for row = h-delta .. delta+1 and col = w-delta .. delta+1 (both
    descending) and copy into each pixel the one at offset (dy, dx) in [-delta, delta)^2. A step
    touches rows and cols within [-delta, delta) of its centre, so visiting in order of
    t = 2 delta (h - delta - row) + (w - delta - col) runs every pair of overlapping steps in the
    generators' order, while steps with equal t never overlap and can run at once. Returns the
    flat positions sorted by t and the size of each wave.
    """
    rows = np.arange(h - delta, delta, -1)
    cols = np.arange(w - delta, delta, -1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    t = 2 * delta * (h - delta - rr) + (w - delta - cc)
    order = np.argsort(t.ravel(), kind="stable")
    positions = (rr * w + cc).ravel()[order]
    sizes = np.bincount(t.ravel())
    return positions, tuple(int(s) for s in sizes if s)


def _schedule_positions(h: int, w: int, delta: int) -> np.ndarray:
    return shuffle_schedule(h, w, delta)[0]


def glass_blur_offsets(n: int, h: int, w: int, delta: int, iterations: int, generator=None, device=None):
    """Every step's source offsets ``(dy, dx)``, each (iterations, P, N) long in [-delta, delta), in the
    order of ``shuffle_schedule(h, w, delta)``'s P positions: the first draws ``glass_blur`` makes."""
    shape = (iterations, len(shuffle_schedule(h, w, delta)[0]), n)
    dy = torch.randint(-delta, delta, shape, generator=generator, device=device)
    dx = torch.randint(-delta, delta, shape, generator=generator, device=device)
    return dy, dx


def local_shuffle_source(h: int, w: int, delta: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Apply glass blur's pixel loop to pixel indices: the source pixel of every position, (N, H*W) long.

    Each step copies the pixel at (row + dy, col + dx) into (row, col) and leaves the other one as
    it was. The generators' ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` reads as a swap, but both
    sides are numpy views of one array: the first assignment overwrites what the second view shows,
    so (h', w') gets its own value back. ``dy``, ``dx``: as ``glass_blur_offsets`` returns them.
    """
    _, sizes = shuffle_schedule(h, w, delta)
    iterations, _, n = dy.shape
    positions = cached(_schedule_positions, h, w, delta, device=dy.device, dtype=torch.long)
    perm = torch.arange(h * w, device=dy.device).unsqueeze(1).repeat(1, n)       # (H*W, N): rows contiguous
    sources = positions[None, :, None] + dy * w + dx
    for it in range(iterations):
        start = 0
        for size in sizes:
            # Steps of one wave touch disjoint pixels, so their reads and writes cannot interleave.
            perm.index_copy_(0, positions[start:start + size], perm.gather(0, sources[it, start:start + size]))
            start += size
    return perm.t()


def glass_blur(x: torch.Tensor, params, generator=None) -> torch.Tensor:
    """Gaussian blur, store as 8-bit (floor, as the generators' ``np.uint8``), local pixel copies, blur again."""
    sigma, delta, iterations = params
    n, c, h, w = x.shape
    delta, iterations = int(delta), int(iterations)
    dy, dx = glass_blur_offsets(n, h, w, delta, iterations, generator, x.device)
    y = quantize_floor(_gaussian(x, sigma))
    source = local_shuffle_source(h, w, delta, dy, dx)
    y = y.reshape(n, c, h * w).gather(2, source.unsqueeze(1).expand(n, c, h * w)).reshape(n, c, h, w)
    return _gaussian(y, sigma).clamp_(0, 1)


def motion_blur(x: torch.Tensor, params, generator=None) -> torch.Tensor:
    """ImageMagick's motion blur with (radius, sigma) and an angle drawn per image from U(-45, 45) degrees."""
    radius, sigma = params
    angle = torch.rand(x.shape[0], generator=generator, device=x.device) * 90.0 - 45.0
    return motion_blur_lines(x, radius, sigma, angle).clamp_(0, 1)


@lru_cache(maxsize=None)
def clipped_zoom_matrix(size: int, zoom: float) -> np.ndarray:
    """The generators' ``clipped_zoom`` along one axis: centre crop of ceil(size / zoom), scipy zoom
    (order 1, corner-aligned grid) to round(crop * zoom), centre trim back to ``size``."""
    crop = int(np.ceil(size / zoom))
    top = (size - crop) // 2
    out = int(round(crop * zoom))
    trim = (out - size) // 2
    ratio = (crop - 1) / (out - 1) if out > 1 else 0.0
    src = np.arange(trim, trim + size) * ratio
    i0 = np.minimum(np.floor(src).astype(np.int64), crop - 1)
    frac = src - i0
    i1 = np.minimum(i0 + 1, crop - 1)
    m = np.zeros((size, size))
    rows = np.arange(size)
    np.add.at(m, (rows, top + i0), 1 - frac)
    np.add.at(m, (rows, top + i1), frac)
    return m


@lru_cache(maxsize=None)
def _zoom_sum_kron(size: int, zooms: tuple[float, ...]) -> np.ndarray:
    """sum_z kron(M_z, M_z): the whole sum of zoomed layers as one (size^2, size^2) matrix."""
    total = np.zeros((size * size, size * size))
    for z in zooms:
        m = clipped_zoom_matrix(size, z)
        total += np.kron(m, m)
    return total


@lru_cache(maxsize=None)
def _zoom_stack(size: int, zooms: tuple[float, ...]) -> np.ndarray:
    return np.concatenate([clipped_zoom_matrix(size, z) for z in zooms], axis=0)   # (Z * size, size)


# One (H*W)^2 matrix beats two products per zoom up to this many pixels (32 x 32 images).
_KRON_MAX_PIXELS = 1024


def zoom_blur(x: torch.Tensor, zooms, generator=None) -> torch.Tensor:
    """Mean of the image and its centre zooms by every factor in ``zooms`` (square images, as the generators)."""
    n, c, h, w = x.shape
    if h != w:
        raise ValueError(f"x: zoom_blur needs square images (the generators' clipped_zoom), got {h}x{w}")
    # clipped_zoom(x, 1.0) is the image itself; only the other factors need work.
    others = tuple(float(z) for z in zooms if float(z) != 1.0)
    ones = len(zooms) - len(others)
    total = x * (1 + ones)
    if others and h * w <= _KRON_MAX_PIXELS:
        k = cached(_zoom_sum_kron, h, others, device=x.device, dtype=x.dtype)
        total = total + (x.reshape(n, c, h * w) @ k.t()).reshape(n, c, h, w)
    elif others:
        stack = cached(_zoom_stack, h, others, device=x.device, dtype=x.dtype)        # (Z * H, H)
        z = len(others)
        rows = stack.reshape(z, h, h).transpose(0, 1).reshape(h, z * h)              # [M_1 ... M_Z]
        # Bound the (chunk, C, Z, H, W) intermediate to about 64 MB of float32.
        chunk = max(1, (16 * 2 ** 20) // (c * z * h * w))
        parts = []
        for xs in x.split(chunk):
            t = (xs @ stack.t()).reshape(xs.shape[0], c, h, z, w).transpose(2, 3).reshape(xs.shape[0], c, z * h, w)
            parts.append(rows @ t)
        total = total + torch.cat(parts)
    return (total / (len(zooms) + 1)).clamp_(0, 1)


def gaussian_blur(x: torch.Tensor, sigma: float, generator=None) -> torch.Tensor:
    """scikit-image ``gaussian`` (nearest border, truncate 4) of every channel."""
    return _gaussian(x, sigma).clamp(0, 1)
