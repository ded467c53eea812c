"""Finished runs read back for the notebooks: a metric per seed, paired differences between configs, and the
per-corruption tables, from the runs that ``augmax_lib.tables.collect_runs`` finds (a committed results folder
or a runs folder).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import pandas as pd

from . import claims
from .shared_runs import CONFIGS_DIR

__all__ = ["by_seed", "seeds_of", "paired_seeds", "method_effect", "corruption_frame", "mean_corruption_frame",
           "records_of", "committed", "final_val_acc_by_seed", "describe_records"]


def records_of(records: Iterable, config: str) -> list:
    """The evaluated runs of config ``config`` (its name, e.g. ``cifar10_resnet18_normal``), by seed."""
    return sorted((r for r in records if r.config_name == config and r.evaluation is not None), key=lambda r: r.seed)


def by_seed(records: Iterable, config: str, metric: str) -> dict:
    """``{seed: value in %}`` of ``metric`` (sa, ra, sta, cifar101, mce) for the runs of ``config``."""
    out = {}
    for r in records_of(records, config):
        value = r.metric(metric)
        if value is not None:
            out[r.seed] = value
    return out


def seeds_of(records: Iterable, *configs: str) -> list:
    """The seeds every one of ``configs`` has an evaluated run of."""
    common = None
    for config in configs:
        seeds = {r.seed for r in records_of(records, config)}
        common = seeds if common is None else common & seeds
    return sorted(common or ())


def paired_seeds(records: Iterable, config_a: str, config_b: str, metric: str) -> Optional[claims.Effect]:
    """``metric`` of A minus B, paired by seed over the seeds both have (None with fewer than two)."""
    records = list(records)
    a, b = by_seed(records, config_a, metric), by_seed(records, config_b, metric)
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    return claims.paired([a[s] for s in seeds], [b[s] for s in seeds], over="seeds")


def method_effect(records: Iterable, config_a: str, config_b: str, metric: str) -> Optional[claims.Effect]:
    """``metric`` of A minus B: paired by seed when both have two or more seeds in common; with one run each, the
    difference with the binomial standard errors over the test images (no spread over seeds: said in ``over``)."""
    records = list(records)
    effect = paired_seeds(records, config_a, config_b, metric)
    if effect is not None:
        return effect
    a, b = records_of(records, config_a), records_of(records, config_b)
    if not a or not b or a[0].metric(metric) is None or b[0].metric(metric) is None:
        return None
    n = int((a[0].evaluation or {}).get("images_per_set") or 0)
    pa, pb = a[0].metric(metric), b[0].metric(metric)
    se = [(p * (100 - p) / max(n, 1)) ** 0.5 for p in (pa, pb)]
    return claims.from_estimates(pa, se[0], pb, se[1], f"{n:,} test images (one run each: no spread over seeds)")


def describe_records(records: Iterable) -> str:
    """One line: how many runs of which configs and seeds, their profile, data, evaluation and commit."""
    from augmax_lib.tables import _evaluation_words

    records = [r for r in records if r.evaluation is not None]
    if not records:
        return "no evaluated runs"
    configs = sorted({r.config_name for r in records})
    seeds = sorted({r.seed for r in records})
    profiles = sorted({r.profile or "unrecorded" for r in records})
    commits = sorted({str(r.train_commit)[:10] for r in records})
    return (f"{len(records)} runs ({len(configs)} configs x seeds {', '.join(map(str, seeds))}), profile "
            f"{', '.join(profiles)}, trained on {', '.join(sorted({r.train_data for r in records}))} at commit "
            f"{', '.join(commits)}; evaluated on {'; '.join(sorted({_evaluation_words(r) for r in records}))}")


def corruption_frame(record) -> pd.DataFrame:
    """Accuracy (%) per corruption (rows) and severity (columns 1-5) of one evaluated run."""
    table = ((record.evaluation or {}).get("metrics") or {}).get("corruption_accuracy") or {}
    frame = pd.DataFrame(table).T.astype(float) * 100
    frame.columns = [int(c) for c in frame.columns]
    return frame[sorted(frame.columns)]


def mean_corruption_frame(records: Iterable, config: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(mean over seeds, sample sd over seeds, number of seeds) of :func:`corruption_frame` for ``config``."""
    frames = [corruption_frame(r) for r in records_of(records, config)]
    if not frames:
        raise ValueError(f"config: no evaluated run of {config!r} with a corruption table")
    stacked = pd.concat(frames, keys=range(len(frames)))
    grouped = stacked.groupby(level=1, sort=False)
    std = grouped.std(ddof=1) if len(frames) > 1 else grouped.mean() * float("nan")
    return grouped.mean(), std, len(frames)


def committed(profile: str) -> Path:
    """The folder of a profile's committed results (``results/<profile>/`` of the repository; may not exist)."""
    return CONFIGS_DIR.parent / "results" / Path(profile).stem


def final_val_acc_by_seed(folder, config: str) -> dict:
    """``{seed: validation accuracy (%) after the last epoch}`` of the runs of ``config`` under ``folder``
    (each ``<folder>/<config>/seed<k>/log.csv``); empty when there are none."""
    out = {}
    for log in sorted(Path(folder).glob(f"{config}/seed*/log.csv")):
        frame = pd.read_csv(log)
        if "val_acc" in frame and len(frame):
            out[int(log.parent.name.removeprefix("seed").split("-")[0])] = 100.0 * float(frame["val_acc"].iloc[-1])
    return out
