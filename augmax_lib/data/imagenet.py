"""ImageNet and ImageNet-C as lazy image-folder data sets: files are decoded and transformed per item."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .folders import decode_image, find_corruption_folder, scan_class_folders
from .imageset import warn_count
from .roots import DatasetNotFoundError, describe_root, resolve_root

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FolderSet", "ConcatFolderSet", "imagenet_transform",
           "load_imagenet", "imagenet_c_candidates", "load_imagenet_c"]

# The statistics ImageNet models normalise with (applied by the model or its input transform, not here).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_URL = "https://image-net.org/download-images.php"
IMAGENET_C_URL = "https://zenodo.org/record/2235448"
_OFFICIAL = {"train": 1281167, "val": 50000}


def imagenet_transform(train: bool, size: int = 224, resize: int | None = 256):
    """The standard pipeline on PIL images, ending in a uint8 (3, size, size) tensor.

    Train: random resized crop + horizontal flip. Test: resize the short side to ``resize`` (None: no
    resize; PIL bilinear, the long side truncated to an integer, as torchvision's ``Resize``) and
    centre-crop ``size``: the reference's Resize(256) + CenterCrop(224) for ImageNet and ImageNet-C.
    """
    from torchvision.transforms import v2

    if train:
        steps = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        steps = ([v2.Resize(resize, antialias=True)] if resize else []) + [v2.CenterCrop(size)]
    return v2.Compose(steps + [v2.PILToTensor()])


class FolderSet(Dataset):
    """Images in ``<folder>/<class>/...`` read on demand: item i is (uint8 (3, H, W) tensor, label)."""

    def __init__(self, folder, transform=None, classes=None, source: str = "", name: str = "",
                 what: str = "image folder", allow_missing: bool = False):
        self.folder = Path(folder)
        paths, labels, self.classes = scan_class_folders(self.folder, classes, what, allow_missing)
        self.paths = list(paths)
        self.labels = torch.from_numpy(labels)
        self.transform = transform
        self.source, self.name = source, name

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, i):
        from PIL import Image

        path = self.paths[i]
        img = Image.fromarray(decode_image(path, str(path)))
        if self.transform is not None:
            x = self.transform(img)
        else:
            x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
        return x, int(self.labels[i])

    def __repr__(self) -> str:
        return f"FolderSet({str(self.folder)!r}, n={len(self)}, classes={len(self.classes)}, source={self.source!r})"


class ConcatFolderSet(Dataset):
    """Several FolderSets with the same classes read as one (e.g. a train set plus DeepAugment folders)."""

    def __init__(self, parts, source: str = "", name: str = ""):
        self.parts = list(parts)
        if not self.parts:
            raise ValueError("parts: expected at least one data set")
        self.classes = list(self.parts[0].classes)
        for p in self.parts[1:]:
            if list(p.classes) != self.classes:
                raise ValueError(f"parts: {p!r} has other classes than {self.parts[0]!r}")
        self.labels = torch.cat([p.labels for p in self.parts])
        self._ends = np.cumsum([len(p) for p in self.parts])
        self.source = source or " + ".join(p.source for p in self.parts)
        self.name = name or self.parts[0].name

    def __len__(self) -> int:
        return int(self._ends[-1])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getitem__(self, i):
        if i < 0:
            i += len(self)
        part = int(np.searchsorted(self._ends, i, side="right"))
        start = 0 if part == 0 else int(self._ends[part - 1])
        return self.parts[part][i - start]


def load_imagenet(split: str = "train", root=None, transform=None) -> FolderSet:
    """ImageNet ``split`` ('train' or 'val'/'test') from ``<root>/imagenet/<split>/<wnid>/*.JPEG``, lazily."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
    split = "val" if split == "test" else split
    folder = resolve_root(root) / "imagenet" / split
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"ImageNet ({split})", [folder],
            f"get ILSVRC2012 from {IMAGENET_URL} and arrange it as {folder}/<wnid>/*.JPEG (the validation "
            f"images must be sorted into one folder per class too)", describe_root(root))
    if transform is None:
        transform = imagenet_transform(train=(split == "train"))
    data = FolderSet(folder, transform, source="ImageNet", name="imagenet", what=f"ImageNet {split} ({folder})")
    warn_count(str(folder), len(data), _OFFICIAL[split])
    return data


def imagenet_c_candidates(root=None) -> list:
    """The folders searched for ImageNet-C under the data root, in order."""
    base = resolve_root(root)
    return [base / "ImageNet-C", base / "imagenet-c"]


def load_imagenet_c(corruption: str, severity: int, root=None, classes=None, transform=None) -> FolderSet:
    """ImageNet-C images of one corruption and severity, lazily.

    The default transform is the clean validation set's: shorter side to 256 (PIL bilinear), then the
    central 224x224. The release's images are already 224x224, so this upsamples them to 256x256 and
    crops the centre, exactly as AugMax's (``dataloaders/imagenet.py``) and AugMix's (``imagenet.py``)
    evaluations do.
    """
    candidates = imagenet_c_candidates(root)
    folder = find_corruption_folder(candidates, corruption, severity)
    if folder is None:
        raise DatasetNotFoundError(
            f"ImageNet-C ({corruption}, severity {severity})", [c / corruption / str(severity) for c in candidates],
            f"download the tar files of {IMAGENET_C_URL} and unpack them into {candidates[0]} (layout "
            f"<corruption>/<severity>/<wnid>/*.JPEG)", describe_root(root))
    if transform is None:
        transform = imagenet_transform(train=False)
    return FolderSet(folder, transform, classes, source=f"ImageNet-C {corruption} s{severity}",
                     name="imagenet-c", what=f"ImageNet-C ({folder})")
