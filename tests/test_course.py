"""augmax_lib.course: shared runs (train once, load, resume), the parameters cell, plots and kernel-less widgets."""
from __future__ import annotations

import io
import json
import re
import warnings

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from augmax_lib.course import params, plots
from augmax_lib.course import shared_runs as runs
from augmax_lib.train import train
from augmax_lib.train.config import ConfigError, load_profile

SYNTH = ["data.dataset=synthetic", "data.options.n=400"]
CONFIG = "cifar10/resnet18_normal"


def _get(tmp, **kw):
    kw.setdefault("overrides", SYNTH)
    return runs.get_run(CONFIG, profile="smoke", runs_dir=tmp, device="cpu", progress=False, **kw)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tmp, _get(tmp)


def test_get_run_trains_into_the_profile_config_seed_folder(trained):
    tmp, run = trained
    assert run.action == "trained" and run.complete
    assert run.dir.parent.parent == tmp / "smoke" / "cifar10" and run.dir.parent.name == "resnet18_normal"
    assert run.dir.name.startswith("seed0-")  # the data-set override computes something else: its own folder
    for name in ("config.yaml", "log.csv", "last.pt", "best.pt", "results.json"):
        assert (run.dir / name).is_file(), name
    assert list(run.log["epoch"]) == [1]
    assert run.results["data_source"].startswith("SYNTHETIC")
    assert run.config["train"]["seed"] == 0 and run.config["model"]["width"] == 8


def test_second_call_loads_without_training(trained):
    tmp, first = trained
    stamps = {p.name: p.stat().st_mtime_ns for p in first.dir.iterdir()}
    again = _get(tmp)
    assert again.action == "loaded" and again.dir == first.dir
    assert {p.name: p.stat().st_mtime_ns for p in again.dir.iterdir()} == stamps
    assert len(again.log) == 1
    model = again.model
    assert not model.training and next(model.parameters()).device.type == "cpu"
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)


def test_partial_run_is_resumed_not_restarted(tmp_path):
    overrides = SYNTH + ["train.epochs=2"]
    folder = runs.run_dir(CONFIG, "smoke", 0, tmp_path, overrides)
    path, _ = runs.find_config(CONFIG)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(path, out=folder, profile="smoke", overrides=overrides + ["train.device=cpu", "train.progress=false"],
              stop_after=1)
        first_row = (folder / "log.csv").read_text().splitlines()[1]
        assert not (folder / "results.json").exists()
        run = _get(tmp_path, overrides=overrides)
    assert run.action == "resumed" and run.complete
    assert list(run.log["epoch"]) == [1, 2]
    assert (folder / "log.csv").read_text().splitlines()[1] == first_row  # epoch 1 kept, not retrained


def test_run_folder_names(tmp_path):
    base = runs.run_dir("cifar10/x", "quick", 3, tmp_path)
    assert base == tmp_path / "quick" / "cifar10" / "x" / "seed3"
    # overrides that do not change the computation (root, device, progress) share the folder
    assert runs.run_dir("cifar10/x", "quick", 3, tmp_path, ["data.root=/d", "train.device=cpu"]) == base
    a = runs.run_dir("cifar10/x", "quick", 3, tmp_path, ["train.epochs=2", "data.dataset=synthetic"])
    b = runs.run_dir("cifar10/x", "quick", 3, tmp_path, ["data.dataset=synthetic", "train.epochs=2"])
    c = runs.run_dir("cifar10/x", "quick", 3, tmp_path, ["train.epochs=3"])
    assert a == b != c and a.name.startswith("seed3-")
    with pytest.raises(ConfigError, match="seed"):
        runs.run_dir("cifar10/x", "quick", 3, tmp_path, ["train.seed=1"])


def test_find_config_by_name_and_path():
    path, name = runs.find_config("cifar10/resnet18_augmax_dubin")
    assert path.is_file() and name == "cifar10/resnet18_augmax_dubin"
    assert runs.find_config(str(path)) == (path, name)
    with pytest.raises(ConfigError, match="known names"):
        runs.find_config("cifar10/no_such_model")


