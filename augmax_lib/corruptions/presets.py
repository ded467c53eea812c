"""Per-severity parameters of every corruption for the three image sizes Hendrycks generated.

Values are those of Hendrycks' generators: ``make_cifar_c.py`` (32x32, CIFAR-10-C / CIFAR-100-C),
``make_tinyimagenet_c.py`` (64x64, Tiny-ImageNet-C) and ``make_imagenet_c.py`` (224x224,
ImageNet-C). Each entry lists severities 1..5 in order; the tuple layouts are documented on the
corruption that reads them.

The ``imagenet`` preset follows ``make_imagenet_c.py``, which made ImageNet-C. The PyPI package
``imagecorruptions`` shares its parameters but changed four algorithms to work at any image size:
its elastic transform has no affine step and other constants, its frost textures are enlarged by
1.1, its zoom blur crops the top-left corner instead of the centre, and its snow uses a numpy
motion blur; we keep Hendrycks' versions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Preset", "PRESETS", "preset_params"]


def _zoom_factors(stop: float, step: float) -> tuple[float, ...]:
    # np.arange with float steps is what the generators call; its exact float values decide the
    # crop sizes, so they are reproduced rather than typed out.
    return tuple(float(z) for z in np.arange(1, stop, step))


@dataclass(frozen=True)
class Preset:
    """One image size's parameters: ``params[corruption][severity - 1]``, plus size-dependent constants."""
    name: str
    image_size: int
    fog_map_size: int            # side of the diamond-square plasma map (cropped to the image)
    frost_scale: float           # resize factor of the frost textures before the random crop
    params: dict = field(repr=False)


_CIFAR = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.1, 0.12, 0.16, 0.2),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    # (sigma, max_delta, iterations)
    "glass_blur": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
    # (radius, alias_blur)
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
    # (radius, sigma); the angle is drawn per image from U(-45, 45)
    "motion_blur": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
    "zoom_blur": (_zoom_factors(1.06, 0.01), _zoom_factors(1.11, 0.01), _zoom_factors(1.16, 0.01),
                  _zoom_factors(1.21, 0.01), _zoom_factors(1.26, 0.01)),
    # (mean, std, zoom, threshold, blur radius, blur sigma, image weight)
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
    # (image weight, frost weight)
    "frost": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
    # (amplitude, wibble decay)
    "fog": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    # (alpha, sigma, affine jitter) in pixels
    "elastic_transform": tuple((32 * a, 32 * s, 32 * j) for a, s, j in
                               ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                                (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
    # (mean, std, blur sigma, threshold, strength, mud?)
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1)),
    # (saturation scale, saturation shift)
    "saturate": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
}

_TINYIMAGENET = {
    "gaussian_noise": (0.04, 0.08, 0.12, 0.15, 0.18),
    "shot_noise": (250, 100, 50, 30, 15),
    "impulse_noise": (0.01, 0.02, 0.05, 0.08, 0.14),
    "speckle_noise": (0.15, 0.2, 0.25, 0.3, 0.35),
    "gaussian_blur": (0.5, 0.75, 1, 1.25, 1.5),
    "glass_blur": ((0.1, 1, 1), (0.5, 1, 1), (0.6, 1, 2), (0.7, 2, 1), (0.9, 2, 2)),
    "defocus_blur": ((0.5, 0.6), (1, 0.1), (1.5, 0.1), (2.5, 0.01), (3, 0.1)),
    "motion_blur": ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3)),
    "zoom_blur": _CIFAR["zoom_blur"],
    "snow": ((0.1, 0.2, 1, 0.6, 8, 3, 0.8), (0.1, 0.2, 1, 0.5, 10, 4, 0.8),
             (0.15, 0.3, 1.75, 0.55, 10, 4, 0.7), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.65),
             (0.3, 0.3, 1.25, 0.65, 14, 12, 0.6)),
    "frost": ((1, 0.3), (0.9, 0.4), (0.8, 0.45), (0.75, 0.5), (0.7, 0.55)),
    "fog": ((0.4, 3), (0.7, 3), (1, 2.5), (1.5, 2), (2, 1.75)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    "elastic_transform": tuple((64 * a, 64 * s, 64 * j) for a, s, j in
                               ((0, 0, 0.08), (0.05, 0.3, 0.06), (0.1, 0.08, 0.06),
                                (0.1, 0.03, 0.03), (0.16, 0.03, 0.02))),
    "pixelate": (0.9, 0.8, 0.7, 0.6, 0.5),
    "jpeg_compression": (65, 58, 50, 40, 25),
    "spatter": ((0.62, 0.1, 0.7, 0.7, 0.6, 0), (0.65, 0.1, 0.8, 0.7, 0.6, 0),
                (0.65, 0.3, 1, 0.69, 0.6, 0), (0.65, 0.1, 0.7, 0.68, 0.6, 1),
                (0.65, 0.1, 0.5, 0.67, 0.6, 1)),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (30, 0.2)),
}

_IMAGENET = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "shot_noise": (60, 25, 12, 5, 3),
    "impulse_noise": (0.03, 0.06, 0.09, 0.17, 0.27),
    "speckle_noise": (0.15, 0.2, 0.35, 0.45, 0.6),
    "gaussian_blur": (1, 2, 3, 4, 6),
    "glass_blur": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "defocus_blur": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "motion_blur": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "zoom_blur": (_zoom_factors(1.11, 0.01), _zoom_factors(1.16, 0.01), _zoom_factors(1.21, 0.02),
                  _zoom_factors(1.26, 0.02), _zoom_factors(1.31, 0.03)),
    "snow": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
             (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
             (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    "frost": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "fog": ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4)),
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.4, 0.3, 0.2, 0.1, 0.05),
    # The generator multiplies by 244 where 224 was meant; its author kept it, and so do we.
    "elastic_transform": tuple((244 * a, 244 * s, 244 * j) for a, s, j in
                               ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02),
                                (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))),
    "pixelate": (0.6, 0.5, 0.4, 0.3, 0.25),
    "jpeg_compression": (25, 18, 15, 10, 7),
    "spatter": ((0.65, 0.3, 4, 0.69, 0.6, 0), (0.65, 0.3, 3, 0.68, 0.6, 0),
                (0.65, 0.3, 2, 0.68, 0.5, 0), (0.65, 0.3, 1, 0.65, 1.5, 1),
                (0.67, 0.4, 1, 0.65, 1.5, 1)),
    "saturate": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
}

PRESETS: dict[str, Preset] = {
    "cifar": Preset("cifar", 32, fog_map_size=32, frost_scale=0.2, params=_CIFAR),
    "tinyimagenet": Preset("tinyimagenet", 64, fog_map_size=64, frost_scale=0.3, params=_TINYIMAGENET),
    "imagenet": Preset("imagenet", 224, fog_map_size=256, frost_scale=1.0, params=_IMAGENET),
}


def preset_params(preset: str, name: str, severity: int):
    """The parameters of corruption ``name`` at ``severity`` (1..5) for ``preset``."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    table = PRESETS[preset].params
    if name not in table:
        raise ValueError(f"name: expected one of {sorted(table)}, got {name!r}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"severity: expected an integer from 1 to 5, got {severity!r}")
    return table[name][int(severity) - 1]
