"""Tiny-ImageNet (200 classes, 64x64) and Tiny-ImageNet-C, decoded into memory (with a decode cache)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .folders import IMAGE_EXTENSIONS, cached_arrays, decode_files, files_key, find_corruption_folder, scan_class_folders
from .imageset import ImageSet, from_hwc, warn_count
from .roots import DataFormatError, DatasetNotFoundError, describe_root, how_to_replace, resolve_root

__all__ = ["tinyimagenet_folder", "tinyimagenet_classes", "load_tinyimagenet", "tinyimagenet_c_candidates",
           "load_tinyimagenet_c"]

TIN_FOLDER = "tiny-imagenet-200"
TIN_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TIN_C_URL = "https://zenodo.org/record/2469796/files/TinyImageNet-C.tar"
_OFFICIAL = {"train": 100000, "val": 10000}
SIZE = (64, 64)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not a text file ({err})") from err


def tinyimagenet_folder(root=None) -> Path:
    """Where Tiny-ImageNet (tiny-imagenet-200) is expected under the data root."""
    return resolve_root(root) / TIN_FOLDER


def tinyimagenet_classes(folder: Path) -> list:
    """The class wnids of ``wnids.txt``, sorted (the order ImageFolder and the reference use)."""
    path = Path(folder) / "wnids.txt"
    wnids = [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    if len(set(wnids)) != len(wnids):
        raise DataFormatError(f"{path}: lists some wnids more than once")
    if not wnids:
        raise DataFormatError(f"{path}: is empty (expected one wnid per line)")
    return sorted(wnids)


def _train_files(folder: Path, classes: list):
    paths, labels = [], []
    for label, wnid in enumerate(classes):
        sub = folder / "train" / wnid
        images = sub / "images" if (sub / "images").is_dir() else sub
        files = sorted(p for p in images.glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataFormatError(f"{folder}: no training images for class {wnid} (expected "
                                  f"{sub}/images/*.JPEG)")
        paths.extend(files)
        labels.extend([label] * len(files))
    return paths, np.asarray(labels, dtype=np.int64)


def _val_files(folder: Path, classes: list):
    val = folder / "val"
    annotations = val / "val_annotations.txt"
    if annotations.is_file():
        index = {w: i for i, w in enumerate(classes)}
        paths, labels = [], []
        for n, line in enumerate(_read_text(annotations).splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 2:
                raise DataFormatError(f"{annotations}:{n}: expected '<file>\\t<wnid>\\t...', got {line!r}")
            fname, wnid = fields[0].strip(), fields[1].strip()
            if wnid not in index:
                raise DataFormatError(f"{annotations}:{n}: wnid {wnid!r} is not in wnids.txt")
            path = val / "images" / fname
            if not path.is_file():
                raise DataFormatError(f"{annotations}:{n}: lists {fname} but {path} does not exist")
            paths.append(path)
            labels.append(index[wnid])
        listed = {p.name for p in paths}
        extra = [p.name for p in (val / "images").glob("*") if p.is_file() and p.name not in listed]
        if extra:
            raise DataFormatError(f"{val / 'images'}: {len(extra)} image(s) not listed in {annotations}, "
                                  f"e.g. {extra[:3]}")
        order = sorted(range(len(paths)), key=lambda i: (labels[i], paths[i].name))
        return [paths[i] for i in order], np.asarray([labels[i] for i in order], dtype=np.int64)
    if (val / "images").is_dir() and any(p.is_dir() for p in (val / "images").iterdir()):
        # The reference's create_tin_val_folder.py layout: val/images/<wnid>/*.JPEG.
        paths, labels, _ = scan_class_folders(val / "images", classes, f"Tiny-ImageNet val ({val / 'images'})")
        return paths, labels
    raise DataFormatError(f"{val}: no labels for the validation images: expected {annotations} with "
                          f"val/images/*.JPEG (the release's layout), or val/images/<wnid>/*.JPEG")


def load_tinyimagenet(split: str = "train", root=None, cache=None, use_cache: bool = True,
                      progress: bool = True) -> ImageSet:
    """Tiny-ImageNet ``split`` ('train', or 'val'/'test' for the labelled validation set) as 64x64 uint8."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
    split = "val" if split == "test" else split
    folder = tinyimagenet_folder(root)
    if not (folder / "wnids.txt").is_file():
        raise DatasetNotFoundError(
            "Tiny-ImageNet", [folder / "wnids.txt"],
            f"download {TIN_URL} and unzip it into {folder.parent} (giving {folder}/wnids.txt, "
            f"train/<wnid>/images/*.JPEG, val/images/*.JPEG and val/val_annotations.txt)", describe_root(root))
    with how_to_replace(f"download {TIN_URL} again and unzip it into {folder.parent} (replacing {folder})"):
        classes = tinyimagenet_classes(folder)
        paths, labels = _train_files(folder, classes) if split == "train" else _val_files(folder, classes)
        key = f"tinyimagenet-{split}-{files_key(paths)}"
        # Cached only after every file decoded: a broken file leaves no cache behind.
        arrays = cached_arrays(key, lambda: {"images": decode_files(paths, SIZE, f"decoding TIN {split}", progress)},
                               cache, use_cache)
    warn_count(f"{folder} ({split})", len(labels), _OFFICIAL[split])
    return from_hwc(arrays["images"], labels, classes, "Tiny-ImageNet", "tinyimagenet")


def tinyimagenet_c_candidates(root=None) -> list:
    """Base folders for ``<corruption>/<severity>/<wnid>/*.JPEG``, the release's layout first."""
    base = resolve_root(root)
    return [base / "Tiny-ImageNet-C", base / "TinyImageNet-C" / "Tiny-ImageNet-C", base / "TinyImageNet-C"]


def load_tinyimagenet_c(corruption: str, severity: int, root=None, classes=None, cache=None,
                        use_cache: bool = False, progress: bool = True) -> ImageSet:
    """Tiny-ImageNet-C images of one corruption and severity (64x64), labelled in sorted-wnid order."""
    candidates = tinyimagenet_c_candidates(root)
    folder = find_corruption_folder(candidates, corruption, severity)
    if folder is None:
        raise DatasetNotFoundError(
            f"Tiny-ImageNet-C ({corruption}, severity {severity})",
            [c / corruption / str(severity) for c in candidates],
            f"download {TIN_C_URL} and unpack it into {candidates[1].parent} (layout "
            f"<corruption>/<severity>/<wnid>/*.JPEG)", describe_root(root))
    with how_to_replace(f"download {TIN_C_URL} again and unpack it into {candidates[1].parent}"):
        paths, labels, classes = scan_class_folders(folder, classes, f"Tiny-ImageNet-C ({folder})")
        key = f"tinyimagenet-c-{corruption}-{severity}-{files_key(paths)}"
        arrays = cached_arrays(key, lambda: {"images": decode_files(paths, SIZE, f"decoding {corruption} s{severity}",
                                                                    progress)}, cache, use_cache)
    warn_count(str(folder), len(labels), _OFFICIAL["val"])
    return from_hwc(arrays["images"], labels, classes, f"Tiny-ImageNet-C {corruption} s{severity}",
                    "tinyimagenet-c")
