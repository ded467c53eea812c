"""Evaluation on a subset: the same class-balanced test images in the clean set and in every corrupted set.

Paired subsets keep comparisons between sets and between models fair, and their standard errors say how
far a subset estimate may sit from the value on the whole test set.
"""
from __future__ import annotations

import math

import torch

__all__ = ["balanced_indices", "labels_of", "take", "standard_error", "SubsetSource"]


def labels_of(data) -> torch.Tensor:
    """The int64 labels of an ImageSet, an (images, labels) pair or a Dataset with ``labels``/``targets``."""
    if isinstance(data, tuple) and len(data) == 2:
        return torch.as_tensor(data[1], dtype=torch.long)
    for attr in ("labels", "targets"):
        labels = getattr(data, attr, None)
        if labels is not None:
            return torch.as_tensor(labels, dtype=torch.long)
    raise TypeError(f"data: cannot read the labels of a {type(data).__name__} without decoding it; "
                    f"expected an ImageSet, an (images, labels) pair or a Dataset with .labels or .targets")


def balanced_indices(labels, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` sorted indices into ``labels``, drawn with ``seed`` without replacement and spread over the classes.

    Each class gets ``n // C`` images (C: the classes present), and the remainder goes to randomly chosen
    classes; a class with too few images gives all it has and the rest is drawn from the others.
    """
    labels = torch.as_tensor(labels, dtype=torch.long).cpu()
    total = int(labels.numel())
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"images_per_set: expected a positive integer, got {n!r}")
    if n >= total:
        return torch.arange(total)
    g = torch.Generator().manual_seed(int(seed))
    classes = torch.unique(labels)
    # Every class's images in a random order, then round-robin over classes in a random class order:
    # the first n of that interleaving are as balanced as the class sizes allow.
    perm = torch.randperm(total, generator=g)
    by_class = [perm[labels[perm] == c] for c in classes[torch.randperm(len(classes), generator=g)]]
    position = torch.cat(by_class)
    rank = torch.cat([torch.arange(len(idx)) for idx in by_class])
    class_pos = torch.cat([torch.full((len(idx),), i, dtype=torch.long) for i, idx in enumerate(by_class)])
    order = position[torch.argsort(rank * len(by_class) + class_pos)]
    return torch.sort(order[:n]).values


def take(data, index: torch.Tensor):
    """The items of ``data`` at ``index``, in the same kind of container (ImageSet, pair, or a Subset)."""
    if isinstance(data, tuple) and len(data) == 2:
        return data[0][index], data[1][index]
    if hasattr(data, "subset") and hasattr(data, "images"):
        return data.subset(index)
    from torch.utils.data import Subset

    subset = Subset(data, index.tolist())
    subset.labels = labels_of(data)[index]
    # What reports and folder loaders read from a test set (class order, source label).
    for attr in ("classes", "source", "name"):
        if hasattr(data, attr):
            setattr(subset, attr, getattr(data, attr))
    return subset


def standard_error(correct: torch.Tensor, population: int | None = None) -> float:
    """Standard error of a mean accuracy over images, as an estimate of the whole set's value.

    ``correct``: (N,) or (sets, N) booleans; the unit of sampling is the image, so a (sets, N) table is first
    averaged over its sets (paired). ``population``: size of the whole test set; the finite-population
    correction makes the error 0 when the subset is the whole set.
    """
    per_image = correct.double()
    if per_image.dim() == 2:
        per_image = per_image.mean(0)
    n = per_image.numel()
    if n < 2:
        return float("nan")
    fpc = 1.0 if population is None else max(0.0, 1.0 - n / population)
    return float(per_image.std(unbiased=True) / math.sqrt(n) * math.sqrt(fpc))


class SubsetSource:
    """Wraps a ``source(corruption, severity)`` so that each corrupted set keeps only ``index``.

    The corrupted set's labels must equal the clean subset's (published -C files are in test-set order).
    """

    def __init__(self, source, index: torch.Tensor, labels: torch.Tensor):
        self.source, self.index, self.labels = source, index, labels

    def __call__(self, corruption: str, severity: int):
        picked = take(self.source(corruption, severity), self.index)
        if not torch.equal(labels_of(picked), self.labels):
            raise ValueError(f"{corruption} severity {severity}: its labels at the subset's indices differ from the "
                             f"clean test set's; the corrupted files are not in test-set order")
        return picked
