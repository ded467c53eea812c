"""AugMix with the reference's semantics, one PIL image at a time (google-research/augmix, augmentations.py).

This is the oracle for the batched ops and the baseline of bench/augment.py; it is deliberately a
plain per-image loop over PIL calls.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

OPS_AUGMIX = ("autocontrast", "equalize", "posterize", "rotate", "solarize",
              "shear_x", "shear_y", "translate_x", "translate_y")
OPS_ALL = OPS_AUGMIX + ("color", "contrast", "brightness", "sharpness")

_ENHANCERS = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
              "brightness": ImageEnhance.Brightness, "sharpness": ImageEnhance.Sharpness}


def pil_op(img: Image.Image, name: str, value: float) -> Image.Image:
    """Apply one op to a PIL image with its value in the op's natural unit."""
    size = img.size
    if name == "autocontrast":
        return ImageOps.autocontrast(img)
    if name == "equalize":
        return ImageOps.equalize(img)
    if name == "posterize":
        return ImageOps.posterize(img, int(value))
    if name == "solarize":
        return ImageOps.solarize(img, int(value))
    if name == "rotate":
        return img.rotate(value, resample=Image.BILINEAR)
    affine = {"shear_x": (1, value, 0, 0, 1, 0), "shear_y": (1, 0, 0, value, 1, 0),
              "translate_x": (1, 0, value, 0, 1, 0), "translate_y": (1, 0, 0, 0, 1, value)}
    if name in affine:
        return img.transform(size, Image.AFFINE, affine[name], resample=Image.BILINEAR)
    return _ENHANCERS[name](img).enhance(value)


def sample_value(name: str, severity: float, image_size: int, rng: np.random.Generator) -> float:
    """Draw an op's value exactly as the reference does (level U(0.1, severity), truncations, signs)."""
    level = rng.uniform(0.1, severity)
    if name in ("autocontrast", "equalize"):
        return 0.0
    if name == "posterize":
        return 4 - int(level * 4 / 10)
    if name == "solarize":
        return 256 - int(level * 256 / 10)
    if name == "rotate":
        v = int(level * 30 / 10)
    elif name in ("shear_x", "shear_y"):
        v = float(level) * 0.3 / 10
    elif name in ("translate_x", "translate_y"):
        v = int(level * (image_size / 3) / 10)
    else:
        return float(level) * 1.8 / 10 + 0.1
    return -v if rng.uniform() > 0.5 else v


def augmix_one(image: np.ndarray, rng: np.random.Generator, width=3, depth=-1, severity=3,
               alpha=1.0, ops=OPS_AUGMIX) -> np.ndarray:
    """One AugMix image (H, W, C) uint8 -> float32 [0, 1], each chain with its own depth."""
    img = Image.fromarray(image)
    ws = rng.dirichlet([alpha] * width).astype(np.float32)
    m = np.float32(rng.beta(alpha, alpha))
    mix = np.zeros(image.shape, np.float32)
    for i in range(width):
        aug = img
        d = depth if depth > 0 else rng.integers(1, 4)
        for _ in range(d):
            name = ops[rng.integers(len(ops))]
            aug = pil_op(aug, name, sample_value(name, severity, image.shape[0], rng))
        mix += ws[i] * (np.asarray(aug, np.float32) / 255.0)
    return (1 - m) * (image.astype(np.float32) / 255.0) + m * mix
