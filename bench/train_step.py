"""Time of one training step by phase (chains and mixing, attack, forward, backward + optimiser) for normal,
AugMix and AugMax on ResNet18 at batch 256 on 32x32 images, and AugMax's step against the pure model cost
of the same forward and backward passes (the floor any implementation of the method has to pay).

    python bench/train_step.py                       # CUDA when present: batch 256, bf16, channels-last
    python bench/train_step.py --device cpu --batch 32 --width 16 --repeats 3
    python bench/train_step.py --compile --out bench/results/train_step-h100.txt

Per-phase times synchronise the device at each phase boundary; the step totals ("step") are timed
separately with one synchronisation per step, which is how training runs. The floor replays the model
passes of an AugMax step on fixed inputs: ``steps`` attack iterations (eval mode, gradient to the input
only), then the three training forward passes (route A, M, M) and one backward with the optimiser step.
With the FAT inner loop (the default) images leave the attack early, so the floor counts the image-passes
that really ran; ``--attack pgd`` runs every step on every image and makes the floor exact.
The data path (DeviceLoader: crop + flip of a 45000-image set held on the device) is timed on its own.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import statistics
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from _env import commit, device_name  # noqa: E402

from augmax_lib.course.step_cost import PhaseTimer  # noqa: E402
from augmax_lib.data import DeviceLoader, make_synthetic  # noqa: E402
from augmax_lib.models import build_model  # noqa: E402
from augmax_lib.norm import route  # noqa: E402
from augmax_lib.train.config import validate  # noqa: E402
from augmax_lib.train.engine import training_step  # noqa: E402
from augmax_lib.train.methods import StepContext, get_step  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_model(args, norm, device):
    torch.manual_seed(0)
    net = build_model("resnet18", 10, norm=norm, width=args.width).to(device)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
    return net


def autocast_for(args, device):
    if args.amp == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def method_options(name, args):
    raw = {"name": name}
    if name == "augmax":
        raw.update(steps=args.steps, attack=args.attack)
    return {k: v for k, v in validate({"method": raw})["method"].items() if k != "name"}


def bench_method(name, args, device, x, y):
    """Median per-phase and per-step times (s) of method ``name``, and the AugMax attack's image-passes."""
    norm = "dubin" if name == "augmax" else "bn"
    net = make_model(args, norm, device)
    model = torch.compile(net) if args.compile else net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    step = get_step(name)
    options = method_options(name, args)
    generator = torch.Generator(device=device).manual_seed(0)
    passes = []

    scaler = torch.amp.GradScaler(device.type, enabled=False)

    def one_step(phase):
        ctx = StepContext(model, model, options, generator, autocast_for(args, device), phase)
        result = training_step(step, ctx, x, y, optimizer, scaler)  # the engine's step; its backward is timed
        if "attack_steps" in result.extras:
            passes.append(result.extras["attack_steps"])
        return result

    for _ in range(args.warmup):
        one_step(PhaseTimer(device, enabled=False))
    phase_runs, totals = [], []
    for _ in range(args.repeats):
        timer = PhaseTimer(device)
        one_step(timer)
        phase_runs.append(timer.times)
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        one_step(PhaseTimer(device, enabled=False))
        sync(device)
        totals.append(time.perf_counter() - t0)
    phases = {k: statistics.median(run.get(k, 0.0) for run in phase_runs) for k in phase_runs[0]}
    # Mean updates per image in the attack; an image is also evaluated at the step where it stopped.
    taken = None
    if passes:
        taken = float(torch.stack(passes).float().mean())
    return phases, statistics.median(totals), taken


