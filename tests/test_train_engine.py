"""The training engine end to end on tiny synthetic runs: files, model selection, provenance, resume
(bit-exact on the CPU, also after a kill), and clear errors for bad configs, missing data and bad checkpoints."""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from augmax_lib.data import SYNTHETIC_SOURCE, DatasetNotFoundError, make_synthetic
from augmax_lib.train import CheckpointError, ConfigError, RunDirError, load_run, train
from augmax_lib.train.checkpoint import load_checkpoint
from augmax_lib.train.config import METHODS

pytestmark = pytest.mark.filterwarnings("ignore:loading the SYNTHETIC data set")
REPO = Path(__file__).resolve().parents[1]
FILES = ("config.yaml", "log.csv", "log.json", "last.pt", "best.pt", "results.json")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Tiny models: one thread is faster than two on a shared 2-core machine (no spin-waiting), and results
    # depend on the thread count, so the killed child below and this process must use the same.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(method: str = "normal", norm: str = "bn", epochs: int = 1, **train_opts) -> dict:
    """A run of seconds on a CPU: 128 training + 32 validation synthetic 16x16 images, a width-4 ResNet18."""
    m = {"name": method}
    if method not in ("normal", "augmix"):
        m["steps"] = 2
    return {"name": "tiny", "data": {"dataset": "synthetic", "val_size": 32, "options": {"n": 160, "image_size": 16}},
            "model": {"name": "resnet18", "width": 4, "norm": norm}, "method": m,
            "train": {"epochs": epochs, "batch_size": 32, "progress": False, **train_opts}}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_writes_its_files(method, tmp_path):
    norm = "dubin" if method in ("augmax", "advmix", "advmax") else "bn"
    run = train(tiny(method, norm, steps_per_epoch=2), out=tmp_path / "run")
    assert sorted(p.name for p in run.iterdir()) == sorted(FILES)
    rows = list(csv.DictReader(io.StringIO((run / "log.csv").read_text())))
    assert len(rows) == 1 and {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"} <= set(rows[0])
    assert json.loads((run / "log.json").read_text())[0]["epoch"] == 1
    results = json.loads((run / "results.json").read_text())
    assert results["method"] == method and results["data_source"] == SYNTHETIC_SOURCE
    assert results["provenance"]["torch"] == torch.__version__
    assert results["wall_time_s"] > 0 and results["train_images_per_s"] > 0
    assert results["num_train_images"] == 128 and results["num_val_images"] == 32
    assert set(results["config"]) >= {"data", "model", "method", "optim", "schedule", "train"}


def test_model_selection_uses_the_validation_split(tmp_path):
    run = train(tiny("normal", epochs=3, eval_batch_size=7), out=tmp_path / "run")
    history = json.loads((run / "log.json").read_text())
    accs = [row["val_acc"] for row in history]
    best = int(np.argmax(accs)) + 1  # the first epoch with the highest validation accuracy
    assert load_checkpoint(run / "best.pt")["epoch"] == best
    assert json.loads((run / "results.json").read_text())["best"]["epoch"] == best
    # Recompute the validation accuracy of best.pt by hand: the same 32 images the engine held out.
    model, config = load_run(run)
    from augmax_lib.data import load_dataset, split_validation

    full = load_dataset("synthetic", "train", n=160, image_size=16)
    _, val = split_validation(full, 32, seed=config["data"]["split_seed"])
    with torch.no_grad():
        correct = (model(val.images.float() / 255).argmax(1) == val.labels).float().mean().item()
    assert correct == pytest.approx(history[best - 1]["val_acc"], abs=1e-6)
    last_model, _ = load_run(run, "last")
    assert not last_model.training


def _assert_same_state(a: dict, b: dict):
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k]["momentum_buffer"], sb[k]["momentum_buffer"]) for k in sa)
    assert a["scheduler"] == b["scheduler"]
    drop = ("epoch_time_s", "train_images_per_s")
    assert [{k: v for k, v in r.items() if k not in drop} for r in a["history"]] == \
           [{k: v for k, v in r.items() if k not in drop} for r in b["history"]]


