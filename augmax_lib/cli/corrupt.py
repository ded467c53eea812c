"""``python -m augmax_lib corrupt``: write a corrupted test set in its published format.

CIFAR-10 / CIFAR-100 (the CIFAR-10-C / CIFAR-100-C layout):

With all five severities (the default) each corruption goes to ``<out>/<corruption>.npy``, uint8
(5 N, H, W, C) holding severities 1..5 in order, N images each, and ``<out>/labels.npy`` holds the
test labels repeated five times (uint8): the official CIFAR-10-C / CIFAR-100-C layout, which
``augmax_lib.data.load_cifar_c`` and other tools read. With a subset of severities each one goes to
``<out>/<corruption>_s<severity>.npy``, uint8 (N, H, W, C) (labels.npy is still the official one).

Tiny-ImageNet and ImageNet (the Tiny-ImageNet-C / ImageNet-C layout): every image goes to
``<out>/<corruption>/<severity>/<wnid>/<name>.JPEG``, saved as the generators saved theirs (PIL,
JPEG quality 85, optimize=True); ImageNet's validation images are first resized to 256 and
centre-cropped to 224, as ImageNet-C's were.

Pixels follow Hendrycks' generators (make_cifar_c.py, make_tinyimagenet_c.py, make_imagenet_c.py):
float results truncated to uint8 as their ``np.uint8`` did, glass blur's copying pixel loop.

Resumable: a finished file (or severity folder) is checked and skipped, so an interrupted run continues where it
stopped; a file is written under a hidden ``.partial`` name and renamed when complete, so no
half-written file ever carries a final name. An existing file with the wrong shape is an error,
never overwritten. ``<out>/corrupt_info.json`` records the source, preset, seed, versions and the
generator semantics reproduced.
Each (corruption, severity) has its own generator seeded from (seed, corruption, severity): the
same seed and batch size give the same files, whatever was generated before.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from augmax_lib._device import DeviceError, resolve_device
from augmax_lib._io import atomic_path, atomic_write_text

__all__ = ["add_arguments", "run", "output_files", "severity_seed"]

_DATASETS = {"cifar10": "cifar", "cifar100": "cifar", "synthetic": "cifar", "tinyimagenet": "tinyimagenet",
             "imagenet": "imagenet"}
_ALL_SEVERITIES = (1, 2, 3, 4, 5)


def add_arguments(parser) -> None:
    """The `corrupt` command's options."""
    import argparse

    from augmax_lib.corruptions import ALL_CORRUPTIONS

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = __doc__.split("\n", 2)[2]

    parser.add_argument("--dataset", required=True, choices=sorted(_DATASETS),
                        help="test set to corrupt (synthetic: the procedural stand-in, for trying the command)")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder for <corruption>.npy and labels.npy (e.g. $AUGMAX_DATA/CIFAR-10-C), or for "
                             "<corruption>/<severity>/<wnid>/*.JPEG (e.g. $AUGMAX_DATA/Tiny-ImageNet-C)")
    parser.add_argument("--corruptions", nargs="+", default=["benchmark"], metavar="NAME",
                        help="corruption names, 'benchmark' (the 15, default), 'extra' (the 4 held out) "
                             f"or 'all'; names: {', '.join(ALL_CORRUPTIONS)}")
    parser.add_argument("--severities", nargs="+", type=int, default=list(_ALL_SEVERITIES), metavar="S",
                        help="severities 1..5 (default all: the official one-file-per-corruption layout; "
                             "a subset writes <corruption>_s<S>.npy per severity)")
    parser.add_argument("--device", default="cpu", help="where to corrupt: cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument("--root", default=None, help="data root (default: $AUGMAX_DATA, else ~/.cache/augmax)")
    parser.add_argument("--batch-size", type=int, default=2000, help="images corrupted at once (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the random corruptions (default 0)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's choice); 1 is fastest on a machine "
                             "busy with other work, where threads wait for each other")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _fail(message: str) -> int:
    print(f"corrupt: error: {message}", file=sys.stderr)
    return 2


def _resolve_corruptions(names) -> list:
    from augmax_lib.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS

    groups = {"benchmark": CORRUPTIONS, "extra": EXTRA_CORRUPTIONS, "all": ALL_CORRUPTIONS}
    out = []
    for name in names:
        for item in groups.get(name, (name,)):
            if item not in ALL_CORRUPTIONS:
                raise ValueError(f"--corruptions: unknown name {item!r}; expected benchmark, extra, all "
                                 f"or some of {', '.join(ALL_CORRUPTIONS)}")
            if item not in out:
                out.append(item)
    return out


def output_files(out: Path, corruption: str, severities) -> dict:
    """Which file holds which severities: {path: (severities, ...)} for one corruption."""
    severities = tuple(severities)
    if severities == _ALL_SEVERITIES:
        return {out / f"{corruption}.npy": _ALL_SEVERITIES}
    return {out / f"{corruption}_s{s}.npy": (s,) for s in severities}


def severity_seed(seed: int, corruption: str, severity: int) -> int:
    """The seed of one (corruption, severity): independent of which others are generated."""
    from augmax_lib.corruptions import ALL_CORRUPTIONS

    index = ALL_CORRUPTIONS.index(corruption)
    return int(np.random.SeedSequence([int(seed), index, int(severity)]).generate_state(1, dtype=np.uint64)[0]
               & 0x7FFF_FFFF_FFFF_FFFF)


def _finished(path: Path, shape: tuple) -> bool:
    """True when ``path`` is a complete file of ``shape``; raise if it exists with another content."""
    if not path.exists():
        return False
    try:
        existing = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ValueError(f"{path} exists but is not a readable .npy file ({err}); move it away to regenerate it")
    if existing.dtype != np.uint8 or tuple(existing.shape) != shape:
        raise ValueError(f"{path} exists with dtype {existing.dtype} and shape {existing.shape}, expected uint8 "
                         f"{shape}; it was not made from this test set: move it away or choose another --out")
    return True


def _save_atomic(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as partial, open(partial, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _write_corruption(images: torch.Tensor, corruption: str, severities, path: Path, args, device,
                      preset: str, bar) -> None:
    """Corrupt every image at each of ``severities`` and write them, stacked in order, to ``path``."""
    from augmax_lib.corruptions import corrupt

    n, c, h, w = images.shape
    with atomic_path(path) as partial:
        out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(severities) * n, h, w, c))
        for k, severity in enumerate(severities):
            generator = torch.Generator(device=device).manual_seed(severity_seed(args.seed, corruption, severity))
            for start in range(0, n, args.batch_size):
                batch = images[start:start + args.batch_size].to(device, non_blocking=True)
                result = corrupt(batch, corruption, severity, preset=preset, generator=generator)
                out[k * n + start:k * n + start + batch.shape[0]] = result.permute(0, 2, 3, 1).cpu().numpy()
                if bar is not None:
                    bar.update(batch.shape[0])
        out.flush()
        del out


def _write_info(out: Path, update: dict) -> None:
    path = out / "corrupt_info.json"
    info = {}
    if path.exists():
        try:
            info = json.loads(path.read_text())
        except ValueError:
            info = {}
    files = info.get("files", {})
    files.update(update.pop("files", {}))
    info.update(update)
    info["files"] = files
    atomic_write_text(path, json.dumps(info, indent=2, sort_keys=True) + "\n")


def _folder_batches(test, batch_size: int):
    """(start, uint8 (B, 3, H, W)) batches of an in-memory ImageSet or a lazy folder set, in order."""
    if hasattr(test, "images"):
        for start in range(0, len(test), batch_size):
            yield start, test.images[start:start + batch_size]
        return
    for start in range(0, len(test), batch_size):
        yield start, torch.stack([test[i][0] for i in range(start, min(start + batch_size, len(test)))])


def _file_names(test) -> list:
    """Output file names: the source files' (ImageNet), else the Tiny-ImageNet val style val_<index>.JPEG."""
    paths = getattr(test, "paths", None)
    if paths is not None and len(paths) == len(test):
        return [f"{Path(p).stem}.JPEG" for p in paths]
    return [f"val_{i}.JPEG" for i in range(len(test))]


def _folder_finished(folder: Path, n: int) -> bool:
    """True when ``folder`` (one severity) holds ``n`` images; raise if it holds another number."""
    if not folder.exists():
        return False
    count = sum(1 for p in folder.glob("*/*") if p.is_file())
    if count != n:
        raise ValueError(f"{folder} exists with {count} files, expected {n}: it was not made from this test set "
                         f"or not by this command; move it away or choose another --out")
    return True


def _write_severity_folder(test, corruption: str, severity: int, folder: Path, args, device, preset: str,
                           quality: int, names: list, bar) -> None:
    """Corrupt every image at ``severity`` and save it as ``<folder>/<wnid>/<name>`` (JPEG), atomically."""

    from PIL import Image

    from augmax_lib.corruptions import corrupt

    with atomic_path(folder, folder=True) as partial:
        for wnid in sorted({test.classes[int(y)] for y in test.labels}):
            (partial / wnid).mkdir(parents=True)
        generator = torch.Generator(device=device).manual_seed(severity_seed(args.seed, corruption, severity))
        for start, batch in _folder_batches(test, args.batch_size):
            result = corrupt(batch.to(device, non_blocking=True), corruption, severity, preset=preset,
                             generator=generator).permute(0, 2, 3, 1).cpu().numpy()
            for k, image in enumerate(result):
                i = start + k
                target = partial / test.classes[int(test.labels[i])] / names[i]
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                    target, format="JPEG", quality=quality, optimize=True)
            if bar is not None:
                bar.update(len(result))


