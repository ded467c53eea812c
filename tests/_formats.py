"""Small data sets written in the real formats of the paper's data (the real ones cannot be downloaded here):
CIFAR-10/100 python batches, CIFAR-10.1 arrays, the Tiny-ImageNet tree, ImageNet class folders with DeepAugment
folders and ImageNet-C, each with random pixels and only as many images as a dry run reads."""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

from augmax_lib.corruptions import CORRUPTIONS

__all__ = ["write_cifar", "write_cifar101", "write_tinyimagenet", "write_imagenet", "write_all"]

WNIDS = ("n01443537", "n01629819", "n01641577", "n01644900")


def _jpeg(rng, size: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_cifar(root: Path, which: str, train: int, test: int, seed: int = 0) -> None:
    """Krizhevsky's python batches of CIFAR-10 (5 data batches + test_batch) or CIFAR-100 (train, test)."""
    rng = np.random.default_rng(seed)
    if which == "cifar10":
        folder, key, classes = root / "cifar-10-batches-py", "labels", 10
        files = {f"data_batch_{i}": train // 5 for i in range(1, 6)} | {"test_batch": test}
    else:
        folder, key, classes = root / "cifar-100-python", "fine_labels", 100
        files = {"train": train, "test": test}
    folder.mkdir(parents=True)
    for name, n in files.items():
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), key: rng.integers(0, classes, n).tolist(),
                 "filenames": [f"{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def write_cifar101(root: Path, n: int = 40, seed: int = 0) -> None:
    """CIFAR-10.1 v4 as the official repository stores it (uint8 NHWC images, int labels)."""
    rng = np.random.default_rng(seed)
    folder = root / "CIFAR-10.1" / "datasets"
    folder.mkdir(parents=True)
    np.save(folder / "cifar10.1_v4_data.npy", rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    np.save(folder / "cifar10.1_v4_labels.npy", rng.integers(0, 10, n))


def _class_folders(base: Path, per_class: int, size: int, rng, inner: str = "") -> None:
    for wnid in WNIDS:
        folder = base / wnid / inner
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / f"{wnid}_{i}.JPEG").write_bytes(_jpeg(rng, size))


def write_tinyimagenet(root: Path, per_class: int = 80, val_per_class: int = 4, seed: int = 0) -> None:
    """tiny-imagenet-200/ (wnids.txt, train/<wnid>/images/, val/images + val_annotations.txt) and the two
    DeepAugment folders the deepaug configs name, with 64x64 JPEGs of len(WNIDS) classes."""
    rng = np.random.default_rng(seed)
    folder = root / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    _class_folders(folder / "train", per_class, 64, rng, "images")
    lines = []
    for i in range(val_per_class * len(WNIDS)):
        name = f"val_{i}.JPEG"
        (folder / "val" / "images" / name).write_bytes(_jpeg(rng, 64))
        lines.append(f"{name}\t{WNIDS[i % len(WNIDS)]}\t0\t0\t63\t63")
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    for extra in ("tiny-imagenet-200-DeepAug-EDSR", "tiny-imagenet-200-DeepAug-CAE"):
        _class_folders(root / extra, 4, 64, rng)


def write_imagenet(root: Path, per_class: int = 80, val_per_class: int = 2, seed: int = 0) -> None:
    """imagenet/{train,val}/<wnid>/*.JPEG, the DeepAugment folders and ImageNet-C/<corruption>/<severity>/<wnid>/
    (224x224, as published) for len(WNIDS) classes; the training JPEGs are small (they are resized crops)."""
    rng = np.random.default_rng(seed)
    _class_folders(root / "imagenet" / "train", per_class, 48, rng)
    _class_folders(root / "imagenet" / "val", val_per_class, 256, rng)
    for extra in ("imagenet-DeepAug-EDSR", "imagenet-DeepAug-CAE"):
        _class_folders(root / extra, 4, 48, rng)
    for corruption in CORRUPTIONS:
        for severity in range(1, 6):
            _class_folders(root / "ImageNet-C" / corruption / str(severity), 1, 224, rng)


def write_all(root: Path) -> Path:
    """Every format above under ``root`` (a data root); returns it."""
    root = Path(root)
    write_cifar(root, "cifar10", train=320, test=100)
    write_cifar(root, "cifar100", train=320, test=100, seed=1)
    write_cifar101(root)
    write_tinyimagenet(root)
    write_imagenet(root)
    return root
