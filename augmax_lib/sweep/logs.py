"""The last lines of a job's log, readable: progress-bar redraws (carriage returns) collapse to their last state."""
from __future__ import annotations

from pathlib import Path

__all__ = ["log_tail"]


def log_tail(path, lines: int = 15, max_bytes: int = 256 * 1024) -> list:
    """The last ``lines`` non-empty lines of the text file ``path`` ([] when it is absent or empty)."""
    if path is None:
        return []
    path = Path(path)
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    out = []
    for line in text.split("\n"):
        # A tqdm bar rewrites its line with "\r"; what a reader wants is its last state.
        parts = [part.rstrip() for part in line.split("\r") if part.strip()]
        if parts:
            out.append(parts[-1])
    return out[-lines:]