def _run_folders(args, test, corruptions, severities, device, preset: str) -> int:
    """Tiny-ImageNet-C / ImageNet-C layout: one JPEG-85 file per image under <corruption>/<severity>/<wnid>/."""
    from tqdm import tqdm

    from augmax_lib._checks import InputError, check_writable_folder
    from augmax_lib.corruptions import PRESETS, PUBLISHED_JPEG_QUALITY, generator_semantics

    size = PRESETS[preset].image_size
    n = len(test)
    first = test.images[:1] if hasattr(test, "images") else test[0][0][None]
    if tuple(first.shape[-2:]) != (size, size):
        return _fail(f"{args.dataset}: expected {size}x{size} test images for the {preset!r} preset, "
                     f"got {tuple(first.shape[-2:])}")
    quality = PUBLISHED_JPEG_QUALITY[preset]
    names = _file_names(test)
    print(f"Corrupting {n} test images of {getattr(test, 'source', '') or args.dataset} on {device} "
          f"(preset {preset!r}, seed {args.seed}, JPEG quality {quality}) into {args.out}")
    try:
        check_writable_folder(args.out, "--out")
    except InputError as err:
        return _fail(str(err))
    try:
        _write_info(args.out, {"dataset": args.dataset, "source": getattr(test, "source", ""), "preset": preset,
                               "images_per_severity": n,
                               "layout": "<corruption>/<severity>/<wnid>/<name>.JPEG (labels: the wnid folders)",
                               "jpeg_quality": quality, "semantics": generator_semantics(preset)})
        for corruption in corruptions:
            for severity in severities:
                folder = args.out / corruption / str(severity)
                key = f"{corruption}/{severity}"
                if _folder_finished(folder, n):
                    print(f"  {key}: already complete, skipped")
                    continue
                folder.parent.mkdir(parents=True, exist_ok=True)
                bar = None if args.quiet else tqdm(total=n, desc=key, unit="img", leave=False, dynamic_ncols=True)
                start = time.perf_counter()
                try:
                    _write_severity_folder(test, corruption, severity, folder, args, device, preset, quality,
                                           names, bar)
                finally:
                    if bar is not None:
                        bar.close()
                seconds = time.perf_counter() - start
                print(f"  {key}: {n} images in {seconds:.1f} s")
                _write_info(args.out, {"files": {key: {
                    "corruption": corruption, "severities": [severity], "seed": args.seed,
                    "batch_size": args.batch_size, "device": str(device), "seconds": round(seconds, 2),
                    "jpeg_quality": quality, "torch": torch.__version__,
                    "written": time.strftime("%Y-%m-%dT%H:%M:%S")}}})
    except ValueError as err:
        return _fail(str(err))
    return 0


