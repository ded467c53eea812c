"""Distributed data parallel through ``torchrun``: process group, device per rank, batch split, reductions.

Launch: ``torchrun --nproc_per_node=K -m augmax_lib train --config FILE``. torchrun sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; the backend is NCCL when the run
uses CUDA and gloo on the CPU. The global batch is split evenly across ranks, every rank walks the same
permutation of the training set (same seed) and takes its own slice of each global batch, so the
images of one optimiser step are those of a single-process run with the same seed. Only rank 0 writes
logs and checkpoints.
"""
from __future__ import annotations

import datetime
import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from augmax_lib._device import resolve_device

__all__ = ["DistInfo", "setup", "cleanup", "resolve_device", "local_batch_size", "all_reduce_sum", "barrier",
           "wrap_model"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: rank, world size, local rank, device and backend (None: one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise RuntimeError(f"${name}: expected an integer (set by torchrun), got {value!r}") from None


def setup(device_option: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun described in the environment, or return a one-process DistInfo."""
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    device = resolve_device(device_option, "train.device", local_rank)
    if world_size <= 1:
        return DistInfo(0, 1, 0, device, None)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s),
                                **({"device_id": device} if device.type == "cuda" else {}))
    return DistInfo(rank, world_size, local_rank, device, backend)


def cleanup(info: DistInfo) -> None:
    """Leave the process group (no-op for one process)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def local_batch_size(global_batch: int, info: DistInfo) -> int:
    """This rank's share of the global batch; the batch must split evenly."""
    if global_batch % info.world_size:
        raise ValueError(f"train.batch_size: the global batch {global_batch} does not split evenly across "
                         f"{info.world_size} processes; use a multiple of {info.world_size}")
    return global_batch // info.world_size


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``tensor`` over ranks in place (no-op for one process); returns it."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.distributed:
        if info.backend == "nccl":
            dist.barrier(device_ids=[info.device.index])
        else:
            dist.barrier()


def wrap_model(model: nn.Module, info: DistInfo, unused_parameters: bool = False) -> nn.Module:
    """DDP around ``model`` on more than one process, else ``model`` itself.

    Buffers are not broadcast at each forward: each rank keeps the BatchNorm statistics of its own
    shard (rank 0's are saved), as the reference does; attacks run on the bare model, so only the
    training forward passes synchronise gradients. ``unused_parameters`` must be set when a step
    leaves some parameters without gradient (a dual-norm model trained through one route only);
    DDP then looks for them after the forward pass, which works for steps with one training forward.
    """
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # torch >= 2.14 names the switch forward_sync_buffers; older versions broadcast_buffers.
    no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else {"broadcast_buffers": False})
    return ddp(model, device_ids=ids, find_unused_parameters=unused_parameters, **no_sync)
