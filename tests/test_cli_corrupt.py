"""``python -m augmax_lib corrupt`` on a tiny stand-in test set: layout, resuming, atomic writes, errors."""
from __future__ import annotations

import argparse
import io
import json
import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import augmax_lib.data as data
from augmax_lib.cli import corrupt as cli
from augmax_lib.corruptions import corrupt
from augmax_lib.data import ImageSet

N = 6


@pytest.fixture
def tiny(monkeypatch, images_hwc):
    """Replace the test-set loader with N real-looking images and known labels."""
    images = torch.from_numpy(images_hwc[:N]).permute(0, 3, 1, 2).contiguous()
    labels = torch.arange(N, dtype=torch.int64) % 10
    calls = []

    def fake_load(name, split="train", root=None, **options):
        calls.append((name, split, root))
        return ImageSet(images, labels, [f"c{i}" for i in range(10)], "stand-in", name)

    monkeypatch.setattr(data, "load_dataset", fake_load)
    return images_hwc[:N], labels.numpy(), calls


def parse(*argv):
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_official_layout(tmp_path, tiny):
    images, labels, calls = tiny
    out = tmp_path / "CIFAR-10-C"
    assert cli.run(parse("--dataset", "cifar10", "--out", str(out), "--corruptions", "contrast", "gaussian_noise",
                         "--batch-size", "4", "--quiet")) == 0
    assert calls == [("cifar10", "test", None)]
    assert sorted(p.name for p in out.iterdir()) == ["contrast.npy", "corrupt_info.json", "gaussian_noise.npy",
                                                     "labels.npy"]
    np.testing.assert_array_equal(np.load(out / "labels.npy"), np.tile(labels, 5).astype(np.uint8))
    assert np.load(out / "labels.npy").dtype == np.uint8
    arr = np.load(out / "contrast.npy")
    assert arr.dtype == np.uint8 and arr.shape == (5 * N, 32, 32, 3)
    # severities 1..5 in order, each the contrast formula of make_cifar_c on every image
    x = images / 255.0
    mean = x.mean(axis=(1, 2), keepdims=True)
    for s, c in enumerate((0.75, 0.5, 0.4, 0.3, 0.15)):
        ref = np.uint8(np.clip((x - mean) * c + mean, 0, 1) * 255)         # stored with np.uint8: truncated
        dev = np.abs(arr[s * N:(s + 1) * N].astype(int) - ref)
        assert dev.max() <= 1 and dev.mean() <= 0.1
    noisy = np.load(out / "gaussian_noise.npy").astype(float)
    sigmas = [np.std(noisy[s * N:(s + 1) * N] - images) for s in range(5)]
    assert sigmas == sorted(sigmas) and 8 < sigmas[0] < 12          # sigma 0.04 * 255 = 10.2 (some clipping)


def test_reads_back_with_the_cifar_c_loader(tmp_path, tiny):
    out = tmp_path / "CIFAR-10-C"
    assert cli.run(parse("--dataset", "cifar10", "--out", str(out), "--corruptions", "brightness", "--quiet")) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # the loader warns that 30 images is not the official 50000
        s3 = data.load_cifar_c("brightness", 3, "cifar10", root=tmp_path)
    assert s3.images.shape == (N, 3, 32, 32)
    np.testing.assert_array_equal(s3.labels.numpy(), tiny[1])


