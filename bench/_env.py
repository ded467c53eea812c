"""What every benchmark prints about where it ran: the commit and the device."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def commit() -> str:
    """The short commit hash of the checkout, or "unknown" outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model, vector unit, bf16 support and number of torch threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from augmax_lib._device import cpu_model, native_bf16

    return (f"{cpu_model() or platform.machine()} CPU ({platform.machine()}, {torch.backends.cpu.get_cpu_capability()}, "
            f"{'native' if native_bf16(device) else 'no native'} bf16), {torch.get_num_threads()} thread(s)")
