"""The CIFAR-10-C / Tiny-ImageNet-C / ImageNet-C corruptions (Hendrycks and Dietterich), batched on any device.

``corrupt(x, name, severity, preset="cifar", generator=None)`` applies one corruption at one
severity (1..5) to a batch (N, C, H, W), uint8 in [0, 255] or float in [0, 1], on ``x``'s device,
and returns the same dtype. Presets hold Hendrycks' parameters for 32x32 (``cifar``), 64x64
(``tinyimagenet``) and 224x224 (``imagenet``) images. Random corruptions draw every image's
randomness from ``generator`` (None: torch's default generator), so a seeded generator gives the
same batch again.
"""
from __future__ import annotations

import torch

from .._checks import check_generator, check_images, like_input, to_float
from . import blur, digital, noise, weather
from ._filters import rgb_to_gray
from .presets import PRESETS, preset_params

__all__ = ["CORRUPTIONS", "EXTRA_CORRUPTIONS", "ALL_CORRUPTIONS", "RANDOM_CORRUPTIONS", "PRESETS", "corrupt"]

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

# These read colour; a one-channel image goes through them as grey RGB and comes back as its luma.
_COLOUR = frozenset({"brightness", "saturate", "snow", "frost", "spatter"})
# These reproduce the reference's 8-bit PIL arithmetic when given uint8 images.
_PIL_8BIT = frozenset({"pixelate", "jpeg_compression"})


def corrupt(x: torch.Tensor, name: str, severity: int, preset: str = "cifar", generator=None) -> torch.Tensor:
    """Corruption ``name`` at ``severity`` (1..5) with ``preset``'s parameters, applied to every image of ``x``.

    ``x``: (N, C, H, W) with C in {1, 3}, uint8 or float in [0, 1]; the result has ``x``'s dtype and
    device (uint8 results are rounded to the nearest level). ``generator``: a torch.Generator on
    ``x``'s device, or None for torch's default one.
    """
    check_images(x, "x")
    if name not in _KERNELS:
        raise ValueError(f"name: expected one of {list(ALL_CORRUPTIONS)}, got {name!r}")
    params = preset_params(preset, name, severity)
    check_generator(generator, x.device)
    if x.shape[0] == 0:
        return x.clone()
    xf = to_float(x)
    if xf.dtype != torch.float32:
        xf = xf.to(torch.float32)   # kernels run in float32 (half precision is too coarse for them)
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
    return like_input(y, x.dtype)
