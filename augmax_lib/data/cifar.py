"""CIFAR-10 and CIFAR-100: torchvision's python batches (downloaded only on request) or the JPEG mirror."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from .imageset import ImageSet, check_labels, from_hwc, warn_count
from .jpeg_mirror import CIFAR10_CLASSES, MIRROR_TARBALL, MIRROR_TREE, find_mirror, load_mirror, mirror_candidates
from .roots import DataFormatError, DatasetNotFoundError, describe_root, how_to_replace, resolve_root

__all__ = ["CIFAR10_CLASSES", "CIFAR100_CLASSES", "load_cifar10", "load_cifar100", "read_cifar_batches"]

CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger",
    "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

# torchvision's folder names and files (what CIFAR10(root, download=True) leaves in root).
_LAYOUT = {
    "cifar10": dict(folder="cifar-10-batches-py", train=[f"data_batch_{i}" for i in range(1, 6)],
                    test=["test_batch"], label_key="labels", classes=CIFAR10_CLASSES, source="CIFAR-10",
                    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test=["test"], label_key="fine_labels",
                     classes=CIFAR100_CLASSES, source="CIFAR-100",
                     url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}
_OFFICIAL = {"train": 50000, "test": 10000}


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            # The batches were pickled by Python 2; latin1 keeps the byte strings intact.
            obj = pickle.load(f, encoding="latin1")
    except MemoryError:
        raise
    except Exception as err:  # a cut or foreign file fails inside pickle in many ways; all mean the same here
        size = path.stat().st_size
        raise DataFormatError(f"{path}: not a readable CIFAR python batch ({type(err).__name__}: {err}; the file "
                              f"holds {size} bytes, about 3073 per image in a whole batch: truncated?)") from err
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    return obj


def read_cifar_batches(folder: Path, files: list, label_key: str, num_classes: int):
    """Read torchvision/Krizhevsky python batches into (N, 32, 32, 3) uint8 pixels and int64 labels."""
    images, labels = [], []
    for name in files:
        path = folder / name
        if not path.is_file():
            raise DataFormatError(f"{folder}: missing batch file {name!r} (expected {files})")
        batch = _unpickle(path)
        if "data" not in batch or label_key not in batch:
            raise DataFormatError(f"{path}: expected keys 'data' and {label_key!r}, found {sorted(batch)}")
        data = np.asarray(batch["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataFormatError(f"{path}: 'data' must be uint8 of shape (N, 3072), got {data.dtype} {data.shape}")
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        labels.append(check_labels(np.asarray(batch[label_key]), data.shape[0], num_classes, f"{path} labels"))
    return np.concatenate(images), np.concatenate(labels)


def _load_batches(name: str, split: str, root: Path, download: bool) -> ImageSet | None:
    layout = _LAYOUT[name]
    folder = root / layout["folder"]
    if download and not folder.is_dir():
        import torchvision  # downloads and checks the archive's md5, then unpacks it into root

        cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
        cls(str(root), train=(split == "train"), download=True)
    if not folder.is_dir():
        return None
    with how_to_replace(f"download {layout['url']} again and unpack it into {root} (replacing {folder})"):
        images, labels = read_cifar_batches(folder, layout[split], layout["label_key"], len(layout["classes"]))
    warn_count(f"{folder} ({split})", len(labels), _OFFICIAL[split])
    return from_hwc(images, labels, layout["classes"], layout["source"], name)


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    return split


def load_cifar10(split: str = "train", root=None, download: bool = False, cache=None,
                 use_cache: bool = True, progress: bool = True) -> ImageSet:
    """CIFAR-10 from torchvision's batches in the root, else the JPEG mirror (tarball or tree) there.

    ``download=True`` lets torchvision fetch the original batches when neither is present.
    """
    split = _check_split(split)
    base = resolve_root(root)
    found = _load_batches("cifar10", split, base, download=False)
    if found is not None:
        return found
    mirror = find_mirror(base)
    if mirror is not None:
        return load_mirror(split, mirror, cache=cache, use_cache=use_cache, progress=progress)
    if download:
        return _load_batches("cifar10", split, base, download=True)
    looked = [base / _LAYOUT["cifar10"]["folder"], *mirror_candidates(base)]
    raise DatasetNotFoundError(
        "CIFAR-10", looked,
        f"download {_LAYOUT['cifar10']['url']} and unpack it into {base} (giving {looked[0]}), or pass "
        f"download=True on a machine with internet; the JPEG mirror also works: put {MIRROR_TARBALL} "
        f"(or its unpacked {MIRROR_TREE}/train/<class>/*.jpg and test/... tree) in {base}",
        describe_root(root))


def load_cifar100(split: str = "train", root=None, download: bool = False, **_ignored) -> ImageSet:
    """CIFAR-100 (fine labels) from torchvision's python batches in the root."""
    split = _check_split(split)
    base = resolve_root(root)
    found = _load_batches("cifar100", split, base, download)
    if found is not None:
        return found
    folder = base / _LAYOUT["cifar100"]["folder"]
    raise DatasetNotFoundError(
        "CIFAR-100", [folder],
        f"download {_LAYOUT['cifar100']['url']} and unpack it into {base} (giving {folder}/train, test, meta), "
        f"or pass download=True on a machine with internet", describe_root(root))

