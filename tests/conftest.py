"""Shared fixtures: real CIFAR images when AUGMAX_DATA has the JPEG mirror, else images made here."""
from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    # `make test` runs two xdist workers on a 2-core machine: one torch thread each, since
    # oversubscribed threads can run many times slower than one.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        torch.set_num_threads(1)


def _mirror_images(n: int) -> np.ndarray | None:
    root = os.environ.get("AUGMAX_DATA")
    if not root:
        return None
    tar_path = Path(root) / "cifar10-jpeg.tar.xz"
    if not tar_path.is_file():
        return None
    images = []
    with tarfile.open(tar_path, "r:xz") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(".jpg"):
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                    images.append(np.asarray(im.convert("RGB")))
                if len(images) == n:
                    break
    return np.stack(images) if len(images) == n else None


def _made_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Natural-looking test images: smooth colour gradients, a bright shape, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        a, b, c = rng.uniform(-1, 1, 3)
        base = np.stack([a * xx + b * yy, b * xx - c * yy, c * xx + a * yy], -1)
        base = (base - base.min()) / (np.ptp(base) + 1e-9) * rng.uniform(80, 200) + rng.uniform(0, 50)
        cx, cy, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.3)
        base[(xx - cx) ** 2 + (yy - cy) ** 2 < r ** 2] += rng.uniform(-60, 60, 3)
        base += rng.normal(0, 6, base.shape)
        out[i] = np.clip(base, 0, 255).astype(np.uint8)
    return out


@pytest.fixture(scope="session")
def images_hwc() -> np.ndarray:
    """48 test images (N, 32, 32, 3) uint8: real CIFAR-10 test images when available."""
    real = _mirror_images(48)
    return real if real is not None else _made_images(48)