def run(args) -> int:
    """Write the corrupted test sets asked for; the exit status."""
    from augmax_lib import data
    from augmax_lib.corruptions import PRESETS, PUBLISHED_JPEG_QUALITY, generator_semantics

    try:
        corruptions = _resolve_corruptions(args.corruptions)
    except ValueError as err:
        return _fail(str(err))
    severities = tuple(sorted(set(args.severities)))
    if not severities or any(s not in _ALL_SEVERITIES for s in severities):
        return _fail(f"--severities: expected integers from 1 to 5, got {args.severities}")
    if args.batch_size < 1:
        return _fail(f"--batch-size: expected a positive integer, got {args.batch_size}")
    if args.threads is not None:
        if args.threads < 1:
            return _fail(f"--threads: expected a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device, "--device")
    except DeviceError as err:
        return _fail(str(err))

    try:
        test = data.load_dataset(args.dataset, "test", root=args.root)
    except (data.DatasetNotFoundError, data.DataFormatError) as err:
        return _fail(str(err))
    preset = _DATASETS[args.dataset]
    size = PRESETS[preset].image_size
    if PUBLISHED_JPEG_QUALITY[preset] is not None:
        return _run_folders(args, test, corruptions, severities, device, preset)
    if tuple(test.images.shape[-2:]) != (size, size):
        return _fail(f"{args.dataset}: expected {size}x{size} test images for the {preset!r} preset, "
                     f"got {tuple(test.images.shape[-2:])}")
    n = len(test)
    if int(test.labels.max()) > 255:
        return _fail("labels above 255 do not fit the official uint8 labels.npy")
    print(f"Corrupting {n} test images of {test.source or args.dataset} on {device} "
          f"(preset {preset!r}, seed {args.seed}) into {args.out}")
    if args.dataset == "synthetic":
        print("NOTE: this is the SYNTHETIC stand-in data set, not CIFAR: its corrupted files say nothing "
              "about CIFAR-10-C", file=sys.stderr)

    from augmax_lib._checks import InputError, check_writable_folder

    try:
        check_writable_folder(args.out, "--out")
    except InputError as err:
        return _fail(str(err))
    labels = np.tile(test.labels.numpy().astype(np.uint8), 5)
    labels_path = args.out / "labels.npy"
    try:
        if labels_path.exists():
            existing = np.load(labels_path, allow_pickle=False)
            if existing.shape != labels.shape or not np.array_equal(existing, labels):
                return _fail(f"{labels_path} exists and holds other labels than this test set's; "
                             "choose another --out")
        else:
            _save_atomic(labels_path, labels)
        _write_info(args.out, {"dataset": args.dataset, "source": test.source, "preset": preset,
                               "images_per_severity": n, "labels": "labels.npy: test labels repeated 5 times",
                               "semantics": generator_semantics(preset)})

        from tqdm import tqdm

        for corruption in corruptions:
            for path, sevs in output_files(args.out, corruption, severities).items():
                if _finished(path, (len(sevs) * n, size, size, test.images.shape[1])):
                    print(f"  {path.name}: already complete, skipped")
                    continue
                bar = None if args.quiet else tqdm(total=len(sevs) * n, desc=path.stem, unit="img",
                                                    leave=False, dynamic_ncols=True)
                start = time.perf_counter()
                try:
                    _write_corruption(test.images, corruption, sevs, path, args, device, preset, bar)
                finally:
                    if bar is not None:
                        bar.close()
                seconds = time.perf_counter() - start
                print(f"  {path.name}: {len(sevs) * n} images in {seconds:.1f} s")
                _write_info(args.out, {"files": {path.name: {
                    "corruption": corruption, "severities": list(sevs), "seed": args.seed,
                    "batch_size": args.batch_size, "device": str(device), "seconds": round(seconds, 2),
                    "torch": torch.__version__, "written": time.strftime("%Y-%m-%dT%H:%M:%S")}}})
    except ValueError as err:
        return _fail(str(err))
    return 0
