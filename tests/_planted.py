"""Models and data whose answers are known by construction, shared by the evaluation tests."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

STEP = 20  # pixel value per class: an image of class c carries 20 * c at channel 0, row 0, column 0


class PlantedPixelModel(nn.Module):
    """Predicts class c when the planted pixel reads 20 * c (logits: minus the squared distance)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.register_buffer("levels", torch.arange(num_classes, dtype=torch.float32) * STEP)
        self.bn = nn.BatchNorm2d(3)  # gives the model a train/eval mode to check

    def forward(self, x):
        v = x[:, 0, 0, 0].float() * 255.0
        return -(v[:, None] - self.levels[None, :]) ** 2 / 100.0


def planted_images(classes_seen: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Random uint8 images (N, H, W, 3) whose planted pixel encodes ``classes_seen``."""
    images = rng.integers(0, 256, (len(classes_seen), size, size, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.asarray(classes_seen) * STEP
    return images


def labels_with_errors(seen: np.ndarray, wrong: int, num_classes: int = 10) -> np.ndarray:
    """Labels equal to ``seen`` except the first ``wrong`` ones (shifted by one class): accuracy 1 - wrong/N."""
    labels = np.array(seen, copy=True)
    labels[:wrong] = (labels[:wrong] + 1) % num_classes
    return labels