def test_resume_equals_uninterrupted(tmp_path):
    config = tiny("augmax", "dubin", epochs=2)
    whole = train(config, out=tmp_path / "whole")
    parts = train(config, out=tmp_path / "parts", stop_after=1)
    assert load_checkpoint(parts / "last.pt")["epoch"] == 1 and not (parts / "results.json").exists()
    train(config, out=tmp_path / "parts", resume=True)
    _assert_same_state(load_checkpoint(whole / "last.pt"), load_checkpoint(parts / "last.pt"))
    assert (parts / "results.json").exists()


@pytest.mark.parametrize("schedule", ["cosine", "cosine_per_step"])
def test_a_run_stopped_inside_an_epoch_resumes_from_its_step_checkpoint(schedule, tmp_path, monkeypatch):
    # train.checkpoint_every_steps: a preemption inside an epoch loses at most that many steps, and the resumed run
    # ends with the weights, optimiser state and log of the run that was never stopped.
    from augmax_lib.train import engine

    config = tiny("augmix", epochs=2, steps_per_epoch=4, checkpoint_every_steps=2)
    config["schedule"] = {"name": schedule}
    whole = train(config, out=tmp_path / "whole")
    real_step, calls = engine.training_step, []

    def preempted(*args, **kwargs):
        if len(calls) == 7:  # the 4th step of epoch 2: its checkpoint after step 2 is the last one
            raise KeyboardInterrupt
        calls.append(1)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(engine, "training_step", preempted)
    with pytest.raises(KeyboardInterrupt):
        train(config, out=tmp_path / "parts")
    saved = load_checkpoint(tmp_path / "parts" / "last.pt")
    assert (saved["epoch"], saved["step"]) == (1, 2)
    monkeypatch.setattr(engine, "training_step", real_step)
    train(config, out=tmp_path / "parts", resume=True)
    _assert_same_state(load_checkpoint(whole / "last.pt"), load_checkpoint(tmp_path / "parts" / "last.pt"))
    assert "step" not in load_checkpoint(tmp_path / "parts" / "last.pt")


_CHILD = """
import sys, warnings
warnings.simplefilter("ignore")
import torch
import yaml
torch.set_num_threads(1)
from augmax_lib.train import train
import json
train(json.loads(sys.argv[1]), out=sys.argv[2], resume=sys.argv[3] == "1")
"""


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    config = tiny("augmix", epochs=2, steps_per_epoch=None)
    config["data"]["options"]["n"] = 32 + 320  # epochs long enough to kill one mid-way
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", _CHILD, json.dumps(config), str(tmp_path / "killed")]
    child = subprocess.Popen(args + ["0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "killed" / "log.json"
    deadline = time.time() + 120
    while not log.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)  # somewhere in epoch 2 (or just after it, which must also be fine)
    child.wait()
    assert load_checkpoint(tmp_path / "killed" / "last.pt")["epoch"] in (1, 2)
    assert subprocess.run(args + ["1"], env=env, capture_output=True).returncode == 0
    whole = train(config, out=tmp_path / "whole")
    _assert_same_state(load_checkpoint(whole / "last.pt"), load_checkpoint(tmp_path / "killed" / "last.pt"))


def test_numerics_default_to_fp32_and_opt_in_settings_resume_exactly(tmp_path):
    plain = train(tiny("normal", steps_per_epoch=1), out=tmp_path / "plain")
    numerics = json.loads((plain / "results.json").read_text())["numerics"]
    assert numerics == {"precision": "fp32", "channels_last": False, "compile": False}
    # bf16 autocast and channels-last on the CPU, through the attack too; still resumable bit for bit.
    config = tiny("augmax", "dubin", epochs=2, steps_per_epoch=2, precision="bf16", channels_last=True)
    whole = train(config, out=tmp_path / "whole")
    parts = train(config, out=tmp_path / "parts", stop_after=1)
    train(config, out=parts, resume=True)
    _assert_same_state(load_checkpoint(whole / "last.pt"), load_checkpoint(parts / "last.pt"))
    results = json.loads((whole / "results.json").read_text())
    assert results["numerics"] == {"precision": "bf16", "channels_last": True, "compile": False}
    assert math.isfinite(results["final"]["train_loss"])
    with pytest.raises(CheckpointError, match=r"train.precision: 'bf16' -> 'fp32'"):
        train({**config, "train": {**config["train"], "precision": "fp32", "epochs": 3}}, out=parts, resume=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_runs_are_fp32_unless_they_opt_in(tmp_path):
    plain = train(tiny("augmax", "dubin", steps_per_epoch=2, device="cuda"), out=tmp_path / "plain")
    results = json.loads((plain / "results.json").read_text())
    assert results["numerics"] == {"precision": "fp32", "channels_last": False, "compile": False}
    assert results["provenance"]["device"].startswith("cuda")
    fast = train(tiny("augmax", "dubin", steps_per_epoch=2, device="cuda", precision="bf16", channels_last=True),
                 out=tmp_path / "fast")
    results = json.loads((fast / "results.json").read_text())
    assert results["numerics"]["precision"] == "bf16" and math.isfinite(results["final"]["train_loss"])


def _augmix_lr(step: int, total_steps: int, lr_max: float, lr_min: float) -> float:
    """google-research/augmix cifar.py's get_lr, transcribed (numpy, its order of operations)."""
    return lr_min + (lr_max - lr_min) * 0.5 * (1 + np.cos(step / total_steps * np.pi))


def test_per_step_cosine_is_augmix_cifar_py():
    from augmax_lib.train.config import validate
    from augmax_lib.train.engine import _make_scheduler

    config = validate({"schedule": {"name": "cosine_per_step", "min_lr": 1e-6}, "train": {"epochs": 3}})
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9, nesterov=True)
    scheduler = _make_scheduler(optimizer, config, steps_per_epoch=7)
    total = 3 * 7
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])  # the rate optimiser step t runs at
        optimizer.step()
        scheduler.step()
    # cifar.py: LambdaLR(lambda step: get_lr(step, epochs * len(loader), 1, 1e-6 / lr)), stepped every batch.
    expected = [0.1 * _augmix_lr(t, total, 1, 1e-6 / 0.1) for t in range(total)]
    np.testing.assert_allclose(seen, expected, rtol=1e-13, atol=0)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-6, rel=1e-12)  # after the last step: min_lr
    # The per-epoch cosine (AugMax's) keeps ending at 0 unless min_lr says otherwise.
    epoch_wise = validate({"train": {"epochs": 4}})
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = _make_scheduler(optimizer, epoch_wise, steps_per_epoch=7)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(lrs, [0.05 * (1 + math.cos(math.pi * e / 4)) for e in range(4)], rtol=1e-12)


