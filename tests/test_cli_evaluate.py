"""`python -m augmax_lib evaluate --reference-checkpoint ...` end to end on tiny data in the real formats:
results.json holds the known answers and the provenance; missing files give one-line messages."""
from __future__ import annotations

import argparse
import hashlib
import json
import pickle

import numpy as np
import pytest
import torch
from _planted import PlantedPixelModel, labels_with_errors, planted_images

from augmax_lib.cli import evaluate as cli
from augmax_lib.data import BENCHMARK_CORRUPTIONS


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("AUGMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUGMAX_DATA", raising=False)


def _run(argv) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def _write_test_batch(root, n: int, wrong: int, seed: int = 0):
    """A CIFAR-10 python test batch of planted images; returns (images (N, 32, 32, 3), labels)."""
    rng = np.random.default_rng(seed)
    seen = rng.integers(0, 10, n)
    images = planted_images(seen, rng)
    labels = labels_with_errors(seen, wrong)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": images.transpose(0, 3, 1, 2).reshape(n, 3072), "labels": labels.tolist()}, f)
    return images, labels, seen


def test_missing_checkpoint_is_one_line_saying_where_and_how(tmp_path, capsys):
    code = _run(["--reference-checkpoint", str(tmp_path / "nope" / "best_SA.pth"), "--root", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert str(tmp_path / "nope" / "best_SA.pth") in err
    assert "https://github.com/VITA-Group/AugMax#pretrained-models" in err


def test_no_model_named_is_an_error(capsys):
    assert _run([]) == 2
    assert "--reference-checkpoint" in capsys.readouterr().err


def _stand_in(monkeypatch, calls):
    """Our planted model stands in for the reference backbone; its state dict is the checkpoint."""
    def load(path, name, num_classes, dataset):
        calls.append((str(path), name, num_classes, dataset))
        model = PlantedPixelModel(num_classes or 10)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model, dataset or "cifar10"

    monkeypatch.setattr(cli, "_load_reference", load)


def test_end_to_end_with_a_tiny_checkpoint(tmp_path, monkeypatch, capsys):
    calls = []
    _stand_in(monkeypatch, calls)
    ckpt = tmp_path / "best_SA.pth"
    torch.save(PlantedPixelModel().state_dict(), ckpt)
    root = tmp_path / "data"
    n = 20
    _, labels, seen = _write_test_batch(root, n, wrong=5)
    # CIFAR-10-C: corruption i shows the wrong class on its first (i mod 4) images of every severity.
    c_dir = root / "CIFAR-10-C"
    c_dir.mkdir()
    np.save(c_dir / "labels.npy", np.tile(seen, 5))
    rng = np.random.default_rng(1)
    for i, name in enumerate(BENCHMARK_CORRUPTIONS):
        np.save(c_dir / f"{name}.npy", np.concatenate([planted_images(labels_with_errors(seen, i % 4), rng)
                                                        for _ in range(5)]))
    # CIFAR-10.1 v6 only: v4 is reported as skipped.
    v_dir = root / "CIFAR-10.1" / "datasets"
    v_dir.mkdir(parents=True)
    seen6 = rng.integers(0, 10, 2000)
    np.save(v_dir / "cifar10.1_v6_data.npy", planted_images(seen6, rng))
    np.save(v_dir / "cifar10.1_v6_labels.npy", labels_with_errors(seen6, 100))
    out = tmp_path / "out"
    argv = ["--reference-checkpoint", str(ckpt), "--model", "resnet18", "--dataset", "cifar10", "--root", str(root),
            "--out", str(out), "--device", "cpu", "--batch-size", "8", "--quiet"]
    with pytest.warns(UserWarning):
        assert _run(argv) == 0
    assert calls == [(str(ckpt), "resnet18", 10, "cifar10")]
    results = json.loads((out / "results.json").read_text())
    m = results["metrics"]
    assert m["sa"] == pytest.approx(15 / 20)
    expected_ra = 1 - np.mean([(i % 4) / n for i in range(15)])
    assert m["ra"] == pytest.approx(expected_ra)
    assert m["corruption_accuracy"]["shot_noise"] == {str(s): pytest.approx(0.95) for s in range(1, 6)}
    assert m["cifar101"] == {"v6": pytest.approx(0.95)}
    assert "cifar10.1_v4_data.npy" in results["skipped"]["cifar101_v4"]
    assert m["spatial"]["k"] == 10 and m["spatial"]["num_images"] == n and m["spatial"]["seed"] == 0
    prov = results["provenance"]
    assert prov["checkpoint"]["sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert prov["checkpoint"]["path"] == str(ckpt.resolve())
    assert prov["torch"] == torch.__version__ and prov["device"].startswith("cpu")
    assert prov["data_source"] == "CIFAR-10" and "date" in prov
    assert results["model"]["source"].startswith("reference checkpoint")
    printed = capsys.readouterr().out
    assert "SA   75.00" in printed and "results.json" in printed
    # An existing results.json is never replaced silently.
    assert _run(argv) == 2
    assert "--force" in capsys.readouterr().err
    with pytest.warns(UserWarning):
        assert _run(argv + ["--force", "--skip", "spatial", "ra"]) == 0
    again = json.loads((out / "results.json").read_text())
    assert "spatial" not in again["metrics"] and again["metrics"]["sa"] == m["sa"]


def test_missing_test_set_is_reported_not_a_traceback(tmp_path, monkeypatch, capsys):
    _stand_in(monkeypatch, [])
    ckpt = tmp_path / "best_SA.pth"
    torch.save(PlantedPixelModel().state_dict(), ckpt)
    code = _run(["--reference-checkpoint", str(ckpt), "--root", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "o"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "CIFAR-10 not found" in err and "cifar-10-python.tar.gz" in err
    assert not (tmp_path / "o" / "results.json").exists()


def test_real_loader_with_a_reference_layout_checkpoint(tmp_path, capsys):
    # The models helper's real converter: a DuBIN ResNet18 exported to the reference layout loads back,
    # and the CLI's SA equals the accuracy of the original model computed here directly.
    from augmax_lib.models import build_model, to_reference_state_dict

    torch.manual_seed(0)
    model = build_model("resnet18", 10, norm="dubin").eval()
    ckpt = tmp_path / "best_SA.pth"
    torch.save(to_reference_state_dict(model), ckpt)
    root = tmp_path / "data"
    images, labels, _ = _write_test_batch(root, 16, wrong=0)
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        expected = float((model(x).argmax(1) == torch.from_numpy(labels)).double().mean())
    out = tmp_path / "out"
    with pytest.warns(UserWarning):
        code = _run(["--reference-checkpoint", str(ckpt), "--root", str(root), "--out", str(out), "--skip", "ra",
                     "spatial", "--device", "cpu", "--quiet"])
    assert code == 0
    assert json.loads((out / "results.json").read_text())["metrics"]["sa"] == pytest.approx(expected)


def test_images_per_set_prints_its_size_and_error_and_reaches_the_library(tmp_path, monkeypatch, capsys):
    _stand_in(monkeypatch, [])
    ckpt = tmp_path / "best_SA.pth"
    torch.save(PlantedPixelModel().state_dict(), ckpt)
    root = tmp_path / "data"
    _write_test_batch(root, 40, wrong=8)
    out = tmp_path / "out"
    argv = ["--reference-checkpoint", str(ckpt), "--dataset", "cifar10", "--root", str(root), "--out", str(out),
            "--device", "cpu", "--quiet", "--skip", "ra", "spatial", "cifar101", "--images-per-set", "20",
            "--subset-seed", "4"]
    with pytest.warns(UserWarning):
        assert _run(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["images_per_set"] == 20 and results["protocol"]["subset_seed"] == 4
    assert len(results["protocol"]["subset_indices"]) == 20
    printed = capsys.readouterr().out
    assert "on 20 images per set (of 40" in printed and "+-" in printed


@pytest.mark.parametrize("flag, expected", [([], "published"), (["--no-generated-jpeg"], None)])
def test_generated_jpeg_round_trip_is_on_unless_turned_off(tmp_path, monkeypatch, flag, expected):
    _stand_in(monkeypatch, [])
    ckpt = tmp_path / "best_SA.pth"
    torch.save(PlantedPixelModel().state_dict(), ckpt)
    seen = {}

    def fake_evaluate(model, dataset, root, options, **kw):
        seen.update(vars(options))
        return {"dataset": dataset, "data_source": "x", "protocol": {}, "metrics": {}, "skipped": {}}

    monkeypatch.setattr("augmax_lib.evaluate.evaluate_model", fake_evaluate)
    argv = ["--reference-checkpoint", str(ckpt), "--dataset", "cifar10", "--out", str(tmp_path / "o"),
            "--device", "cpu", "--quiet", "--generate-corruptions"] + flag
    assert _run(argv) == 0
    assert seen["generated_jpeg_quality"] == expected
