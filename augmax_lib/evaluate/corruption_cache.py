"""Corrupted sets generated once and shared by several evaluations of the same images.

Without published -C files, an evaluation corrupts its test images on the fly; on a CPU that generation costs
more than the inference of a small model. Pass one :class:`CorruptionCache` to the evaluations of a table of
models (``evaluate_model(..., cache=cache)``, ``evaluate_run(..., cache=cache)``): the sets made for the first
are kept and handed to the next evaluation of the same images with the same settings (preset, seed, JPEG round
trip, rounding, device). The images are identical to an uncached run: the same generator is called with the
same arguments; only repeated calls are served from memory.
"""
from __future__ import annotations

import hashlib

__all__ = ["CorruptionCache"]


def _fingerprint(data) -> str:
    """A digest of an ImageSet's pixels and labels: two test subsets with the same images share sets."""
    digest = hashlib.sha1()
    digest.update(str(tuple(data.images.shape)).encode())
    digest.update(data.images.contiguous().cpu().numpy().tobytes())
    digest.update(data.labels.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


class CorruptionCache:
    """Generated corrupted sets, kept up to ``max_bytes`` of uint8 pixels (past it, sets are made and not kept)."""

    def __init__(self, max_bytes: int = 1 << 30):
        if max_bytes < 0:
            raise ValueError(f"max_bytes: expected a size in bytes >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.sets: dict = {}
        self.kept_bytes = 0
        self.made = 0      # sets generated
        self.reused = 0    # sets served from memory

    def wrap(self, source, data, settings: dict):
        """``source(corruption, severity)`` of ``data`` made with ``settings``, served from this cache."""
        key = (_fingerprint(data), repr(sorted(settings.items())))

        def cached(corruption, severity):
            cell = (key, corruption, severity)
            if cell in self.sets:
                self.reused += 1
                return self.sets[cell]
            result = source(corruption, severity)
            self.made += 1
            size = result.images.numel() * result.images.element_size()
            if self.kept_bytes + size <= self.max_bytes:
                self.sets[cell] = result
                self.kept_bytes += size
            return result

        for attr in ("settings", "description"):
            if hasattr(source, attr):
                setattr(cached, attr, getattr(source, attr))
        return cached

    def __repr__(self) -> str:
        return (f"CorruptionCache({len(self.sets)} sets kept, {self.kept_bytes / 2**20:.1f} MiB; "
                f"made {self.made}, reused {self.reused})")
