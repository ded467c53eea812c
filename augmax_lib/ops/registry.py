"""The AugMix op set: names, the kernel group each op runs in, and ``apply_op`` for one op on a batch."""
from __future__ import annotations

import torch

from .._checks import check_images, check_per_image
from .enhance import ENHANCE_OPS, enhance
from .geometric import GEOMETRIC_OPS, affine_coefficients, shift_pixels, warp_affine
from .tone import TONE_OPS, autocontrast, equalize, posterize, solarize

__all__ = ["OPS_AUGMIX", "OPS_ALL", "KERNEL_GROUPS", "op_group", "whole_value_group", "check_ops", "run_kernel_group",
           "apply_op"]

# REFERENCE.md section 1, in the reference's order.
OPS_AUGMIX = ("autocontrast", "equalize", "posterize", "rotate", "solarize",
              "shear_x", "shear_y", "translate_x", "translate_y")
OPS_ALL = OPS_AUGMIX + ENHANCE_OPS

# One kernel per group, run once per chain step on all the images that drew one of its ops: every
# geometric op is an affine warp, so they share one pass whatever mix of them the images drew. Each
# tone op is its own group: posterize and solarize are single uint8 passes, autocontrast and
# equalize lookup tables built from different statistics, and a shared table would cost more
# than the split. Enhance ops differ in their degenerate image, so each is a group of its own.
# A translation by a whole number of pixels (every one AugMix draws) is a gather, several times
# cheaper than the warp: chains route those to "shift_x"/"shift_y" (``whole_value_group``).
KERNEL_GROUPS = ("geometric",) + TONE_OPS + ENHANCE_OPS + ("shift_x", "shift_y")


def op_group(name: str) -> tuple[int, int]:
    """(kernel group index, index of the op inside its group's kernel) for op ``name``."""
    if name in GEOMETRIC_OPS:
        return 0, GEOMETRIC_OPS.index(name)
    if name in TONE_OPS or name in ENHANCE_OPS:
        return KERNEL_GROUPS.index(name), 0
    raise ValueError(f"op name: expected one of {OPS_ALL}, got {name!r}")


def whole_value_group(name: str) -> int:
    """The kernel group that runs op ``name`` when its value is a whole number: a cheaper exact kernel
    (translations: a gather), or its usual one."""
    if name in ("translate_x", "translate_y"):
        return KERNEL_GROUPS.index("shift_" + name[-1])
    return op_group(name)[0]


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
    """Run kernel group ``group`` on every image of ``x`` with per-image in-group indices and values."""
    name = KERNEL_GROUPS[group]
    if name == "geometric":
        h, w = x.shape[-2:]
        return warp_affine(x, affine_coefficients(local_index, value, h, w))
    if name == "autocontrast":
        return autocontrast(x)
    if name == "equalize":
        return equalize(x)
    if name in ("shift_x", "shift_y"):
        return shift_pixels(x, value, dim=-1 if name == "shift_x" else -2)
    if name == "posterize":
        return posterize(x, value)
    if name == "solarize":
        return solarize(x, value)
    return enhance(x, name, value)


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
