"""The whole evaluation protocol for one model on one data set, as a JSON-ready dict.

Both ways of naming a model on the command line (an authors' checkpoint, a training run) end here.
Sets that are not on disk are reported under ``skipped`` with where we looked and how to get them.
"""
from __future__ import annotations

import torch

from ..data import (BENCHMARK_CORRUPTIONS, SEVERITIES, DatasetNotFoundError, ImageSet, has_corrupted,
                    load_corrupted, load_dataset)
from .accuracy import clean_accuracy
from .corruption import (REFERENCE_TIN_RESNET18_CE, corruption_accuracy, corruption_errors, generated_corruptions,
                         mce, robust_accuracy, table_to_dict)
from .inference import model_device
from .spatial import spatial_attack_accuracy

__all__ = ["METRICS", "evaluate_model"]

METRICS = ("sa", "ra", "cifar101", "spatial")
_PUBLISHED_C = {"cifar10": "CIFAR-10-C", "cifar100": "CIFAR-100-C", "tinyimagenet": "Tiny-ImageNet-C",
                "imagenet": "ImageNet-C"}


def _missing_corrupted(dataset: str, root, corruptions) -> DatasetNotFoundError | None:
    """The error of the first (corruption, severity) whose published files are absent, else None."""
    for c in corruptions:
        for s in SEVERITIES:
            if not has_corrupted(dataset, c, s, root):
                try:
                    load_corrupted(dataset, c, s, root)
                except DatasetNotFoundError as err:
                    return err
    return None


def evaluate_model(model, dataset: str, root=None, *, skip=(), device=None, batch_size: int = 500, seed: int = 0,
                   spatial_k: int = 10, corruptions=None, generate_corruptions: bool | None = None, anchor=None,
                   input_transform=None, test_set=None, progress: bool = True) -> dict:
    """SA, RA with its per-corruption table (and mCE where defined), CIFAR-10.1 v4/v6, the spatial attack.

    ``skip``: names from METRICS to leave out. ``generate_corruptions``: corrupt the test set on the fly
    with augmax_lib.corruptions instead of reading published files (default: only for 'synthetic').
    ``anchor``: the Tiny-ImageNet-C mCE anchor (a Normal model's table or CE_c mapping; default: the
    reference's constants). ``test_set`` replaces the loaded test set (e.g. a subset for a quick run).
    """
    unknown = sorted(set(skip) - set(METRICS))
    if unknown:
        raise ValueError(f"skip: unknown metric(s) {unknown}; expected names from {list(METRICS)}")
    corruptions = list(BENCHMARK_CORRUPTIONS if corruptions is None else corruptions)
    if generate_corruptions is None:
        generate_corruptions = dataset == "synthetic"
    device = torch.device(device) if device is not None else model_device(model)
    test = test_set if test_set is not None else load_dataset(dataset, "test", root=root)
    common = dict(batch_size=batch_size, device=device, input_transform=input_transform, progress=progress)
    out = {"dataset": dataset, "data_source": test.source, "num_test_images": len(test),
           "protocol": {"model_mode": "eval", "norm_route": "M", "seed": seed}, "metrics": {}, "skipped": {}}
    metrics, skipped = out["metrics"], out["skipped"]

    if "sa" not in skip:
        metrics["sa"] = clean_accuracy(model, test, desc="clean test", **common)

    if "ra" not in skip:
        source, label = None, _PUBLISHED_C.get(dataset)
        if generate_corruptions:
            if not isinstance(test, ImageSet):
                raise ValueError(f"generate_corruptions: needs an in-memory test set, {dataset} is read lazily")
            preset = {32: "cifar", 64: "tinyimagenet"}.get(test.image_size[0], "imagenet")
            source = generated_corruptions(test, preset=preset, seed=seed, device=device)
            label = f"generated on the fly by augmax_lib.corruptions (preset {preset}, seed {seed})"
            missing = None
        elif label is None:
            missing = f"no published corrupted version of {dataset}; use generate_corruptions=True"
        else:
            missing = _missing_corrupted(dataset, root, corruptions)
        if missing is not None:
            skipped["ra"] = str(missing)
        else:
            table = corruption_accuracy(model, dataset, root, corruptions, SEVERITIES, source=source,
                                        classes=test.classes, **common)
            metrics["ra"] = robust_accuracy(table)
            metrics["corruption_source"] = label
            metrics["corruption_accuracy"] = table_to_dict(table)
            metrics["corruption_error"] = {c: float(v) for c, v in corruption_errors(table).items()}
            if dataset == "imagenet" and not generate_corruptions:
                metrics["mce"], metrics["mce_anchor"] = mce(table, "alexnet"), "AlexNet (AugMix's constants)"
            elif dataset == "tinyimagenet" and not generate_corruptions:
                if anchor is None:
                    metrics["mce"] = mce(table, REFERENCE_TIN_RESNET18_CE)
                    metrics["mce_anchor"] = "the reference's normally trained ResNet18 (VITA-Group/AugMax test.py)"
                else:
                    metrics["mce"], metrics["mce_anchor"] = mce(table, anchor), "given baseline"

    if "cifar101" not in skip and dataset == "cifar10":
        from ..data import load_cifar101

        for version in ("v4", "v6"):
            try:
                data = load_cifar101(version, root)
            except DatasetNotFoundError as err:
                skipped[f"cifar101_{version}"] = str(err)
                continue
            metrics.setdefault("cifar101", {})[version] = clean_accuracy(model, data, desc=f"CIFAR-10.1 {version}",
                                                                         **common)

    if "spatial" not in skip:
        if isinstance(test, ImageSet):
            # The reference's +-3 px on 32x32 images, kept in proportion on other sizes.
            shift = 3.0 * test.image_size[1] / 32
            metrics["spatial"] = spatial_attack_accuracy(model, test, k=spatial_k, max_shift=shift, seed=seed,
                                                         **common)
        else:
            skipped["spatial"] = f"the spatial attack runs on in-memory test sets; {dataset} is read lazily"
    return out
