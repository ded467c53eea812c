"""Fidelity of generated corruptions to Hendrycks' generators, in grey levels (not speed).

    python bench/corrupt_fidelity.py [--n 256] [--save bench/results/corrupt-fidelity.md]

On the first --n CIFAR-10 test images (the JPEG q75 mirror when that is what the data root holds):

- glass blur strength, mean |corrupted - clean| at severities 1 and 3: ours (uint8, truncated), the
  transcription of make_cifar_c.py's loop (copies, numpy offsets) and the same loop as a true swap
  (what we did before); plus ours against the transcription fed our own offsets (equal but for
  float64 round-off at a level);
- every deterministic corruption of the cifar preset against its numpy/scipy/skimage transcription
  stored as the generator stored it (np.uint8, truncation): mean |ours - reference|, max, and the
  mean signed difference, for our truncation and for rounding to the nearest level.

The transcriptions are the ones in tests/test_corruptions.py.
"""
from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import test_corruptions as T  # noqa: E402
from _env import commit  # noqa: E402

from augmax_lib.corruptions import PRESETS, blur, corrupt  # noqa: E402

DETERMINISTIC = ("brightness", "contrast", "defocus_blur", "zoom_blur", "pixelate", "jpeg_compression",
                 "gaussian_blur", "saturate")


def load_images(n: int) -> tuple[np.ndarray, str]:
    from augmax_lib import data

    test = data.load_dataset("cifar10", "test")
    return test.images[:n].permute(0, 2, 3, 1).numpy().copy(), test.source or test.name


def swap_loop(x: np.ndarray, delta: int, iterations: int, rng) -> np.ndarray:
    """The loop as a true swap (what the line reads as, not what it does)."""
    x = x.copy()
    size = x.shape[0]
    for _ in range(iterations):
        for h in range(size - delta, delta, -1):
            for w in range(size - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=2)
                a, b = x[h, w].copy(), x[h + dy, w + dx].copy()
                x[h, w], x[h + dy, w + dx] = b, a
    return x


def glass_rows(ims: np.ndarray) -> list:
    from skimage.filters import gaussian

    rows = []
    n = len(ims)
    for s in (1, 3):
        sigma, delta, iters = PRESETS["cifar"].params["glass_blur"][s - 1]
        ours = T.to_hwc(corrupt(T.to_tensor(ims), "glass_blur", s, generator=torch.Generator().manual_seed(s)))
        rng = np.random.default_rng(s)
        ref = np.stack([T.generator_glass_blur(im, sigma, delta, iters,
                                               lambda i, h, w: rng.integers(-delta, delta, size=2)) for im in ims])
        swapped = []
        for im in ims:
            x = np.uint8(gaussian(im / 255., sigma=sigma, channel_axis=-1) * 255)
            x = swap_loop(x, delta, iters, rng)
            swapped.append(np.uint8(np.clip(gaussian(x / 255., sigma=sigma, channel_axis=-1), 0, 1) * 255))
        swapped = np.stack(swapped)
        dy, dx = blur.glass_blur_offsets(n, 32, 32, delta, iters, torch.Generator().manual_seed(s))
        same = np.stack([T.generator_glass_blur(im, sigma, delta, iters, T.offsets_from(dy, dx, 32, 32, delta, k))
                         for k, im in enumerate(ims)])
        change = lambda a: float(np.abs(a.astype(np.float64) - ims).mean())  # noqa: E731
        mean, worst = T.uint8_deviation(ours, same)
        rows.append((s, change(ours), change(ref), change(swapped), float((ours != same).mean()), mean, worst))
    return rows


def deterministic_rows(ims: np.ndarray) -> list:
    rows = []
    params = PRESETS["cifar"].params
    for name in DETERMINISTIC:
        for s in range(1, 6):
            c = params[name][s - 1]
            if name == "pixelate":
                ref = np.stack([T.pil_pixelate(im, c) for im in ims])
            elif name == "jpeg_compression":
                ref = np.stack([T.pil_jpeg(im, c) for im in ims])
            else:
                ref = T.generator_uint8(np.stack([T.CIFAR_DETERMINISTIC[name](c)(im / 255.0) for im in ims]))
            ref = ref.astype(np.int64)
            row = [name, s]
            for rounding in ("truncate", "nearest"):
                ours = T.to_hwc(corrupt(T.to_tensor(ims), name, s, rounding=rounding)).astype(np.int64)
                d = ours - ref
                row += [float(np.abs(d).mean()), int(np.abs(d).max()), float(d.mean())]
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--save", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ims, source = load_images(args.n)
    lines = [f"# Corruption fidelity to Hendrycks' generators ({datetime.datetime.now().isoformat(timespec='seconds')})",
             f"commit {commit()}, torch {torch.__version__}, {len(ims)} images of {source}", "",
             "## Glass blur: mean |corrupted - clean| (grey levels)", "",
             "| severity | ours | make_cifar_c.py transcription (copy) | same loop as a true swap "
             "| ours vs transcription on our offsets: values differing | mean | max |",
             "|---|---|---|---|---|---|---|"]
    for s, ours, ref, swapped, frac, mean, worst in glass_rows(ims):
        lines.append(f"| {s} | {ours:.2f} | {ref:.2f} | {swapped:.2f} | {100 * frac:.2f} % | {mean:.4f} | {worst} |")
    lines += ["", "## Deterministic corruptions (cifar preset) against the transcription stored with np.uint8",
              "", "|ours - reference| mean / max, and mean signed difference, in grey levels", "",
              "| corruption | s | truncate: mean | max | signed | nearest: mean | max | signed |",
              "|---|---|---|---|---|---|---|---|"]
    for name, s, m1, w1, b1, m2, w2, b2 in deterministic_rows(ims):
        lines.append(f"| {name} | {s} | {m1:.4f} | {w1} | {b1:+.4f} | {m2:.4f} | {w2} | {b2:+.4f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.save:
        args.save.write_text(text)


if __name__ == "__main__":
    main()
