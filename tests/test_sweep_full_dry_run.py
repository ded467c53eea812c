"""One sweep job per table of the poster, in the full profile as a dry run (the paper's model, width, method and
evaluation for that table, on a few images and steps), on small files in each data set's real format: a
plumbing bug that only a full-scale job would reach fails here instead of hours into a GPU job."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _formats import write_all

from augmax_lib.__main__ import main
from augmax_lib.paper_numbers import table
from augmax_lib.tables import build_tables, collect_runs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# One config per table: together they take every backbone, norm, training method, data set and evaluation.
ONE_PER_TABLE = {
    "cifar10": "cifar10/wrn40_2_augmax_dubin.yaml",
    "cifar100": "cifar100/resnet18_augmax_dubin.yaml",
    "imagenet": "imagenet/resnet18_deepaug_augmax_dubin.yaml",
    "tinyimagenet": "tinyimagenet/resnet18_deepaug_augmix.yaml",
    "table8": "ablation_norm/cifar100_wrn40_2_augmix_ibn.yaml",
    "table10": "ablation_strategy/cifar100_resnet18_advmix.yaml",
    "table11": "other_shifts/cifar10_resnext29_augmax_dubin.yaml",
}
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # the small sets warn that they are not official


@pytest.mark.slow
def test_one_dry_sweep_job_per_table_of_the_poster(tmp_path, monkeypatch):
    root = write_all(tmp_path / "data")
    monkeypatch.setenv("AUGMAX_DATA", str(root))
    monkeypatch.setenv("AUGMAX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "runs"
    code = main(["sweep", *(str(CONFIGS / c) for c in ONE_PER_TABLE.values()), "--profile", "full", "--dry-run",
                 "--seeds", "0", "--out", str(out), "--executor", "debug",
                 "--eval-args=--generate-corruptions=auto --quiet"])
    assert code == 0
    records = collect_runs([out])
    assert len(records) == len(ONE_PER_TABLE)
    for record in records:
        config = yaml.safe_load((record.run_dir / "config.yaml").read_text())
        assert config["profile"] == "full" and config["train"]["steps_per_epoch"] == 2
        evaluation = json.loads((record.run_dir / "evaluation" / "results.json").read_text())
        assert isinstance(evaluation["metrics"].get("ra"), float), record.config_name
    # Each job is a row of its table (a dry run's budget is no profile's, so it fills no cell of the tables).
    names = {r.config_name for r in records}
    for key in ONE_PER_TABLE:
        assert names & {c.config for row in table(key).rows for c in row.cells.values()}, key
    assert not any(cell.n for t in build_tables(records) for cell in t.cells)
