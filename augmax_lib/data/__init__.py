"""Data sets as whole uint8 tensors (or lazy folders for ImageNet), their corrupted versions, a device loader."""
from __future__ import annotations

from .cifar import CIFAR10_CLASSES, CIFAR100_CLASSES, load_cifar10, load_cifar100
from .cifar101 import CIFAR101_VERSIONS, find_cifar101, load_cifar101
from .cifar_c import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTION_NAMES, SEVERITIES, available_corruptions, load_cifar_c
from .deepaugment import with_deepaugment
from .device_loader import DeviceLoader, crop_flip, split_validation
from .imagenet import IMAGENET_MEAN, IMAGENET_STD, ConcatFolderSet, FolderSet, imagenet_transform, load_imagenet, load_imagenet_c
from .imageset import ImageSet
from .jpeg_mirror import MIRROR_SOURCE
from .roots import DataFormatError, DatasetNotFoundError, cache_dir, resolve_root
from .synthetic import SYNTHETIC_CLASSES, SYNTHETIC_SOURCE, load_synthetic, make_synthetic
from .tinyimagenet import load_tinyimagenet, load_tinyimagenet_c

__all__ = [
    "DATASETS", "load_dataset", "load_corrupted", "ImageSet", "FolderSet", "ConcatFolderSet", "DeviceLoader",
    "crop_flip", "split_validation", "has_corrupted", "resolve_root", "cache_dir", "DatasetNotFoundError",
    "DataFormatError",
    "load_cifar10", "load_cifar100", "load_cifar101", "load_cifar_c", "load_tinyimagenet", "load_tinyimagenet_c",
    "load_imagenet", "load_imagenet_c", "load_synthetic", "make_synthetic", "with_deepaugment",
    "available_corruptions", "find_cifar101", "imagenet_transform", "BENCHMARK_CORRUPTIONS",
    "EXTRA_CORRUPTION_NAMES", "SEVERITIES", "CIFAR10_CLASSES", "CIFAR100_CLASSES", "CIFAR101_VERSIONS",
    "SYNTHETIC_CLASSES", "SYNTHETIC_SOURCE", "MIRROR_SOURCE", "IMAGENET_MEAN", "IMAGENET_STD",
]

_LOADERS = {
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "tinyimagenet": load_tinyimagenet,
    "imagenet": load_imagenet,
    "synthetic": load_synthetic,
}
DATASETS = tuple(_LOADERS)


def load_dataset(name: str, split: str = "train", root=None, **options):
    """Load data set ``name`` (one of DATASETS) and ``split`` ('train' or 'test').

    Returns an ImageSet (uint8 images in memory), or a lazy FolderSet for ImageNet. ``root`` defaults to
    $AUGMAX_DATA, then ~/.cache/augmax. Options go to the loader: download (CIFAR), cache / use_cache
    (decode cache), n / seed / image_size (synthetic), transform (ImageNet).
    """
    if name not in _LOADERS:
        raise ValueError(f"name: expected one of {list(DATASETS)}, got {name!r}")
    if name == "synthetic":
        return load_synthetic(split, **options)
    return _LOADERS[name](split, root=root, **options)


def has_corrupted(dataset: str, corruption: str, severity: int, root=None) -> bool:
    """Whether the published corrupted files of one (corruption, severity) of ``dataset`` are present."""
    from .folders import find_corruption_folder
    from .imagenet import imagenet_c_candidates
    from .tinyimagenet import tinyimagenet_c_candidates

    if dataset in ("cifar10", "cifar100"):
        from .cifar_c import cifar_c_folder

        folder = cifar_c_folder(dataset, root)
        return (folder / f"{corruption}.npy").is_file() and (folder / "labels.npy").is_file()
    candidates = {"tinyimagenet": tinyimagenet_c_candidates, "imagenet": imagenet_c_candidates}.get(dataset)
    return candidates is not None and find_corruption_folder(candidates(root), corruption, severity) is not None


def load_corrupted(dataset: str, corruption: str, severity: int, root=None, classes=None, **options):
    """The corrupted test images of ``dataset`` ('cifar10', 'cifar100', 'tinyimagenet', 'imagenet')."""
    if dataset in ("cifar10", "cifar100"):
        return load_cifar_c(corruption, severity, dataset, root)
    if dataset == "tinyimagenet":
        return load_tinyimagenet_c(corruption, severity, root, classes=classes, **options)
    if dataset == "imagenet":
        return load_imagenet_c(corruption, severity, root, classes=classes, **options)
    raise ValueError(f"dataset: no published corrupted set for {dataset!r}; expected cifar10, cifar100, "
                     f"tinyimagenet or imagenet")
