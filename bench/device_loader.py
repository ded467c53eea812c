"""Images per second of the device loader's random crop + flip, and of the alternatives it was chosen over.

Variants, all on a CIFAR-sized uint8 set padded once by 4 px (50000 x 3 x 40 x 40):
  gather2      two gathers (rows, then mirrored or plain columns): what DeviceLoader uses, no host sync
  adv-index    one advanced-indexing kernel with four broadcast index tensors, no host sync
  group-shift  group the batch by its drawn (dy, dx) and slice each group (81 groups; one sync per batch)
and a full DeviceLoader epoch (shuffle + crop + flip + labels), uint8 and float output.

    python bench/device_loader.py [--device cuda] [--threads 1] [--batch 512]
                                  [--out bench/results/device_loader-cpu.txt]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from augmax_lib.data import DeviceLoader, ImageSet, crop_flip


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def adv_index(padded, index, top, left, flip, size):
    h, w = size
    n, c = index.shape[0], padded.shape[1]
    ar_h, ar_w = torch.arange(h, device=padded.device), torch.arange(w, device=padded.device)
    rows = top.view(-1, 1) + ar_h
    cols = left.view(-1, 1) + torch.where(flip.view(-1, 1), ar_w.flip(0), ar_w)
    ch = torch.arange(c, device=padded.device)
    return padded[index.view(n, 1, 1, 1), ch.view(1, c, 1, 1), rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def group_shift(padded, index, top, left, flip, size):
    h, w = size
    batch = padded.index_select(0, index)
    out = torch.empty(index.shape[0], padded.shape[1], h, w, dtype=padded.dtype, device=padded.device)
    span = int(padded.shape[-1] - w + 1)
    key = top * span + left
    for k in torch.unique(key).tolist():  # the one host sync per batch
        sel = (key == k).nonzero().squeeze(1)
        a, b = divmod(k, span)
        out[sel] = batch[sel, :, a:a + h, b:b + w]
    fsel = flip.nonzero().squeeze(1)
    out[fsel] = out[fsel].flip(3)
    return out


def time_variant(fn, padded, batch, device, repeats):
    g = torch.Generator(device=device).manual_seed(0)
    n = padded.shape[0]
    draws = [(torch.randint(0, n, (batch,), generator=g, device=device),
              torch.randint(0, 9, (batch,), generator=g, device=device),
              torch.randint(0, 9, (batch,), generator=g, device=device),
              torch.rand(batch, generator=g, device=device) < 0.5) for _ in range(20)]
    for d in draws[:3]:
        fn(padded, *d, (32, 32))
    rates = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        for d in draws:
            fn(padded, *d, (32, 32))
        _sync(device)
        rates.append(len(draws) * batch / (time.perf_counter() - t))
    return statistics.median(rates)


def time_epoch(data, batch, device, dtype, repeats):
    loader = DeviceLoader(data, batch, device, dtype=dtype, drop_last=True)
    for _ in loader:  # warm-up epoch
        pass
    rates = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        count = sum(y.shape[0] for _, y in loader)
        _sync(device)
        rates.append(count / (time.perf_counter() - t))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    images = torch.randint(0, 256, (50000, 3, 32, 32), dtype=torch.uint8, device=device)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    lines = [f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
             f"threads {torch.get_num_threads()}, batch {args.batch}, torch {torch.__version__}"]
    for name, fn in (("gather2", crop_flip), ("adv-index", adv_index), ("group-shift", group_shift)):
        lines.append(f"{name:12s} {time_variant(fn, padded, args.batch, device, args.repeats):12,.0f} img/s")
    data = ImageSet(images.cpu(), torch.zeros(50000, dtype=torch.long), [str(i) for i in range(10)], "random", "b")
    for dtype in (torch.uint8, torch.float32):
        lines.append(f"epoch {str(dtype):14s} {time_epoch(data, args.batch, device, dtype, args.repeats):12,.0f} img/s")
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
