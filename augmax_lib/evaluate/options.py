"""What an evaluation measures and how it computes: two small records that ``evaluate_model`` and
``evaluate_run`` take instead of a long list of keyword arguments."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from torch import nn

from .._device import resolve_precision
from .inference import PRECISIONS, model_device, numerics_record, with_numerics

__all__ = ["EvalOptions", "Numerics"]


@dataclass(frozen=True)
class EvalOptions:
    """The settings of one evaluation (every default is the paper's protocol).

    ``skip``: metrics to leave out ("sa", "ra", "cifar101", "spatial"). ``corruptions``: the corruptions of RA
    (None: the 15 benchmark ones). ``generate_corruptions``: corrupt the test set on the fly instead of reading
    published files: True, False, None (only for the synthetic set) or "auto" (when the published files are
    absent). ``generated_jpeg_quality``: the JPEG round trip of generated sets ("published": the generator's
    own; None: none). ``images_per_set``: evaluate on that many class-balanced test images, the same in every
    set, drawn with ``subset_seed`` (None: the whole test set). ``seed``: seed of generated corruptions and of
    the spatial attack, which takes ``spatial_k`` draws. ``anchor``: the Tiny-ImageNet-C mCE anchor.
    """

    skip: tuple = ()
    corruptions: Optional[tuple] = None
    generate_corruptions: Any = None
    generated_jpeg_quality: Any = "published"
    images_per_set: Optional[int] = None
    subset_seed: int = 0
    seed: int = 0
    spatial_k: int = 10
    anchor: Any = None
    batch_size: int = 500
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "skip", tuple(self.skip or ()))
        if self.corruptions is not None:
            object.__setattr__(self, "corruptions", tuple(self.corruptions))
        if self.generate_corruptions not in (True, False, None, "auto"):
            raise ValueError(f"generate_corruptions: expected True, False, None or 'auto', got "
                             f"{self.generate_corruptions!r}")
        for name in ("batch_size", "spatial_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        if self.images_per_set is not None and (isinstance(self.images_per_set, bool)
                                                or not isinstance(self.images_per_set, int)
                                                or self.images_per_set < 1):
            raise ValueError(f"images_per_set: expected a positive integer or None, got {self.images_per_set!r}")

    def replace(self, **changes) -> "EvalOptions":
        """A copy with ``changes`` (field names) applied."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Numerics:
    """How forward passes compute: fp32 (the paper's), bf16/fp16 autocast or "auto" (bf16 where the device computes
    it natively, else fp32; :meth:`resolved` decides), channels-last, torch.compile."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS + ("auto",):
            raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)} or auto, got {self.precision!r}")

    def resolved(self, device) -> "Numerics":
        """These numerics with "auto" made concrete for ``device`` (augmax_lib._device.resolve_precision)."""
        return dataclasses.replace(self, precision=resolve_precision(self.precision, device))

    def apply(self, model: nn.Module) -> nn.Module:
        """``model`` running with these numerics (itself for plain fp32); "auto" is resolved for the model's device."""
        return with_numerics(model, resolve_precision(self.precision, model_device(model)), self.channels_last,
                             self.compile)

    def record(self) -> dict:
        """The ``numerics`` entry of results.json (call :meth:`resolved` first when the precision is "auto")."""
        if self.precision == "auto":
            raise ValueError("precision: 'auto' is not recorded; record Numerics.resolved(device) instead")
        return numerics_record(self.precision, self.channels_last, self.compile)