def bench_floor(args, device, x, attack_iterations):
    """Pure model cost of AugMax's passes: ``attack_iterations`` input-gradient passes, 3 forwards, 1 backward."""
    net = make_model(args, "dubin", device)
    model = torch.compile(net) if args.compile else net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    autocast = autocast_for(args, device)
    xf = x.float().div(255)
    y = torch.zeros(x.shape[0], dtype=torch.long, device=device)
    whole, frac = int(attack_iterations), attack_iterations - int(attack_iterations)

    def attack_pass(inputs):
        leaf = inputs.detach().requires_grad_(True)
        with autocast():
            loss = F.cross_entropy(model(leaf).float(), y[: inputs.shape[0]], reduction="sum")
        torch.autograd.grad(loss, [leaf])

    def floor_step():
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        with route(net, "A"):
            for _ in range(whole):
                attack_pass(xf)
            if frac > 0:  # the remaining image-passes as one partial batch
                attack_pass(xf[: max(1, round(frac * xf.shape[0]))])
        net.train()
        for p in net.parameters():
            p.requires_grad_(True)
        with autocast():
            with route(net, "A"):
                a = model(xf)
            with route(net, "M"):
                b = model(xf)
                c = model(xf)
            loss = F.cross_entropy(a.float(), y) + F.cross_entropy(b.float(), y) + F.cross_entropy(c.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(args.warmup):
        floor_step()
    times = []
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        floor_step()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_loader(args, device):
    """Median seconds to produce one batch from a 45000-image uint8 set held on the device."""
    images = torch.randint(0, 256, (45000, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (45000,))
    loader = DeviceLoader(images, args.batch, device, labels=labels, drop_last=True, seed=0)
    times = []
    iterator = iter(loader)
    for i in range(args.warmup + args.repeats):
        sync(device)
        t0 = time.perf_counter()
        batch = next(iterator)
        batch[0].float()
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=256, help="images per step (use less on a CPU)")
    parser.add_argument("--width", type=int, default=64, help="ResNet18 width (64: the paper's)")
    parser.add_argument("--methods", nargs="+", default=["normal", "augmix", "augmax"],
                        choices=["normal", "augmix", "augmax"])
    parser.add_argument("--steps", type=int, default=10, help="AugMax attack steps")
    parser.add_argument("--attack", default="fat", choices=["fat", "pgd"], help="AugMax inner loop")
    parser.add_argument("--amp", default=None, choices=["bf16", "off"], help="default: bf16 on CUDA, off on CPU")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5 / 1)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    args.amp = args.amp or ("bf16" if cuda else "off")
    args.channels_last = cuda if args.channels_last is None else args.channels_last
    args.repeats = args.repeats or (20 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = True

    buffer = io.StringIO()
    with redirect_stdout(buffer):
        print(f"# bench/train_step.py  {datetime.datetime.now().isoformat(timespec='seconds')}  commit {commit()}")
        print(f"# device {device_name(device)}  torch {torch.__version__}  batch {args.batch}  ResNet18 width "
              f"{args.width}  amp {args.amp}  channels_last {args.channels_last}  compile {args.compile}  "
              f"AugMax {args.attack} {args.steps} steps")
    sys.stdout.write(buffer.getvalue())

    data = make_synthetic(args.batch, seed=0)
    x, y = data.images.to(device), data.labels.to(device)
    lines = []
    loader_s = bench_loader(args, device)
    lines.append(f"data path (DeviceLoader crop+flip, one batch): {1e3 * loader_s:8.2f} ms")
    print(lines[-1], flush=True)
    header = f"{'method':8s} {'augment':>9s} {'attack':>9s} {'forward':>9s} {'backward':>9s} {'step':>9s} {'img/s':>9s}"
    lines.append(header)
    print(header, flush=True)
    augmax_step = taken = None
    for name in args.methods:
        phases, total, steps_taken = bench_method(name, args, device, x, y)
        cells = [f"{1e3 * phases.get(k, 0.0):7.1f}ms" for k in ("augment", "attack", "forward", "backward")]
        lines.append(f"{name:8s} " + " ".join(f"{c:>9s}" for c in cells) + f" {1e3 * total:7.1f}ms "
                     f"{args.batch / total:9.0f}")
        print(lines[-1], flush=True)
        if name == "augmax":
            augmax_step, taken = total, steps_taken
    if augmax_step is not None:
        # Image-passes of the attack per image: updates taken, plus the pass where an image stopped (FAT).
        iterations = args.steps if args.attack == "pgd" else min(args.steps, taken + 1)
        floor = bench_floor(args, device, x, iterations)
        lines.append(f"AugMax attack: {taken:.2f} updates per image on average ({args.attack}); floor replays "
                     f"{iterations:.2f} input-gradient passes + 3 forwards + 1 backward")
        lines.append(f"model-only floor {1e3 * floor:.1f} ms; AugMax step / floor = {augmax_step / floor:.2f}")
        lines.append(f"data path share of the AugMax step: {100 * loader_s / augmax_step:.1f}%")
        for line in lines[-3:]:
            print(line, flush=True)
    if args.out:
        Path(args.out).write_text(buffer.getvalue() + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