def test_a_changed_config_is_not_reused_and_the_old_run_is_kept(trained, capsys):
    # A runs folder from an older profile (another budget) in the folder this config names: neither reused nor
    # blocking; the new run trains beside it and the old one stays byte for byte.
    tmp, run = trained
    results = json.loads((run.dir / "results.json").read_text())
    results["config"]["optim"]["lr"] = 0.5
    results["config"]["train"]["epochs"] = 3
    other = tmp / "copy"
    other.mkdir()
    target = runs.run_dir(CONFIG, "smoke", 0, other, SYNTH)
    target.mkdir(parents=True)
    old = json.dumps(results)
    (target / "results.json").write_text(old)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fresh = _get(other)
    assert fresh.action == "trained" and fresh.complete and fresh.dir.parent == target.parent
    assert fresh.dir.name.startswith(target.name + "-c") and len(fresh.dir.name) == len(target.name) + 10
    assert (target / "results.json").read_text() == old and sorted(p.name for p in target.iterdir()) == ["results.json"]
    note = capsys.readouterr().out
    assert "holds a run of another config" in note and "optim.lr: 0.5 -> 0.1" in note and "it is kept" in note
    assert "train.epochs: 3 -> " in note
    again = _get(other)  # the next call finds the new run where it trained
    assert again.action == "loaded" and again.dir == fresh.dir


