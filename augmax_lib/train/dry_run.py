"""Dry runs: a config at its own settings (model, width, method options, precision, schedule) capped to a few
steps and images, so that every code path a long run takes runs on a CPU in seconds.

Only amounts shrink: epochs, steps per epoch, images per batch, training and validation images, and test
images per evaluated set. Each cap only ever lowers a value.
"""
from __future__ import annotations

from typing import Mapping

__all__ = ["DRY_RUN_CAPS", "dry_run_overrides", "with_dry_run"]

# key -> the most a dry run keeps of it.
DRY_RUN_CAPS = {
    "train.epochs": 2,              # two epochs: the schedule, checkpoint and resume paths between epochs run
    "train.steps_per_epoch": 2,
    "train.batch_size": 16,
    "train.eval_batch_size": 64,
    "data.train_size": 256,
    "data.val_size": 32,
    "eval.images_per_set": 16,
}


def _get(config: Mapping, key: str):
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def dry_run_overrides(config: Mapping) -> list:
    """``key=value`` overrides that cap ``config`` (a validated config) to a dry run; [] for what is already small.

    A value of null (every training image, the whole test set, the whole epoch) is capped too; a validation split
    of 0 stays 0.
    """
    out = []
    for key, cap in DRY_RUN_CAPS.items():
        value = _get(config, key)
        if key == "data.val_size" and not value:
            continue
        if value is None or value > cap:
            out.append(f"{key}={cap}")
    return out


def with_dry_run(config, profile=None, overrides=()) -> list:
    """``overrides`` followed by the caps that make a dry run of ``config`` (a YAML path or a mapping) under
    ``profile`` with those overrides."""
    from .config import load_config

    overrides = list(overrides)
    if isinstance(config, Mapping):
        loaded = load_config(base=config, profile=profile, overrides=overrides)
    else:
        loaded = load_config(config, profile, overrides)
    return overrides + dry_run_overrides(loaded)
