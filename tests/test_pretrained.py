"""Pretrained models as safetensors files: the shipped ones (hashes, manifest, recorded accuracy), the format,
hash refusal, and loading by URL (file://) into a cache."""
from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from augmax_lib.models import build_model
from augmax_lib.models.pretrained import (
    FORMAT,
    WEIGHTS_DIR,
    PretrainedError,
    list_pretrained,
    load_from_url,
    load_pretrained,
    load_pretrained_file,
    pretrained_info,
    save_pretrained,
)

SHIPPED = WEIGHTS_DIR / "long"
SPEC = {"name": "resnet18", "norm": "dubin", "width": 4, "kwargs": {}, "num_classes": 10, "input_mean": None,
        "input_std": None}
# fp16 weights round every parameter to 11 significant bits; on the CIFAR-10 test set that moved the shipped
# models' clean accuracy by at most this much against their fp32 checkpoints (measured at export, recorded in
# the manifest; see bench/README.md, "The long profile").
FP16_TOLERANCE = 0.003   # fraction of the test set (0.3 points)
# The same file evaluated again on another machine or thread count: bf16 and fp32 kernels may round differently.
REPRODUCE_TOLERANCE = 0.001


def _model():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, norm="dubin", width=4)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a lost buffer would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_a_saved_file_is_self_describing_and_rounds_weights_to_fp16(tmp_path):
    model = _model()
    sha = save_pretrained(model, tmp_path / "m.safetensors", SPEC, {"seed": 3})
    assert sha == hashlib.sha256((tmp_path / "m.safetensors").read_bytes()).hexdigest()
    loaded, meta = load_pretrained_file(tmp_path / "m.safetensors", sha)
    assert meta["seed"] == 3 and meta["model"] == SPEC
    expected = {k: (v.half().float() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    got = loaded.state_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert torch.equal(got[key], value), key  # exactly the fp16 rounding of each weight, counters intact
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert (loaded(x) - model(x)).abs().max() < 0.05  # fp16 rounding of a random narrow model


def test_a_file_whose_hash_differs_is_refused_before_loading(tmp_path):
    sha = save_pretrained(_model(), tmp_path / "m.safetensors", SPEC)
    data = bytearray((tmp_path / "m.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "m.safetensors").write_bytes(bytes(data))
    with pytest.raises(PretrainedError, match="does not match the expected"):
        load_pretrained_file(tmp_path / "m.safetensors", sha)


def test_other_files_get_clear_errors(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"not a model at all")
    with pytest.raises(PretrainedError, match="not a safetensors file"):
        load_pretrained_file(tmp_path / "x.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "y.safetensors"))
    with pytest.raises(PretrainedError, match="not one of augmax_lib's models"):
        load_pretrained_file(tmp_path / "y.safetensors")
    with pytest.raises(PretrainedError, match="no shipped model 'nope'"):
        pretrained_info("nope")
    with pytest.raises(PretrainedError, match="no shipped models named 'other'"):
        list_pretrained("other")


def test_a_url_is_fetched_once_checked_and_cached_under_the_data_folder(tmp_path, monkeypatch):
    source = tmp_path / "elsewhere" / "model.safetensors"
    sha = save_pretrained(_model(), source, SPEC)
    monkeypatch.setenv("AUGMAX_DATA", str(tmp_path / "data"))
    model = load_from_url(source.as_uri(), sha)
    cached = tmp_path / "data" / "models" / f"{sha}.safetensors"
    assert cached.is_file() and isinstance(model, torch.nn.Module)
    source.unlink()  # the cache is used from now on
    load_from_url(source.as_uri(), sha)
    with pytest.raises(PretrainedError, match="does not match"):
        other = tmp_path / "other.safetensors"
        save_pretrained(build_model("resnet18", 10, width=4), other, {**SPEC, "norm": "bn"})
        load_from_url(other.as_uri(), "0" * 64, cache=tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*.safetensors"))  # nothing half-checked was kept
    with pytest.raises(PretrainedError, match="64 hex digits"):
        load_from_url(source.as_uri(), "abc")


def test_the_shipped_manifest_matches_its_files():
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert manifest["format"] == FORMAT and manifest["models"]
    total = 0
    for name, entry in manifest["models"].items():
        path = SHIPPED / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name
        assert path.stat().st_size == entry["bytes"] < 2_000_000, name
        total += entry["bytes"]
        assert entry["config"]["name"] == name and entry["profile"] == "long" and entry["seed"] == 0
        assert entry["train_commit"] and entry["metrics"]["sa"] and entry["metrics"]["ra"]
        assert abs(entry["exported"]["sa"] - entry["metrics"]["sa"]) <= FP16_TOLERANCE, name
    assert total <= 10_000_000
    assert {"cifar10_resnet18_normal", "cifar10_resnet18_augmix", "cifar10_resnet18_augmax_dubin"} <= set(manifest["models"])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(json.loads((SHIPPED / "manifest.json").read_text())["models"])
                         if (SHIPPED / "manifest.json").is_file() else [])
def test_each_shipped_model_reproduces_its_recorded_clean_accuracy(name):
    from augmax_lib.data import DatasetNotFoundError, load_dataset
    from augmax_lib.evaluate.accuracy import clean_accuracy
    from augmax_lib.evaluate.inference import with_numerics

    try:
        test = load_dataset("cifar10", "test")
    except DatasetNotFoundError:
        pytest.skip("CIFAR-10 is not in the data root ($AUGMAX_DATA)")
    if "JPEG" not in test.source:
        pytest.skip(f"the shipped models were measured on the JPEG q75 mirror, not on {test.source}")
    entry = pretrained_info(name)
    model = load_pretrained(name)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    fp32 = clean_accuracy(model, test, progress=False)
    assert abs(fp32 - entry["exported"]["sa_fp32"]) <= REPRODUCE_TOLERANCE
    numerics = entry["metrics"]["numerics"]
    measured = clean_accuracy(with_numerics(model, **numerics), test, progress=False)
    assert abs(measured - entry["exported"]["sa"]) <= REPRODUCE_TOLERANCE
    assert abs(measured - entry["metrics"]["sa"]) <= FP16_TOLERANCE + REPRODUCE_TOLERANCE
