"""Geometric ops as one per-image affine warp, with PIL's bilinear semantics.

PIL's ``Image.transform(size, AFFINE, (a, b, c, d, e, f), BILINEAR)`` gives output pixel (x, y) the
input value at ``(a x' + b y' + c, d x' + e y' + f)``, where ``(x', y')`` is the pixel's centre
``(x + 0.5, y + 0.5)``. A sample point outside the input's ``[0, W) x [0, H)`` gives black; inside, the
four neighbours are clamped to the border. uint8 results are truncated towards zero, as PIL does.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from ._words import rows as words

__all__ = ["GEOMETRIC_OPS", "affine_coefficients", "warp_affine", "shift_pixels"]

GEOMETRIC_OPS = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")

# Keeps truncation exact where PIL's double arithmetic lands on an integer (integer shifts, zero
# angles) and float32 lands a hair below it; a sub-1e-3 fraction is far below one grey level.
_TRUNCATION_SLACK = 1e-3


def affine_coefficients(op_index: torch.Tensor, value: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """PIL affine coefficients (M, 6) for each image's geometric op (index into GEOMETRIC_OPS) and value."""
    v = value.to(torch.float64) if value.dtype != torch.float64 else value
    zeros, ones = torch.zeros_like(v), torch.ones_like(v)
    # Rotation about the image centre, counter-clockwise in degrees, as Image.rotate builds it.
    angle = -torch.deg2rad(v)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    rot = torch.stack([cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy], dim=-1)
    shear_x = torch.stack([ones, v, zeros, zeros, ones, zeros], dim=-1)
    shear_y = torch.stack([ones, zeros, zeros, v, ones, zeros], dim=-1)
    trans_x = torch.stack([ones, zeros, v, zeros, ones, zeros], dim=-1)
    trans_y = torch.stack([ones, zeros, zeros, zeros, ones, v], dim=-1)
    table = torch.stack([rot, shear_x, shear_y, trans_x, trans_y], dim=1)  # (M, 5, 6)
    index = op_index.view(-1, 1, 1).expand(-1, 1, 6)
    return table.gather(1, index).squeeze(1)


def _sample_points(coeffs: torch.Tensor, height: int, width: int, dtype: torch.dtype):
    """Input coordinates (u, v), each (M, H, W), that each output pixel centre reads, in PIL's pixel units."""
    c = coeffs.to(dtype).unsqueeze(-1).unsqueeze(-1)  # (M, 6, 1, 1)
    xs = (torch.arange(width, device=coeffs.device, dtype=dtype) + 0.5).view(1, 1, width)
    ys = (torch.arange(height, device=coeffs.device, dtype=dtype) + 0.5).view(1, height, 1)
    # Separable: a row term plus a column term, broadcast to (M, H, W).
    u = (c[:, 0] * xs + c[:, 2]) + c[:, 1] * ys
    v = (c[:, 3] * xs + c[:, 5]) + c[:, 4] * ys
    return u, v


