"""Clean accuracy (SA) and CIFAR-10.1 accuracy."""
from __future__ import annotations

from .inference import predict

__all__ = ["clean_accuracy", "cifar101_accuracy"]


def clean_accuracy(model, data, batch_size: int = 500, device=None, input_transform=None, progress: bool = True,
                   desc: str = "clean") -> float:
    """Fraction of ``data`` (ImageSet, (images, labels) or Dataset) that ``model`` classifies correctly."""
    preds, labels = predict(model, data, batch_size, device, input_transform, progress, desc)
    return float((preds == labels).double().mean())


def cifar101_accuracy(model, root=None, versions=("v4", "v6"), batch_size: int = 500, device=None,
                      input_transform=None, progress: bool = True) -> dict:
    """Accuracy on each CIFAR-10.1 version: ``{"v4": ..., "v6": ...}`` (v4: the reference's default, 2021
    images; v6: its authors' recommendation, 2000 images). A missing version raises DatasetNotFoundError."""
    from ..data import load_cifar101

    if isinstance(versions, str):
        versions = (versions,)
    return {v: clean_accuracy(model, load_cifar101(v, root), batch_size, device, input_transform, progress,
                              f"CIFAR-10.1 {v}") for v in versions}
