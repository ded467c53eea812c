"""Evaluate many models on the same generated corruptions, making each corrupted set once.

Without published -C files, ``augmax_lib.evaluate.evaluate_model`` corrupts the test images on the fly,
for every model again: on a CPU that generation costs more than the inference of a small model. Inside
``with SharedCorruptions():`` the sets made for one model are kept and handed to the next evaluation of the
same images with the same settings (preset, seed, JPEG round trip, rounding, device), so a notebook that
evaluates a table of models pays for the corruptions once. The images are identical to an uncached run:
the same generator is called with the same arguments; only repeated calls are served from memory.
"""
from __future__ import annotations

import hashlib

__all__ = ["SharedCorruptions"]


def _fingerprint(data) -> str:
    """A digest of an ImageSet's pixels and labels: two test subsets with the same images share sets."""
    digest = hashlib.sha1()
    digest.update(str(tuple(data.images.shape)).encode())
    digest.update(data.images.contiguous().cpu().numpy().tobytes())
    digest.update(data.labels.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


class SharedCorruptions:
    """Context manager: while active, evaluations reuse the corrupted sets generated for earlier ones.

    ``max_bytes`` caps the memory kept (uint8 pixels); past it, further sets are generated and not kept.
    The same object can be entered several times (e.g. once per notebook cell) and keeps its sets between.
    """

    def __init__(self, max_bytes: int = 1 << 30):
        if max_bytes < 0:
            raise ValueError(f"max_bytes: expected a size in bytes >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.sets: dict = {}
        self.kept_bytes = 0
        self.made = 0      # sets generated
        self.reused = 0    # sets served from memory
        self._original = None

    def _wrap(self, original):
        def generated_corruptions(data, *args, **kwargs):
            source = original(data, *args, **kwargs)
            key = (_fingerprint(data), repr(args), repr(sorted(kwargs.items(), key=lambda kv: kv[0])))

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

        return generated_corruptions

    def __enter__(self):
        from augmax_lib.evaluate import suite

        if self._original is not None:
            raise RuntimeError("SharedCorruptions: already active; leave the outer 'with' first")
        self._original = suite.generated_corruptions
        suite.generated_corruptions = self._wrap(self._original)
        return self

    def __exit__(self, *exc):
        from augmax_lib.evaluate import suite

        suite.generated_corruptions = self._original
        self._original = None
        return False

    def __repr__(self) -> str:
        return (f"SharedCorruptions({len(self.sets)} sets kept, {self.kept_bytes / 2**20:.1f} MiB; "
                f"made {self.made}, reused {self.reused})")
