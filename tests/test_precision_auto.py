"""precision "auto": bf16 where the device computes it natively, else fp32; checked against the CPU flags the OS
reports (/proc/cpuinfo), and the resolved precision is what a run records, resumes with and is tabled by."""
import json
import platform
from pathlib import Path

import pytest

import augmax_lib._device as device_mod
from augmax_lib._device import cpu_model, native_bf16, resolve_precision
from augmax_lib.evaluate import Numerics
from augmax_lib.evaluate.provenance import device_description
from augmax_lib.train import train
from augmax_lib.train.checkpoint import CheckpointError, config_mismatches
from augmax_lib.train.config import ConfigError, load_config, same_setting, validate


def tiny(epochs: int, **train_opts) -> dict:
    """A run of seconds on a CPU: synthetic 16x16 images, a width-4 ResNet18 (as test_train_engine's)."""
    return {"name": "tiny", "data": {"dataset": "synthetic", "val_size": 32, "options": {"n": 160, "image_size": 16}},
            "model": {"name": "resnet18", "width": 4}, "method": {"name": "normal"},
            "train": {"epochs": epochs, "batch_size": 32, "progress": False, **train_opts}}


def _cpuinfo_flags() -> set:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64", reason="reads x86 /proc/cpuinfo")
def test_native_bf16_on_the_cpu_is_what_the_os_reports():
    flags = _cpuinfo_flags()
    expected = bool({"avx512_bf16", "amx_bf16"} & flags)
    assert native_bf16("cpu") == expected
    assert resolve_precision("auto", "cpu") == ("bf16" if expected else "fp32")
    model = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")][0]
    assert cpu_model() == model
    described = device_description("cpu")
    assert model in described and ("no native bf16" in described) != expected


def test_explicit_precisions_stay_and_bad_ones_name_the_argument():
    for p in ("fp32", "bf16", "fp16"):
        assert resolve_precision(p, "cpu") == p
    with pytest.raises(ValueError, match="eval.precision: expected one of fp32, bf16, fp16 or auto, got 'fp64'"):
        resolve_precision("fp64", "cpu", "eval.precision")
    with pytest.raises(ValueError, match="precision: expected one of"):
        Numerics(precision="half")


@pytest.mark.parametrize("native", [True, False])
def test_auto_follows_the_hardware(monkeypatch, native):
    monkeypatch.setattr(device_mod, "native_bf16", lambda device: native)
    want = "bf16" if native else "fp32"
    assert resolve_precision("auto", "cpu") == want
    numerics = Numerics(precision="auto", channels_last=True).resolved("cpu")
    assert numerics.record() == {"precision": want, "channels_last": True, "compile": False}
    with pytest.raises(ValueError, match="not recorded"):
        Numerics(precision="auto").record()


def test_config_accepts_auto_and_a_requested_auto_matches_any_recorded_precision():
    c = validate({"train": {"precision": "auto"}, "eval": {"precision": "auto"}})
    assert c["train"]["precision"] == c["eval"]["precision"] == "auto"
    with pytest.raises(ConfigError, match="train.precision"):
        validate({"train": {"precision": "best"}})
    assert same_setting("train.precision", "bf16", "auto") and same_setting("eval.precision", "fp32", "auto")
    assert not same_setting("train.precision", "bf16", "fp32")
    assert not same_setting("train.epochs", 3, "auto") and not same_setting("train.precision", "fp16", "auto")
    saved = validate({"train": {"precision": "bf16"}})
    assert config_mismatches(saved, c) == []
    assert config_mismatches(c, saved) == ["train.precision: 'auto' -> 'bf16'"]  # only the request may be auto
    for profile in ("quick", "long"):  # the profiles meant for any CPU ask for auto
        p = load_config(None, profile)
        assert p["train"]["precision"] == p["eval"]["precision"] == "auto"
    assert load_config(None, "full")["train"]["precision"] == "fp32"


@pytest.mark.parametrize("native", [True, False])
def test_a_run_records_what_auto_became_and_resumes_with_its_own(tmp_path, monkeypatch, native):
    monkeypatch.setattr(device_mod, "native_bf16", lambda device: native)
    want, other = ("bf16", "fp32") if native else ("fp32", "bf16")
    config = tiny(2, steps_per_epoch=1, precision="auto")
    run = train(config, out=tmp_path / "run", stop_after=1)
    assert f"precision: {want}" in (run / "config.yaml").read_text()
    # The same run continued where auto would choose the other precision: it keeps the one it started with.
    monkeypatch.setattr(device_mod, "native_bf16", lambda device: not native)
    train(config, out=run, resume=True)
    results = json.loads((run / "results.json").read_text())
    assert results["numerics"]["precision"] == want and results["config"]["train"]["precision"] == want
    assert [row["epoch"] for row in json.loads((run / "log.json").read_text())] == [1, 2]
    # An explicit precision is still checked against the run's.
    with pytest.raises(CheckpointError, match=rf"train.precision: '{want}' -> '{other}'"):
        train({**config, "train": {**config["train"], "precision": other, "epochs": 3}}, out=run, resume=True)
