"""The CIFAR-10 JPEG (quality 75) mirror: ``cifar10-jpeg.tar.xz`` or its unpacked ImageFolder tree."""
from __future__ import annotations

import hashlib
import lzma
import tarfile
import zlib
from pathlib import Path

import numpy as np

from augmax_lib._progress import tqdm

from .folders import cached_arrays, decode_image, files_key
from .imageset import ImageSet, from_hwc, warn_count
from .roots import DataFormatError, how_to_replace

__all__ = ["MIRROR_SOURCE", "MIRROR_TARBALL", "MIRROR_TREE", "CIFAR10_CLASSES", "mirror_candidates",
           "find_mirror", "load_mirror"]

MIRROR_SOURCE = "CIFAR-10 (JPEG q75 mirror)"
MIRROR_TARBALL = "cifar10-jpeg.tar.xz"
MIRROR_TREE = "cifar10-jpeg"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
OFFICIAL_COUNTS = {"train": 50000, "test": 10000}
SPLITS = ("train", "test")
# The course's copy (/work/shared/data/README.md); a file of another size is named in errors.
MIRROR_BYTES = 18575848
MIRROR_SHA256 = "d9e151194ab2f33119d9345e770e56d47dfb697e79da456ca104245f7b8682a9"
HOW_TO_GET = (f"copy {MIRROR_TARBALL} again from the course's data folder ({MIRROR_BYTES} bytes, sha256 "
              f"{MIRROR_SHA256[:16]}...), or use the original batches: download "
              f"https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and unpack it into the data root")


def mirror_candidates(root: Path) -> list:
    """Where the mirror may sit in a data root: the tarball, then the unpacked tree."""
    return [root / MIRROR_TARBALL, root / MIRROR_TREE]


def find_mirror(root: Path):
    """The first mirror found in ``root`` (tarball file or tree folder with train/ and test/), else None."""
    tarball, tree = mirror_candidates(root)
    if tarball.is_file():
        return tarball
    if (tree / "train").is_dir() and (tree / "test").is_dir():
        return tree
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _member_place(name: str, what: str):
    """(split, class index, file name) of a tar member or relative path ``split/class/file``."""
    parts = Path(name).parts
    if len(parts) and parts[0] == ".":
        parts = parts[1:]
    if len(parts) != 3 or parts[0] not in SPLITS:
        raise DataFormatError(f"{what}: unexpected entry {name!r}; expected train/<class>/<file>.jpg "
                              f"or test/<class>/<file>.jpg")
    if parts[1] not in CIFAR10_CLASSES:
        raise DataFormatError(f"{what}: entry {name!r} is in an unknown class folder {parts[1]!r}; "
                              f"expected one of {list(CIFAR10_CLASSES)}")
    return parts[0], CIFAR10_CLASSES.index(parts[1]), parts[2]


def _assemble(items: dict, what: str) -> dict:
    """Sort each split's decoded images by (class, file name) and check every class is present."""
    arrays = {}
    for split in SPLITS:
        entries = sorted(items[split], key=lambda e: (e[0], e[1]))
        if not entries:
            raise DataFormatError(f"{what}: no {split} images (expected {split}/<class>/<file>.jpg)")
        labels = np.asarray([e[0] for e in entries], dtype=np.int64)
        missing = [CIFAR10_CLASSES[c] for c in range(10) if not (labels == c).any()]
        if missing:
            raise DataFormatError(f"{what}: the {split} split has no images of class(es) {missing}")
        arrays[f"{split}_images"] = np.stack([e[2] for e in entries])
        arrays[f"{split}_labels"] = labels
    return arrays


def _decode_tarball(path: Path, progress: bool) -> dict:
    items = {s: [] for s in SPLITS}
    what = str(path)
    try:
        # "r:xz" streams the archive once; both splits are decoded in that single pass.
        with tarfile.open(path, "r:xz") as tar, tqdm(desc=f"decoding {path.name}", unit="img",
                                                     disable=not progress, leave=False) as bar:
            _decode_members(tar, items, what, bar)
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, OSError) as err:
        size = path.stat().st_size
        expected = f" (the course's copy holds {MIRROR_BYTES})" if size != MIRROR_BYTES else ""
        raise DataFormatError(f"{what}: not a complete xz-compressed tar archive ({type(err).__name__}: {err}); "
                              f"the file holds {size} bytes{expected}") from err
    return _assemble(items, what)


def _decode_members(tar, items: dict, what: str, bar) -> None:
    for member in tar:
        if not member.isfile():
            continue
        if Path(member.name).suffix.lower() not in (".jpg", ".jpeg"):
            if Path(member.name).name.lower().startswith("readme"):
                continue
            raise DataFormatError(f"{what}: unexpected file {member.name!r} (only JPEG images expected)")
        split, label, fname = _member_place(member.name, what)
        data = tar.extractfile(member).read()
        items[split].append((label, fname, decode_image(data, f"{what}:{member.name}", (32, 32))))
        bar.update()


def _tree_files(tree: Path) -> list:
    return sorted(p for split in SPLITS for p in (tree / split).rglob("*")
                  if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg"))


def _decode_tree(tree: Path, files: list, progress: bool) -> dict:
    items = {s: [] for s in SPLITS}
    for p in tqdm(files, desc=f"decoding {tree.name}", unit="img", disable=not progress, leave=False):
        split, label, fname = _member_place(str(p.relative_to(tree)), str(tree))
        items[split].append((label, fname, decode_image(p, str(p), (32, 32))))
    return _assemble(items, str(tree))


def load_mirror(split: str, location: Path, cache=None, use_cache: bool = True, progress: bool = True) -> ImageSet:
    """Load one split of the mirror at ``location`` (tarball or tree), decoding once and caching the arrays."""
    location = Path(location)
    with how_to_replace(HOW_TO_GET):
        arrays = _decoded_arrays(location, cache, use_cache, progress)
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    warn_count(f"{location} ({split})", len(labels), OFFICIAL_COUNTS[split])
    return from_hwc(images, labels, CIFAR10_CLASSES, MIRROR_SOURCE, "cifar10")


def _decoded_arrays(location: Path, cache, use_cache: bool, progress: bool) -> dict:
    """Both splits of the mirror, from the decode cache or decoded now (cached only after a full decode)."""
    if location.is_file():
        key = f"cifar10-jpeg-{_sha256(location)[:20]}"
        arrays = cached_arrays(key, lambda: _decode_tarball(location, progress), cache, use_cache)
    else:
        files = _tree_files(location)
        if not files:
            raise DataFormatError(f"{location}: no JPEG files under train/ and test/")
        key = f"cifar10-jpeg-tree-{files_key(files)}"
        arrays = cached_arrays(key, lambda: _decode_tree(location, files, progress), cache, use_cache)
    return arrays
