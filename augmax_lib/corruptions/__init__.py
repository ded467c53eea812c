"""The CIFAR-10-C / Tiny-ImageNet-C / ImageNet-C corruptions (Hendrycks and Dietterich), batched on any device.

``corrupt(x, name, severity, preset="cifar", generator=None)`` applies one corruption at one
severity (1..5) to a batch (N, C, H, W), uint8 in [0, 255] or float in [0, 1], on ``x``'s device,
and returns the same dtype. Presets hold Hendrycks' parameters for 32x32 (``cifar``), 64x64
(``tinyimagenet``) and 224x224 (``imagenet``) images. Random corruptions draw every image's
randomness from ``generator`` (None: torch's default generator), so a seeded generator gives the
same batch again.

uint8 results are truncated to a grey level, as the generators' ``np.uint8(corruption(img))`` stored
them (``rounding="nearest"`` rounds instead). ``generator_semantics(preset)`` records what is reproduced.
"""
from __future__ import annotations

import torch

from .._checks import check_generator, check_images, like_input
from . import blur, digital, noise, weather
from ._filters import floor_levels, rgb_to_gray
from .presets import PRESETS, preset_params

__all__ = ["CORRUPTIONS", "EXTRA_CORRUPTIONS", "ALL_CORRUPTIONS", "RANDOM_CORRUPTIONS", "PRESETS", "ROUNDINGS",
           "PUBLISHED_JPEG_QUALITY", "generator_semantics", "corrupt"]

# The 15 of the benchmarks, in the order of Hendrycks' tables and files.
CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog",
    "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
# The four held-out ones ("extra" in the CIFAR-10-C release), used for validation.
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS = CORRUPTIONS + EXTRA_CORRUPTIONS

# Those whose output depends on the generator.
RANDOM_CORRUPTIONS = frozenset({
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "glass_blur", "motion_blur",
    "snow", "frost", "fog", "elastic_transform", "spatter",
})

_KERNELS = {
    "gaussian_noise": noise.gaussian_noise,
    "shot_noise": noise.shot_noise,
    "impulse_noise": noise.impulse_noise,
    "speckle_noise": noise.speckle_noise,
    "defocus_blur": blur.defocus_blur,
    "glass_blur": blur.glass_blur,
    "motion_blur": blur.motion_blur,
    "zoom_blur": blur.zoom_blur,
    "gaussian_blur": blur.gaussian_blur,
    "snow": weather.snow,
    "frost": weather.frost,
    "fog": weather.fog,
    "spatter": weather.spatter,
    "brightness": digital.brightness,
    "contrast": digital.contrast,
    "saturate": digital.saturate,
    "elastic_transform": digital.elastic_transform,
    "pixelate": digital.pixelate,
    "jpeg_compression": digital.jpeg_compression,
}

# How a uint8 result is made from the float one: "truncate" as the generators' np.uint8, or "nearest".
ROUNDINGS = ("truncate", "nearest")

# The generators' final step for each preset: CIFAR-C kept the uint8 arrays (.npy); Tiny-ImageNet-C
# and ImageNet-C saved each image with PIL as JPEG quality 85 (optimize=True changes no pixel).
PUBLISHED_JPEG_QUALITY = {"cifar": None, "tinyimagenet": 85, "imagenet": 85}
_GENERATORS = {"cifar": "make_cifar_c.py", "tinyimagenet": "make_tinyimagenet_c.py", "imagenet": "make_imagenet_c.py"}


def generator_semantics(preset: str, rounding: str = "truncate") -> dict:
    """What ``corrupt`` with ``preset`` reproduces, as a JSON-ready record for provenance files."""
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {preset!r}")
    quality = PUBLISHED_JPEG_QUALITY[preset]
    return {
        "generator": f"hendrycks/robustness ImageNet-C/create_c/{_GENERATORS[preset]}",
        "semantics_version": 2,
        "uint8": ("truncate (np.uint8 of the float result, as the generator stored it)" if rounding == "truncate"
                  else "round to the nearest level (not the generator's truncation)"),
        "glass_blur": "copy: x[h, w] takes x[h', w'], x[h', w'] keeps its value (the generator's tuple "
                      "assignment of numpy views), in its loop order",
        "motion_blur": "ImageMagick 6's 8-bit result, which floors the blur (checked against 6.9.11 Q16)",
        "snow_layer": "8-bit, floored before and after ImageMagick 6's motion blur",
        "published_format": ("uint8 .npy arrays" if quality is None
                             else f"JPEG quality {quality} files (PIL save, optimize=True)"),
    }


# These read colour; a one-channel image goes through them as grey RGB and comes back as its luma.
_COLOUR = frozenset({"brightness", "saturate", "snow", "frost", "spatter"})
# Glass blur floors a Gaussian blur to 8 bits before its pixel loop: small taps on flat patches put
# values 1e-7 below a level, which float32 rounds onto it (one level up, then copied around).
_FLOAT64 = frozenset({"glass_blur"})
# These reproduce the reference's 8-bit PIL arithmetic when given uint8 images.
_PIL_8BIT = frozenset({"pixelate", "jpeg_compression"})


def corrupt(x: torch.Tensor, name: str, severity: int, preset: str = "cifar", generator=None,
            rounding: str = "truncate") -> torch.Tensor:
    """Corruption ``name`` at ``severity`` (1..5) with ``preset``'s parameters, applied to every image of ``x``.

    ``x``: (N, C, H, W) with C in {1, 3}, uint8 or float in [0, 1]; the result has ``x``'s dtype and
    device. ``generator``: a torch.Generator on ``x``'s device, or None for torch's default one.
    ``rounding``: how uint8 results reach a level, "truncate" (the generators' np.uint8) or "nearest".
    """
    check_images(x, "x")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding: expected one of {list(ROUNDINGS)}, got {rounding!r}")
    if name not in _KERNELS:
        raise ValueError(f"name: expected one of {list(ALL_CORRUPTIONS)}, got {name!r}")
    params = preset_params(preset, name, severity)
    check_generator(generator, x.device)
    if x.shape[0] == 0:
        return x.clone()
    # Kernels run in float32 (half precision is too coarse for them), or float64 for float64 input and
    # for those whose 8-bit steps need float64 to land on the generators' levels.
    work = torch.float64 if x.dtype == torch.float64 or name in _FLOAT64 else torch.float32
    xf = x.to(work) / 255.0 if x.dtype == torch.uint8 else x.to(work)
    kwargs = {}
    if name == "frost":
        kwargs["scale"] = PRESETS[preset].frost_scale
    elif name == "fog":
        kwargs["map_size"] = PRESETS[preset].fog_map_size
    elif name in _PIL_8BIT:
        kwargs["from_uint8"] = x.dtype == torch.uint8
    grey = name in _COLOUR and xf.shape[1] == 1
    if grey:
        xf = xf.expand(-1, 3, -1, -1)
    y = _KERNELS[name](xf.contiguous(), params, generator, **kwargs)
    if grey:
        y = rgb_to_gray(y).clamp_(0, 1)
    if x.dtype == torch.uint8 and rounding == "truncate":
        return to_uint8_truncated(y)
    return like_input(y, x.dtype)


def to_uint8_truncated(y: torch.Tensor) -> torch.Tensor:
    """A float [0, 1] result as the generators stored it: ``np.uint8(y * 255)``, which truncates."""
    return floor_levels(y).to(torch.uint8)
