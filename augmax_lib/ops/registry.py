"""The AugMix op set: names, the kernel group each op runs in, and ``apply_op`` for one op on a batch."""
from __future__ import annotations

import torch

from .._checks import check_images, check_per_image
from .enhance import ENHANCE_OPS, enhance
from .geometric import GEOMETRIC_OPS, affine_coefficients, warp_affine
from .tone import TONE_OPS, apply_lut, histograms, level_index, tone_luts

__all__ = ["OPS_AUGMIX", "OPS_ALL", "KERNEL_GROUPS", "op_group", "check_ops", "run_kernel_group", "apply_op"]

# REFERENCE.md section 1, in the reference's order.
OPS_AUGMIX = ("autocontrast", "equalize", "posterize", "rotate", "solarize",
              "shear_x", "shear_y", "translate_x", "translate_y")
OPS_ALL = OPS_AUGMIX + ENHANCE_OPS

# One kernel per group: every geometric op is an affine warp and every tone op a lookup table, so
# each runs as one pass whatever mix of ops its images drew. Enhance ops differ in their degenerate
# image, so each is a group of its own.
KERNEL_GROUPS = ("geometric", "tone") + ENHANCE_OPS


def op_group(name: str) -> tuple[int, int]:
    """(kernel group index, index of the op inside its family) for op ``name``."""
    if name in GEOMETRIC_OPS:
        return 0, GEOMETRIC_OPS.index(name)
    if name in TONE_OPS:
        return 1, TONE_OPS.index(name)
    if name in ENHANCE_OPS:
        return 2 + ENHANCE_OPS.index(name), 0
    raise ValueError(f"op name: expected one of {OPS_ALL}, got {name!r}")


def check_ops(ops) -> tuple[str, ...]:
    """Validate a sequence of op names and return it as a tuple."""
    if isinstance(ops, str) or not hasattr(ops, "__iter__"):
        raise TypeError(f"ops: expected a sequence of op names such as OPS_AUGMIX, got {ops!r}")
    ops = tuple(ops)
    if not ops:
        raise ValueError("ops: expected at least one op name")
    for name in ops:
        op_group(name)
    return ops


def run_kernel_group(x: torch.Tensor, group: int, local_index: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Run kernel group ``group`` on every image of ``x`` with per-image family indices and values."""
    if group == 0:
        h, w = x.shape[-2:]
        return warp_affine(x, affine_coefficients(local_index, value, h, w))
    if group == 1:
        # One histogram pass over the whole group: cheaper than splitting it again by op.
        levels = level_index(x)
        return apply_lut(x, tone_luts(histograms(levels), local_index, value.detach()), levels)
    return enhance(x, KERNEL_GROUPS[group], value)


def apply_op(x: torch.Tensor, name: str, value) -> torch.Tensor:
    """Apply op ``name`` to every image of ``x`` (N, C, H, W) with per-image ``value`` (N,) in the op's unit.

    Units: bits kept (posterize), threshold on 0..256 (solarize), degrees counter-clockwise (rotate),
    shear coefficient, pixels (translate: output (x, y) reads input (x + t, y)), enhance factor.
    autocontrast and equalize ignore ``value``. Same dtype and device out.
    """
    check_images(x, "x")
    group, local = op_group(name)
    value = check_per_image(value, x.shape[0], x.device, "value")
    local_index = torch.full((x.shape[0],), local, dtype=torch.long, device=x.device)
    return run_kernel_group(x, group, local_index, value)
