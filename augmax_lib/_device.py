"""The one place a device argument is resolved: ``None``/``"auto"`` picks CUDA when present, else the CPU."""
from __future__ import annotations

import torch

from ._checks import InputError

__all__ = ["DeviceError", "resolve_device"]


class DeviceError(InputError, ValueError):
    """A device argument that names no device of this machine."""


def resolve_device(value=None, name: str = "device", local_rank: int = 0) -> torch.device:
    """The torch.device that ``value`` names: None, "" or "auto" gives CUDA when available, else the CPU;
    "cpu", "cuda", "cuda:N" or a torch.device are checked (a CUDA device needs CUDA, and the index must exist).
    A plain "cuda" (or "auto" on a GPU machine) is the GPU of ``local_rank`` (each process of a torchrun its
    own). Errors name the argument (``name``) and what was expected."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "auto")):
        value = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise DeviceError(f"{name}: expected cpu, cuda or cuda:N, got {value!r} (or auto: CUDA when present)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{name}: {value!r} asked for CUDA, but CUDA is not available on this machine; "
                              f"use 'cpu' or 'auto'")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{name}: {value!r} names GPU {device.index}, but this machine has "
                              f"{torch.cuda.device_count()}")
    elif device.type != "cpu":
        raise DeviceError(f"{name}: expected cpu, cuda or cuda:N, got {value!r} (or auto: CUDA when present)")
    return device
