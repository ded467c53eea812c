"""The AugMix op set as batched kernels: each image its own op and parameter, on any device.

Three families: geometric ops as one per-image affine warp, tone ops as per-image lookup tables
or uint8 bit operations, enhance ops as one per-image blend with a degenerate image. Results match
PIL (``ImageOps``, ``Image.rotate``/``Image.transform`` with BILINEAR, ``ImageEnhance``) on uint8.
``native`` runs whole chains of uint8 CPU images in C (built on first use), the same ops one image at a time.
"""
from . import native
from .batched import apply_ops, group_by_kernel, op_tables
from .enhance import ENHANCE_OPS, blend, degenerate, enhance, grayscale
from .geometric import GEOMETRIC_OPS, affine_coefficients, shift_pixels, warp_affine
from .registry import KERNEL_GROUPS, OPS_ALL, OPS_AUGMIX, apply_op, check_ops, op_group, whole_value_group
from .tone import (
    TONE_OPS,
    apply_lut,
    autocontrast,
    autocontrast_luts,
    channel_range,
    equalize,
    equalize_luts,
    histograms,
    level_index,
    posterize,
    solarize,
)

__all__ = [
    "native", "OPS_AUGMIX", "OPS_ALL", "GEOMETRIC_OPS", "TONE_OPS", "ENHANCE_OPS", "KERNEL_GROUPS",
    "apply_op", "apply_ops", "group_by_kernel", "op_tables", "op_group", "whole_value_group", "check_ops",
    "affine_coefficients", "warp_affine", "shift_pixels", "level_index", "histograms", "channel_range",
    "autocontrast_luts", "equalize_luts", "apply_lut", "autocontrast", "equalize", "posterize", "solarize",
    "grayscale", "degenerate", "blend", "enhance",
]