def test_evaluate_writes_the_evaluation_once(trained, monkeypatch):
    tmp, run = trained
    calls = []
    real = runs.evaluate_run

    def counting(r, *a, **k):
        calls.append(r.dir)
        return real(r, 20, *a[1:], skip=("spatial",), **k)  # 20 test images per set: seconds

    monkeypatch.setattr(runs, "evaluate_run", counting)
    monkeypatch.setattr("augmax_lib.evaluate.suite.BENCHMARK_CORRUPTIONS", ("brightness", "contrast"))
    monkeypatch.setattr("augmax_lib.data.BENCHMARK_CORRUPTIONS", ("brightness", "contrast"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = _get(tmp, evaluate=True)
        second = _get(tmp, evaluate=True)
    assert len(calls) == 1
    ev = second.results["evaluation"]
    assert ev["eval_images"] == 20 and ev["profile"] == "smoke"
    assert set(ev["metrics"]["corruption_accuracy"]) == {"brightness", "contrast"}
    assert first.evaluation == ev
    # The protocol of `evaluate --run`: 2 images of each of the 10 classes, and the numerics recorded.
    from augmax_lib.data import load_dataset

    labels = load_dataset("synthetic", "test", **{k: v for k, v in run.config["data"]["options"].items()
                                                   if k in ("seed", "image_size")}).labels
    picked = labels[torch.tensor(ev["protocol"]["subset_indices"])]
    assert torch.bincount(picked, minlength=10).tolist() == [2] * 10
    assert ev["protocol"]["numerics"]["precision"] == run.config["eval"]["precision"]


def test_resolve_falls_back_to_synthetic_loudly(tmp_path, capsys):
    with pytest.warns(UserWarning, match="synthetic"):
        setup = params.resolve("smoke", str(tmp_path / "nothing"), "cpu", dataset="cifar10", seed=2)
    out = capsys.readouterr().out
    assert "NOT FOUND" in out and "SYNTHETIC" in out and "meaningless" in out
    assert setup.dataset == "synthetic" and setup.fallback and setup.device == torch.device("cpu")
    assert "data.dataset=synthetic" in setup.overrides and "smoke profile" in setup.label
    images, labels = setup.examples(10)
    assert images.dtype == torch.uint8 and images.shape == (10, 3, 32, 32)
    assert len(set(labels.tolist())) == 10  # one image per class first
    with pytest.raises(ValueError, match="profile"):
        params.resolve("fast", None, "cpu")


def test_resolve_synthetic_asked_for_runs_cifar10_configs_on_synthetic_data(capsys):
    setup = params.resolve("smoke", None, "cpu", dataset="synthetic")
    assert "NOT FOUND" not in capsys.readouterr().out and not setup.fallback
    assert (setup.dataset, setup.requested_dataset) == ("synthetic", "cifar10")
    smoke = load_profile("smoke")["course"]["synthetic_train_images"]
    assert "data.dataset=synthetic" in setup.overrides and f"data.options.n={smoke}" in setup.overrides


def test_profile_facts_and_about_are_read_from_the_profile_file():
    quick = load_profile("quick")
    facts = params.profile_facts("quick")
    assert f"{quick['data']['train_size']:,} training images" in facts and f"{quick['train']['epochs']} epochs" in facts
    assert f"{quick['eval']['images_per_set']:,} test images per set" in facts
    assert params.profile_about("quick") == " ".join(quick["about"].split())
    assert "every training image" in params.profile_facts("long") and "whole test set" in params.profile_facts("long")


def test_every_profile_sets_every_course_key_and_a_custom_profile_works(tmp_path, capsys):
    keys = set(load_profile("full")["course"])
    for name in params.known_profiles():
        assert set(load_profile(name)["course"]) == keys, name
    custom = tmp_path / "mine.yaml"
    custom.write_text(yaml.safe_dump({"about": "My own.", "data": {"train_size": 128}, "course": {"images": 7}}))
    setup = params.resolve(str(custom), None, "cpu", dataset="synthetic")
    assert setup.course.images == 7 and "My own." in capsys.readouterr().out
    with pytest.raises(KeyError, match="sets no 'embedding_images'"):
        setup.course.embedding_images


def test_no_course_module_or_notebook_branches_on_a_profile_name():
    from pathlib import Path

    import nbformat

    root = Path(__file__).resolve().parents[1]
    texts = {p.name: p.read_text() for p in (root / "augmax_lib").rglob("*.py")}
    for p in sorted((root / "notebooks").glob("*.ipynb")):
        texts[p.name] = "\n".join(c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")
    pattern = re.compile(r"""profile\s*(==|!=|in)\s*\(?["'](smoke|quick|full|long)|["'](smoke|quick|full|long)["']\s*:\s*\d""")
    found = [f"{name}: {m.group(0)}" for name, text in texts.items() for m in pattern.finditer(text)]
    assert not found, found


def test_to_uint8_hwc_matches_numpy():
    x = torch.rand(3, 5, 7)
    expected = np.round(x.permute(1, 2, 0).numpy().astype(np.float64) * 255).astype(np.uint8)
    assert np.array_equal(plots.to_uint8_hwc(x), expected)
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert plots.to_uint8_hwc(gray).shape == (3, 4, 3)


def test_image_grid_and_heatmap_shapes():
    import matplotlib.pyplot as plt

    cells = torch.arange(6, dtype=torch.uint8).mul(40).view(2, 3, 1, 1, 1).expand(2, 3, 3, 8, 8)
    fig = plots.image_grid(cells, ["a", "b"], ["x", "y", "z"], gap=2)
    mosaic = np.asarray(fig.axes[0].images[0].get_array())
    assert mosaic.shape == (2 * 8 + 2, 3 * 8 + 4, 3)
    for r in range(2):
        for c in range(3):  # each image at its place in the mosaic, white gaps between
            assert (mosaic[r * 10:r * 10 + 8, c * 10:c * 10 + 8] == 40 * (3 * r + c)).all()
    assert (mosaic[8:10] == 255).all()
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["x", "y", "z"]
    plt.close(fig)
    fig = plots.heatmap(np.arange(6).reshape(2, 3), ["r1", "r2"], ["c1", "c2", "c3"])
    assert [t.get_text() for t in fig.axes[0].texts] == ["0", "1", "2", "3", "4", "5"]
    plt.close(fig)
    with pytest.raises(ValueError, match="row_labels"):
        plots.image_grid(torch.zeros(2, 3, 8, 8), ["one row", "but two labels"])


def _decoded(image_widget) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image_widget.value)).convert("RGB"))


