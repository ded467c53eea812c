"""Accuracy under corruptions: the per-corruption, per-severity table, RA, CE and mCE."""
from __future__ import annotations

import pandas as pd
import torch

from augmax_lib._progress import tqdm

from .inference import predict

__all__ = ["ALEXNET_ERR", "REFERENCE_TIN_RESNET18_CE", "corruption_accuracy", "corruption_errors",
           "robust_accuracy", "mce", "table_to_dict", "generated_corruptions"]

# AlexNet's ImageNet-C errors averaged over severities (AugMix's published constants, from Hendrycks'
# robustness repository), the anchor of ImageNet mCE.
ALEXNET_ERR = {
    "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
    "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948, "zoom_blur": 0.798360,
    "snow": 0.866816, "frost": 0.826572, "fog": 0.819324, "brightness": 0.564592,
    "contrast": 0.853204, "elastic_transform": 0.646056, "pixelate": 0.717840, "jpeg_compression": 0.606500,
}

# The reference code's Tiny-ImageNet-C anchor: CE_c of its normally trained ResNet18 (VITA-Group/AugMax
# test.py). Ours should come from our own Normal model (pass its table to mce); these reproduce the paper.
REFERENCE_TIN_RESNET18_CE = {
    "gaussian_noise": 0.8037, "shot_noise": 0.7597, "impulse_noise": 0.7758, "defocus_blur": 0.8426,
    "glass_blur": 0.8274, "motion_blur": 0.7907, "zoom_blur": 0.8212, "snow": 0.7497, "frost": 0.7381,
    "fog": 0.7433, "brightness": 0.6800, "contrast": 0.8939, "elastic_transform": 0.7308,
    "pixelate": 0.6121, "jpeg_compression": 0.6452,
}


def corruption_accuracy(model, dataset: str = "cifar10", root=None, corruptions=None, severities=(1, 2, 3, 4, 5),
                        source=None, classes=None, batch_size: int = 500, device=None, input_transform=None,
                        progress: bool = True, return_correct: bool = False):
    """Accuracy for every (corruption, severity): a DataFrame indexed by corruption, one column per severity.

    The images come from ``source(corruption, severity)`` when given (e.g. :func:`generated_corruptions`),
    else from the published files of ``dataset`` under ``root`` (CIFAR-10-C/100-C, Tiny-ImageNet-C,
    ImageNet-C); ``classes`` fixes the label order of folder sets (the clean test set's classes).
    ``return_correct``: also return the per-image correctness, a bool tensor (corruptions x severities, N)
    in row-major cell order (for paired standard errors).
    """
    from ..data import BENCHMARK_CORRUPTIONS, load_corrupted

    corruptions = list(BENCHMARK_CORRUPTIONS if corruptions is None else corruptions)
    severities = list(severities)
    if source is None:
        def source(c, s):
            return load_corrupted(dataset, c, s, root, classes=classes)
    table = pd.DataFrame(index=pd.Index(corruptions, name="corruption"),
                         columns=pd.Index(severities, name="severity"), dtype=float)
    cells = [(c, s) for c in corruptions for s in severities]
    correct = []
    for c, s in tqdm(cells, desc="corruptions", unit="set", disable=not progress):
        preds, labels = predict(model, source(c, s), batch_size, device, input_transform, progress, f"{c} s{s}")
        correct.append(preds == labels)
        table.loc[c, s] = float(correct[-1].double().mean())
    if return_correct:
        sizes = {t.numel() for t in correct}
        return table, (torch.stack(correct) if len(sizes) == 1 else None)
    return table


def corruption_errors(table: pd.DataFrame) -> pd.Series:
    """CE_c: the error under corruption c averaged over its severities."""
    return (1.0 - table.mean(axis=1)).rename("corruption_error")


def robust_accuracy(table: pd.DataFrame) -> float:
    """RA = 1 - mean_c CE_c: the mean accuracy over corruptions and severities."""
    return float(1.0 - corruption_errors(table).mean())


def _errors_of(anchor) -> pd.Series:
    if isinstance(anchor, str):
        if anchor != "alexnet":
            raise ValueError(f"anchor: expected 'alexnet', a table, or per-corruption errors; got {anchor!r}")
        return pd.Series(ALEXNET_ERR)
    if isinstance(anchor, pd.DataFrame):
        return corruption_errors(anchor)
    return pd.Series(dict(anchor))


