"""Corruption speed: images per second for every corruption and severity, ours against `imagecorruptions`.

    python bench/corrupt.py [--n 2000] [--devices cpu cuda] [--reference-n 100] [--save FILE.md]

Runs on the CIFAR-10 test images when the data set is found (else the synthetic stand-in), on the
CPU and on CUDA when present, with a warm-up call and the median of --repeats timed calls
(CUDA synchronised). Projects the time of the whole CIFAR-10-C (15 corruptions x 5 severities x
10000 images) from the measured rates. The reference, `imagecorruptions` (per image, numpy,
ImageNet parameters), is timed on --reference-n images at severity 3; what fails in it with the
installed libraries is reported as such. Also checks that the JPEG codec we use gives Pillow's
pixels (and, on CUDA, whether torchvision's nvjpeg codec does).
"""
from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _env import commit  # noqa: E402

from augmax_lib.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS, corrupt  # noqa: E402

IMAGES_PER_SEVERITY = 10000


def load_images(n: int) -> tuple[torch.Tensor, str]:
    """The first ``n`` CIFAR-10 test images (uint8 NCHW), or the synthetic stand-in when CIFAR-10 is absent."""
    from augmax_lib import data

    try:
        test = data.load_dataset("cifar10", "test")
    except Exception as err:  # any reason the real set is unavailable: say so and use the stand-in
        print(f"(CIFAR-10 not found: {str(err).splitlines()[0][:120]}; using the synthetic stand-in)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            test = data.load_dataset("synthetic", "test")
    images = test.images
    while images.shape[0] < n:
        images = torch.cat([images, images])
    return images[:n].contiguous(), test.source or test.name


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ours(x: torch.Tensor, name: str, severity: int, repeats: int) -> float:
    """Median seconds of one corrupt() call on the whole batch ``x`` (after one warm-up call)."""
    g = torch.Generator(device=x.device).manual_seed(0)
    corrupt(x[: min(len(x), 64)], name, severity, generator=g)
    sync(x.device)
    times = []
    for _ in range(repeats):
        sync(x.device)
        start = time.perf_counter()
        corrupt(x, name, severity, generator=g)
        sync(x.device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_reference():
    """imagecorruptions' per-image functions, or an explanation of why they cannot be imported."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import imagecorruptions
        return imagecorruptions, None
    except Exception as err:
        return None, f"{type(err).__name__}: {err}".splitlines()[0][:100]


def time_reference(ic, images_hwc: np.ndarray, name: str, severity: int) -> tuple[float | None, str]:
    """Images per second of imagecorruptions on ``images_hwc``, or None and the error it raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ic.corrupt(images_hwc[0], corruption_name=name, severity=severity)
            start = time.perf_counter()
            for im in images_hwc:
                ic.corrupt(im, corruption_name=name, severity=severity)
            return len(images_hwc) / (time.perf_counter() - start), ""
    except Exception as err:
        return None, f"{type(err).__name__}: {str(err).splitlines()[0][:60]}"


def check_jpeg(x: torch.Tensor, device: torch.device) -> str:
    """Compare our jpeg_compression and (on CUDA) torchvision's nvjpeg round trip with Pillow's pixels."""
    hwc = x[:256].permute(0, 2, 3, 1).numpy()
    lines = []
    for severity, quality in enumerate((80, 65, 58, 50, 40), 1):
        ref = []
        for im in hwc:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, "JPEG", quality=quality)
            ref.append(np.asarray(Image.open(buf)))
        ref = np.stack(ref).astype(int)
        ours = corrupt(x[:256].to(device), "jpeg_compression", severity).permute(0, 2, 3, 1).cpu().numpy()
        line = f"q{quality}: ours vs Pillow max |diff| {np.abs(ours - ref).max()}"
        if device.type == "cuda":
            try:
                from torchvision.io import decode_jpeg, encode_jpeg

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    on_gpu = list(x[:256].to(device))
                    sync(device)
                    start = time.perf_counter()
                    dec = decode_jpeg(encode_jpeg(on_gpu, quality=quality), device=device)
                    sync(device)
                    seconds = time.perf_counter() - start
                nv = torch.stack(dec).permute(0, 2, 3, 1).cpu().numpy().astype(int)
                diff = np.abs(nv - ref)
                line += (f"; nvjpeg vs Pillow max |diff| {diff.max()}, mean {diff.mean():.3f}, "
                         f"{256 / seconds:.0f} img/s")
            except Exception as err:
                line += f"; nvjpeg failed: {type(err).__name__}: {str(err)[:60]}"
        lines.append(line)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="images per timed call (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (median)")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, and cuda when present")
    parser.add_argument("--corruptions", nargs="+", default=list(ALL_CORRUPTIONS), choices=ALL_CORRUPTIONS)
    parser.add_argument("--reference-n", type=int, default=100,
                        help="images for the imagecorruptions timing (0: skip it)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--save", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    images, source = load_images(args.n)
    ic, ic_error = load_reference() if args.reference_n else (None, "skipped (--reference-n 0)")

    out = []
    say = out.append
    say(f"# Corruption speed ({datetime.datetime.now().isoformat(timespec='seconds')})")
    say(f"commit {commit()}, torch {torch.__version__}, python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, images: {source}, batch {args.n}, "
        f"load average at start {os.getloadavg()[0]:.1f} (other work on the machine slows every number)")
    for dev_name in devices:
        device = torch.device(dev_name)
        label = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "CPU")
        say(f"\n## {dev_name}: {label}\n")
        x = images.to(device)
        say("| corruption | s1 | s2 | s3 | s4 | s5 (img/s) | CIFAR-10-C s | imagecorruptions s3 img/s |")
        say("|---|---|---|---|---|---|---|---|")
        totals = {"benchmark": 0.0, "extra": 0.0}
        rows = {}
        for name in args.corruptions:
            rates = [args.n / time_ours(x, name, s, args.repeats) for s in range(1, 6)]
            seconds = sum(IMAGES_PER_SEVERITY / r for r in rates)
            totals["benchmark" if name in CORRUPTIONS else "extra"] += seconds
            rows[name] = f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + f" | {seconds:.1f} |"
            print(rows[name], flush=True)
        # The reference runs after all of ours: OpenCV's worker threads, once started, slow torch down.
        for name in args.corruptions:
            ref = ic_error or ""
            if ic is not None and device.type == "cpu":
                rate, err = time_reference(ic, images[: args.reference_n].permute(0, 2, 3, 1).numpy(), name, 3)
                ref = f"{rate:.0f}" if rate else err
            elif ic is not None:
                ref = "(timed on cpu)"
            say(rows[name] + f" {ref} |")
        benchmark = [c for c in CORRUPTIONS if c in args.corruptions]
        extra = [c for c in EXTRA_CORRUPTIONS if c in args.corruptions]
        say(f"\nProjected CIFAR-10-C on {dev_name} ({len(benchmark)} of 15 corruptions x 5 severities x "
            f"{IMAGES_PER_SEVERITY} images): {totals['benchmark']:.0f} s ({totals['benchmark'] / 60:.1f} min)"
            + (f"; the {len(extra)} extras add {totals['extra']:.0f} s" if extra else ""))
        say("\nJPEG codec check:\n" + check_jpeg(images[:256], device))
    report = "\n".join(out)
    print("\n" + report)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
