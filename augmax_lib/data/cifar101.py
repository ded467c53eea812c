"""CIFAR-10.1 (Recht et al.): ``cifar10.1_v{4,6}_{data,labels}.npy``, a new test set for CIFAR-10 models."""
from __future__ import annotations

from .cifar import CIFAR10_CLASSES
from .imageset import ImageSet, check_hwc_uint8, check_labels, from_hwc, warn_count
from .npy import open_npy
from .roots import DatasetNotFoundError, describe_root, how_to_replace, resolve_root

__all__ = ["CIFAR101_VERSIONS", "cifar101_candidates", "find_cifar101", "load_cifar101"]

# v4 is the reference's default; v6 is what CIFAR-10.1's authors recommend.
CIFAR101_VERSIONS = {"v4": 2021, "v6": 2000}
URL = "https://github.com/modestyachts/CIFAR-10.1/tree/master/datasets"


def cifar101_candidates(root) -> list:
    """Folders that may hold the .npy files: the repository's layout first, then flatter ones."""
    base = resolve_root(root)
    return [base / "CIFAR-10.1" / "datasets", base / "CIFAR-10.1", base / "cifar10.1", base]


def find_cifar101(version: str = "v6", root=None):
    """The folder holding both files of ``version``, else None."""
    for folder in cifar101_candidates(root):
        if (folder / f"cifar10.1_{version}_data.npy").is_file() and \
                (folder / f"cifar10.1_{version}_labels.npy").is_file():
            return folder
    return None


def load_cifar101(version: str = "v6", root=None) -> ImageSet:
    """CIFAR-10.1 ``version`` ('v4' or 'v6') as an ImageSet with CIFAR-10's classes."""
    if version not in CIFAR101_VERSIONS:
        raise ValueError(f"version: expected one of {sorted(CIFAR101_VERSIONS)}, got {version!r}")
    folder = find_cifar101(version, root)
    if folder is None:
        looked = cifar101_candidates(root)
        raise DatasetNotFoundError(
            f"CIFAR-10.1 {version}", looked,
            f"download cifar10.1_{version}_data.npy and cifar10.1_{version}_labels.npy from {URL} into "
            f"{looked[0]}", describe_root(root))
    data_path = folder / f"cifar10.1_{version}_data.npy"
    labels_path = folder / f"cifar10.1_{version}_labels.npy"
    with how_to_replace(f"download {data_path.name} and {labels_path.name} again from {URL} into {folder}"):
        images = open_npy(data_path)
        check_hwc_uint8(images, str(data_path), (32, 32))
        labels = check_labels(open_npy(labels_path), images.shape[0], 10, str(labels_path))
    warn_count(str(data_path), images.shape[0], CIFAR101_VERSIONS[version])
    return from_hwc(images, labels, CIFAR10_CLASSES, f"CIFAR-10.1 {version}", "cifar10.1")
