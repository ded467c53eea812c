"""The course notebooks: stored clean, one parameters cell, and every one runs in the smoke profile.

The execution happens once per source hash (tests/_executed.py) and is shared with the book's browser
test. Checked on the executed copies: no error output, the expected figures, the training runs written
completely, the widget state saved where there are widgets, the injected parameters hidden.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from _executed import NOTEBOOKS, executed_notebooks, executed_summary

SOURCES = sorted(NOTEBOOKS.glob("*.ipynb"))
NAMES = [p.name for p in SOURCES]
PARAMETERS = ("profile", "data_root", "dataset", "model", "device", "seed", "runs_dir")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
RUN_FILES = ("config.yaml", "log.csv", "log.json", "last.pt", "best.pt", "results.json")

# What the notebooks of this course must show in the smoke profile: at least this many figures, whether
# they carry widgets, and the runs (config names) they read or train. Notebooks not listed here are
# checked for the common rules only.
EXPECTED = {
    "00_setup_and_data.ipynb": {"figures": 2, "widgets": True, "runs": []},
    "01_augmix.ipynb": {"figures": 6, "widgets": True, "runs": ["cifar10/resnet18_normal", "cifar10/resnet18_augmix"]},
    "02_hardness.ipynb": {"figures": 3, "widgets": False, "runs": ["cifar10/resnet18_normal"]},
    "03_augmax.ipynb": {"figures": 3, "widgets": True, "runs": ["cifar10/resnet18_augmax_dubin"]},
    "04_dubin.ipynb": {"figures": 2, "widgets": False, "runs": ["cifar10/resnet18_augmax_dubin"]},
}


def test_there_are_notebooks():
    assert SOURCES, "notebooks/ holds no notebooks"
    assert set(EXPECTED) <= set(NAMES), f"missing: {sorted(set(EXPECTED) - set(NAMES))}"


@pytest.mark.parametrize("path", SOURCES, ids=NAMES)
def test_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"cell {i} has stored outputs; clear them before committing"
            assert cell.get("execution_count") is None, f"cell {i} has an execution count"
    assert "widgets" not in nb.metadata, "saved widget state in the source notebook; clear it"


@pytest.mark.parametrize("path", SOURCES, ids=NAMES)
def test_one_parameters_cell_and_no_other_tag(path):
    nb = nbformat.read(path, as_version=4)
    tagged = [(i, c.metadata.get("tags")) for i, c in enumerate(nb.cells) if c.metadata.get("tags")]
    assert len(tagged) == 1 and tagged[0][1] == ["parameters"], f"tagged cells: {tagged}"
    source = nb.cells[tagged[0][0]].source
    for name in PARAMETERS:
        assert f"{name} =" in source, f"the parameters cell does not set {name!r}"


@pytest.mark.parametrize("path", SOURCES, ids=NAMES)
def test_installs_the_library_only_when_missing(path):
    nb = nbformat.read(path, as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert 'find_spec("augmax_lib") is None' in first_code.source and "pip" in first_code.source


@pytest.fixture(scope="module")
def executed():
    return executed_notebooks()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_runs_in_the_smoke_profile_without_errors(executed, name):
    outcome = next(o for o in executed_summary()["notebooks"] if o["notebook"] == name)
    nb = nbformat.read(executed[name], as_version=4)
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells)
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert outcome["status"] == "ok" and not errors, f"{name}: {outcome['error']} {errors}"
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures >= EXPECTED.get(name, {}).get("figures", 1), f"{name}: only {figures} figures"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_widget_state_is_saved(executed, name):
    nb = nbformat.read(executed[name], as_version=4)
    views = [o["data"][WIDGET_VIEW]["model_id"] for c in nb.cells for o in c.get("outputs", [])
             if WIDGET_VIEW in o.get("data", {})]
    if EXPECTED.get(name, {}).get("widgets"):
        assert views, f"{name}: no widget output"
    if views:
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}).get("state", {})
        missing = [v for v in views if v not in state]
        assert not missing, f"{name}: widget views without saved state: {missing[:3]}"
        # Frame widgets (a Stack of precomputed frames) must be switched by a jslink; progress bars need none.
        stacks = [m for m in state.values() if m.get("model_name") == "StackModel"]
        links = [m for m in state.values() if m.get("model_name") == "LinkModel"]
        assert not stacks or links, f"{name}: a Stack without a jslink: a static page could not switch frames"
        # Batch runs hide progress bars (AUGMAX_PROGRESS=off): a tqdm widget left in the saved state is dead weight.
        bars = [m for m in state.values() if m.get("model_name") == "FloatProgressModel"]
        assert not bars, f"{name}: {len(bars)} progress-bar widgets saved into the page"


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_injected_parameters_are_hidden_and_the_only_other_tag(executed, name):
    nb = nbformat.read(executed[name], as_version=4)
    tags = [c.metadata.get("tags") for c in nb.cells if c.metadata.get("tags")]
    assert ["parameters"] in tags
    others = [t for t in tags if t != ["parameters"]]
    assert others == [["injected-parameters", "remove-cell"]], f"{name}: tags {tags}"


@pytest.mark.slow
def test_runs_are_written_completely_and_shared(executed):
    runs = Path(executed_summary()["runs_dir"]) / "smoke"
    folders = [p.parent for p in runs.rglob("config.yaml")]
    assert folders, f"no training run under {runs}"
    for folder in folders:
        missing = [f for f in RUN_FILES if not (folder / f).is_file()]
        assert not missing, f"{folder}: missing {missing}"
        assert len(json.loads((folder / "log.json").read_text())) >= 1
    for name, spec in EXPECTED.items():
        for config in spec["runs"]:
            assert list((runs / config).glob("seed0*/results.json")), f"{name}: no run of {config}"
    # each (config, overrides) trained once: one folder each, however many notebooks asked for it
    assert len(folders) == len({str(f) for f in folders})
