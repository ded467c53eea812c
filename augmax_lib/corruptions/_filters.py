"""Building blocks shared by the corruptions: border modes, 1-D operators as matrices, sampling, blur lines.

A separable linear filter with a border rule is an (out, in) matrix per axis; applying it is two
matrix products, which on 32..224-pixel images is as fast as a convolution and handles every
border rule, zooms and box resizes the same way. Matrices are built once in float64 with numpy
and cached per device.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["fold_index", "cached", "gaussian_taps", "filter_matrix", "gaussian_matrix", "separable",
           "gaussian_blur", "sample_bilinear", "motion_blur_lines", "rgb_to_gray", "floor_levels", "quantize_floor", "LEVEL_EPS"]

# Border rules, named after what they do:
#   "nearest"    aaa|abcd|ddd   (scipy "nearest", OpenCV BORDER_REPLICATE)
#   "reflect101" cb|abcd|cb     (OpenCV BORDER_REFLECT_101, numpy/torch "reflect", scipy "mirror")
#   "symmetric"  ba|abcd|dc     (scipy "reflect", numpy "symmetric")
_MODES = ("nearest", "reflect101", "symmetric")


def fold_index(i, size: int, mode: str):
    """Map integer indices (numpy array or torch tensor, any range) into [0, size) by a border rule."""
    if mode == "nearest":
        return i.clip(0, size - 1)
    if mode == "reflect101":
        if size == 1:
            return i * 0
        period = 2 * (size - 1)
        j = i % period
        return (j >= size) * (period - j) + (j < size) * j
    if mode == "symmetric":
        period = 2 * size
        j = i % period
        return (j >= size) * (period - 1 - j) + (j < size) * j
    raise ValueError(f"mode: expected one of {_MODES}, got {mode!r}")


_DEVICE_CACHE: dict = {}


def cached(builder, *args, device, dtype=torch.float32) -> torch.Tensor:
    """``builder(*args)`` (a numpy array) as a tensor on ``device``, built and copied once per device.

    Copying a host array to a GPU waits for the GPU, so constants are copied once, not per call.
    """
    key = (builder.__qualname__, args, str(device), dtype)
    tensor = _DEVICE_CACHE.get(key)
    if tensor is None:
        tensor = torch.as_tensor(np.ascontiguousarray(builder(*args)), dtype=dtype).to(device)
        _DEVICE_CACHE[key] = tensor
    return tensor


@lru_cache(maxsize=None)
def gaussian_taps(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's Gaussian weights: radius ``int(truncate * sigma + 0.5)``, normalised to sum 1."""
    radius = int(truncate * float(sigma) + 0.5)
    t = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * t * t / (float(sigma) ** 2))
    return w / w.sum()


def filter_matrix(size: int, taps: tuple, mode: str) -> np.ndarray:
    """(size, size) matrix of the centred correlation with ``taps`` under border rule ``mode``."""
    taps = np.asarray(taps, dtype=np.float64)
    r = len(taps) // 2
    rows = np.repeat(np.arange(size), len(taps))
    cols = fold_index(rows + np.tile(np.arange(-r, r + 1), size), size, mode)
    m = np.zeros((size, size))
    np.add.at(m, (rows, cols), np.tile(taps, size))
    return m


