"""Colour and digital corruptions: brightness, contrast, saturate, elastic transform, pixelate, JPEG.

Kernels take float images (N, C, H, W) in [0, 1] and return float images in [0, 1]. ``pixelate`` and
``jpeg_compression`` also take ``from_uint8``: the reference runs them on 8-bit PIL images, so for
uint8 input they reproduce PIL's 8-bit arithmetic.
"""
from __future__ import annotations

import io
import warnings
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

from ._filters import cached, gaussian_blur, sample_bilinear, separable

__all__ = ["brightness", "contrast", "saturate", "elastic_transform", "pixelate", "jpeg_compression",
           "jpeg_roundtrip", "pil_box_matrix", "warp_affine", "displace"]


def brightness(x: torch.Tensor, shift: float, generator=None) -> torch.Tensor:
    """HSV value + ``shift`` (clipped to 1) at fixed hue and saturation.

    With H and S fixed every RGB channel is proportional to V, so the round trip through HSV
    (scikit-image's rgb2hsv/hsv2rgb) is a per-pixel rescaling; black pixels become grey ``shift``.
    """
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + shift).clamp_(max=1.0)
    return torch.where(v > 0, x * (v_new / v.clamp(min=1e-12)), v_new).clamp_(0, 1)


def contrast(x: torch.Tensor, factor: float, generator=None) -> torch.Tensor:
    """``clip((x - mean) * factor + mean)`` with the mean per image and channel."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp_(0, 1)


def saturate(x: torch.Tensor, params, generator=None) -> torch.Tensor:
    """HSV saturation ``S * scale + shift`` (clipped to [0, 1]) at fixed hue and value (RGB images).

    hsv2rgb is affine in S at fixed H and V: each channel is V (1 - S g) with g set by the hue, so
    the new channel is V - S' V (V - x) / (V - min). Grey pixels have hue 0 in scikit-image, which
    makes them (V, V (1 - S'), V (1 - S')).
    """
    scale, shift = params
    v = x.amax(dim=1, keepdim=True)
    delta = v - x.amin(dim=1, keepdim=True)
    s = torch.where(delta > 0, delta / v.clamp(min=1e-12), 0.0)
    s_new = (s * scale + shift).clamp_(0, 1)
    coloured = v - s_new * v * (v - x) / delta.clamp(min=1e-12)
    hue0 = torch.cat([v, v * (1 - s_new), v * (1 - s_new)], dim=1)
    return torch.where(delta > 0, coloured, hue0).clamp_(0, 1)


def warp_affine(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """OpenCV's ``warpAffine(x, M, (W, H))`` per image (bilinear, reflect-101 border) for (N, 2, 3) float64 ``matrix``.

    M maps source (x, y) to destination; each destination pixel reads M^-1 of itself. (OpenCV 3
    rounded that position to 1/32 px; OpenCV 5 does not round, and neither do we.)
    """
    h, w = x.shape[-2:]
    a, t = matrix[:, :, :2], matrix[:, :, 2]
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    inv = torch.stack([torch.stack([a[:, 1, 1], -a[:, 0, 1]], -1),
                       torch.stack([-a[:, 1, 0], a[:, 0, 0]], -1)], -2) / det[:, None, None]
    shift = -(inv @ t[:, :, None])[:, :, 0]                                         # M^-1 = [inv | shift]
    ys = torch.arange(h, device=x.device, dtype=torch.float64)[None, :, None]
    xs = torch.arange(w, device=x.device, dtype=torch.float64)[None, None, :]
    src_x = inv[:, 0, 0, None, None] * xs + inv[:, 0, 1, None, None] * ys + shift[:, 0, None, None]
    src_y = inv[:, 1, 0, None, None] * xs + inv[:, 1, 1, None, None] * ys + shift[:, 1, None, None]
    return sample_bilinear(x, src_y.to(x.dtype), src_x.to(x.dtype), "reflect101")


def displace(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """scipy ``map_coordinates(x, (y + dy, x + dx), order=1, mode="reflect")`` per image and channel."""
    h, w = x.shape[-2:]
    yy = torch.arange(h, device=x.device, dtype=x.dtype)[None, :, None]
    xx = torch.arange(w, device=x.device, dtype=x.dtype)[None, None, :]
    return sample_bilinear(x, yy + dy, xx + dx, "symmetric")


def _control_points(h: int, w: int) -> np.ndarray:
    """The generator's three control points as OpenCV reads them, (x, y), both filled from shape[:2] = (H, W)."""
    cy, cx, sq = h // 2, w // 2, min(h, w) // 3
    return np.array([[cy + sq, cx + sq], [cy + sq, cx - sq], [cy - sq, cx - sq]], dtype=np.float64)


