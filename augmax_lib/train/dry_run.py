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
    "train.checkpoint_every_steps": 1,   # a config that checkpoints inside epochs does so at every dry step
}
# Capped only when the config sets them: no validation split stays none, no checkpoint inside epochs stays so.
_ONLY_WHEN_SET = ("data.val_size", "train.checkpoint_every_steps")


def _get(config: Mapping, key: str):
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def dry_run_overrides(config: Mapping) -> list:
    """``key=value`` overrides that cap ``config`` (a validated config) to a dry run; [] for what is already small.

    A value of null (every training image, the whole test set, the whole epoch) is capped too; a validation split
    of 0 and checkpoints after whole epochs only stay as they are.
    """
    out = []
    for key, cap in DRY_RUN_CAPS.items():
        value = _get(config, key)
        if key in _ONLY_WHEN_SET and not value:
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