def test_augmix_recipe_trains_and_resumes_exactly(tmp_path):
    # cifar.py's recipe in the engine: Nesterov, per-step cosine to 1e-6, Normalize(0.5, 0.5) inside the model.
    config = tiny("augmix", epochs=2, steps_per_epoch=2)
    config["optim"] = {"nesterov": True}
    config["schedule"] = {"name": "cosine_per_step", "min_lr": 1e-6}
    config["model"].update(input_mean=[0.5, 0.5, 0.5], input_std=[0.5, 0.5, 0.5])
    whole = train(config, out=tmp_path / "whole")
    parts = train(config, out=tmp_path / "parts", stop_after=1)
    train(config, out=parts, resume=True)
    _assert_same_state(load_checkpoint(whole / "last.pt"), load_checkpoint(parts / "last.pt"))
    history = json.loads((whole / "log.json").read_text())
    total = 2 * 2  # epochs x steps per epoch
    assert [row["lr"] for row in history] == pytest.approx([0.1 * _augmix_lr(t, total, 1, 1e-5) for t in (0, 2)],
                                                           rel=1e-12)
    assert load_checkpoint(whole / "last.pt")["scheduler"]["last_epoch"] == total  # stepped once per batch
    model, _ = load_run(whole)
    from augmax_lib.train.run_models import NormalizedInput, backbone

    assert isinstance(model, NormalizedInput) and model.mean.flatten().tolist() == [0.5] * 3
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():  # (x - 0.5) / 0.5 before the backbone
        assert torch.allclose(model(x), backbone(model)(x * 2 - 1), atol=1e-6)


