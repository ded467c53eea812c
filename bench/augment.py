"""Images per second of AugMix: ours (``augmix``, per-image chains) against torchvision.transforms.v2.AugMix
(one chain shared by the batch) and the per-image PIL pipeline with the reference semantics.

    python bench/augment.py [--device cuda] [--threads 1] [--repeats 15] [--baseline DIR] [--default-malloc]
                            [--out bench/results/augment-cpu-1thread.txt]

The contenders run interleaved, one call each per round in a rotated order, so that load from other
processes hits them alike; the table gives each one's median and the median over rounds of the per-round ratio.
torchvision runs twice: with its default 13 ops (``all_ops=True``: the enhance ops too) and with
``all_ops=False``, the 9 ops AugMix uses by default, as ours does. Chains on the CPU run ours in its C kernel
(``augmax_lib.ops.native``) when it is built; "ours, PyTorch kernels" times the same call without it.
``--baseline DIR`` also times
the ``augmax_lib`` found in DIR (e.g. ``git archive COMMIT augmax_lib | tar -x -C DIR``) as
"ours before", for before/after numbers from one process. The process keeps freed memory as the
library's commands do (``augmax_lib._malloc``), for every contender alike; ``--default-malloc`` leaves
glibc's settings as they are.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
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
from reference.pil_augmix import augmix_one  # noqa: E402

from augmax_lib._malloc import keep_freed_memory  # noqa: E402
from augmax_lib.augmix import augmix  # noqa: E402
from augmax_lib.ops import native  # noqa: E402

CASES = [(256, 32, "uint8"), (256, 32, "float32"), (1024, 32, "uint8"), (1024, 32, "float32"),
         (256, 224, "uint8")]
PIL_IMAGES = {32: 256, 224: 16}  # images per PIL call (it runs one image at a time anyway)


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    from conftest import _made_images
    return torch.from_numpy(_made_images(n, size, seed)).permute(0, 3, 1, 2).contiguous()


def load_baseline(directory: Path):
    """``augmix`` of the ``augmax_lib`` package in ``directory``, imported under another name."""
    init = directory / "augmax_lib" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"--baseline: no augmax_lib package in {directory} (expected {init})")
    name = "augmax_lib_baseline"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.augmix").augmix


def contenders(x: torch.Tensor, device, baseline, with_pil: bool) -> dict:
    """name -> (images per call, callable) for one case."""
    out = {}
    g = torch.Generator(device=device).manual_seed(0)
    out["ours"] = (x.shape[0], lambda: augmix(x, generator=g))
    if x.device.type == "cpu" and native.available():
        # The same chains on the PyTorch kernels (what runs on a GPU and without a C compiler).
        gt = torch.Generator(device=device).manual_seed(0)

        def torch_kernels():
            with native.disabled():
                return augmix(x, generator=gt)
        out["ours, PyTorch kernels"] = (x.shape[0], torch_kernels)
    if baseline is not None:
        gb = torch.Generator(device=device).manual_seed(0)
        out["ours before"] = (x.shape[0], lambda: baseline(x, generator=gb))
    try:
        from torchvision.transforms import v2
    except ImportError:
        v2 = None
    if v2 is not None:
        torch.manual_seed(0)
        tv13 = v2.AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1.0)
        tv9 = v2.AugMix(severity=3, mixture_width=3, chain_depth=-1, alpha=1.0, all_ops=False)
        out["torchvision (13 ops)"] = (x.shape[0], lambda: tv13(x))
        out["torchvision (9 ops)"] = (x.shape[0], lambda: tv9(x))
    if with_pil:
        # PIL works on uint8 arrays: float batches are converted once, outside the timing.
        u8 = x if x.dtype == torch.uint8 else x.mul(255).round_().to(torch.uint8)
        arr = u8.cpu().permute(0, 2, 3, 1).numpy()
        k = min(len(arr), PIL_IMAGES.get(arr.shape[1], 16))
        rng = np.random.default_rng(0)
        out["PIL per image"] = (k, lambda: [augmix_one(arr[i], rng) for i in range(k)])
    return out


def run_case(fns: dict, device, repeats: int) -> dict:
    """Interleaved rounds: per contender the median images/s, and per-round ratios to "ours"."""
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _, fn in fns.values():  # warm-up
        fn()
    seconds = {name: [] for name in fns}
    names = list(fns)
    for r in range(repeats):
        # A rotated order each round: a contender runs after each of the others equally often, so that none
        # always inherits the caches and heap another one left.
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = fns[name][1]
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            seconds[name].append(time.perf_counter() - t0)
    rate = {name: [fns[name][0] / s for s in times] for name, times in seconds.items()}
    ours = rate["ours"]
    return {
        "images_per_s": {name: statistics.median(r) for name, r in rate.items()},
        "ours_over": {name: statistics.median(a / b for a, b in zip(ours, r)) for name, r in rate.items()
                      if name != "ours"},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds per case")
    parser.add_argument("--skip-pil", action="store_true",
                        help="skip the slow per-image PIL baseline (with it in the process, every torch contender "
                             "ran slower here, ours most; bench/README.md)")
    parser.add_argument("--skip-large", action="store_true", help="skip the 224x224 case")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a directory holding an older augmax_lib to time as 'ours before'")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc as it is (the library's commands keep freed memory)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report (and a .json) here")
    args = parser.parse_args(argv)
    malloc_kept = False if args.default_malloc else keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    baseline = load_baseline(args.baseline) if args.baseline else None
    rows = []
    for batch, size, dtype in CASES:
        if args.skip_large and size > 64:
            continue
        x = images(batch, size)
        x = (x if dtype == "uint8" else x.float() / 255).to(device)
        fns = contenders(x, device, baseline, with_pil=not args.skip_pil)
        rows.append({"batch": batch, "size": size, "dtype": dtype,
                     **run_case(fns, device, args.repeats if size <= 64 else max(3, args.repeats // 3))})
    meta = {"device": device_name(device), "torch": torch.__version__, "commit": commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "threads": torch.get_num_threads(), "repeats": args.repeats,
            "baseline": str(args.baseline) if args.baseline else None, "malloc_keeps_freed_memory": malloc_kept,
            "native_kernel": native.available()}
    names = list(dict.fromkeys(n for r in rows for n in r["images_per_s"]))  # every contender, first-seen order
    others = [n for n in names if n != "ours"]
    buf = io.StringIO()
    with redirect_stdout(buf):
        print(f"# AugMix throughput (images/s, median of {args.repeats} interleaved rounds; 224x224: a third)")
        print(f"device: {meta['device']} | torch {meta['torch']} | commit {meta['commit']} | {meta['date']}")
        print(f"malloc keeps freed memory (augmax_lib._malloc): {'yes' if malloc_kept else 'no'}")
        kernel = "its C kernel" if native.available() else f"the PyTorch kernels ({native.unavailable_reason()})"
        print(f"ours: augmix, per-image chains (9 ops); chains on the CPU run {kernel};")
        print("'ours, PyTorch kernels': the same without it. torchvision: v2.AugMix on the whole batch (one op chain")
        print("shared by the batch), default 13 ops and all_ops=False (9 ops); PIL: per-image reference pipeline")
        print("(uint8; float batches converted outside the timing). 'ours / X': median over rounds of the ratio.")
        if args.baseline:
            print(f"ours before: the augmax_lib in {args.baseline}")
        print()
        ratios = " | ".join(f"ours / {n}" for n in others)
        print("| batch | size | dtype | " + " | ".join(names) + " | " + ratios + " |")
        print("| ---: | ---: | --- | " + " | ".join("---:" for _ in names + others) + " |")
        for r in rows:
            cells = ([f"{r['images_per_s'][n]:,.0f}" if n in r["images_per_s"] else "-" for n in names]
                     + [f"{r['ours_over'][n]:.2f}x" if n in r["ours_over"] else "-" for n in others])
            print(f"| {r['batch']} | {r['size']} | {r['dtype']} | " + " | ".join(cells) + " |")
    report = buf.getvalue()
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
        args.out.with_suffix(".json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
