"""Measure how torch.compile handles DuBN route switching: graphs compiled and recompiles over many batches.

Runs a narrow DuBIN ResNet18 on the CPU (or CUDA with --device cuda), alternating the route the way AugMax
training does (attack under "A" in eval mode, then training forwards under "M" and "A"), and prints dynamo's
counters. Usage: python bench/models_compile.py [--backend eager|aot_eager|inductor] [--steps 20]
"""
from __future__ import annotations

import argparse
import time

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from augmax_lib.models import build_model
from augmax_lib.norm import route


def _one_training_step(compiled, model, x, y):
    """The route/mode pattern of one AugMax step: eval forward+input grad under "A", train forwards under "M" and "A"."""
    model.eval()
    x_adv = x.clone().requires_grad_(True)
    with route(model, "A"):
        loss = torch.nn.functional.cross_entropy(compiled(x_adv), y)
    (grad,) = torch.autograd.grad(loss, x_adv)
    model.train()
    logits_clean = compiled(x)
    with route(model, "A"):
        logits_adv = compiled((x + 0.01 * grad.sign()).clamp(0, 1))
    loss = torch.nn.functional.cross_entropy(logits_clean, y) + torch.nn.functional.cross_entropy(logits_adv, y)
    loss.backward()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="aot_eager", help="torch.compile backend (eager, aot_eager, inductor)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = build_model("resnet18", 10, norm="dubin", width=args.width).to(args.device)
    compiled = torch.compile(model, backend=args.backend)
    x = torch.rand(4, 3, 32, 32, device=args.device)
    y = torch.randint(0, 10, (4,), device=args.device)
    torch._dynamo.reset()
    counters.clear()
    start = time.perf_counter()
    after_first = None
    for step in range(args.steps):
        _one_training_step(compiled, model, x, y)
        if step == 0:
            after_first = (dict(counters["stats"]), time.perf_counter() - start)
    total = time.perf_counter() - start
    stats = dict(counters["stats"])
    model.eval()
    with torch.no_grad():
        for _ in range(3):  # evaluation: eval mode, route "M", no autograd
            compiled(x)
    after_eval = dict(counters["stats"])

    eager_start = time.perf_counter()
    for _ in range(args.steps):
        _one_training_step(model, model, x, y)
    eager = (time.perf_counter() - eager_start) / args.steps

    print(f"torch {torch.__version__}, backend {args.backend}, device {args.device}, {args.steps} steps "
          f"(each: eval forward under 'A', train forwards under 'M' and 'A')")
    print(f"after step 1: {after_first[0]}  ({after_first[1]:.1f} s, includes compilation)")
    print(f"after step {args.steps}: {stats}  (steps 2..{args.steps}: "
          f"{(total - after_first[1]) / max(args.steps - 1, 1) * 1e3:.1f} ms/step; eager {eager * 1e3:.1f} ms/step)")
    print(f"after 3 evaluation forwards (eval, 'M', no_grad): {after_eval}")
    print(f"frames: {dict(counters['frames'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
