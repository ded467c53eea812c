"""OpenCV image operations used by spatter, batched: Canny edges, the 5x5 chamfer distance, histogram
equalisation, 3x3 box means. Images are (N, H, W) float tensors holding 8-bit values unless said otherwise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["canny", "chamfer_distance", "equalize_hist", "box3", "filter3_u8"]

# OpenCV's fixed-point tangent of 22.5 degrees (CANNY_SHIFT = 15).
_TG22 = int(0.4142135623730950488016887242097 * (1 << 15) + 0.5)


def _pad(x: torch.Tensor, mode: str, value: float = 0.0) -> torch.Tensor:
    if mode == "constant":
        return F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode="constant", value=value).squeeze(1)
    return F.pad(x.unsqueeze(1), (1, 1, 1, 1), mode=mode).squeeze(1)


def _neighbours(p: torch.Tensor, h: int, w: int):
    """The 3x3 neighbourhood of every pixel of a (N, H+2, W+2) padded image, as a dict by (dy, dx)."""
    return {(dy, dx): p[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


def box3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)): 3x3 mean with the reflect-101 border, unrounded."""
    h, w = x.shape[-2:]
    nb = _neighbours(_pad(x, "reflect"), h, w)
    return sum(nb.values()) / 9.0


def filter3_u8(x: torch.Tensor, kernel) -> torch.Tensor:
    """cv2.filter2D(x, CV_8U, kernel) for a 3x3 kernel: correlation, reflect-101 border, rounded and saturated."""
    h, w = x.shape[-2:]
    nb = _neighbours(_pad(x, "reflect"), h, w)
    out = sum(float(kernel[dy + 1][dx + 1]) * v for (dy, dx), v in nb.items())
    return torch.round(out).clamp_(0, 255)


def canny(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """cv2.Canny(x, low, high) (3x3 Sobel with replicated border, L1 magnitude): bool (N, H, W) edge map."""
    h, w = x.shape[-2:]
    nb = _neighbours(_pad(x, "replicate"), h, w)
    dx = (nb[(-1, 1)] + 2 * nb[(0, 1)] + nb[(1, 1)]) - (nb[(-1, -1)] + 2 * nb[(0, -1)] + nb[(1, -1)])
    dy = (nb[(1, -1)] + 2 * nb[(1, 0)] + nb[(1, 1)]) - (nb[(-1, -1)] + 2 * nb[(-1, 0)] + nb[(-1, 1)])
    dx = dx.to(torch.int64)
    dy = dy.to(torch.int64)
    mag = dx.abs() + dy.abs()
    # Non-maximum suppression along the quantised gradient direction, in OpenCV's integer arithmetic;
    # the magnitude is zero outside the image.
    m = _neighbours(_pad(mag, "constant", 0), h, w)
    xs, ys = dx.abs(), dy.abs()
    tg22x = xs * _TG22
    y = ys << 15
    horizontal = y < tg22x
    vertical = ~horizontal & (y > tg22x + (xs << 16))
    diagonal = ~horizontal & ~vertical
    same_sign = (dx ^ dy) >= 0
    keep_h = (mag > m[(0, -1)]) & (mag >= m[(0, 1)])
    keep_v = (mag > m[(-1, 0)]) & (mag >= m[(1, 0)])
    keep_d = torch.where(same_sign, (mag > m[(-1, -1)]) & (mag > m[(1, 1)]),
                         (mag > m[(-1, 1)]) & (mag > m[(1, -1)]))
    keep = (horizontal & keep_h) | (vertical & keep_v) | (diagonal & keep_d)
    candidate = keep & (mag > int(low))
    edges = candidate & (mag > int(high))
    # Hysteresis: grow the strong edges through 8-connected candidates. The loop checks for a fixed
    # point every 8 steps (one host sync each); on small images it ends after a few checks.
    grown = edges
    while True:
        before = grown
        for _ in range(8):
            grown = _dilate3(grown) & candidate
        if torch.equal(grown, before):
            break
    return grown


def _dilate3(m: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of (N, H, W) bool, as a row pass and a column pass."""
    p = F.pad(m, (1, 1))
    rows = p[..., :-2] | p[..., 1:-1] | p[..., 2:]
    p = F.pad(rows, (0, 0, 1, 1))
    return p[..., :-2, :] | p[..., 1:-1, :] | p[..., 2:, :]


# OpenCV's DIST_L2 5x5 chamfer weights, in its 16-bit fixed point: axial, diagonal, knight's move.
_A, _B, _C = (round(v * 65536) / 65536 for v in (1.0, 1.4, 2.1969))
_MOVES = ([((0, 1), _A), ((1, 0), _A), ((0, -1), _A), ((-1, 0), _A)]
          + [((dy, dx), _B) for dy in (-1, 1) for dx in (-1, 1)]
          + [((dy, dx), _C) for dy, dx in ((1, 2), (2, 1), (-1, 2), (-2, 1), (1, -2), (2, -1), (-1, -2), (-2, -1))])


def chamfer_distance(zero: torch.Tensor, cap: float) -> torch.Tensor:
    """min(cv2.distanceTransform(mask, DIST_L2, 5), cap): chamfer distance to the nearest ``zero`` pixel.

    Pixels outside the image are never zeros. Every step costs at least 1, so ceil(cap) relaxation
    sweeps find every distance below ``cap`` exactly; larger ones stay at the cap.
    """
    h, w = zero.shape[-2:]
    # Starting every other pixel at the cap (not at infinity) gives the same capped result, and far
    # regions are settled from the start, so the sweeps reach a fixed point sooner.
    d = torch.where(zero, 0.0, float(cap)).to(torch.float32)
    sweeps = int(-(-cap // 1))
    for sweep in range(sweeps):
        p = F.pad(d, (2, 2, 2, 2), value=float(cap))
        best = d.clone()
        for (dy, dx), cost in _MOVES:
            torch.minimum(best, p[:, 2 + dy:2 + dy + h, 2 + dx:2 + dx + w] + cost, out=best)
        # Stop early at a fixed point (a host sync every 4 sweeps; edges are usually dense).
        done = sweep % 4 == 3 and torch.equal(best, d)
        d = best
        if done:
            break
    return d.clamp_(max=cap)


def equalize_hist(x: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per image of 8-bit values (N, H, W)."""
    n, h, w = x.shape
    v = x.reshape(n, -1).to(torch.int64)
    total = h * w
    hist = torch.zeros(n, 256, dtype=torch.int64, device=x.device).scatter_add_(1, v, torch.ones_like(v))
    first = (hist > 0).to(torch.int64).argmax(1, keepdim=True)                     # lowest level present
    first_count = hist.gather(1, first)
    cum = hist.cumsum(1) - first_count                                              # pixels above `first`
    scale = (255.0 / (total - first_count).clamp(min=1).to(torch.float32))
    lut = torch.round(cum.to(torch.float32) * scale).clamp_(0, 255)
    levels = torch.arange(256, device=x.device)
    lut = torch.where(levels[None] <= first, 0.0, lut)
    out = lut.gather(1, v)
    # A constant image keeps its value.
    out = torch.where(first_count == total, v.to(out.dtype), out)
    return out.reshape(n, h, w)