def mce(table, anchor="alexnet") -> float:
    """mCE = mean_c CE_c / CE_c(anchor), as a fraction (1.0 = as good as the anchor; tables print x100).

    ``table``: the model's accuracy table (or its CE_c series). ``anchor``: 'alexnet' (ImageNet-C),
    a baseline model's accuracy table, or a mapping corruption -> CE_c (e.g. REFERENCE_TIN_RESNET18_CE).
    """
    errors = corruption_errors(table) if isinstance(table, pd.DataFrame) else pd.Series(dict(table))
    base = _errors_of(anchor)
    missing = [c for c in errors.index if c not in base.index]
    if missing:
        raise ValueError(f"anchor: has no error for {missing}; it covers {list(base.index)}")
    if (base[errors.index] <= 0).any():
        raise ValueError("anchor: corruption errors must be positive to divide by")
    return float((errors / base[errors.index]).mean())


def table_to_dict(table: pd.DataFrame) -> dict:
    """``{corruption: {"1": acc, ..., "5": acc}}``, plain floats, for JSON."""
    return {str(c): {str(s): float(v) for s, v in row.items()} for c, row in table.iterrows()}


def generated_corruptions(data, preset: str = "cifar", seed: int = 0, device=None, batch_size: int = 1000,
                          jpeg_quality="published", rounding: str = "truncate", cache=None):
    """A ``source`` for :func:`corruption_accuracy` that corrupts ``data`` (an ImageSet) on the fly with
    ``augmax_lib.corruptions.corrupt``, seeded per (corruption, severity), for sets without published files.

    ``jpeg_quality``: "published" (default) saves and reloads every corrupted image as JPEG at the
    quality its generator wrote (85 for the tinyimagenet and imagenet presets, none for cifar); an
    integer picks a quality, None skips the round trip. The returned source's ``settings`` (a dict)
    and ``description`` (one line) say what was used, for results files. ``cache`` (a
    :class:`~augmax_lib.evaluate.corruption_cache.CorruptionCache`) serves sets made before for the same images
    and settings.
    """
    from ..corruptions import ALL_CORRUPTIONS, PUBLISHED_JPEG_QUALITY, corrupt, generator_semantics
    from ..corruptions.digital import jpeg_roundtrip
    from ..data import ImageSet

    if preset not in PUBLISHED_JPEG_QUALITY:
        raise ValueError(f"preset: expected one of {sorted(PUBLISHED_JPEG_QUALITY)}, got {preset!r}")
    if isinstance(jpeg_quality, str):
        if jpeg_quality != "published":
            raise ValueError(f"jpeg_quality: expected 'published', an integer 1..95 or None, got {jpeg_quality!r}")
        jpeg_quality = PUBLISHED_JPEG_QUALITY[preset]
    elif jpeg_quality is not None and (isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, int)
                                       or not 1 <= jpeg_quality <= 95):
        raise ValueError(f"jpeg_quality: expected 'published', an integer 1..95 or None, got {jpeg_quality!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    names = list(ALL_CORRUPTIONS)
    jpeg = f"JPEG quality {jpeg_quality} round trip" if jpeg_quality else "no JPEG round trip"

    def source(c, s):
        g = torch.Generator(device=device).manual_seed(seed * 1000 + names.index(c) * 10 + s)
        parts = []
        for x in data.images.split(batch_size):
            y = corrupt(x.to(device), c, s, preset=preset, generator=g, rounding=rounding)
            parts.append(jpeg_roundtrip(y, jpeg_quality).cpu() if jpeg_quality else y.cpu())
        return ImageSet(torch.cat(parts), data.labels, data.classes,
                        f"{data.source} + {c} s{s} (generated by augmax_lib.corruptions, {jpeg})", data.name)

    source.settings = {"preset": preset, "seed": seed, "jpeg_quality": jpeg_quality, "rounding": rounding,
                       **generator_semantics(preset, rounding)}
    source.description = (f"generated on the fly by augmax_lib.corruptions (preset {preset}, seed {seed}, "
                          f"{jpeg}, uint8 by {rounding})")
    if cache is not None:
        return cache.wrap(source, data, {**source.settings, "device": str(device), "batch_size": batch_size})
    return source