def test_frame_slider_links_the_slider_to_the_stack_in_javascript():
    import ipywidgets as w
    from ipywidgets.widgets.widget_link import Link

    frames = [np.full((4, 6, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    from augmax_lib.course import widgets

    fw = widgets.frame_slider(frames, [f"step {i}" for i in range(5)], description="step", min_height=8)
    assert isinstance(fw.control, w.IntSlider) and (fw.control.min, fw.control.max) == (0, 4)
    assert not fw.control.readout  # it would count from 0; the label line names the frame
    assert isinstance(fw.stack, w.Stack) and len(fw.stack.children) == 5
    links = [link for link in fw.links if link.target[0] is fw.stack]
    assert len(links) == 1 and isinstance(links[0], Link)  # jslink: a widget on the JavaScript side
    assert links[0].source == (fw.control, "value") and links[0].target[1] == "selected_index"
    # every frame is the PNG of its array, enlarged 2x with nearest neighbours (4 px -> 8 px high)
    for i, child in enumerate(fw.stack.children):
        assert np.array_equal(_decoded(child), np.repeat(np.repeat(frames[i], 2, 0), 2, 1))
    assert fw.static_figure is not None


def test_frame_picker_and_grid():
    import ipywidgets as w

    from augmax_lib.course import widgets

    frames = [torch.full((3, 4, 4), i * 50, dtype=torch.uint8) for i in range(3)]
    fw = widgets.frame_picker(frames, ["a", "b", "c"], kind="toggle", static=False)
    assert isinstance(fw.control, w.ToggleButtons) and len(fw.stack.children) == 3
    assert fw.links[0].source == (fw.control, "index")
    grid = widgets.frame_grid([[f, f] for f in frames], ["r0", "r1", "r2"], ["s1", "s2"], "row", "col")
    picker, slider = grid.controls
    assert not slider.readout  # "col s1" is shown by the label line, not a 0-based count
    outer = grid.stack
    assert len(outer.children) == 3 and all(len(inner.children) == 2 for inner in outer.children)
    targets = {id(link.target[0]) for link in grid.links if link.source == (slider, "value")}
    assert all(id(inner) in targets for inner in outer.children)
    assert any(link.source == (picker, "index") and link.target[0] is outer for link in grid.links)
    with pytest.raises(ValueError, match="labels"):
        widgets.frame_slider(frames, ["only one"])


def test_a_finished_sweep_run_of_the_same_config_is_used(tmp_path):
    from augmax_lib.train.config import load_config

    path, name = runs.find_config(CONFIG)
    cfg = load_config(path, "smoke", ["train.seed=1", "train.device=cpu"])
    own = runs.run_dir(name, "smoke", 1, tmp_path)
    swept = tmp_path / "smoke" / cfg["name"] / "seed1"  # where `sweep --out runs/smoke` writes
    assert runs._swept_instead(own, tmp_path, "smoke", 1, cfg) == own  # nothing swept
    swept.mkdir(parents=True)
    (swept / "results.json").write_text(json.dumps({"config": {**cfg, "train": {**cfg["train"], "device": "auto"}}}))
    assert runs._swept_instead(own, tmp_path, "smoke", 1, cfg) == swept  # the device does not change a run
    other = {**cfg, "train": {**cfg["train"], "epochs": cfg["train"]["epochs"] + 1}}
    assert runs._swept_instead(own, tmp_path, "smoke", 1, other) == own  # another config: train our own
    own.mkdir(parents=True)
    (own / "last.pt").write_bytes(b"partial")
    assert runs._swept_instead(own, tmp_path, "smoke", 1, cfg) == own  # our own partial run is resumed


def test_run_dir_names_a_repeated_override_once(tmp_path):
    once = runs.run_dir("cifar10/resnet18_normal", "smoke", 0, tmp_path, SYNTH)
    assert runs.run_dir("cifar10/resnet18_normal", "smoke", 0, tmp_path, SYNTH + SYNTH[:1]) == once
    assert runs.run_dir("cifar10/resnet18_normal", "smoke", 0, tmp_path, SYNTH[::-1]) == once
