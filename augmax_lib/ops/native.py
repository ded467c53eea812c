"""The C kernel of AugMix chains on the CPU (``chains.c``): built on first use, loaded with ctypes.

A chain of PyTorch ops on small images spends most of its time between kernels (grouping the images by
op, copies, float conversions around the warp); the C kernel runs each image's chain in one pass over
its pixels, with PIL's arithmetic. It is compiled once per machine with the system's C compiler into
``$XDG_CACHE_HOME/augmax/native`` (else ``~/.cache/augmax/native``). Without a compiler, or with
``AUGMAX_NATIVE=0``, the PyTorch kernels run instead (same images up to one grey level in the warps).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

import torch

from .._io import atomic_path
from .batched import op_tables
from .geometric import GEOMETRIC_OPS, affine_coefficients
from .tone import as_levels, posterize_masks, solarize_first_levels

__all__ = ["ENV", "SOURCE", "available", "unavailable_reason", "library_path", "disabled", "chains_u8",
           "run_chains"]

ENV = "AUGMAX_NATIVE"
SOURCE = Path(__file__).with_name("chains.c")
# No fused multiply-adds: the warp's coordinates and blends must round as Pillow's plain C does.
_FLAGS = ["-O3", "-std=c99", "-fPIC", "-shared", "-ffp-contract=off"]
_BUILD_TIMEOUT_S = 120

# The ops the kernel runs, by its kind codes; chains with an enhance op run on the PyTorch kernels.
_KINDS = {**{name: 0 for name in GEOMETRIC_OPS}, "autocontrast": 1, "equalize": 2, "posterize": 3, "solarize": 4}
_lock = threading.Lock()
_library: Optional[ctypes.CDLL] = None
_reason: Optional[str] = None  # why the kernel is unavailable, once that is known
_warned = False
_disabled = 0  # depth of `disabled()` blocks


def _compiler() -> Optional[str]:
    """The C compiler: $CC, else the one Python was built with, else cc, gcc or clang on the PATH."""
    candidates = [os.environ.get("CC"), (sysconfig.get_config_var("CC") or "").split(" ")[0], "cc", "gcc", "clang"]
    for name in candidates:
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _private_temp_dir() -> Optional[Path]:
    """A folder of the temp folder that only this user can write, made if missing; None if another user
    holds the name (a library loaded from a folder that others can write into could be anyone's code)."""
    if not hasattr(os, "getuid"):
        return None
    folder = Path(tempfile.gettempdir()) / f"augmax-native-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.stat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o022:
        return None
    return folder


def _user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "augmax" / "native"


def _cache_dirs():
    """Where the compiled kernel may live: the user's cache, else (read-only home folders) a private temp
    folder, made only when it is reached."""
    yield _user_cache_dir()
    private = _private_temp_dir()
    if private is not None:
        yield private


def library_path(compiler: str, folder: Optional[Path] = None) -> Path:
    """Where the compiled kernel of this source, compiler, flags and platform lives (in ``folder``, else the
    user's cache)."""
    key = hashlib.sha256()
    for part in (SOURCE.read_bytes(), compiler.encode(), " ".join(_FLAGS).encode(),
                 platform.machine().encode(), sys.platform.encode()):
        key.update(part)
    suffix = ".dll" if sys.platform == "win32" else ".so"
    return (folder or _user_cache_dir()) / f"chains-{key.hexdigest()[:16]}{suffix}"


def _build(compiler: str, target: Path) -> None:
    """Compile ``chains.c`` into ``target``, atomically: concurrent builders (DataLoader workers, jobs
    sharing a home folder) each write a file of their own and rename it into place."""
    with atomic_path(target, mode=0o755) as partial:
        done = subprocess.run([compiler, *_FLAGS, str(SOURCE), "-o", str(partial), "-lm"], capture_output=True,
                              text=True, timeout=_BUILD_TIMEOUT_S)
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {done.stderr.strip()[-400:]}")
    for stale in target.parent.glob(f"chains-*{target.suffix}"):  # builds of earlier versions of the source
        if stale != target:
            with contextlib.suppress(OSError):
                stale.unlink()


def _load() -> Optional[ctypes.CDLL]:
    global _library, _reason
    with _lock:
        if _library is not None or _reason is not None:
            return _library
        if os.environ.get(ENV, "1") == "0":
            _reason = f"{ENV}=0"
            return None
        compiler = _compiler()
        if compiler is None:
            _reason = "no C compiler found (set $CC, or install gcc or clang)"
            return None
        errors = []
        for folder in _cache_dirs():
            try:
                target = library_path(compiler, folder)
                if not target.exists():
                    _build(compiler, target)
                library = ctypes.CDLL(str(target))
                function = library.augmax_chains_u8
                break
            except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
                errors.append(f"{folder}: {error}")
        else:
            _reason = f"the C kernel could not be built or loaded ({'; '.join(errors)})"
            return None
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int64] * 6 + [ctypes.c_void_p] * 3
        _library = library
        return library


