"""The worst-of-k spatial attack (CIFAR10-STA): k random rotations + translations per image, keep the worst.

Draws follow the reference's torchvision ``RandomAffine(degrees=30, translate=(3/32, 3/32))``: angle
uniform in [-30, 30] degrees, each shift ``round(U(-3, 3))`` pixels, nearest-neighbour resampling with
black fill. Unlike the reference (first 1000 test images, unseeded), every image is attacked and the
draws come from a seed, made for the whole set at once so that results do not depend on the batch size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from augmax_lib._progress import tqdm

from .._checks import to_float
from .inference import eval_mode, forward, iter_batches, model_device, num_items

__all__ = ["sample_spatial_params", "spatial_transform", "spatial_attack_accuracy"]


def sample_spatial_params(n: int, k: int = 10, max_degrees: float = 30.0, max_shift: float = 3.0, seed: int = 0):
    """k draws per image: angles (k, n) in degrees and integer shifts (k, n, 2) as (dx, dy), on the CPU."""
    if k < 1 or n < 0:
        raise ValueError(f"k and n: expected k >= 1 and n >= 0, got k={k}, n={n}")
    g = torch.Generator().manual_seed(int(seed))
    angles = (torch.rand(k, n, generator=g, dtype=torch.float64) * 2 - 1) * max_degrees
    shifts = torch.round((torch.rand(k, n, 2, generator=g, dtype=torch.float64) * 2 - 1) * max_shift)
    return angles.float(), shifts.long()


def spatial_transform(x: torch.Tensor, degrees: torch.Tensor, shifts: torch.Tensor,
                      interpolation: str = "nearest") -> torch.Tensor:
    """Rotate each image about its centre by ``degrees`` (counter-clockwise on screen, as PIL) and then
    shift it by ``shifts`` (dx right, dy down, pixels), filling with zeros. x: float (N, C, H, W)."""
    n, _, h, w = x.shape
    a = degrees.to(x.device, torch.float32) * (math.pi / 180.0)
    t = shifts.to(x.device, torch.float32)
    cos, sin = torch.cos(a), torch.sin(a)
    tx, ty = t[:, 0], t[:, 1]
    # Output offset o (pixels from the centre) samples the input at R^T (o - t), written in the
    # normalised [-1, 1] coordinates of affine_grid (align_corners=False: the centre is (W-1)/2).
    theta = torch.stack([
        torch.stack([cos, -sin * (h / w), (2.0 / w) * (-cos * tx + sin * ty)], 1),
        torch.stack([sin * (w / h), cos, (2.0 / h) * (-sin * tx - cos * ty)], 1),
    ], 1)
    grid = F.affine_grid(theta, (n, x.shape[1], h, w), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode=interpolation, padding_mode="zeros", align_corners=False)


@torch.no_grad()
def spatial_attack_accuracy(model, data, k: int = 10, max_degrees: float = 30.0, max_shift: float = 3.0,
                            seed: int = 0, interpolation: str = "nearest", batch_size: int = 500, device=None,
                            input_transform=None, progress: bool = True) -> dict:
    """Accuracy under the worst of ``k`` random spatial transforms per image, with both selection rules.

    ``worst_loss``: the draw with the highest cross-entropy decides (the reference's rule).
    ``any_misclassified``: an image counts as correct only if every draw is classified correctly
    (Engstrom et al.). ``mean_draw``: the average accuracy over single random draws.
    """
    device = torch.device(device) if device is not None else model_device(model)
    n = num_items(data)
    angles, shifts = sample_spatial_params(n, k, max_degrees, max_shift, seed)
    worst_loss, every, mean_draw = [], [], []
    offset = 0
    with eval_mode(model), tqdm(total=n, desc=f"worst-of-{k} spatial", unit="img", disable=not progress,
                                leave=False) as bar:
        for x, y in iter_batches(data, batch_size):
            b = y.shape[0]
            xf = to_float(x.to(device, non_blocking=True))
            y = y.to(device, non_blocking=True)
            a = angles[:, offset:offset + b].to(device)
            t = shifts[:, offset:offset + b].to(device)
            losses, correct = [], []
            for j in range(k):
                logits = forward(model, spatial_transform(xf, a[j], t[j], interpolation), device, input_transform)
                losses.append(F.cross_entropy(logits, y, reduction="none"))
                correct.append(logits.argmax(1) == y)
            losses, correct = torch.stack(losses), torch.stack(correct)
            worst_loss.append(correct.gather(0, losses.argmax(0, keepdim=True))[0])
            every.append(correct.all(0))
            mean_draw.append(correct.double().mean(0))
            offset += b
            bar.update(b)
    if not offset:
        raise ValueError("data: the set to attack is empty")
    return {
        "worst_loss": float(torch.cat(worst_loss).double().mean()),
        "any_misclassified": float(torch.cat(every).double().mean()),
        "mean_draw": float(torch.cat(mean_draw).mean()),
        "k": k, "max_degrees": max_degrees, "max_shift": max_shift, "seed": seed,
        "interpolation": interpolation, "num_images": n,
    }
