"""Batched inference: the model in eval mode with norm route "M", bf16 autocast on CUDA, progress bars."""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from tqdm.auto import tqdm

from .._checks import to_float

__all__ = ["eval_mode", "model_device", "autocast_for", "iter_batches", "forward", "predict"]


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Every module in eval mode and every dual norm on route "M"; the previous modes come back on exit."""
    from ..norm import route

    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with route(model, "M"):
            yield model
    finally:
        for m, training in modes:
            m.training = training


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without either)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA (where it is fast and keeps fp32's range); nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _is_image_set(data) -> bool:
    return hasattr(data, "images") and hasattr(data, "labels") and isinstance(data.images, torch.Tensor)


def iter_batches(data, batch_size: int, num_workers: int | None = None):
    """(images, labels) CPU batches, in order, from an ImageSet, an (images, labels) pair or a Dataset.

    Datasets (lazy folders) are read through a DataLoader with ``num_workers`` processes (default:
    up to 8, one per core).
    """
    if isinstance(data, tuple) and len(data) == 2:
        images, labels = data
        for start in range(0, labels.shape[0], batch_size):
            yield images[start:start + batch_size], labels[start:start + batch_size]
        return
    if _is_image_set(data):
        for start in range(0, len(data), batch_size):
            yield data.images[start:start + batch_size], data.labels[start:start + batch_size]
        return
    import os

    from torch.utils.data import DataLoader

    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=torch.cuda.is_available(), persistent_workers=False)
    yield from loader


def num_items(data) -> int:
    if isinstance(data, tuple) and len(data) == 2:
        return int(data[1].shape[0])
    return len(data)


def forward(model: nn.Module, x: torch.Tensor, device: torch.device, input_transform=None) -> torch.Tensor:
    """float32 logits of ``model`` for a batch (uint8 or float [0, 1]) moved to ``device``."""
    x = to_float(x.to(device, non_blocking=True))
    if input_transform is not None:
        x = input_transform(x)
    with autocast_for(device):
        logits = model(x)
    return logits.float()


@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 500, device=None, input_transform=None,
            progress: bool = True, desc: str = "predict", num_workers: int | None = None):
    """Predicted classes and true labels, both int64 on the CPU, of ``model`` on every item of ``data``.

    Predictions stay on the device until the end (one transfer, no per-batch host sync).
    """
    device = torch.device(device) if device is not None else model_device(model)
    preds, labels = [], []
    with eval_mode(model):
        total = num_items(data)
        with tqdm(total=total, desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for x, y in iter_batches(data, batch_size, num_workers):
                preds.append(forward(model, x, device, input_transform).argmax(1))
                labels.append(y)
                bar.update(y.shape[0])
    if not preds:
        raise ValueError(f"data: the set to evaluate on is empty ({desc})")
    return torch.cat(preds).cpu(), torch.cat(labels).to(torch.int64).cpu()