def available() -> bool:
    """Whether the C kernel is built and loaded (building it on the first call)."""
    return _load() is not None


def unavailable_reason() -> Optional[str]:
    """Why the C kernel does not run (None when it does)."""
    _load()
    return _reason


@contextlib.contextmanager
def disabled():
    """Run uint8 chains on the PyTorch kernels inside this block (benchmarks and tests compare the two)."""
    global _disabled
    _disabled += 1
    try:
        yield
    finally:
        _disabled -= 1


def _warn_once() -> None:
    global _warned
    if not _warned and _reason is not None and not _reason.startswith(ENV):
        _warned = True
        warnings.warn(f"augmax_lib: uint8 AugMix chains run on the PyTorch kernels, several times slower on a CPU: "
                      f"{_reason}. Set {ENV}=0 to silence this.", RuntimeWarning, stacklevel=3)


def chains_u8(x: torch.Tensor, kind: torch.Tensor, coeffs: torch.Tensor, param: torch.Tensor) -> Optional[torch.Tensor]:
    """Run every chain on its image: (width, N, C, H, W) uint8, or None when the kernel is unavailable.

    ``x`` (N, C, H, W) uint8 on the CPU; ``kind`` (width, N, D) int8 (-1: no op, 0: affine warp,
    1: autocontrast, 2: equalize, 3: posterize, 4: solarize); ``coeffs`` (width, N, D, 6) float64 PIL
    affine coefficients; ``param`` (width, N, D) int32: the posterize mask or the lowest solarized level.
    """
    library = _load()
    if library is None:
        _warn_once()
        return None
    width, n, depth = kind.shape
    c, h, w = x.shape[1:]
    x, kind = x.contiguous(), kind.to(torch.int8).contiguous()
    coeffs, param = coeffs.to(torch.float64).contiguous(), param.to(torch.int32).contiguous()
    out = torch.empty((width, n, c, h, w), dtype=torch.uint8)
    status = library.augmax_chains_u8(x.data_ptr(), out.data_ptr(), width, n, depth, c, h, w,
                                      kind.data_ptr(), coeffs.data_ptr(), param.data_ptr())
    if status != 0:
        raise MemoryError(f"augmax_chains_u8: could not allocate two {c}x{h}x{w} image buffers")
    return out


@functools.lru_cache(maxsize=64)
def _kind_table(ops: tuple[str, ...]) -> torch.Tensor:
    """The kernel's kind code (int8) of each op of ``ops``; cached, as ``op_tables`` is."""
    return torch.tensor([_KINDS[name] for name in ops], dtype=torch.int8)


def run_chains(x: torch.Tensor, ops: tuple[str, ...], op_index: torch.Tensor, values: torch.Tensor,
               active: torch.Tensor) -> Optional[torch.Tensor]:
    """``augmix.apply_chains``'s chains of CPU images as uint8 (width, N, C, H, W), or None where the kernel
    does not apply (another device, an op it lacks, a gradient asked for) or is unavailable.

    Float images in [0, 1] run on their nearest 8-bit levels, as the reference's PIL images do.

    The op parameters come from the same functions as the PyTorch kernels': ``affine_coefficients`` for
    every geometric op (whole-pixel translations included: the warp samples pixel centres exactly there),
    ``posterize_masks`` and ``solarize_first_levels``.
    """
    if _disabled or x.device.type != "cpu" or x.dim() != 4 or values.requires_grad:
        return None
    if x.dtype != torch.uint8 and (not x.dtype.is_floating_point or (torch.is_grad_enabled() and x.requires_grad)):
        return None
    if any(name not in _KINDS for name in ops):
        return None
    x = as_levels(x)
    h, w = x.shape[-2:]
    _, local, _ = op_tables(ops, x.device)  # each op's index inside its kernel group: the geometric op
    kind = torch.where(active, _kind_table(ops)[op_index], -1)
    flat_index, flat_values = op_index.reshape(-1), values.detach().reshape(-1)
    coeffs = affine_coefficients(local[flat_index], flat_values, h, w).view(*op_index.shape, 6)
    # Both parameters are computed for every entry; the kernel reads the one of the entry's op.
    param = torch.where(kind == 3, posterize_masks(flat_values).view(op_index.shape).to(torch.int32),
                        solarize_first_levels(flat_values).view(op_index.shape))
    return chains_u8(x, kind, coeffs, param)
