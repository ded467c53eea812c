"""Per-image ops on a batch: images are grouped by the kernel they drew and each kernel runs once."""
from __future__ import annotations

import functools

import torch

from ._words import rows as _rows
from .registry import KERNEL_GROUPS, op_group, run_kernel_group, whole_value_group

__all__ = ["op_tables", "group_by_kernel", "apply_ops"]


@functools.lru_cache(maxsize=64)
def op_tables(ops: tuple[str, ...], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each op of ``ops``: its kernel group, its index inside that group's kernel, and its kernel
    group for whole-number values (``registry.whole_value_group``), as tensors on ``device``.

    Cached per (ops, device): a host-to-device copy per batch would stall a CUDA stream.
    """
    pairs = [op_group(name) for name in ops]
    group = torch.tensor([g for g, _ in pairs], dtype=torch.long, device=device)
    local = torch.tensor([i for _, i in pairs], dtype=torch.long, device=device)
    whole = torch.tensor([whole_value_group(name) for name in ops], dtype=torch.long, device=device)
    return group, local, whole


def group_by_kernel(keys: torch.Tensor) -> list[list[torch.Tensor | None]]:
    """Split image indices by kernel group, for every step at once.

    ``keys`` (S, M) holds each image's kernel group per step (-1: no op). Returns ``groups[s][g]``,
    the indices of the images running group ``g`` at step ``s`` (None when empty); ``groups[s][-1]``
    holds the images with no op at step ``s``. The only host synchronisation is one read of the
    (S x groups) counts.
    """
    steps, m = keys.shape
    g = len(KERNEL_GROUPS)
    # Images with no op go to a trailing bucket per step, so every key is one sortable integer.
    flat = torch.where(keys < 0, g, keys) + torch.arange(steps, device=keys.device).unsqueeze(1) * (g + 1)
    flat = flat.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=steps * (g + 1)).tolist()
    chunks = torch.split(order % m, counts)
    return [[chunk if chunk.numel() else None for chunk in chunks[s * (g + 1): (s + 1) * (g + 1)]]
            for s in range(steps)]


def _select(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    rows = _rows(t)
    return t.index_select(0, index) if rows is t else rows.index_select(0, index).view(t.dtype).view(-1, *t.shape[1:])


def apply_ops(x: torch.Tensor, groups: list[torch.Tensor | None], local_index: torch.Tensor,
              value: torch.Tensor, inplace: bool = False, source: torch.Tensor | None = None,
              source_of: torch.Tensor | None = None) -> torch.Tensor:
    """One step: image ``i`` in ``groups[g]`` runs kernel group ``g`` with its in-group index and value.

    Images in no group pass through unchanged. Differentiable with respect to a float ``x`` and
    ``value`` unless ``inplace``, which writes the results into ``x`` (no copy of the batch). With
    ``source``, image ``i`` reads ``source[source_of[i]]`` instead of ``x[i]`` (the first step of
    chains that all start from the same images, without repeating them first).
    """
    out = None
    for g, idx in enumerate(groups[:len(KERNEL_GROUPS)]):
        if idx is None:
            continue
        sub = _select(x, idx) if source is None else _select(source, source_of.index_select(0, idx))
        sub = run_kernel_group(sub, g, local_index.index_select(0, idx), value.index_select(0, idx))
        if out is None:
            # Out of place: one copy of the batch per step, then each group written into it
            # (autograd-safe on a clone).
            out = x if inplace else x.clone()
        rows, sub_rows = _rows(out), _rows(sub.contiguous())
        if rows is out or sub_rows is sub or sub.dtype != out.dtype:
            out.index_copy_(0, idx, sub)
        else:
            rows.index_copy_(0, idx, sub_rows)
    return x if out is None else out
