"""The one place a device argument is resolved (``None``/``"auto"`` picks CUDA when present, else the CPU), and a
``precision`` of ``"auto"``: bf16 where the device computes it natively, else fp32."""
from __future__ import annotations

import platform

import torch

from ._checks import InputError

__all__ = ["DeviceError", "resolve_device", "native_bf16", "resolve_precision", "cpu_model"]

# What "auto" may become, and the concrete precisions the library computes in.
CONCRETE_PRECISIONS = ("fp32", "bf16", "fp16")


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


def _cpu_flag(name: str) -> bool:
    check = getattr(torch.cpu, name, None)  # private probes of torch's cpuinfo; absent in some builds
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def native_bf16(device) -> bool:
    """Whether ``device`` computes bf16 in hardware: a CUDA GPU with bf16 support, an x86 CPU with AVX512-BF16 or
    AMX, or an Arm CPU with BF16. Elsewhere oneDNN emulates bf16, far slower than fp32 (bench/README.md)."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    if platform.machine().lower() in ("aarch64", "arm64"):
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return _cpu_flag("_is_avx512_bf16_supported") or _cpu_flag("_is_amx_tile_supported")


def resolve_precision(precision: str, device, name: str = "precision") -> str:
    """``precision`` as computed on ``device``: "auto" becomes "bf16" where :func:`native_bf16` holds, else "fp32";
    "fp32", "bf16" and "fp16" stay as given."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in CONCRETE_PRECISIONS:
        raise ValueError(f"{name}: expected one of {', '.join(CONCRETE_PRECISIONS)} or auto, got {precision!r}")
    return precision


def cpu_model() -> str:
    """The CPU's model name as the OS reports it (Linux: /proc/cpuinfo), else platform.processor() or ''."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""
