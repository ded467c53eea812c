"""Training-step and inference throughput of the quick profile's model on the CPU in every speed setting:
eager fp32, channels-last, bf16 autocast, torch.compile (inductor) and their combinations.

    python bench/cpu_variants.py --threads 2 --out bench/results/cpu_variants-2threads.txt

Each round measures every (setting, method) once, in a rotated order, and the table gives the median
over rounds, so that load from other processes spreads over all settings instead of biasing one.
Steps are timed as training runs them (one host synchronisation per step, on the CPU none is needed).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from _env import commit, device_name  # noqa: E402
from train_step import method_options  # noqa: E402

from augmax_lib.data import make_synthetic  # noqa: E402
from augmax_lib.models import build_model  # noqa: E402
from augmax_lib.train.engine import training_step  # noqa: E402
from augmax_lib.train.methods import StepContext, get_step  # noqa: E402

SETTINGS = {
    "fp32": dict(bf16=False, channels_last=False, compile=False),
    "channels-last": dict(bf16=False, channels_last=True, compile=False),
    "bf16": dict(bf16=True, channels_last=False, compile=False),
    "bf16 + channels-last": dict(bf16=True, channels_last=True, compile=False),
    "compile": dict(bf16=False, channels_last=False, compile=True),
    "compile + bf16 + channels-last": dict(bf16=True, channels_last=True, compile=True),
}
METHODS = ("normal", "augmix", "augmax")


def autocast(bf16: bool):
    return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext


class Case:
    """One (setting, method): a model, an optimiser and a step function, warmed up (and compiled) once."""

    def __init__(self, setting: dict, method: str, args, x, y):
        torch.manual_seed(0)
        norm = "dubin" if method == "augmax" else "bn"
        net = build_model("resnet18", 10, norm=norm, width=args.width)
        if setting["channels_last"]:
            net = net.to(memory_format=torch.channels_last)
        self.model = torch.compile(net) if setting["compile"] else net
        self.net, self.x, self.y, self.method = net, x, y, method
        self.optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.step = get_step(method) if method != "inference" else None
        self.options = method_options(method, SimpleNamespace(steps=args.steps, attack="fat")) if self.step else {}
        self.autocast = autocast(setting["bf16"])
        self.generator = torch.Generator().manual_seed(0)
        for _ in range(args.warmup):
            self.run()

    def run(self) -> float:
        t0 = time.perf_counter()
        if self.step is None:
            self.net.eval()
            with torch.no_grad(), self.autocast():
                self.model(self.x.float().div(255)).float().argmax(1)
        else:
            self.net.train()
            ctx = StepContext(self.model, self.model, self.options, self.generator, self.autocast,
                              lambda name: contextlib.nullcontext())
            training_step(self.step, ctx, self.x, self.y, self.optimizer, self.scaler)  # the engine's own step
        return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=128, help="training batch (the quick profile's)")
    parser.add_argument("--eval-batch", type=int, default=500, help="inference batch")
    parser.add_argument("--width", type=int, default=16, help="ResNet18 width (the quick profile's)")
    parser.add_argument("--steps", type=int, default=10, help="AugMax attack steps")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS), metavar="SETTING")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    head = [f"# bench/cpu_variants.py  {datetime.datetime.now().isoformat(timespec='seconds')}  commit {commit()}",
            f"# device {device_name(torch.device('cpu'))}  torch {torch.__version__}  ResNet18 width {args.width}  "
            f"train batch {args.batch}  inference batch {args.eval_batch}  AugMax fat {args.steps} steps  "
            f"median of {args.rounds} rounds (rotated order)"]
    print("\n".join(head), flush=True)
    train = make_synthetic(args.batch, seed=0)
    test = make_synthetic(args.eval_batch, seed=1)
    cases = {}
    for name in args.settings:
        for method in METHODS + ("inference",):
            data = test if method == "inference" else train
            t0 = time.perf_counter()
            cases[name, method] = Case(SETTINGS[name], method, args, data.images, data.labels)
            print(f"ready {name:32s} {method:9s} ({time.perf_counter() - t0:.0f} s warm-up)", flush=True)
    keys = list(cases)
    times = {k: [] for k in keys}
    for r in range(args.rounds):
        shift = r * len(keys) // args.rounds
        for k in keys[shift:] + keys[:shift]:
            times[k].append(cases[k].run())
    lines = [f"{'setting':32s} " + " ".join(f"{m + ' img/s':>16s}" for m in METHODS + ("inference",))
             + f" {'train x fp32':>13s} {'infer x fp32':>13s}"]
    rate = {k: (args.eval_batch if k[1] == "inference" else args.batch) / statistics.median(v)
            for k, v in times.items()}
    for name in args.settings:
        cells = [f"{rate[name, m]:16.0f}" for m in METHODS + ("inference",)]
        speedup = ""
        if "fp32" in args.settings:
            train_x = statistics.mean(rate[name, m] / rate["fp32", m] for m in METHODS)
            speedup = f" {train_x:12.2f}x {rate[name, 'inference'] / rate['fp32', 'inference']:12.2f}x"
        lines.append(f"{name:32s} " + " ".join(cells) + speedup)
    print("\n".join(lines), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(head + lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
