"""Tensors as 8-byte words, for selecting and copying whole rows on a CPU."""
from __future__ import annotations

import torch


def rows(t: torch.Tensor) -> torch.Tensor:
    """``t`` (M, ...) as (M, k) 8-byte words where its layout allows (contiguous, aligned, no autograd).

    Selecting and copying whole images as int64 words moves eight bytes per element; on a CPU
    index_select/index_copy_ over uint8 images are several times slower than over their words.
    """
    if t.requires_grad or not t.is_contiguous() or t.dim() < 2 or t.dtype == torch.bool:
        return t
    row_bytes = t[0].numel() * t.element_size()
    if row_bytes % 8 or (t.storage_offset() * t.element_size()) % 8:
        return t
    return t.view(t.shape[0], -1).view(torch.int64)