def _inside_bounds(coeffs: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output row, the first and one-past-the-last x (M, H) int64 whose sample point lies inside the input
    (none where start >= stop).

    Along an output row the sample point moves linearly, so ``0 <= u < W`` and ``0 <= v < H`` hold on
    one interval of x, found from per-row bounds computed in float64, as PIL computes u and v; both
    coordinates are bounded in one stacked pass (M, 2, H).
    """
    c = coeffs.to(torch.float64)
    a, b, k = c[:, 0::3].unsqueeze(-1), c[:, 1::3].unsqueeze(-1), c[:, 2::3].unsqueeze(-1)  # (M, 2, 1): u, v
    ys = torch.arange(height, device=coeffs.device, dtype=torch.float64) + 0.5
    size = torch.full((1, 2, 1), float(width), device=coeffs.device, dtype=torch.float64)
    size[:, 1] = float(height)  # a fill on the device: torch.tensor([...]) would be a host copy per call
    base = torch.addcmul(k, b, ys)  # the coordinate at x' = 0, per row: the coordinate is a x' + base
    # a > 0: x' in [-base / a, (size - base) / a); a < 0: x' in ((size - base) / a, -base / a].
    # With x' = x + 0.5 and integer x: a closed bound L gives x >= ceil(L - 0.5), an open one
    # x >= floor(L - 0.5) + 1; a closed upper bound U gives x <= floor(U - 0.5), an open one
    # x <= ceil(U - 0.5) - 1.
    first = (-base).div_(a).sub_(0.5)
    second = (size - base).div_(a).sub_(0.5)
    inf = torch.full((), math.inf, device=coeffs.device, dtype=torch.float64)
    flat = (base >= 0) & (base < size)  # a == 0: the whole row or none of it
    lo = torch.where(a > 0, torch.ceil(first),
                     torch.where(a < 0, torch.floor(second).add_(1), torch.where(flat, -inf, inf)))
    hi = torch.where(a > 0, torch.ceil(second).sub_(1),
                     torch.where(a < 0, torch.floor(first), torch.where(flat, inf, -inf)))
    start = lo.amax(1).clamp_(0, width).to(torch.long)
    stop = hi.amin(1).add_(1).clamp_(0, width).to(torch.long)
    return start, stop


@functools.lru_cache(maxsize=16)
def _row_masks(width: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables (W + 1, W) of all-ones-bits (-1) or zero entries in ``dtype``: row k of the first is set at
    x >= k, row k of the second at x < k. Cached per (width, dtype, device): built once, read per warp."""
    xs = torch.arange(width, device=device)
    ks = torch.arange(width + 1, device=device).unsqueeze(1)
    ones = torch.full((), -1, dtype=dtype, device=device)
    zero = torch.zeros((), dtype=dtype, device=device)
    return torch.where(xs >= ks, ones, zero), torch.where(xs < ks, ones, zero)


def _blackout_outside(out: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Set to zero, in place, the pixels of ``out`` (M, C, H, W) whose sample point lies outside the input.

    Each row keeps one interval of x: its mask is two table rows ANDed, applied as an AND on the
    result's bits (zero bits are a black pixel in every dtype), all as 8-byte words where the row
    allows. A per-pixel comparison of the coordinates costs several times more on a CPU.
    """
    m, _, h, w = out.shape
    start, stop = _inside_bounds(coeffs, h, w)
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[out.element_size()]
    from_x, before_x = _row_masks(w, bits, out.device)
    target = out.view(bits).view(-1, w)
    from_rows, before_rows, target_rows = words(from_x), words(before_x), words(target)
    if from_rows is from_x or target_rows is target:  # rows that are not whole words: per element
        from_rows, before_rows, target_rows = from_x, before_x, target
    mask = from_rows.index_select(0, start.view(-1)).bitwise_and_(before_rows.index_select(0, stop.view(-1)))
    target_rows.view(m, -1, h, mask.shape[-1]).bitwise_and_(mask.view(m, 1, h, -1))
    return out


def _normalised_grid(coeffs: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """grid_sample's grid (M, H, W, 2) for PIL coefficients: ``2u/W - 1``, ``2v/H - 1``, in one pass.

    Built as (M, 2, H, W) and returned as a permuted view: a broadcast add with W innermost runs
    vectorised, with 2 innermost it costs four times more; grid_sample reads either at one speed.
    """
    c = coeffs.to(dtype)
    xs = torch.arange(width, device=coeffs.device, dtype=dtype) + 0.5
    ys = torch.arange(height, device=coeffs.device, dtype=dtype) + 0.5
    scale = torch.full((2,), 2.0 / width, device=coeffs.device, dtype=dtype)
    scale[1] = 2.0 / height  # a fill on the device, not a host copy
    a, b, t = c[:, 0::3], c[:, 1::3], c[:, 2::3]  # (M, 2) each: the u and v rows of the affine map
    row = (a * scale).unsqueeze(-1) * xs + (t * scale - 1).unsqueeze(-1)  # (M, 2, W): x only
    col = (b * scale).unsqueeze(-1) * ys  # (M, 2, H): y only
    return torch.add(row.unsqueeze(2), col.unsqueeze(3)).permute(0, 2, 3, 1)


def warp_affine(x: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Warp each image of ``x`` (N, C, H, W) by its own PIL affine coefficients ``coeffs`` (N, 6).

    Bilinear, black outside the input, same dtype and device out; differentiable with respect to
    a float ``x`` and to ``coeffs``.
    """
    _, _, h, w = x.shape
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    if not (torch.is_grad_enabled() and (x.requires_grad or coeffs.requires_grad)):
        # Without autograd: border padding clamps the neighbours of inside points as PIL does, and
        # the points outside are blacked out afterwards by per-row bounds. On a CPU these passes are
        # memory-bound and would otherwise cost as much as the sampling itself.
        grid = _normalised_grid(coeffs, h, w, compute)
        out = F.grid_sample(x.to(compute), grid, mode="bilinear", padding_mode="border", align_corners=False)
        if x.dtype == torch.uint8:
            # Bilinear weights are a convex combination of 0..255, so truncating is PIL's (UINT8) cast.
            # The outside is blacked out on the uint8 result: a quarter of the bytes of the float one.
            out = out.add_(_TRUNCATION_SLACK).to(torch.uint8)
        return _blackout_outside(out.to(x.dtype), coeffs)
    u, v = _sample_points(coeffs, h, w, compute)
    # PIL clamps the four neighbours to the border inside the image and gives black outside it.
    # Clamping inside points to the outer pixel centres and sending outside points far away lets
    # grid_sample's zero padding do both in one pass.
    # grid_sample with align_corners=False reads pixel-unit coordinate u at normalised 2u/W - 1.
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    far = torch.full((), -4.0, device=x.device, dtype=compute)  # a fill on the device, not a host copy
    gx = u.clamp(0.5, w - 0.5) * (2.0 / w) - 1.0
    gy = v.clamp(0.5, h - 0.5) * (2.0 / h) - 1.0
    grid = torch.stack([torch.where(inside, gx, far), torch.where(inside, gy, far)], dim=-1)
    out = F.grid_sample(x.to(compute), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if x.dtype == torch.uint8:
        return out.add_(_TRUNCATION_SLACK).to(torch.uint8)
    return out.to(x.dtype)


def shift_pixels(x: torch.Tensor, shift: torch.Tensor, dim: int) -> torch.Tensor:
    """Translate each image of ``x`` by its own whole number of pixels ``shift`` (N,) along ``dim``
    (-1: x, -2: y): output pixel p reads input pixel p + shift, black where that is outside.

    This is ``warp_affine`` of a translation by a whole number, exactly (its sample points are the
    input's pixel centres): a gather instead of a resampling, in the input's dtype. ``shift`` is
    rounded; differentiable with respect to a float ``x`` only.
    """
    if dim not in (-1, -2):
        raise ValueError(f"dim: expected -1 (x) or -2 (y), got {dim!r}")
    n, c, h, w = x.shape
    size = x.shape[dim]
    pos = torch.arange(size, device=x.device) + shift.detach().round().long().view(-1, 1)  # (N, size)
    inside = (pos >= 0) & (pos < size)
    pos = pos.clamp_(0, size - 1)
    shape = (n, 1, 1, size) if dim == -1 else (n, 1, size, 1)
    if dim == -2 and not (torch.is_grad_enabled() and x.requires_grad):
        # Whole rows move: select them from the (N * C * H, W) table of rows, each row as 8-byte words
        # where it allows; a per-pixel gather would read one int64 index per pixel.
        rows = words(x.reshape(-1, w))
        start = (torch.arange(n * c, device=x.device) * h).view(n, c, 1)
        picked = rows.index_select(0, (start + pos.view(n, 1, h)).view(-1))
        out = picked.view(x.dtype).view(n, c, h, w) if picked.dtype != x.dtype else picked.view(n, c, h, w)
        return out.mul_(inside.view(shape).to(x.dtype))
    out = x.gather(dim, pos.view(shape).expand(n, c, h, w))
    return out * inside.view(shape).to(x.dtype)

