"""Other distribution shifts for the course: the worst-of-k spatial attack as a curve over k, and CIFAR-10.1.

:func:`worst_of_k_curve` draws k random rotations and shifts per image once (the library's
``sample_spatial_params``) and reads off the worst-of-j accuracy for every j <= k from the same draws,
so the curve is nested: each point adds draws to the previous one and can only go down.
"""
from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from augmax_lib._checks import to_float
from augmax_lib._progress import tqdm

__all__ = ["worst_of_k_curve", "worst_spatial_images", "cifar101_status"]


@torch.no_grad()
def _draw_outcomes(model, images, labels, angles, shifts, device, batch_size, progress):
    """Per-draw losses and correctness, both (k, N), of ``model`` on the transformed images."""
    from augmax_lib.evaluate import eval_mode, spatial_transform

    k, n = angles.shape
    losses = torch.empty(k, n, dtype=torch.float32)
    correct = torch.empty(k, n, dtype=torch.bool)
    with eval_mode(model), tqdm(total=n * k, desc=f"spatial draws (k={k})", unit="img", disable=not progress,
                                leave=False) as bar:
        for start in range(0, n, batch_size):
            x = to_float(images[start:start + batch_size].to(device))
            y = labels[start:start + batch_size].to(device)
            for j in range(k):
                part = slice(start, start + y.shape[0])
                logits = model(spatial_transform(x, angles[j, part].to(device), shifts[j, part].to(device))).float()
                losses[j, part] = F.cross_entropy(logits, y, reduction="none").cpu()
                correct[j, part] = (logits.argmax(1) == y).cpu()
                bar.update(y.shape[0])
    return losses, correct


def _check_set(data):
    images, labels = (data.images, data.labels) if hasattr(data, "images") else data
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or labels.shape != images.shape[:1]:
        raise ValueError("data: expected an ImageSet or (images (N, C, H, W), labels (N,)) tensors")
    if images.shape[0] == 0:
        raise ValueError("data: the set to attack is empty")
    return images, labels


def worst_of_k_curve(model, data, k: int = 10, *, max_degrees: float = 30.0, max_shift: float = 3.0, seed: int = 0,
                     batch_size: int = 500, device=None, progress: bool = True) -> pd.DataFrame:
    """Accuracy under the worst of j random spatial transforms per image, for j = 1..k, from one set of draws.

    Columns: ``worst_loss`` (the draw with the highest cross-entropy decides, the reference's rule) and
    ``any_misclassified`` (correct only if all j draws are correct, Engstrom et al.'s rule), indexed by j.
    At j = k with the same seed this is ``augmax_lib.evaluate.spatial_attack_accuracy``'s result.
    """
    from augmax_lib.evaluate import sample_spatial_params
    from augmax_lib.evaluate.inference import model_device

    if k < 1:
        raise ValueError(f"k: expected at least one draw, got {k}")
    images, labels = _check_set(data)
    device = torch.device(device) if device is not None else model_device(model)
    angles, shifts = sample_spatial_params(images.shape[0], k, max_degrees, max_shift, seed)
    losses, correct = _draw_outcomes(model, images, labels, angles, shifts, device, batch_size, progress)
    rows = []
    for j in range(1, k + 1):
        worst = losses[:j].argmax(0, keepdim=True)
        rows.append({"k": j, "worst_loss": float(correct[:j].gather(0, worst)[0].double().mean()),
                     "any_misclassified": float(correct[:j].all(0).double().mean())})
    return pd.DataFrame(rows).set_index("k")


@torch.no_grad()
def worst_spatial_images(model, images: torch.Tensor, labels: torch.Tensor, k: int = 10, *,
                         max_degrees: float = 30.0, max_shift: float = 3.0, seed: int = 0, device=None) -> dict:
    """For a few images: the transform of the k draws with the highest loss, applied, and what the model says.

    Returns ``{"images": float (N, C, H, W) in [0, 1], "degrees": (N,), "shifts": (N, 2), "clean_pred": (N,),
    "pred": (N,)}`` on the CPU.
    """
    from augmax_lib.evaluate import eval_mode, sample_spatial_params, spatial_transform
    from augmax_lib.evaluate.inference import model_device

    images, labels = _check_set((images, labels))
    device = torch.device(device) if device is not None else model_device(model)
    angles, shifts = sample_spatial_params(images.shape[0], k, max_degrees, max_shift, seed)
    losses, _ = _draw_outcomes(model, images, labels, angles, shifts, device, len(labels), False)
    pick = losses.argmax(0)
    idx = torch.arange(images.shape[0])
    degrees, offsets = angles[pick, idx], shifts[pick, idx]
    x = to_float(images.to(device))
    worst = spatial_transform(x, degrees.to(device), offsets.to(device))
    with eval_mode(model):
        clean_pred = model(x).argmax(1).cpu()
        pred = model(worst).argmax(1).cpu()
    return {"images": worst.cpu(), "degrees": degrees, "shifts": offsets, "clean_pred": clean_pred, "pred": pred}


def cifar101_status(root=None) -> dict:
    """For each CIFAR-10.1 version: the folder holding its files, or where to put them and how to get them."""
    from augmax_lib.data import CIFAR101_VERSIONS, find_cifar101
    from augmax_lib.data.cifar101 import URL, cifar101_candidates

    out = {}
    for version in CIFAR101_VERSIONS:
        folder = find_cifar101(version, root)
        if folder is not None:
            out[version] = {"present": True, "folder": str(folder)}
        else:
            target = cifar101_candidates(root)[0]
            out[version] = {"present": False, "folder": str(target),
                            "files": [f"cifar10.1_{version}_data.npy", f"cifar10.1_{version}_labels.npy"],
                            "url": URL}
    return out
