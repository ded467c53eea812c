"""The training data pipeline: the training batches (on the device, or through loader workers for lazily read
sets like ImageNet), the validation split held out from the training set, and validation on it.

On a GPU a whole 32x32 or 64x64 training set lives on the device as uint8 and is cropped and flipped there
(``augmax_lib.data.DeviceLoader``); every draw follows from (seed, epoch, rank), so a resumed run sees the
batches an uninterrupted one would.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from augmax_lib._checks import to_float
from augmax_lib.norm import route

from . import distributed as dist_utils
from .config import ConfigError

__all__ = ["TrainData", "build_data", "evaluate_split", "derived_seed"]


def derived_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers, the same on every machine."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ----------------------------------------------------------------------------------------------- data
@dataclass
class TrainData:
    """The training batches (``loader``: iterable with ``set_epoch``), the validation split and facts for reports."""

    loader: Any
    val: Any  # ImageSet, a torch Dataset, or None without a validation split
    classes: list
    source: str
    num_train: int
    image_size: tuple

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class _LazyLoader:
    """Batches from a lazily read data set (ImageNet folders) through worker processes, sharded like DeviceLoader."""

    def __init__(self, dataset, batch_size: int, device: torch.device, seed: int, info: dist_utils.DistInfo,
                 workers: int):
        from torch.utils.data import DataLoader, DistributedSampler

        self.sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.generator = torch.Generator()
        self.seed, self.rank, self.device, self.epoch = seed, info.rank, device, 0
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 pin_memory=device.type == "cuda", drop_last=True, generator=self.generator,
                                 persistent_workers=False)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)
        # Worker seeds (and so the random crops and flips) follow from (seed, epoch, rank).
        self.generator.manual_seed(derived_seed(self.seed, self.epoch, self.rank, 7))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _split_indices(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(seed, 3)))
    return torch.sort(perm[k:]).values, torch.sort(perm[:k]).values


def build_data(config: Mapping, info: dist_utils.DistInfo, device: torch.device) -> TrainData:
    """Load the training set, hold out the validation split, add DeepAugment folders, make the loader."""
    from augmax_lib import data as data_lib

    d, t = config["data"], config["train"]
    local_batch = dist_utils.local_batch_size(t["batch_size"], info)
    full = data_lib.load_dataset(d["dataset"], "train", root=d["root"], **_lazy_options(d))
    if isinstance(full, data_lib.ImageSet):
        if d["image_size"] is not None and tuple(full.image_size) != (d["image_size"],) * 2:
            raise ConfigError(f"data.image_size: {d['dataset']} holds {full.image_size[0]}x{full.image_size[1]} "
                              f"images and trains at that size; set data.image_size to null")
        _check_sizes(d, len(full))
        if d["val_size"]:
            train_set, val = data_lib.split_validation(full, d["val_size"], seed=d["split_seed"])
        else:
            train_set, val = full, None
        if d["train_size"] is not None and d["train_size"] < len(train_set):
            _, train_set = data_lib.split_validation(train_set, d["train_size"], seed=d["split_seed"] + 1)
        if d["extra_train"]:
            train_set = data_lib.with_deepaugment(train_set, d["extra_train"], root=d["root"],
                                                  progress=info.is_main and t["progress"])
        if len(train_set) // info.world_size < local_batch:
            raise ConfigError(f"train.batch_size: {t['batch_size']} is larger than the {len(train_set)} training "
                              f"images (per process: {len(train_set) // info.world_size}); lower it")
        loader = data_lib.DeviceLoader(train_set, local_batch, device, shuffle=True, augment=True,
                                       padding=d["crop_padding"], flip=d["flip"], drop_last=True,
                                       seed=t["seed"], rank=info.rank, world_size=info.world_size)
        return TrainData(loader, val, list(full.classes), train_set.source or full.source, len(train_set),
                         tuple(full.image_size))
    return _build_lazy_data(config, full, info, device, local_batch)


def _lazy_options(d: Mapping) -> dict:
    options = dict(d["options"])
    if d["dataset"] == "imagenet" and "transform" not in options:
        from augmax_lib.data import imagenet_transform

        options["transform"] = imagenet_transform(train=True, size=d["image_size"] or 224)
    return options


def _check_sizes(d: Mapping, n: int) -> None:
    if d["val_size"] >= n:
        raise ConfigError(f"data.val_size: {d['val_size']} leaves no training images of the {n} in {d['dataset']}")


def _build_lazy_data(config, full, info, device, local_batch) -> TrainData:
    from torch.utils.data import ConcatDataset, Subset

    from augmax_lib import data as data_lib

    d, t = config["data"], config["train"]
    size = d["image_size"] or 224
    _check_sizes(d, len(full))
    train_idx, val_idx = _split_indices(len(full), d["val_size"], d["split_seed"])
    if d["train_size"] is not None and d["train_size"] < len(train_idx):
        keep = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(derived_seed(d["split_seed"], 4)))
        train_idx = torch.sort(train_idx[keep[:d["train_size"]]]).values
    parts = [Subset(full, train_idx.tolist())]
    source = full.source
    if d["extra_train"]:
        extended = data_lib.with_deepaugment(full, d["extra_train"], root=d["root"])
        parts += [Subset(part, range(len(part))) for part in extended.parts[1:]]
        source = extended.source
    train_set = ConcatDataset(parts) if len(parts) > 1 else parts[0]
    if len(train_set) // info.world_size < local_batch:
        raise ConfigError(f"train.batch_size: {t['batch_size']} is larger than the {len(train_set)} training "
                          f"images (per process: {len(train_set) // info.world_size}); lower it")
    val = None
    if d["val_size"]:
        eval_view = data_lib.FolderSet(full.folder, data_lib.imagenet_transform(train=False, size=size,
                                                                                resize=round(size * 256 / 224)),
                                       full.classes, source=full.source, name=full.name)
        val = Subset(eval_view, val_idx.tolist())
    loader = _LazyLoader(train_set, local_batch, device, t["seed"], info, d["workers"])
    return TrainData(loader, val, list(full.classes), source, len(train_set), (size, size))


@torch.no_grad()
def evaluate_split(model: nn.Module, data, batch_size: int, device: torch.device, info: dist_utils.DistInfo,
                   autocast=contextlib.nullcontext, workers: int = 0) -> dict:
    """Loss and accuracy of ``model`` (eval mode, route "M") on ``data``, sharded over ranks and summed."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    try:
        with route(model, "M"):
            for x, y in _eval_batches(data, batch_size, device, info, workers):
                with autocast():
                    logits = model(to_float(x))
                logits = logits.float()
                totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
                totals[1] += (logits.argmax(1) == y).sum().double()
                totals[2] += y.numel()
    finally:
        model.train(was_training)
    dist_utils.all_reduce_sum(totals, info)
    loss, correct, count = totals.tolist()
    return {"val_loss": loss / max(count, 1), "val_acc": correct / max(count, 1)}


def _eval_batches(data, batch_size, device, info, workers):
    from augmax_lib.data import ImageSet

    if isinstance(data, ImageSet):
        index = torch.arange(info.rank, len(data), info.world_size)
        for part in index.split(batch_size):
            yield data.images[part].to(device, non_blocking=True), data.labels[part].to(device, non_blocking=True)
        return
    from torch.utils.data import DataLoader, Subset

    shard = Subset(data, range(info.rank, len(data), info.world_size))
    for x, y in DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
