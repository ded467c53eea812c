"""Image folders: find class folders, decode their files to uint8 arrays, and cache decoded arrays on disk."""
from __future__ import annotations

import hashlib
import io
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from augmax_lib._progress import tqdm

from .._io import atomic_path
from .roots import DataFormatError, cache_dir

__all__ = ["IMAGE_EXTENSIONS", "decode_image", "decode_files", "scan_class_folders", "files_key",
           "cached_arrays", "find_corruption_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff")


def decode_image(source, what: str, size: tuple | None = None) -> np.ndarray:
    """Decode one image file (path or bytes) to uint8 RGB (H, W, 3); grey images are expanded to RGB."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source) as img:
            img = img.convert("RGB") if img.mode != "RGB" else img
            array = np.asarray(img, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        size = len(source) if isinstance(source, (bytes, bytearray)) else _size(source)
        raise DataFormatError(f"{what}: cannot decode the image ({err}; the file holds {size} bytes: "
                              f"truncated or not an image?)") from err
    if size is not None and array.shape[:2] != tuple(size):
        raise DataFormatError(f"{what}: expected a {size[0]}x{size[1]} image, got "
                              f"{array.shape[0]}x{array.shape[1]}")
    return array


def _size(path) -> str:
    try:
        return str(os.stat(path).st_size)
    except (OSError, TypeError):
        return "an unknown number of"


def decode_files(paths, size: tuple, desc: str, progress: bool = True) -> np.ndarray:
    """Decode image files that all have ``size`` (H, W) into one uint8 array (N, H, W, 3)."""
    out = np.empty((len(paths), size[0], size[1], 3), dtype=np.uint8)
    for i, path in enumerate(tqdm(paths, desc=desc, unit="img", disable=not progress, leave=False)):
        out[i] = decode_image(path, str(path), size)
    return out


def scan_class_folders(folder: Path, classes=None, what: str = "image folder", allow_missing: bool = False):
    """List images under ``folder/<class>/`` (searched recursively), sorted by class then path.

    Classes are the sorted sub-folder names unless ``classes`` fixes them (then every sub-folder must be
    one of them, and each class must have images unless ``allow_missing``). Returns (paths, labels
    int64, classes).
    """
    folder = Path(folder)
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if classes is None:
        classes = found
    else:
        classes = list(classes)
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataFormatError(f"{what}: {folder} has class folders that are not among the {len(classes)} "
                                  f"expected classes: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    if not classes:
        raise DataFormatError(f"{what}: {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    paths, labels, empty = [], [], []
    for label, name in enumerate(classes):
        sub = folder / name
        files = sorted(p for p in sub.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) if sub.is_dir() else []
        if not files and not (allow_missing and not sub.exists()):
            empty.append(name)
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise DataFormatError(f"{what}: no image files under {folder}/<class>/")
    if empty:
        raise DataFormatError(f"{what}: no images for {len(empty)} class(es) under {folder}, e.g. "
                              f"{empty[:5]} (expected image files in {folder}/<class>/)")
    return paths, np.asarray(labels, dtype=np.int64), classes


def files_key(paths, extra: str = "") -> str:
    """A short hash of file names, sizes and modification times: changes when any file changes."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def cached_arrays(key: str, build, cache=None, enabled: bool = True) -> dict:
    """Return the arrays ``build()`` makes, stored as ``<cache dir>/<key>.npz`` and reused on later calls.

    The file is written to a temporary name and renamed, so a crash never leaves a half-written cache;
    an unwritable cache folder only costs the reuse (with a warning).
    """
    if not enabled:
        return build()
    folder = cache_dir(cache)
    path = folder / f"{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:  # rebuilt, never trusted
            warnings.warn(f"ignoring the damaged cache file {path} ({err}); decoding again", UserWarning)
    arrays = build()
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as err:
        warnings.warn(f"could not write the decode cache {path} ({err}); the next load decodes again. "
                      f"Set $AUGMAX_CACHE to a writable folder.", UserWarning)
    return arrays


def find_corruption_folder(candidates, corruption: str, severity: int):
    """``<base>/<corruption>/<severity>`` under the first candidate base folder that has it, else None."""
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity: expected an integer in 1..5, got {severity!r}")
    for base in candidates:
        folder = Path(base) / corruption / str(severity)
        if folder.is_dir():
            return folder
    return None
