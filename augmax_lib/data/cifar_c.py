"""CIFAR-10-C and CIFAR-100-C: ``<corruption>.npy`` (severities 1..5 stacked in order) and ``labels.npy``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .cifar import CIFAR10_CLASSES, CIFAR100_CLASSES
from .imageset import ImageSet, check_hwc_uint8, check_labels, from_hwc, warn_count
from .npy import open_npy
from .roots import DataFormatError, DatasetNotFoundError, describe_root, how_to_replace, resolve_root

__all__ = ["BENCHMARK_CORRUPTIONS", "EXTRA_CORRUPTION_NAMES", "SEVERITIES", "cifar_c_folder",
           "available_corruptions", "load_cifar_c"]

# The 15 corruptions every robustness number averages over, and the 4 held-out extras (file names).
BENCHMARK_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA_CORRUPTION_NAMES = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
SEVERITIES = (1, 2, 3, 4, 5)

_SETS = {
    "cifar10": dict(folder="CIFAR-10-C", classes=CIFAR10_CLASSES, source="CIFAR-10-C",
                    url="https://zenodo.org/record/2535967/files/CIFAR-10-C.tar"),
    "cifar100": dict(folder="CIFAR-100-C", classes=CIFAR100_CLASSES, source="CIFAR-100-C",
                     url="https://zenodo.org/record/3555552/files/CIFAR-100-C.tar"),
}
_OFFICIAL_PER_SEVERITY = 10000


def _layout(dataset: str) -> dict:
    if dataset not in _SETS:
        raise ValueError(f"dataset: expected one of {sorted(_SETS)} for CIFAR-C, got {dataset!r}")
    return _SETS[dataset]


def cifar_c_folder(dataset: str = "cifar10", root=None) -> Path:
    """The folder that should hold ``<corruption>.npy`` files: ``<root>/CIFAR-10-C`` or ``<root>/CIFAR-100-C``."""
    return resolve_root(root) / _layout(dataset)["folder"]


def available_corruptions(dataset: str = "cifar10", root=None) -> list:
    """Names of the corruption files present (empty when the folder or its labels.npy is missing)."""
    folder = cifar_c_folder(dataset, root)
    if not (folder / "labels.npy").is_file():
        return []
    return sorted(p.stem for p in folder.glob("*.npy") if p.stem != "labels")


def _how(dataset: str, folder: Path) -> str:
    layout = _layout(dataset)
    gen = (" or generate it with `python -m augmax_lib corrupt --dataset cifar10 --out "
           f"{folder}`" if dataset == "cifar10" else "")
    return (f"download {layout['url']} and unpack it so that {folder}/<corruption>.npy and "
            f"{folder}/labels.npy exist{gen}")


def _read_labels(folder: Path, n: int, num_classes: int) -> np.ndarray:
    labels = check_labels(open_npy(folder / "labels.npy"), n, num_classes, f"{folder / 'labels.npy'}")
    # The official labels.npy repeats the test labels once per severity.
    per = labels.reshape(5, n // 5)
    if not (per == per[:1]).all():
        bad = int(np.nonzero(~(per == per[:1]).all(axis=1))[0][0]) + 1
        raise DataFormatError(f"{folder / 'labels.npy'}: the labels of severity {bad} differ from those of "
                              f"severity 1; expected the test labels repeated 5 times, one block per severity")
    return labels


def load_cifar_c(corruption: str, severity: int, dataset: str = "cifar10", root=None) -> ImageSet:
    """The test images under ``corruption`` at ``severity`` (1..5) from the CIFAR-C ``.npy`` files."""
    layout = _layout(dataset)
    if severity not in SEVERITIES:
        raise ValueError(f"severity: expected an integer in 1..5, got {severity!r}")
    folder = cifar_c_folder(dataset, root)
    path = folder / f"{corruption}.npy"
    if not path.is_file() or not (folder / "labels.npy").is_file():
        missing = [p for p in (path, folder / "labels.npy") if not p.is_file()]
        raise DatasetNotFoundError(f"{layout['source']} ({corruption})", missing, _how(dataset, folder),
                                   describe_root(root))
    with how_to_replace(_how(dataset, folder)):
        # Memory-mapped, so that reading one severity touches a fifth of the file.
        data = open_npy(path, mmap=True)
        check_hwc_uint8(data, str(path), (32, 32))
        n = data.shape[0]
        if n % 5:
            raise DataFormatError(f"{path}: {n} images is not a multiple of 5 (expected 5 severities stacked "
                                  f"in order, {_OFFICIAL_PER_SEVERITY} images each)")
        labels = _read_labels(folder, n, len(layout["classes"]))
    warn_count(str(path), n, 5 * _OFFICIAL_PER_SEVERITY)
    per = n // 5
    block = slice((severity - 1) * per, severity * per)
    return from_hwc(np.array(data[block]), labels[block], layout["classes"],
                    f"{layout['source']} {corruption} s{severity}", f"{dataset}-c")
