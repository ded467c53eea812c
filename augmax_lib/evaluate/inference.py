"""Batched inference: the model in eval mode with norm route "M", fp32 unless asked otherwise, progress bars.

Evaluation computes in fp32, as the paper did: a 16-bit forward pass can flip borderline predictions and the
sign of attack gradients. :func:`with_numerics` opts into bf16/fp16 autocast, channels-last and
``torch.compile`` for speed, and :func:`numerics_record` says in results.json which were used.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from augmax_lib._progress import tqdm

from .._checks import to_float
from ..norm import eval_mode

__all__ = ["PRECISIONS", "eval_mode", "model_device", "autocast_for", "with_numerics", "numerics_record",
           "InferenceNumerics", "iter_batches", "forward", "predict"]

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without either)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")


def autocast_for(device: torch.device, precision: str = "fp32"):
    """Autocast to ``precision`` ('bf16' or 'fp16') on ``device``'s type; nothing for 'fp32' (the default)."""
    _check_precision(precision)
    dtype = _DTYPES[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


class InferenceNumerics(nn.Module):
    """``model`` under autocast to ``precision``, fed channels-last input when asked; returns float32 logits."""

    def __init__(self, model: nn.Module, precision: str = "fp32", channels_last: bool = False,
                 compiled: nn.Module | None = None):
        super().__init__()
        _check_precision(precision)
        self.model = model
        self.precision, self.channels_last = precision, bool(channels_last)
        self.compiled = compiled  # torch.compile(model) or None; it shares the model's layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_for(x.device, self.precision):
            out = (self.compiled if self.compiled is not None else self.model)(x)
        return out.float()


def with_numerics(model: nn.Module, precision: str = "fp32", channels_last: bool = False,
                  compile: bool = False) -> nn.Module:
    """``model`` itself for fp32 without channels-last or compile; else an :class:`InferenceNumerics` wrapper.

    ``channels_last`` converts the model's weights in place (the arithmetic is the same, the layout faster).
    """
    _check_precision(precision)
    if precision == "fp32" and not channels_last and not compile:
        return model
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return InferenceNumerics(model, precision, channels_last, torch.compile(model) if compile else None)


def numerics_record(precision: str = "fp32", channels_last: bool = False, compile: bool = False) -> dict:
    """The ``numerics`` entry of results.json: how the forward passes computed."""
    _check_precision(precision)
    return {"precision": precision, "channels_last": bool(channels_last), "compile": bool(compile)}


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
    """The number of images in a data set or an ``(images, labels)`` pair."""
    if isinstance(data, tuple) and len(data) == 2:
        return int(data[1].shape[0])
    return len(data)


def forward(model: nn.Module, x: torch.Tensor, device: torch.device, input_transform=None) -> torch.Tensor:
    """float32 logits of ``model`` for a batch (uint8 or float [0, 1]) moved to ``device``.

    No autocast here: the model computes as it is (fp32, or as :func:`with_numerics` set it up).
    """
    x = to_float(x.to(device, non_blocking=True))
    if input_transform is not None:
        x = input_transform(x)
    return model(x).float()


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
