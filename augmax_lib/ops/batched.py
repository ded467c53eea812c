"""Per-image ops on a batch: images are grouped by the kernel they drew and each kernel runs once."""
from __future__ import annotations

import functools

import torch

from .registry import KERNEL_GROUPS, op_group, run_kernel_group

__all__ = ["op_tables", "group_by_kernel", "apply_ops"]


@functools.lru_cache(maxsize=64)
def op_tables(ops: tuple[str, ...], device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each op of ``ops``: its kernel group and its index inside its family, as tensors on ``device``.

    Cached per (ops, device): a host-to-device copy per batch would stall a CUDA stream.
    """
    pairs = [op_group(name) for name in ops]
    group = torch.tensor([g for g, _ in pairs], dtype=torch.long, device=device)
    local = torch.tensor([i for _, i in pairs], dtype=torch.long, device=device)
    return group, local


def group_by_kernel(keys: torch.Tensor) -> list[list[torch.Tensor | None]]:
    """Split image indices by kernel group, for every step at once.

    ``keys`` (S, M) holds each image's kernel group per step (-1: no op). Returns ``groups[s][g]``,
    the indices of the images running group ``g`` at step ``s`` (None when empty). The only host
    synchronisation is one read of the (S x groups) counts.
    """
    steps, m = keys.shape
    g = len(KERNEL_GROUPS)
    # Images with no op go to a trailing bucket per step, so every key is one sortable integer.
    flat = torch.where(keys < 0, g, keys) + torch.arange(steps, device=keys.device).unsqueeze(1) * (g + 1)
    flat = flat.reshape(-1)
    order = torch.argsort(flat, stable=True)
    counts = torch.bincount(flat, minlength=steps * (g + 1)).tolist()
    chunks = torch.split(order % m, counts)
    return [[chunk if chunk.numel() else None for chunk in chunks[s * (g + 1): s * (g + 1) + g]]
            for s in range(steps)]


def apply_ops(x: torch.Tensor, groups: list[torch.Tensor | None], local_index: torch.Tensor,
              value: torch.Tensor) -> torch.Tensor:
    """One step: image ``i`` in ``groups[g]`` runs kernel group ``g`` with its family index and value.

    Images in no group pass through unchanged. Differentiable with respect to a float ``x`` and ``value``.
    """
    out = None
    for g, idx in enumerate(groups):
        if idx is None:
            continue
        sub = run_kernel_group(x.index_select(0, idx), g, local_index.index_select(0, idx),
                               value.index_select(0, idx))
        # One copy of the batch per step, then each group written in place (autograd-safe on a clone).
        out = x.clone() if out is None else out
        out.index_copy_(0, idx, sub)
    return x if out is None else out
