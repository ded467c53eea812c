"""Open ``.npy`` files with clear errors: a truncated file, another format or pickled objects name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .roots import DataFormatError

__all__ = ["read_npy_header", "open_npy"]


def read_npy_header(path: Path) -> tuple:
    """(shape, dtype, bytes the file must hold) from the header of ``path``; DataFormatError if it has none."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            header = f.tell()
    except (ValueError, EOFError, OSError, SyntaxError, UnicodeDecodeError) as err:
        raise DataFormatError(f"{path}: not a .npy array file ({err})") from err
    if dtype.hasobject:
        raise DataFormatError(f"{path}: holds Python objects (dtype {dtype}), expected a numeric array; "
                              f"such files are not loaded (allow_pickle=False)")
    return tuple(shape), dtype, header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize


def open_npy(path, mmap: bool = False) -> np.ndarray:
    """``np.load(path)`` (memory-mapped read-only when ``mmap``) after checking the file holds all its data."""
    path = Path(path)
    shape, dtype, needed = read_npy_header(path)
    size = path.stat().st_size
    if size < needed:
        raise DataFormatError(f"{path}: truncated: its header promises {dtype} of shape {shape} ({needed} bytes) "
                              f"but the file holds {size} bytes")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise DataFormatError(f"{path}: cannot read the array ({err})") from err