def _control_inverse(h: int, w: int) -> np.ndarray:
    p = _control_points(h, w)
    return np.linalg.inv(np.stack([p[1] - p[0], p[2] - p[0]], axis=1))


def elastic_transform(x: torch.Tensor, params, generator=None) -> torch.Tensor:
    """Hendrycks' elastic transform: a random affine warp (three control points jittered by up to
    ``jitter`` px), then a smooth random displacement field (uniform noise blurred by ``sigma``, times ``alpha``)."""
    alpha, sigma, jitter = params
    n, c, h, w = x.shape
    dev = x.device
    pts1 = cached(_control_points, h, w, device=dev, dtype=torch.float64)
    pts2 = pts1 + (torch.rand((n, 3, 2), generator=generator, device=dev, dtype=torch.float64) * 2 - 1) * jitter
    # M maps pts1 -> pts2: q - q0 = A (p - p0) with A = Q P^-1, then t = q0 - A p0. P, with columns
    # p1 - p0 = (0, -2 sq) and p2 - p0 = (-2 sq, -2 sq), is the same for every image.
    p_inv = cached(_control_inverse, h, w, device=dev, dtype=torch.float64)
    q = torch.stack([pts2[:, 1] - pts2[:, 0], pts2[:, 2] - pts2[:, 0]], dim=2)       # (N, 2, 2)
    a = q @ p_inv
    t = pts2[:, 0] - (a @ pts1[0])
    warped = warp_affine(x, torch.cat([a, t[:, :, None]], dim=2))
    if alpha == 0:
        return warped.clamp_(0, 1)
    fields = torch.rand((2, n, h, w), generator=generator, device=dev, dtype=x.dtype) * 2 - 1
    fields = gaussian_blur(fields, sigma, mode="symmetric", truncate=3.0) * alpha
    return displace(warped, fields[1], fields[0]).clamp_(0, 1)


def _pil_box_filter(t: float) -> float:
    return 1.0 if -0.5 < t <= 0.5 else 0.0


@lru_cache(maxsize=None)
def pil_box_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's ``Image.resize(..., BOX)`` along one axis as an (out, in) matrix of normalised weights.

    Pillow samples the box filter at input pixel centres, so each output pixel averages the input
    pixels whose centres fall in its span (and copies the nearest one when enlarging).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    m = np.zeros((out_size, in_size))
    for xx in range(out_size):
        centre = (xx + 0.5) * scale
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), in_size)
        for i in range(lo, hi):
            m[xx, i] = _pil_box_filter((i - centre + 0.5) / filterscale)
        total = m[xx].sum()
        if total:
            m[xx] /= total
    return m


_PRECISION_BITS = 22     # Pillow's fixed-point coefficients for 8-bit images


@lru_cache(maxsize=None)
def _pil_box_members(in_size: int, out_size: int) -> np.ndarray:
    """Which input pixels each output pixel of a Pillow BOX resize averages: a 0/1 (out, in) matrix."""
    return (pil_box_matrix(in_size, out_size) > 0).astype(np.float64)


