"""A procedurally drawn 10-class image set (shapes and textures) for runs on machines without any data."""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F

from .folders import cached_arrays
from .imageset import ImageSet

__all__ = ["SYNTHETIC_CLASSES", "SYNTHETIC_SOURCE", "make_synthetic", "load_synthetic"]

SYNTHETIC_CLASSES = ("disk", "square", "triangle", "plus", "ring", "x_cross", "h_stripes", "v_stripes",
                     "checker", "two_dots")
SYNTHETIC_SOURCE = "SYNTHETIC shapes (procedurally drawn, not CIFAR-10: not comparable with any published number)"
DEFAULT_SIZES = {"train": 10000, "test": 2000}
_CHUNK = 1000
_VERSION = 1  # bump when the drawing changes, so that cached sets are redrawn


def _shape_mask(c: int, u: torch.Tensor, v: torch.Tensor, f: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Foreground mask of class ``c`` in rotated, scaled coordinates (u, v); f, p: stripe frequency, phase."""
    if c == 0:                                                                          # disk
        return u * u + v * v <= 1.0
    if c == 1:                                                                          # square
        return torch.maximum(u.abs(), v.abs()) <= 0.8
    if c == 2:                                                                          # triangle
        return (v <= 0.6) & (v >= -1.0 + u.abs() * (1.6 / 0.9))
    if c in (3, 5):                                                                     # plus, x
        if c == 5:
            u, v = (u + v) / math.sqrt(2.0), (v - u) / math.sqrt(2.0)
        w, length = (0.25, 0.9) if c == 3 else (0.22, 0.95)
        return ((u.abs() <= w) & (v.abs() <= length)) | ((v.abs() <= w) & (u.abs() <= length))
    if c == 4:                                                                          # ring
        rho2 = u * u + v * v
        return (rho2 >= 0.36) & (rho2 <= 1.0)
    if c == 9:                                                                          # two dots
        return ((u - 0.55) ** 2 + v * v <= 0.35 ** 2) | ((u + 0.55) ** 2 + v * v <= 0.35 ** 2)
    patch = torch.maximum(u.abs(), v.abs()) <= 0.9
    if c == 6:                                                                          # horizontal stripes
        return patch & (torch.sin(math.pi * f * v + p) > 0)
    if c == 7:                                                                          # vertical stripes
        return patch & (torch.sin(math.pi * f * u + p) > 0)
    return patch & (torch.sin(math.pi * f * u + p) * torch.sin(math.pi * f * v + p) > 0)  # checkerboard


def _masks(labels: torch.Tensor, u: torch.Tensor, v: torch.Tensor, freq: torch.Tensor, phase: torch.Tensor):
    """Foreground masks (n, S, S): each class's shape drawn only on the images of that class."""
    out = torch.zeros_like(u, dtype=torch.bool)
    f, p = freq.view(-1, 1, 1), phase.view(-1, 1, 1)
    for c in range(len(SYNTHETIC_CLASSES)):
        idx = (labels == c).nonzero().squeeze(1)
        if idx.numel():
            out[idx] = _shape_mask(c, u[idx], v[idx], f[idx], p[idx])
    return out


def _draw(labels: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Render one chunk of images, uint8 (n, 3, size, size), drawn at twice the size and box-filtered."""
    n, s = labels.shape[0], 2 * size
    rand = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    # Background and foreground come from opposite halves of the brightness range, so shapes stay visible.
    dark_bg = rand(n) < 0.5
    lo = torch.where(dark_bg, 0.0, 0.55).view(n, 1)
    bg0, bg1 = lo + 0.45 * rand(n, 3), lo + 0.45 * rand(n, 3)
    fg = (0.55 - lo) + 0.45 * rand(n, 3)
    coords = (torch.arange(s, dtype=torch.float32) + 0.5) / s * 2 - 1        # [-1, 1]
    yy, xx = coords.view(1, s, 1), coords.view(1, 1, s)
    # Background: a linear colour gradient in a random direction.
    ang = rand(n) * 2 * math.pi
    t = (xx * torch.cos(ang).view(n, 1, 1) + yy * torch.sin(ang).view(n, 1, 1) + 1.5) / 3.0
    img = bg0.view(n, 3, 1, 1) + (bg1 - bg0).view(n, 3, 1, 1) * t.unsqueeze(1)
    # Shape: random centre, scale and a small rotation (small, so that plus and x stay apart).
    cx, cy = (rand(n) - 0.5) * 0.4, (rand(n) - 0.5) * 0.4
    scale = 0.45 + 0.25 * rand(n)
    rot = (rand(n) - 0.5) * (math.pi / 4.5)
    c, sn = torch.cos(rot).view(n, 1, 1), torch.sin(rot).view(n, 1, 1)
    dx, dy = xx - cx.view(n, 1, 1), yy - cy.view(n, 1, 1)
    u = (c * dx + sn * dy) / scale.view(n, 1, 1)
    v = (-sn * dx + c * dy) / scale.view(n, 1, 1)
    mask = _masks(labels, u, v, 2.5 + rand(n), rand(n) * 2 * math.pi).unsqueeze(1)
    img = torch.where(mask, fg.view(n, 3, 1, 1), img)
    img = F.avg_pool2d(img, 2)
    img = img + 0.04 * torch.randn(img.shape, generator=g)
    return img.clamp_(0, 1).mul_(255).round_().to(torch.uint8)


def make_synthetic(n: int, seed: int = 0, image_size: int = 32) -> ImageSet:
    """``n`` images, classes balanced and shuffled, the same for the same (n, seed, image_size)."""
    if n <= 0 or image_size < 8:
        raise ValueError(f"n and image_size: expected n > 0 and image_size >= 8, got {n} and {image_size}")
    g = torch.Generator().manual_seed(int(seed))
    labels = torch.arange(n) % len(SYNTHETIC_CLASSES)
    labels = labels[torch.randperm(n, generator=g)]
    chunks = [_draw(labels[i:i + _CHUNK], image_size, g) for i in range(0, n, _CHUNK)]
    return ImageSet(torch.cat(chunks), labels.to(torch.int64), list(SYNTHETIC_CLASSES), SYNTHETIC_SOURCE,
                    "synthetic")


def load_synthetic(split: str = "train", n: int | None = None, seed: int = 0, image_size: int = 32,
                   cache=None, use_cache: bool = True, **_ignored) -> ImageSet:
    """The synthetic ``split``: 10000 train or 2000 test images by default; train and test never overlap.

    Drawing 10000 images takes seconds on a small CPU, so the result is kept in the decode cache.
    """
    if split not in DEFAULT_SIZES:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    warnings.warn("loading the SYNTHETIC data set (procedural shapes): anything trained or measured on it "
                  "says nothing about CIFAR-10 or the paper's numbers", UserWarning, stacklevel=2)
    n = DEFAULT_SIZES[split] if n is None else int(n)
    # Separate streams for the two splits: seed 2k for train, 2k + 1 for test.
    stream = 2 * int(seed) + (split == "test")

    def build():
        made = make_synthetic(n, stream, image_size)
        return {"images": made.images.numpy(), "labels": made.labels.numpy()}

    arrays = cached_arrays(f"synthetic-v{_VERSION}-{n}-{stream}-{image_size}", build, cache, use_cache)
    return ImageSet(torch.from_numpy(arrays["images"]), torch.from_numpy(arrays["labels"]),
                    list(SYNTHETIC_CLASSES), SYNTHETIC_SOURCE, "synthetic")
