"""Geometric ops as one per-image affine warp, with PIL's bilinear semantics.

PIL's ``Image.transform(size, AFFINE, (a, b, c, d, e, f), BILINEAR)`` gives output pixel (x, y) the
input value at ``(a x' + b y' + c, d x' + e y' + f)``, where ``(x', y')`` is the pixel's centre
``(x + 0.5, y + 0.5)``. A sample point outside the input's ``[0, W) x [0, H)`` gives black; inside, the
four neighbours are clamped to the border. uint8 results are truncated towards zero, as PIL does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["GEOMETRIC_OPS", "affine_coefficients", "warp_affine"]

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


def warp_affine(x: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Warp each image of ``x`` (N, C, H, W) by its own PIL affine coefficients ``coeffs`` (N, 6).

    Bilinear, black outside the input, same dtype and device out; differentiable with respect to
    a float ``x`` and to ``coeffs``.
    """
    _, _, h, w = x.shape
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    u, v = _sample_points(coeffs, h, w, compute)
    # PIL clamps the four neighbours to the border inside the image and gives black outside it.
    # Clamping inside points to the outer pixel centres and sending outside points far away lets
    # grid_sample's zero padding do both in one pass.
    # grid_sample with align_corners=False reads pixel-unit coordinate u at normalised 2u/W - 1.
    if torch.is_grad_enabled() and u.requires_grad:
        inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
        far = torch.full((), -4.0, device=x.device, dtype=compute)  # a fill on the device, not a host copy
        gx = u.clamp(0.5, w - 0.5) * (2.0 / w) - 1.0
        gy = v.clamp(0.5, h - 0.5) * (2.0 / h) - 1.0
        grid = torch.stack([torch.where(inside, gx, far), torch.where(inside, gy, far)], dim=-1)
    else:
        # The same in place and straight into the grid: on a CPU these passes are memory-bound and
        # cost as much as the sampling itself.
        inside = u.ge(0)
        inside &= u.lt(w)
        inside &= v.ge(0)
        inside &= v.lt(h)
        outside = inside.logical_not_()
        grid = torch.empty(*u.shape, 2, device=x.device, dtype=compute)
        for k, (coord, size) in enumerate(((u, w), (v, h))):
            coord.clamp_(0.5, size - 0.5).mul_(2.0 / size).sub_(1.0).masked_fill_(outside, -4.0)
            grid[..., k] = coord
    out = F.grid_sample(x.to(compute), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if x.dtype == torch.uint8:
        # Bilinear weights are a convex combination of 0..255, so truncating is PIL's (UINT8) cast.
        return out.add_(_TRUNCATION_SLACK).to(torch.uint8)
    return out.to(x.dtype)
