"""DeepAugment: extra pre-generated image folders (e.g. EDSR, CAE) concatenated with a clean train set."""
from __future__ import annotations

from pathlib import Path

import torch

from .folders import cached_arrays, decode_files, files_key, scan_class_folders
from .imagenet import ConcatFolderSet, FolderSet
from .imageset import ImageSet, from_hwc
from .roots import DataFormatError, DatasetNotFoundError, describe_root, resolve_root

__all__ = ["DEEPAUGMENT_URL", "with_deepaugment"]

DEEPAUGMENT_URL = "https://github.com/hendrycks/imagenet-r (DeepAugment: EDSR and CAE image folders)"


def _resolve_folders(folders, root) -> list:
    base = resolve_root(root)
    resolved = [Path(f).expanduser() if Path(f).expanduser().is_absolute() else base / f for f in folders]
    missing = [f for f in resolved if not f.is_dir()]
    if missing:
        raise DatasetNotFoundError(
            "DeepAugment folder(s)", missing,
            f"generate or download them ({DEEPAUGMENT_URL}) so that each folder has <class>/<images> "
            f"with the train set's class names; relative paths are taken under the data root", describe_root(root))
    return resolved


def with_deepaugment(train, folders, root=None, cache=None, use_cache: bool = True, progress: bool = True):
    """``train`` followed by the images of every folder in ``folders`` (``<folder>/<class>/...``).

    An in-memory ImageSet gets the folders decoded at its image size; a lazy FolderSet gets lazy parts
    with its transform. Class folders must carry the train set's class names.
    """
    if isinstance(folders, (str, Path)):
        folders = [folders]
    resolved = _resolve_folders(folders, root)
    if isinstance(train, ImageSet):
        h, w = train.image_size
        images, labels = [train.images], [train.labels]
        for folder in resolved:
            paths, lab, _ = scan_class_folders(folder, train.classes, f"DeepAugment ({folder})",
                                               allow_missing=True)
            arrays = cached_arrays(f"deepaugment-{h}x{w}-{files_key(paths)}",
                                   lambda: {"images": decode_files(paths, (h, w), f"decoding {folder.name}", progress)},
                                   cache, use_cache)
            part = from_hwc(arrays["images"], lab, train.classes, "", "")
            if part.images.shape[1] != train.images.shape[1]:
                raise DataFormatError(f"{folder}: {part.images.shape[1]} channels, the train set has "
                                      f"{train.images.shape[1]}")
            images.append(part.images)
            labels.append(part.labels)
        source = f"{train.source} + DeepAugment ({', '.join(f.name for f in resolved)})"
        return ImageSet(torch.cat(images), torch.cat(labels), train.classes, source, train.name)
    if isinstance(train, (FolderSet, ConcatFolderSet)):
        transform = train.transform if isinstance(train, FolderSet) else train.parts[0].transform
        parts = [train] + [FolderSet(f, transform, train.classes, source=f"DeepAugment {f.name}", name=train.name,
                                     what=f"DeepAugment ({f})", allow_missing=True) for f in resolved]
        return ConcatFolderSet(parts, source=f"{train.source} + DeepAugment ({', '.join(f.name for f in resolved)})",
                               name=train.name)
    raise TypeError(f"train: expected an ImageSet or a FolderSet, got {type(train).__name__}")
