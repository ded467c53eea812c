"""Frost textures, read at run time from the installed ``imagecorruptions`` package's data files.

The textures are not ours to ship; the package is located with importlib without importing it
(its import needs ``pkg_resources``, which recent setuptools no longer provides).
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["FROST_FILES", "frost_dir", "load_frost_textures", "resize_linear"]

# The generators draw the texture index with randint(5), so frost6 is never used.
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")


def frost_dir() -> Path:
    """The folder of the frost textures inside the installed ``imagecorruptions`` package."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("frost needs the frost texture images of the 'imagecorruptions' package, "
                           "which is not installed: pip install imagecorruptions")
    folder = Path(list(spec.submodule_search_locations)[0]) / "frost"
    missing = [f for f in FROST_FILES if not (folder / f).is_file()]
    if missing:
        raise RuntimeError(f"frost: texture files {missing} are missing from {folder}; "
                           "reinstall with: pip install --force-reinstall imagecorruptions")
    return folder


def resize_linear(image: np.ndarray, scale: float) -> np.ndarray:
    """OpenCV's ``cv2.resize(image, (0, 0), fx=scale, fy=scale)`` (INTER_LINEAR, no anti-aliasing) of uint8 HWC.

    Output size rounds ``size * scale``; destination pixel d reads source coordinate
    (d + 1/2) / scale - 1/2, clamped to the image, interpolated linearly and rounded to 8 bits.
    At scale 0.2 (CIFAR) that lands on whole pixels and equals OpenCV exactly; at 0.3 (Tiny-ImageNet)
    OpenCV's own fixed-point arithmetic differs by one level on about 12 % of the texture pixels.
    """
    if scale == 1.0:
        return image
    out = image.astype(np.float64)
    for axis in (0, 1):
        size = out.shape[axis]
        new = int(np.rint(size * scale))
        src = (np.arange(new) + 0.5) / scale - 0.5
        i0 = np.floor(src).astype(np.int64)
        frac = np.where(i0 < 0, 0.0, src - i0)
        i0 = np.clip(i0, 0, size - 1)
        i1 = np.clip(i0 + 1, 0, size - 1)
        a = np.take(out, i0, axis=axis)
        b = np.take(out, i1, axis=axis)
        shape = [1, 1, 1]
        shape[axis] = new
        frac = frac.reshape(shape)
        out = a * (1 - frac) + b * frac
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@lru_cache(maxsize=None)
def _textures_numpy(scale: float) -> tuple[np.ndarray, np.ndarray]:
    folder = frost_dir()
    images = []
    for name in FROST_FILES:
        with Image.open(folder / name) as im:
            # cv2.imread(IMREAD_COLOR) drops an alpha channel without compositing; so does convert("RGB").
            images.append(resize_linear(np.asarray(im.convert("RGB")), scale))
    sizes = np.array([im.shape[:2] for im in images])
    stack = np.zeros((len(images), *sizes.max(0), 3), np.uint8)
    for i, im in enumerate(images):
        stack[i, :im.shape[0], :im.shape[1]] = im
    return stack, sizes


_ON_DEVICE: dict = {}


def load_frost_textures(scale: float, device) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The five textures resized by ``scale``: (5, 3, Hmax, Wmax) uint8 zero-padded on ``device``,
    their (5, 2) sizes on ``device``, and the same sizes as a numpy array (to check without a sync)."""
    key = (float(scale), str(device))
    if key not in _ON_DEVICE:
        stack, sizes = _textures_numpy(float(scale))
        _ON_DEVICE[key] = (torch.from_numpy(stack).permute(0, 3, 1, 2).contiguous().to(device),
                           torch.from_numpy(sizes).to(device), sizes)
    return _ON_DEVICE[key]
