"""Images per second of AugMix: ours (sample_chains + mix, per-image chains) against the per-image PIL
pipeline with the reference semantics and against torchvision.transforms.v2.AugMix (one chain per batch).

    python bench/augment.py [--device cuda] [--threads 1] [--repeats 7] [--out bench/results/augment-cpu.txt]
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import statistics
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from _env import commit, device_name  # noqa: E402
from augmax_lib.augmix import augmix  # noqa: E402
from reference.pil_augmix import augmix_one  # noqa: E402

CASES = [(256, 32), (1024, 32), (256, 224)]


def timed(fn, device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` after ``warmup`` calls, synchronising the device around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    from conftest import _made_images
    return torch.from_numpy(_made_images(n, size, seed)).permute(0, 3, 1, 2).contiguous()


def bench_ours(x: torch.Tensor, device, repeats) -> float:
    x = x.to(device)
    g = torch.Generator(device=device).manual_seed(0)
    return x.shape[0] / timed(lambda: augmix(x, generator=g), device, repeats)


def bench_torchvision(x: torch.Tensor, device, repeats) -> float | None:
    try:
        from torchvision.transforms import v2
    except ImportError:
        return None
    x = x.to(device)
    aug = v2.AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1.0)
    torch.manual_seed(0)
    return x.shape[0] / timed(lambda: aug(x), device, repeats)


def bench_pil(x: torch.Tensor, repeats) -> float:
    arr = x.permute(0, 2, 3, 1).numpy()
    n = min(len(arr), 256 if arr.shape[1] <= 64 else 32)
    rng = np.random.default_rng(0)
    return n / timed(lambda: [augmix_one(arr[i], rng) for i in range(n)], torch.device("cpu"),
                     max(3, repeats // 2), warmup=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--skip-pil", action="store_true", help="skip the slow per-image PIL baseline")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (and a .json) here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for batch, size in CASES:
        x = images(batch, size)
        ours = bench_ours(x, device, args.repeats)
        tv = bench_torchvision(x, device, args.repeats)
        pil = None if args.skip_pil else bench_pil(x, args.repeats)
        rows.append({"batch": batch, "size": size, "ours": ours, "torchvision_v2": tv, "pil_per_image": pil})
    meta = {"device": device_name(device), "torch": torch.__version__, "commit": commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "threads": torch.get_num_threads()}
    buf = io.StringIO()
    with redirect_stdout(buf):
        print(f"# AugMix throughput (images/s, median of {args.repeats})")
        print(f"device: {meta['device']} | torch {meta['torch']} | commit {meta['commit']} | {meta['date']}")
        print("PIL: per-image reference pipeline in this process (one thread); torchvision: v2.AugMix on the")
        print("whole batch (one op chain shared by the batch); ours: per-image chains, sample_chains + mix.\n")
        print("| batch | size | ours | torchvision v2 (shared chain) | PIL per image | ours / PIL | ours / torchvision |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in rows:
            fmt = lambda v: "-" if v is None else f"{v:,.0f}"  # noqa: E731
            ratio = lambda a, b: "-" if a is None or b is None else f"{a / b:.1f}x"  # noqa: E731
            print(f"| {r['batch']} | {r['size']} | {fmt(r['ours'])} | {fmt(r['torchvision_v2'])} | "
                  f"{fmt(r['pil_per_image'])} | {ratio(r['ours'], r['pil_per_image'])} | "
                  f"{ratio(r['ours'], r['torchvision_v2'])} |")
    report = buf.getvalue()
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