def test_resume_skips_finished_files_and_reproduces(tmp_path, tiny, capsys):
    out = tmp_path / "c"
    argv = ("--dataset", "cifar10", "--out", str(out), "--corruptions", "fog", "shot_noise", "--seed", "3", "--quiet")
    assert cli.run(parse(*argv)) == 0
    fog = (out / "fog.npy").read_bytes()
    shot_mtime = os.stat(out / "shot_noise.npy").st_mtime_ns
    (out / "fog.npy").unlink()
    capsys.readouterr()
    assert cli.run(parse(*argv)) == 0
    text = capsys.readouterr().out
    assert "shot_noise.npy: already complete, skipped" in text and "fog.npy: 30 images" in text
    assert os.stat(out / "shot_noise.npy").st_mtime_ns == shot_mtime
    assert (out / "fog.npy").read_bytes() == fog                     # same seed, same file
    # another seed gives other draws
    other = tmp_path / "d"
    assert cli.run(parse("--dataset", "cifar10", "--out", str(other), "--corruptions", "fog", "--seed", "4",
                         "--quiet")) == 0
    assert (other / "fog.npy").read_bytes() != fog


def test_failure_leaves_no_partial_file(tmp_path, tiny, monkeypatch):
    import augmax_lib.corruptions as corruptions

    real = corruptions.corrupt
    calls = {"n": 0}

    def flaky(x, name, severity, **kw):
        if name == "snow" and severity == 3:
            raise RuntimeError("simulated crash")
        calls["n"] += 1
        return real(x, name, severity, **kw)

    monkeypatch.setattr(corruptions, "corrupt", flaky)
    out = tmp_path / "c"
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.run(parse("--dataset", "cifar10", "--out", str(out), "--corruptions", "contrast", "snow", "--quiet"))
    # contrast finished; snow neither exists nor left a partial file behind
    assert sorted(p.name for p in out.iterdir()) == ["contrast.npy", "corrupt_info.json", "labels.npy"]


def test_subset_of_severities_writes_one_file_each(tmp_path, tiny):
    out = tmp_path / "c"
    assert cli.run(parse("--dataset", "cifar10", "--out", str(out), "--corruptions", "pixelate",
                         "--severities", "5", "2", "--quiet")) == 0
    assert {p.name for p in out.glob("pixelate*")} == {"pixelate_s2.npy", "pixelate_s5.npy"}
    assert np.load(out / "pixelate_s5.npy").shape == (N, 32, 32, 3)


def test_never_overwrites_a_foreign_file(tmp_path, tiny):
    out = tmp_path / "c"
    out.mkdir()
    np.save(out / "contrast.npy", np.zeros((3, 32, 32, 3), np.uint8))
    before = (out / "contrast.npy").read_bytes()
    assert cli.run(parse("--dataset", "cifar10", "--out", str(out), "--corruptions", "contrast", "--quiet")) == 2
    assert (out / "contrast.npy").read_bytes() == before
    np.save(out / "labels.npy", np.zeros(5 * N, np.uint8) + 9)
    assert cli.run(parse("--dataset", "cifar10", "--out", str(out), "--corruptions", "fog", "--quiet")) == 2
    assert not (out / "fog.npy").exists()


def test_argument_errors(tmp_path, tiny, capsys):
    out = str(tmp_path / "c")
    assert cli.run(parse("--dataset", "cifar10", "--out", out, "--corruptions", "rain")) == 2
    assert "unknown name 'rain'" in capsys.readouterr().err
    assert cli.run(parse("--dataset", "cifar10", "--out", out, "--severities", "0")) == 2
    assert cli.run(parse("--dataset", "cifar10", "--out", out, "--batch-size", "0")) == 2
    if not torch.cuda.is_available():
        assert cli.run(parse("--dataset", "cifar10", "--out", out, "--device", "cuda")) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_groups_and_seeds():
    from augmax_lib.corruptions import ALL_CORRUPTIONS, CORRUPTIONS, EXTRA_CORRUPTIONS

    assert cli._resolve_corruptions(["benchmark"]) == list(CORRUPTIONS)
    assert cli._resolve_corruptions(["extra", "fog"]) == list(EXTRA_CORRUPTIONS) + ["fog"]
    assert cli._resolve_corruptions(["all", "fog"]) == list(ALL_CORRUPTIONS)
    seeds = {cli.severity_seed(0, c, s) for c in ALL_CORRUPTIONS for s in range(1, 6)}
    assert len(seeds) == 95
    assert cli.severity_seed(1, "fog", 1) != cli.severity_seed(0, "fog", 1)