@lru_cache(maxsize=None)
def _pil_box_fixed_weight(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point weight of each output pixel's members (all equal within a box): (out,) int."""
    count = _pil_box_members(in_size, out_size).sum(1)
    return np.floor(0.5 + (1 << _PRECISION_BITS) / count).astype(np.int64)


def _box_pass_u8(levels: torch.Tensor, in_size: int, out_size: int, axis: int) -> torch.Tensor:
    """One Pillow 8-bit BOX pass along ``axis`` (-1 or -2) of float levels: integer sums (exact in
    float32), then Pillow's fixed-point weighting and rounding in int64."""
    dev = levels.device
    members = cached(_pil_box_members, in_size, out_size, device=dev, dtype=torch.float32)
    weight = cached(_pil_box_fixed_weight, in_size, out_size, device=dev, dtype=torch.int64)
    if axis == -1:
        sums = torch.matmul(levels, members.t())
        weight = weight[None, None, None, :]
    else:
        sums = torch.matmul(members, levels)
        weight = weight[None, None, :, None]
    fixed = torch.round(sums).to(torch.int64) * weight + (1 << (_PRECISION_BITS - 1))
    return (fixed >> _PRECISION_BITS).clamp_(0, 255).to(torch.float32)


def pixelate(x: torch.Tensor, factor: float, generator=None, *, from_uint8: bool = False) -> torch.Tensor:
    """Pillow BOX resize to int(size * factor), then BOX resize back (which copies the nearest pixel)."""
    n, c, h, w = x.shape
    sh, sw = int(h * factor), int(w * factor)
    dev = x.device
    if from_uint8:
        # Pillow: horizontal pass, then vertical, each rounded to 8 bits.
        levels = torch.round(x * 255.0)
        small = _box_pass_u8(_box_pass_u8(levels, w, sw, -1), h, sh, -2) / 255.0
    else:
        down_r = cached(pil_box_matrix, h, sh, device=dev, dtype=x.dtype)
        down_c = cached(pil_box_matrix, w, sw, device=dev, dtype=x.dtype)
        small = separable(x, down_r, down_c)
    # Enlarging copies pixels (one weight of 1 per row), so the products are exact; a matrix product
    # is much faster than index_select along the height axis on a CPU.
    up_r = cached(pil_box_matrix, sh, h, device=dev, dtype=small.dtype)
    up_c = cached(pil_box_matrix, sw, w, device=dev, dtype=small.dtype)
    return separable(small, up_r, up_c).to(x.dtype).clamp_(0, 1)


def _codec_roundtrip_torchvision(levels: torch.Tensor, quality: int):
    try:
        from torchvision.io import decode_jpeg, encode_jpeg
    except ImportError:
        return None
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec; while they exist they
        # are the fastest exact match of Pillow's output.
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.stack(decode_jpeg(encode_jpeg(list(levels), quality=quality)))


def _codec_roundtrip_pil(levels: torch.Tensor, quality: int) -> torch.Tensor:
    out = []
    for image in levels.permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(buf))
        out.append(decoded.reshape(image.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def jpeg_compression(x: torch.Tensor, quality: int, generator=None, *, from_uint8: bool = False) -> torch.Tensor:
    """Encode as baseline JPEG at ``quality`` (4:2:0 chroma) and decode, as a Pillow save/load does.

    Uses torchvision's libjpeg codec on the CPU when present (same bytes and pixels as Pillow, about
    three times faster), else Pillow. Images on another device travel to the CPU and back.
    """
    levels = torch.round(x * 255.0).clamp_(0, 255).to(torch.uint8)
    return jpeg_roundtrip(levels, quality).to(x.dtype) / 255.0


def jpeg_roundtrip(levels: torch.Tensor, quality: int) -> torch.Tensor:
    """uint8 images (N, C, H, W) saved as baseline JPEG at ``quality`` (4:2:0) and decoded, as by Pillow.

    Also what the Tiny-ImageNet-C and ImageNet-C generators' final ``save(..., quality=85)`` does to
    every image (their ``optimize=True`` only shrinks the Huffman tables). Returns ``levels``'s device.
    """
    if levels.dtype != torch.uint8 or levels.dim() != 4:
        raise ValueError(f"levels: expected uint8 images (N, C, H, W), got {levels.dtype} {tuple(levels.shape)}")
    if levels.shape[0] == 0:
        return levels.clone()
    cpu = levels.cpu()
    out = _codec_roundtrip_torchvision(cpu, int(quality))
    if out is None:
        out = _codec_roundtrip_pil(cpu, int(quality))
    return out.to(levels.device)
