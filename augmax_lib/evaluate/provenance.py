"""Where a result came from (checkpoint hash, versions, device, commit, data, date), and atomic JSON output."""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import platform
import subprocess
from pathlib import Path

import torch

from .._io import atomic_write_text

__all__ = ["sha256_file", "git_commit", "device_description", "provenance", "to_jsonable", "write_json_atomic"]


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit(path=None) -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (default: this package), or None."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        if sha.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip())}


def device_description(device) -> str:
    """'cuda:0 (NVIDIA H100 80GB HBM3)' or 'cpu (AMD EPYC, x86_64, AVX2, no native bf16, 2 threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    # The CPU's model and vector unit: the speed of a run, and of bf16 above all, depends on them (bench/README.md).
    from augmax_lib._device import cpu_model, native_bf16

    parts = [cpu_model(), platform.machine(), torch.backends.cpu.get_cpu_capability(),
             "native bf16" if native_bf16(device) else "no native bf16", f"{torch.get_num_threads()} threads"]
    return f"{device.type} ({', '.join(p for p in parts if p)})"


def provenance(checkpoint=None, data_source=None, device=None, extra=None) -> dict:
    """A dict naming everything a result depends on; ``checkpoint``'s path, size and sha256 when given."""
    import numpy
    import torchvision

    out = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": numpy.__version__,
        "git": git_commit(),
    }
    if device is not None:
        out["device"] = device_description(device)
    if data_source is not None:
        out["data_source"] = data_source
    if checkpoint is not None:
        path = Path(checkpoint).resolve()
        out["checkpoint"] = {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_file(path)}
    if extra:
        out.update(extra)
    return out


def to_jsonable(obj):
    """Plain JSON types from numpy/torch scalars and arrays, pandas objects, paths and tuples; NaN -> None."""
    import numpy as np
    import pandas as pd

    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return {str(i): to_jsonable(row.to_dict()) for i, row in obj.iterrows()}
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json_atomic(path, obj) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (never half-written)."""
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")
