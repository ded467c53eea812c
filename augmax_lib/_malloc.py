"""Keep freed memory in the process (glibc malloc), so that a training loop's large tensors stop costing page faults.

glibc serves allocations above its mmap threshold with fresh ``mmap`` pages and trims freed memory at
the top of the heap back to the system; a CPU training or augmentation loop that allocates and frees
the same few megabytes every step then pays a page fault per 4 KiB page, every step. PyTorch's CPU
performance guide recommends an allocator that keeps memory (jemalloc, tcmalloc); this sets glibc's
own knobs to the same effect. Measured here (bench/README.md): the per-image affine warp of a
512-image batch went from 11.6 to 7.3 ms on one thread. The cost is that the process keeps its peak
memory until it exits.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory", "OPT_OUT_ENV"]

OPT_OUT_ENV = "AUGMAX_MALLOC"  # "default" leaves glibc's settings as they are

# mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
# glibc caps the mmap threshold at HEAP_MAX_SIZE / 2 (32 MiB on 64-bit): larger blocks still come
# from mmap, which is right for one-off buffers. Trimming only above 1 GiB of free heap top.
_SETTINGS = ((_M_MMAP_THRESHOLD, 32 * 2 ** 20), (_M_TRIM_THRESHOLD, 2 ** 30), (_M_TOP_PAD, 64 * 2 ** 20))

_applied: bool | None = None


def keep_freed_memory(libc=None) -> bool:
    """Set glibc's malloc to keep freed memory for reuse; True if applied (once per process), False where
    there is no glibc (macOS, Windows, musl) or ``AUGMAX_MALLOC=default`` is set."""
    global _applied
    if libc is None and _applied is not None:
        return _applied
    ok = False
    if os.environ.get(OPT_OUT_ENV, "").strip().lower() != "default":
        lib = libc if libc is not None else _glibc()
        if lib is not None:
            ok = all(lib.mallopt(param, value) == 1 for param, value in _SETTINGS)
    if libc is None:
        _applied = ok
    return ok


def _glibc():
    name = ctypes.util.find_library("c")
    if not name or not sys.platform.startswith("linux"):
        return None
    try:
        lib = ctypes.CDLL(name)
        # gnu_get_libc_version exists in glibc only; musl has mallopt as a stub that does nothing.
        lib.gnu_get_libc_version
        lib.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        lib.mallopt.restype = ctypes.c_int
        return lib
    except (OSError, AttributeError):
        return None
