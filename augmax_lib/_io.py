"""Atomic writes: a file or folder appears under its name complete, or not at all (never half-written).

Every writer of the library goes through :func:`atomic_path`: it hands out a temporary sibling of the target,
and renames it onto the target (``os.replace``, atomic on one file system) only when the writing block ends
without an error; otherwise the temporary is removed. Concurrent writers of the same target each get their
own temporary, and the last rename wins with a complete file.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path, *, folder: bool = False, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (an empty folder with ``folder=True``, else a file name) to write;
    on success it is synced, given ``mode`` (a file) and renamed onto ``path``; on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if not folder:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)  # mkstemp makes the file private; what a user writes stays readable as usual
        os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            with contextlib.suppress(OSError):
                tmp.unlink()


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))
