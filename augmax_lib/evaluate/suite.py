"""The whole evaluation protocol for one model on one data set, as a JSON-ready dict.

Both ways of naming a model on the command line (an authors' checkpoint, a training run) end here.
Sets that are not on disk are reported under ``skipped`` with where we looked and how to get them.
"""
from __future__ import annotations

import torch

from ..data import BENCHMARK_CORRUPTIONS, SEVERITIES, DatasetNotFoundError, ImageSet, has_corrupted, load_corrupted, load_dataset
from .accuracy import clean_accuracy
from .corruption import (
    REFERENCE_TIN_RESNET18_CE,
    corruption_accuracy,
    corruption_errors,
    generated_corruptions,
    mce,
    robust_accuracy,
    table_to_dict,
)
from .inference import model_device, predict
from .options import EvalOptions
from .spatial import spatial_attack_accuracy
from .subset import SubsetSource, balanced_indices, labels_of, standard_error, take

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


def _binomial_se(p: float, n: int, population: int) -> float:
    """Standard error of an accuracy ``p`` on ``n`` of ``population`` images (0 on the whole set)."""
    if n < 2:
        return float("nan")
    return float((p * (1 - p) / (n - 1) * max(0.0, 1 - n / population)) ** 0.5)


def evaluate_model(model, dataset: str, root=None, options: EvalOptions = EvalOptions(), *, device=None,
                   input_transform=None, test_set=None, cache=None) -> dict:
    """SA, RA with its per-corruption table (and mCE where defined), CIFAR-10.1 v4/v6, the spatial attack.

    ``model``: a classifier of [0, 1] images (put in eval mode, route "M", for the evaluation). ``dataset``:
    its test data ("cifar10", "cifar100", "tinyimagenet", "imagenet", "synthetic"), read from ``root``
    (default: $AUGMAX_DATA, else ~/.cache/augmax) unless ``test_set`` is given. ``options``
    (:class:`EvalOptions`) says what to measure and on which images; with ``options.images_per_set`` the same
    class-balanced images serve the clean set, every corrupted set and the spatial attack, so comparisons stay
    paired, and ``sa_se`` and ``ra_se`` give the standard errors as estimates of the whole test set's values.
    ``cache`` (a CorruptionCache) shares generated corrupted sets between evaluations.

    Returns a JSON-ready dict: ``dataset``, ``data_source``, ``num_test_images``, ``images_per_set``,
    ``protocol``, ``metrics`` (fractions in [0, 1]: ``sa``, ``ra``, ``corruption_accuracy``, ``spatial`` ...)
    and ``skipped`` (each metric left out, with where we looked and how to get the files).
    """
    o = options
    skip, corruptions, batch_size, seed = o.skip, o.corruptions, o.batch_size, o.seed
    unknown = sorted(set(skip) - set(METRICS))
    if unknown:
        raise ValueError(f"skip: unknown metric(s) {unknown}; expected names from {list(METRICS)}")
    corruptions = list(BENCHMARK_CORRUPTIONS if corruptions is None else corruptions)
    generate_corruptions = o.generate_corruptions
    if generate_corruptions is None:
        generate_corruptions = dataset == "synthetic"
    elif generate_corruptions == "auto":
        generate_corruptions = dataset == "synthetic" or _missing_corrupted(dataset, root, corruptions) is not None
    device = torch.device(device) if device is not None else model_device(model)
    test = test_set if test_set is not None else load_dataset(dataset, "test", root=root)
    population, index = len(test), None
    images_per_set, subset_seed = o.images_per_set, o.subset_seed
    if images_per_set is not None:
        index = balanced_indices(labels_of(test), images_per_set, subset_seed)
        if len(index) < population:
            test = take(test, index)
        else:
            index = None  # the whole set: nothing to pick
    common = dict(batch_size=batch_size, device=device, input_transform=input_transform, progress=o.progress)
    out = {"dataset": dataset, "data_source": test.source if hasattr(test, "source") else "",
           "num_test_images": population, "images_per_set": len(test) if index is not None else population,
           "protocol": {"model_mode": "eval", "norm_route": "M", "seed": seed,
                        "images_per_set": None if index is None else len(test),
                        "subset_seed": None if index is None else subset_seed,
                        "subset": "class-balanced, the same images in every set" if index is not None else "none",
                        "subset_indices": None if index is None else index.tolist()},
           "metrics": {}, "skipped": {}}
    metrics, skipped = out["metrics"], out["skipped"]

    if "sa" not in skip:
        preds, labels = predict(model, test, desc="clean test", **common)
        metrics["sa"] = float((preds == labels).double().mean())
        metrics["sa_se"] = standard_error(preds == labels, population)

    if "ra" not in skip:
        source, label = None, _PUBLISHED_C.get(dataset)
        if generate_corruptions:
            if not isinstance(test, ImageSet):
                raise ValueError(f"generate_corruptions: needs an in-memory test set, {dataset} is read lazily")
            preset = {32: "cifar", 64: "tinyimagenet"}.get(test.image_size[0], "imagenet")
            # Generated from the (subset) test set itself: the same images in every set by construction.
            source = generated_corruptions(test, preset=preset, seed=seed, device=device,
                                           jpeg_quality=o.generated_jpeg_quality, cache=cache)
            label = source.description
            out["corruption_generation"] = source.settings
            missing = None
        elif label is None:
            missing = f"no published corrupted version of {dataset}; use generate_corruptions=True"
        else:
            missing = _missing_corrupted(dataset, root, corruptions)
            if missing is None and index is not None:
                source = SubsetSource(lambda c, s: load_corrupted(dataset, c, s, root, classes=test.classes),
                                      index, labels_of(test))
        if missing is not None:
            skipped["ra"] = str(missing)
        else:
            table, correct = corruption_accuracy(model, dataset, root, corruptions, SEVERITIES, source=source,
                                                 classes=test.classes, return_correct=True, **common)
            metrics["ra"] = robust_accuracy(table)
            if correct is not None:
                metrics["ra_se"] = standard_error(correct, population)
            metrics["corruption_source"] = label
            metrics["corruption_accuracy"] = table_to_dict(table)
            metrics["corruption_error"] = {c: float(v) for c, v in corruption_errors(table).items()}
            if dataset == "imagenet" and not generate_corruptions:
                metrics["mce"], metrics["mce_anchor"] = mce(table, "alexnet"), "AlexNet (AugMix's constants)"
            elif dataset == "tinyimagenet" and not generate_corruptions:
                if o.anchor is None:
                    metrics["mce"] = mce(table, REFERENCE_TIN_RESNET18_CE)
                    metrics["mce_anchor"] = "the reference's normally trained ResNet18 (VITA-Group/AugMax test.py)"
                else:
                    metrics["mce"], metrics["mce_anchor"] = mce(table, o.anchor), "given baseline"

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
            metrics["spatial"] = spatial = spatial_attack_accuracy(model, test, k=o.spatial_k, max_shift=shift,
                                                                   seed=seed, **common)
            for rule in ("worst_loss", "any_misclassified"):
                spatial[f"{rule}_se"] = _binomial_se(spatial[rule], spatial["num_images"], population)
        else:
            skipped["spatial"] = f"the spatial attack runs on in-memory test sets; {dataset} is read lazily"
    return out
