"""Every course notebook in the full profile as a dry run: the paper's models, widths, methods, attack steps and
analyses on a few images and training steps (augmax_lib.train.dry_run, course.params.DRY_RUN_COURSE), so that a
branch only `full` takes fails here, in minutes on a CPU, and not hours into a GPU job."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml
from _executed import FULL_DRY_OUT, NOTEBOOKS, executed_notebooks, executed_summary

NAMES = [p.name for p in sorted(NOTEBOOKS.glob("*.ipynb"))]


@pytest.fixture(scope="module")
def executed():
    return executed_notebooks(FULL_DRY_OUT, "full", dry_run=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runs_in_the_full_profile_as_a_dry_run(executed, name):
    outcome = next(o for o in executed_summary(FULL_DRY_OUT, "full", True)["notebooks"] if o["notebook"] == name)
    nb = nbformat.read(executed[name], as_version=4)
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells)
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert outcome["status"] == "ok" and not errors, f"{name}: {outcome['error']} {errors}"
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "DRY RUN" in printed, f"{name}: does not say it is a dry run"


@pytest.mark.slow
def test_the_dry_runs_train_the_full_models_on_capped_data(executed):
    # Every run the notebooks trained has the paper's model and method settings and only the capped amounts.
    from augmax_lib.train.dry_run import DRY_RUN_CAPS

    runs = Path(executed_summary(FULL_DRY_OUT, "full", True)["runs_dir"]) / "full"
    configs = [yaml.safe_load(p.read_text()) for p in runs.rglob("config.yaml") if "evaluation" not in p.parts]
    assert configs, "the full dry run trained nothing"
    for c in configs:
        assert c["profile"] == "full"
        assert c["train"]["steps_per_epoch"] <= DRY_RUN_CAPS["train.steps_per_epoch"]
        assert c["train"]["batch_size"] <= DRY_RUN_CAPS["train.batch_size"]
        if c["model"]["name"] == "resnet18" and c["data"]["dataset"] == "cifar10":
            assert c["model"]["width"] in (None, 64), c["name"]  # the paper's width, not a profile's quarter
    results = [json.loads(p.read_text()) for p in runs.rglob("results.json") if p.parent.name != "evaluation"]
    assert all(r["numerics"]["precision"] == "fp32" for r in results)