def test_a_busy_run_directory_is_never_overwritten(tmp_path):
    run = train(tiny(steps_per_epoch=1), out=tmp_path / "run")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with pytest.raises(RunDirError, match="not empty.*--resume"):
        train(tiny(steps_per_epoch=1), out=run)
    with pytest.raises(RunDirError, match="nothing to resume"):
        train(tiny(steps_per_epoch=1), out=tmp_path / "fresh", resume=True)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_corrupt_or_mismatched_checkpoints_give_clear_errors(tmp_path):
    config = tiny(epochs=2, steps_per_epoch=1)
    run = train(config, out=tmp_path / "run", stop_after=1)
    with pytest.raises(CheckpointError, match=r"method.name: 'normal' -> 'augmix'"):
        train({**config, "method": {"name": "augmix"}}, out=run, resume=True)
    with pytest.raises(CheckpointError, match=r"model.width: 4 -> 8"):
        train({**config, "model": {**config["model"], "width": 8}}, out=run, resume=True)
    last = run / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])  # a truncated file, as after a full disk
    corrupt = last.read_bytes()
    with pytest.raises(CheckpointError, match="corrupt"):
        train(config, out=run, resume=True)
    assert last.read_bytes() == corrupt  # left untouched
    (run / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_run(run)
    torch.save({"weights": torch.zeros(1)}, run / "best.pt")
    with pytest.raises(CheckpointError, match="not an augmax_lib training checkpoint"):
        load_run(run)


def test_a_mapping_takes_a_profile_like_a_file(tmp_path):
    # The profile's per_method section reaches a config given as a mapping, and the run records the profile.
    profile = tmp_path / "p.yaml"
    profile.write_text("train: {steps_per_epoch: 1}\nper_method: {augmax: {steps: 1}}\n")
    run = train(tiny("augmax", "dubin"), out=tmp_path / "run", profile=str(profile))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["method"]["steps"] == 1 and config["train"]["steps_per_epoch"] == 1
    assert json.loads((run / "results.json").read_text())["config"]["profile"] == "p.yaml"


def test_bad_configs_fail_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'train.epoch'"):
        train({**tiny(), "train": {"epoch": 1}}, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="train.batch_size"):
        train(tiny(), out=tmp_path / "b", overrides=["train.batch_size=big"])
    with pytest.raises(ConfigError, match="train.batch_size: 512 is larger"):
        train(tiny(), out=tmp_path / "c", overrides=["train.batch_size=512"])
    assert not any(tmp_path.iterdir())


def test_missing_data_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("AUGMAX_DATA", str(tmp_path / "empty"))
    config = {**tiny(), "data": {"dataset": "cifar10", "val_size": 32}}
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "empty")):
        train(config, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_jpeg_mirror_runs_are_labelled(tmp_path, monkeypatch):
    # A CIFAR-10 JPEG mirror in the real format (tar.xz of train/<class>/NNNN.jpg), 6 images per class.
    from augmax_lib.data import CIFAR10_CLASSES, MIRROR_SOURCE

    synthetic = make_synthetic(80, seed=3)
    tar_path = tmp_path / "data" / "cifar10-jpeg.tar.xz"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w:xz") as tar:
        for split, per_class in (("train", 6), ("test", 2)):
            for c, name in enumerate(CIFAR10_CLASSES):
                for i in range(per_class):
                    buffer = io.BytesIO()
                    image = synthetic.images[(c * 8 + i) % 80].permute(1, 2, 0).numpy()
                    Image.fromarray(image).save(buffer, format="JPEG", quality=75)
                    info = tarfile.TarInfo(f"{split}/{name}/{i:04d}.jpg")
                    info.size = len(buffer.getvalue())
                    tar.addfile(info, io.BytesIO(buffer.getvalue()))
    monkeypatch.setenv("AUGMAX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AUGMAX_CACHE", str(tmp_path / "cache"))
    config = {**tiny(steps_per_epoch=1), "data": {"dataset": "cifar10", "val_size": 20}}
    config["train"]["batch_size"] = 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train(config, out=tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    assert results["data_source"] == MIRROR_SOURCE == "CIFAR-10 (JPEG q75 mirror)"
    assert results["num_train_images"] == 40 and results["num_val_images"] == 20

    # DeepAugment-style extra folders (<data root>/<folder>/<class>/*) join the training set only.
    for c, name in enumerate(CIFAR10_CLASSES):
        folder = tmp_path / "data" / "deepaug" / name
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(synthetic.images[c * 8 + i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    config["data"]["extra_train"] = ["deepaug"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = train(config, out=tmp_path / "deep")
    results = json.loads((run / "results.json").read_text())
    assert results["data_source"] == "CIFAR-10 (JPEG q75 mirror) + DeepAugment (deepaug)"
    assert results["num_train_images"] == 60 and results["num_val_images"] == 20


def test_lazy_folder_sets_train_and_resume_exactly(tmp_path, monkeypatch):
    # ImageNet's layout (<root>/imagenet/train/<wnid>/*.JPEG), read lazily, plus a DeepAugment folder.
    rng = np.random.default_rng(0)
    for folder, count in (("imagenet/train", 12), ("imagenet-DeepAug-EDSR", 4)):
        for wnid in ("n01440764", "n01443537"):
            (tmp_path / folder / wnid).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (40, 44, 3), dtype=np.uint8)).save(
                    tmp_path / folder / wnid / f"{i}.JPEG")
    monkeypatch.setenv("AUGMAX_DATA", str(tmp_path))
    config = {"name": "lazy", "data": {"dataset": "imagenet", "val_size": 4, "image_size": 32, "workers": 0,
                                       "extra_train": ["imagenet-DeepAug-EDSR"]},
              "model": {"name": "resnet18_imagenet", "width": 4, "norm": "dubin"},
              "method": {"name": "augmax", "steps": 2}, "train": {"epochs": 2, "batch_size": 8, "progress": False}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer images than the official set
        whole = train(config, out=tmp_path / "whole")
        train(config, out=tmp_path / "parts", stop_after=1)
        parts = train(config, out=tmp_path / "parts", resume=True)
    results = json.loads((whole / "results.json").read_text())
    assert results["num_train_images"] == 20 + 8 and results["num_val_images"] == 4
    assert results["data_source"] == "ImageNet + DeepAugment (imagenet-DeepAug-EDSR)"
    _assert_same_state(load_checkpoint(whole / "last.pt"), load_checkpoint(parts / "last.pt"))
    model, _ = load_run(whole)
    with torch.no_grad():  # takes [0, 1] images and normalises them itself
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2)


def test_command_line(tmp_path, capsys):
    from augmax_lib.cli import train as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config = tmp_path / "c.yaml"
    import yaml

    config.write_text(yaml.safe_dump(tiny()))
    args = parser.parse_args(["--config", str(config), "--set", "train.steps_per_epoch=1", "--out",
                              str(tmp_path / "run"), "--stop-after", "1"])
    assert cli.run(args) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "run")
    args = parser.parse_args(["--config", str(config), "--set", "method.lambda=1", "--out", str(tmp_path / "x")])
    assert cli.run(args) == 2
    assert "unknown config key 'method.lambda'" in capsys.readouterr().err
    args = parser.parse_args(["--config", str(config), "--profile", "smoke", "--out", str(tmp_path / "run")])
    assert cli.run(args) == 2
    assert "not empty" in capsys.readouterr().err


def test_evaluate_a_run(tmp_path, capsys):
    from augmax_lib.__main__ import main

    run = train(tiny("augmax", "dubin", steps_per_epoch=1), out=tmp_path / "run")
    assert main(["evaluate", "--run", str(run), "--skip", "ra", "cifar101", "spatial", "--quiet"]) == 0
    results = json.loads((run / "evaluation" / "results.json").read_text())
    assert results["dataset"] == "synthetic" and 0.0 <= results["metrics"]["sa"] <= 1.0
    assert results["model"]["method"] == "augmax" and results["model"]["norm"] == "dubin"
    assert results["protocol"]["numerics"] == {"precision": "fp32", "channels_last": False, "compile": False}
    assert main(["evaluate", "--run", str(run), "--skip", "ra", "cifar101", "spatial", "--quiet", "--force",
                 "--precision", "bf16", "--channels-last"]) == 0
    results = json.loads((run / "evaluation" / "results.json").read_text())
    assert results["protocol"]["numerics"] == {"precision": "bf16", "channels_last": True, "compile": False}
    # A run whose config opts its evaluation into bf16 (e.g. through a profile) is evaluated so by default.
    fast = train({**tiny(steps_per_epoch=1), "eval": {"precision": "bf16"}}, out=tmp_path / "fast")
    assert main(["evaluate", "--run", str(fast), "--skip", "ra", "cifar101", "spatial", "--quiet"]) == 0
    results = json.loads((fast / "evaluation" / "results.json").read_text())
    assert results["protocol"]["numerics"]["precision"] == "bf16"
    capsys.readouterr()
    assert main(["evaluate", "--run", str(tmp_path / "missing"), "--quiet"]) == 2
    assert "is not a directory" in capsys.readouterr().err
