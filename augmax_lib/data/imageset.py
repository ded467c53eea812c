"""ImageSet: a whole labelled image set held in memory as one uint8 tensor, and the checks every loader runs."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .roots import DataFormatError

__all__ = ["ImageSet", "check_hwc_uint8", "check_labels", "warn_count"]


@dataclass
class ImageSet:
    """Images uint8 (N, C, H, W) on the CPU, labels int64 (N,), class names, a source label for reports."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list = field(default_factory=list)
    source: str = ""
    name: str = ""

    def __post_init__(self):
        what = self.name or "ImageSet"
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.uint8 or self.images.dim() != 4:
            got = (f"{self.images.dtype} of shape {tuple(self.images.shape)}"
                   if isinstance(self.images, torch.Tensor) else type(self.images).__name__)
            raise DataFormatError(f"{what}: images must be a uint8 tensor (N, C, H, W), got {got}")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            got = (f"{self.labels.dtype} of shape {tuple(self.labels.shape)}"
                   if isinstance(self.labels, torch.Tensor) else type(self.labels).__name__)
            raise DataFormatError(f"{what}: labels must be an int64 tensor (N,), got {got}")
        if self.labels.shape[0] != self.images.shape[0]:
            raise DataFormatError(f"{what}: {self.images.shape[0]} images but {self.labels.shape[0]} labels")
        self.classes = list(self.classes)
        if self.classes and len(self.labels) and int(self.labels.max()) >= len(self.classes):
            raise DataFormatError(f"{what}: label {int(self.labels.max())} out of range for "
                                  f"{len(self.classes)} classes")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> tuple:
        return tuple(self.images.shape[-2:])

    def subset(self, index, name: str | None = None) -> "ImageSet":
        """The images at ``index`` (a long tensor, list or slice), same classes and source."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(self.images[index], self.labels[index], self.classes, self.source,
                        name if name is not None else self.name)

    def __repr__(self) -> str:
        return (f"ImageSet(name={self.name!r}, n={len(self)}, shape={tuple(self.images.shape[1:])}, "
                f"classes={len(self.classes)}, source={self.source!r})")


def check_hwc_uint8(array: np.ndarray, what: str, size: tuple | None = None, channels: int = 3) -> None:
    """Raise unless ``array`` is uint8 of shape (N, H, W, channels) (with (H, W) == size when given)."""
    if array.dtype != np.uint8:
        raise DataFormatError(f"{what}: expected uint8 pixels, got dtype {array.dtype}")
    if array.ndim != 4 or array.shape[-1] != channels:
        raise DataFormatError(f"{what}: expected shape (N, H, W, {channels}), got {array.shape}")
    if size is not None and tuple(array.shape[1:3]) != tuple(size):
        raise DataFormatError(f"{what}: expected {size[0]}x{size[1]} images, got shape {array.shape}")


def check_labels(labels: np.ndarray, n: int, num_classes: int, what: str) -> np.ndarray:
    """Return ``labels`` as int64 after checking: one integer per image, each in [0, num_classes)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DataFormatError(f"{what}: expected {n} labels of shape ({n},), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataFormatError(f"{what}: expected integer labels, got dtype {labels.dtype}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataFormatError(f"{what}: labels must lie in [0, {num_classes}), found range "
                              f"[{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def warn_count(what: str, n: int, official: int) -> None:
    """Warn when a set holds a different number of images than the official one (results not comparable)."""
    if n != official:
        warnings.warn(f"{what}: holds {n} images, the official set has {official}; results on it are not "
                      f"comparable with published numbers", UserWarning, stacklevel=3)


def from_hwc(images: np.ndarray, labels: np.ndarray, classes, source: str, name: str) -> ImageSet:
    """Build an ImageSet from (N, H, W, C) uint8 pixels and integer labels."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(x, torch.from_numpy(np.asarray(labels, dtype=np.int64)), list(classes), source, name)