def gaussian_matrix(size: int, sigma: float, mode: str, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage.gaussian_filter1d along one axis of length ``size``, as a matrix."""
    return filter_matrix(size, tuple(gaussian_taps(float(sigma), float(truncate))), mode)


def separable(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """``rows @ x @ cols.T`` on the last two dims of ``x``: a separable linear operator per image."""
    return torch.matmul(rows, torch.matmul(x, cols.transpose(0, 1)))


def gaussian_blur(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian / scipy gaussian_filter over H and W of (..., H, W); sigma 0 is identity."""
    if sigma <= 0:
        return x
    h, w = x.shape[-2:]
    mh = cached(gaussian_matrix, h, float(sigma), mode, float(truncate), device=x.device, dtype=x.dtype)
    mw = mh if w == h else cached(gaussian_matrix, w, float(sigma), mode, float(truncate),
                                  device=x.device, dtype=x.dtype)
    return separable(x, mh, mw)


def _gather_pixels(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pixels of (N, C, H, W) ``x`` at flat positions ``index`` (N, ...) -> (N, C, ...)."""
    n, c = x.shape[:2]
    flat = x.reshape(n, c, -1)
    idx = index.reshape(n, 1, -1).expand(n, c, -1)
    return flat.gather(2, idx).reshape(n, c, *index.shape[1:])


def sample_bilinear(x: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, mode: str) -> torch.Tensor:
    """Bilinear samples of (N, C, H, W) ``x`` at pixel coordinates (N, Ho, Wo), borders folded by ``mode``."""
    h, w = x.shape[-2:]
    y0 = torch.floor(ys)
    x0 = torch.floor(xs)
    wy = (ys - y0).unsqueeze(1)
    wx = (xs - x0).unsqueeze(1)
    y0 = y0.long()
    x0 = x0.long()
    r0, r1 = fold_index(y0, h, mode) * w, fold_index(y0 + 1, h, mode) * w
    c0, c1 = fold_index(x0, w, mode), fold_index(x0 + 1, w, mode)
    top = _gather_pixels(x, r0 + c0) * (1 - wx) + _gather_pixels(x, r0 + c1) * wx
    bottom = _gather_pixels(x, r1 + c0) * (1 - wx) + _gather_pixels(x, r1 + c1) * wx
    return top * (1 - wy) + bottom * wy


@lru_cache(maxsize=None)
def _motion_taps(width: int, sigma: float) -> np.ndarray:
    i = np.arange(width, dtype=np.float64)
    taps = np.exp(-(i * i) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def motion_blur_lines(x: torch.Tensor, radius: float, sigma: float, angle: torch.Tensor) -> torch.Tensor:
    """ImageMagick's MotionBlurImage per image: a one-sided Gaussian line at ``angle`` (N,) degrees.

    Tap ``i`` (0 <= i < 2 ceil(radius) + 1) weighs exp(-i^2 / 2 sigma^2) and reads the pixel at
    (x + ceil(i cos a - 1/2), y + ceil(i sin a - 1/2)), clamped to the image (ImageMagick's default
    edge rule); a line that leaves the image stops there, as in the ``imagecorruptions`` port.
    Each image has its own line, so every tap is one batched gather instead of a per-image kernel.
    """
    n, _, h, w = x.shape
    width = 2 * math.ceil(radius) + 1
    taps = cached(_motion_taps, width, float(sigma), device=x.device, dtype=x.dtype)
    rad = torch.deg2rad(angle.to(torch.float64))
    point_y = width * torch.sin(rad)
    point_x = width * torch.cos(rad)
    hyp = torch.hypot(point_x, point_y)
    steps = torch.arange(width, dtype=torch.float64, device=x.device)
    off_y = torch.ceil(steps[None] * point_y[:, None] / hyp[:, None] - 0.5).long()   # (N, width)
    off_x = torch.ceil(steps[None] * point_x[:, None] / hyp[:, None] - 0.5).long()
    inside = (off_y.abs() < h) & (off_x.abs() < w)
    weight = taps[None] * torch.cumprod(inside.to(x.dtype), dim=1)               # (N, width)
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    out = torch.zeros_like(x)
    for t in range(width):
        r = (rows[None] + off_y[:, t:t + 1]).clamp_(0, h - 1)                      # (N, H)
        c = (cols[None] + off_x[:, t:t + 1]).clamp_(0, w - 1)                      # (N, W)
        index = r[:, :, None] * w + c[:, None, :]
        out.add_(_gather_pixels(x, index) * weight[:, t, None, None, None])
    return out


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's RGB2GRAY (ITU-R 601 luma) of (N, 3, H, W) -> (N, 1, H, W)."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


# Added before flooring v * 255: covers round-off (a few units in the last place of 255), so a value
# that is exactly a level in exact arithmetic stays on it, while values a hair below a level still
# drop to the level below, as in the float64 generators. (Small Gaussian taps put values 1e-7 below a
# level on flat patches; only float64 tells those apart, so glass blur runs in float64.)
LEVEL_EPS = {torch.float64: 1e-9, torch.float32: 3e-5}


def floor_levels(x: torch.Tensor) -> torch.Tensor:
    """The generators' ``np.uint8(v * 255)`` of a [0, 1] float: the grey level it truncates to, as a float."""
    return torch.floor(x * 255.0 + LEVEL_EPS.get(x.dtype, 3e-5)).clamp_(0, 255)


def quantize_floor(x: torch.Tensor) -> torch.Tensor:
    """What the generators' ``np.uint8(v * 255)`` keeps of a [0, 1] float: floor to a level, as [0, 1]."""
    return floor_levels(x) / 255.0
