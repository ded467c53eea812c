"""A loader that keeps the whole uint8 set on the device and crops and flips each image there.

No worker processes: the standard CIFAR / Tiny-ImageNet training augmentation (random crop with padding,
horizontal flip) is two gathers per batch on the data's device, driven by seeded generators.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .imageset import ImageSet

__all__ = ["DeviceLoader", "crop_flip", "split_validation"]

_PADDING_MODES = ("zeros", "reflect")


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (seed, epoch, rank, stream), the same on every machine."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


def crop_flip(padded: torch.Tensor, index: torch.Tensor, top: torch.Tensor, left: torch.Tensor,
              flip: torch.Tensor, size: tuple) -> torch.Tensor:
    """Crops of ``padded[index]`` of ``size`` (H, W) at (top, left), mirrored left-right where ``flip``.

    Two gathers (rows, then columns) instead of one indexing kernel per shift: no host sync, and the
    fastest of the variants measured on a 2-core CPU (see bench/device_loader.py).
    """
    h, w = size
    batch = padded.index_select(0, index)
    n, c, _, wp = batch.shape
    ar_h = torch.arange(h, device=padded.device)
    ar_w = torch.arange(w, device=padded.device)
    rows = (top.view(n, 1) + ar_h).view(n, 1, h, 1).expand(n, c, h, wp)
    batch = torch.gather(batch, 2, rows)
    cols = left.view(n, 1) + torch.where(flip.view(n, 1), ar_w.flip(0), ar_w)
    return torch.gather(batch, 3, cols.view(n, 1, 1, w).expand(n, c, h, w))


def _pad(images: torch.Tensor, padding: int, mode: str) -> torch.Tensor:
    if padding == 0:
        return images
    if mode == "zeros":
        return F.pad(images, (padding,) * 4)
    # Reflect padding has no uint8 kernel on every device; pad in float (exact for uint8 values), in
    # chunks so that the float copy never holds the whole set.
    return torch.cat([F.pad(part.float(), (padding,) * 4, mode="reflect").to(images.dtype)
                      for part in images.split(4096)])


class DeviceLoader:
    """Batches of (images, labels) from a whole set held on ``device``, shuffled per epoch.

    Each epoch draws one global permutation from (seed, epoch), the same on every rank; rank ``r`` of
    ``world_size`` takes every ``world_size``-th entry from position ``r`` of it, so shards are disjoint
    and equal in size (the last ``N mod world_size`` entries of the permutation are skipped that epoch).
    Crops and flips are drawn from (seed, epoch, rank). The epoch counter advances after each pass;
    ``set_epoch`` sets it explicitly (as with DistributedSampler).

    ``padding_mode='zeros'`` is torchvision's RandomCrop(32, padding=4) (the reference's pipeline).
    ``dtype`` torch.uint8 yields raw pixels; a float dtype yields values in [0, 1].
    """

    def __init__(self, data, batch_size: int, device=None, *, shuffle: bool = True, augment: bool = True,
                 padding: int = 4, padding_mode: str = "zeros", flip: bool = True, drop_last: bool = False,
                 dtype: torch.dtype = torch.uint8, seed: int = 0, rank: int = 0, world_size: int = 1,
                 labels: torch.Tensor | None = None):
        if isinstance(data, ImageSet):
            images, labels = data.images, data.labels
        else:
            images = data
            if labels is None:
                raise ValueError("labels: required when data is a tensor of images (or pass an ImageSet)")
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            raise TypeError(f"data: expected uint8 images (N, C, H, W), got "
                            f"{getattr(images, 'dtype', type(images).__name__)} {tuple(getattr(images, 'shape', ()))}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels: expected shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode: expected one of {_PADDING_MODES}, got {padding_mode!r}")
        if not (isinstance(padding, int) and padding >= 0):
            raise ValueError(f"padding: expected an int >= 0, got {padding!r}")
        if padding_mode == "reflect" and padding >= min(images.shape[-2:]):
            raise ValueError(f"padding: reflect padding must be smaller than the image, got {padding}")
        if not (0 <= rank < world_size):
            raise ValueError(f"rank: expected 0 <= rank < world_size ({world_size}), got {rank}")
        if dtype != torch.uint8 and not dtype.is_floating_point:
            raise ValueError(f"dtype: expected torch.uint8 or a float dtype, got {dtype}")
        self.device = torch.device(device) if device is not None else images.device
        self.size = tuple(images.shape[-2:])
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.augment, self.flip = augment, flip
        self.padding = padding if augment else 0
        self.dtype, self.seed, self.rank, self.world_size = dtype, int(seed), rank, world_size
        self.epoch = 0
        # Padded once here, so that each batch is only gathers.
        self.images = _pad(images.to(self.device), self.padding, padding_mode)
        self.labels = labels.to(self.device, torch.int64)
        self.num_images = images.shape[0]

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next pass (its permutation and draws), as DistributedSampler does."""
        self.epoch = int(epoch)

    @property
    def shard_size(self) -> int:
        return self.num_images // self.world_size if self.world_size > 1 else self.num_images

    def __len__(self) -> int:
        n = self.shard_size
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _generator(self, *parts) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(_seed(self.seed, self.epoch, *parts))

    def indices(self) -> torch.Tensor:
        """This rank's image indices for the current epoch, in order."""
        n = self.num_images
        if self.shuffle:
            order = torch.randperm(n, generator=self._generator(0), device=self.device)
        else:
            order = torch.arange(n, device=self.device)
        if self.world_size > 1:
            order = order[: self.shard_size * self.world_size][self.rank::self.world_size]
        return order

    def __iter__(self):
        order = self.indices()
        g = self._generator(1, self.rank)
        self.epoch += 1
        n, b = order.shape[0], self.batch_size
        stop = (n // b) * b if self.drop_last else n
        span = 2 * self.padding + 1
        for start in range(0, stop, b):
            index = order[start:start + b]
            m = index.shape[0]
            if self.augment and (self.padding or self.flip):
                top = torch.randint(0, span, (m,), generator=g, device=self.device)
                left = torch.randint(0, span, (m,), generator=g, device=self.device)
                flip = torch.rand(m, generator=g, device=self.device) < 0.5
                if not self.flip:
                    flip = torch.zeros_like(flip)
                x = crop_flip(self.images, index, top, left, flip, self.size)
            else:
                x = self.images.index_select(0, index)
            if self.dtype != torch.uint8:
                x = x.to(self.dtype).div_(255.0)
            yield x, self.labels.index_select(0, index)


def split_validation(data: ImageSet, size, seed: int = 0, stratified: bool = True):
    """Split ``data`` into (train, validation) deterministically; ``size`` is a count or a fraction in (0, 1).

    Stratified splits give each class its share of the validation set (largest remainders decide the
    rounding), so model selection sees the class balance of the whole set.
    """
    n = len(data)
    k = int(round(size * n)) if isinstance(size, float) and 0 < size < 1 else size
    if not isinstance(k, int) or not (0 < k < n):
        raise ValueError(f"size: expected a count in 1..{n - 1} or a fraction in (0, 1), got {size!r}")
    g = torch.Generator().manual_seed(_seed(seed, 2))
    if not stratified:
        perm = torch.randperm(n, generator=g)
        val = perm[:k]
    else:
        labels = data.labels.cpu()
        counts = torch.bincount(labels, minlength=max(data.num_classes, int(labels.max()) + 1)).double()
        share = counts * k / n
        take = share.floor().long()
        short = k - int(take.sum())
        if short:
            order = torch.argsort(share - share.floor(), descending=True, stable=True)
            take[order[:short]] += 1
        parts = []
        for c in range(counts.shape[0]):
            members = (labels == c).nonzero().squeeze(1)
            if take[c]:
                parts.append(members[torch.randperm(members.shape[0], generator=g)[: int(take[c])]])
        val = torch.cat(parts)
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    train_index = mask.nonzero().squeeze(1)
    val_index = torch.sort(val).values
    return data.subset(train_index), data.subset(val_index, name=f"{data.name}-val" if data.name else "val")