def test_info_names_the_generator_semantics(tmp_path, tiny):
    out = tmp_path / "C"
    assert cli.run(parse("--dataset", "cifar10", "--out", str(out), "--corruptions", "brightness", "--quiet")) == 0
    info = json.loads((out / "corrupt_info.json").read_text())["semantics"]
    assert info["generator"].endswith("make_cifar_c.py") and info["semantics_version"] == 2
    assert info["uint8"].startswith("truncate") and info["glass_blur"].startswith("copy")
    assert info["published_format"] == "uint8 .npy arrays"


@pytest.fixture
def tiny_tin(monkeypatch):
    """Replace the loader with 6 64x64 Tiny-ImageNet-like images in 2 classes."""
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, (N, 64, 64, 3), dtype=np.uint8)
    hwc = np.asarray([np.asarray(Image.fromarray(im).resize((64, 64), Image.BILINEAR)) for im in hwc])
    images = torch.from_numpy(hwc).permute(0, 3, 1, 2).contiguous()
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    classes = ["n01443537", "n01629819"]

    def fake_load(name, split="train", root=None, **options):
        return ImageSet(images, labels, classes, "stand-in", name)

    monkeypatch.setattr(data, "load_dataset", fake_load)
    return images, labels, classes


def test_tinyimagenet_writes_the_published_jpeg_layout(tmp_path, tiny_tin, capsys):
    images, labels, classes = tiny_tin
    out = tmp_path / "Tiny-ImageNet-C"
    args = ("--dataset", "tinyimagenet", "--out", str(out), "--corruptions", "contrast", "glass_blur",
            "--severities", "1", "4", "--batch-size", "4", "--quiet")
    assert cli.run(parse(*args)) == 0
    for c in ("contrast", "glass_blur"):
        assert sorted(p.name for p in (out / c).iterdir()) == ["1", "4"]
        for s in (1, 4):
            files = sorted((out / c / str(s)).glob("*/*"))
            assert [f.parent.name for f in files] == [classes[int(y)] for y in labels]
            # each file: JPEG quality 85 of the uint8 corruption, as make_tinyimagenet_c.py saved it
            g = torch.Generator().manual_seed(cli.severity_seed(0, c, s))
            expected = torch.cat([corrupt(b, c, s, preset="tinyimagenet", generator=g) for b in images.split(4)])
            for k, f in enumerate(sorted(files, key=lambda f: int(f.stem.split("_")[1]))):
                with Image.open(f) as im:
                    assert im.format == "JPEG"
                    got = np.asarray(im)
                buf = io.BytesIO()
                Image.fromarray(expected[k].permute(1, 2, 0).numpy()).save(buf, "JPEG", quality=85)
                np.testing.assert_array_equal(got, np.asarray(Image.open(buf)))
    info = json.loads((out / "corrupt_info.json").read_text())
    assert info["jpeg_quality"] == 85 and info["semantics"]["generator"].endswith("make_tinyimagenet_c.py")
    assert set(info["files"]) == {"contrast/1", "contrast/4", "glass_blur/1", "glass_blur/4"}
    # the Tiny-ImageNet-C loader reads it back, labelled by wnid folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # 6 images, not the official 10000
        back = data.load_tinyimagenet_c("contrast", 4, root=tmp_path, classes=classes, use_cache=False,
                                        progress=False)
    assert back.images.shape == (N, 3, 64, 64) and back.labels.tolist() == labels.tolist()
    # resumable: a second run skips every finished severity
    capsys.readouterr()
    assert cli.run(parse(*args)) == 0
    assert capsys.readouterr().out.count("already complete") == 4
    # a severity folder with another number of files is never overwritten
    next(iter((out / "contrast" / "1").glob("*/*"))).unlink()
    assert cli.run(parse(*args)) == 2
