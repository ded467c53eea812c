"""augmax_lib.data: each format built small in tmp_path in its real layout, loaded, and checked against
an independent decode (numpy reshapes, PIL); bad files fail with messages that say what is wrong."""
from __future__ import annotations

import io
import os
import pickle
import re
import tarfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from augmax_lib.data import (
    BENCHMARK_CORRUPTIONS,
    CIFAR10_CLASSES,
    CIFAR100_CLASSES,
    EXTRA_CORRUPTION_NAMES,
    SYNTHETIC_SOURCE,
    DataFormatError,
    DatasetNotFoundError,
    DeviceLoader,
    FolderSet,
    ImageSet,
    load_cifar101,
    load_cifar_c,
    load_corrupted,
    load_dataset,
    load_imagenet,
    load_imagenet_c,
    load_tinyimagenet,
    load_tinyimagenet_c,
    make_synthetic,
    resolve_root,
    split_validation,
    with_deepaugment,
)
from augmax_lib.data.roots import DEFAULT_ROOT

# Read before the autouse fixture hides them: the real data root (CI sets it) and the user's cache.
REAL_ROOT = Path(os.environ.get("AUGMAX_DATA") or "/nonexistent")
REAL_CACHE = os.environ.get("AUGMAX_CACHE")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test reads the user's data root or writes the user's decode cache."""
    monkeypatch.setenv("AUGMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUGMAX_DATA", raising=False)


def _jpeg_bytes(array: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _hwc_to_chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))


# ---------------------------------------------------------------------------------------------- roots


def test_resolve_root_prefers_argument_then_env_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("AUGMAX_DATA", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_root() == tmp_path / "env"
    monkeypatch.delenv("AUGMAX_DATA")
    assert resolve_root() == DEFAULT_ROOT.expanduser()


def test_missing_cifar10_names_every_place_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", "test", root=tmp_path)
    msg = str(err.value)
    for place in ("cifar-10-batches-py", "cifar10-jpeg.tar.xz", "cifar10-jpeg"):
        assert str(tmp_path / place) in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert "root argument" in msg


def test_corruption_file_names_are_the_benchmarks():
    # REFERENCE.md section 6: the 15 and the 4 extras; augmax_lib.corruptions must use the same names.
    from augmax_lib.corruptions import CORRUPTIONS, EXTRA_CORRUPTIONS

    fifteen = ("gaussian_noise shot_noise impulse_noise defocus_blur glass_blur motion_blur zoom_blur snow frost "
               "fog brightness contrast elastic_transform pixelate jpeg_compression").split()
    assert list(BENCHMARK_CORRUPTIONS) == fifteen == list(CORRUPTIONS)
    assert set(EXTRA_CORRUPTION_NAMES) == {"speckle_noise", "gaussian_blur", "spatter", "saturate"}
    assert set(EXTRA_CORRUPTION_NAMES) == set(EXTRA_CORRUPTIONS)


def test_unknown_dataset_name_is_rejected():
    with pytest.raises(ValueError, match="cifar10"):
        load_dataset("mnist")


# ------------------------------------------------------------------------------------ CIFAR batches


def _write_cifar_batches(folder: Path, files: dict, label_key: str, num_classes: int, seed: int = 0) -> dict:
    """Write Krizhevsky-format python batches; returns {file: (data (N, 3072), labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    written = {}
    for name, n in files.items():
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, num_classes, n).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, label_key: labels, "filenames": [f"{i}.png" for i in range(n)]}, f)
        written[name] = (data, np.asarray(labels))
    return written


def test_cifar10_batches_load_in_channel_first_order(tmp_path):
    files = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 6}
    written = _write_cifar_batches(tmp_path / "cifar-10-batches-py", files, "labels", 10)
    with pytest.warns(UserWarning, match="official set has 10000"):
        test = load_dataset("cifar10", "test", root=tmp_path)
    data, labels = written["test_batch"]
    # Row layout of the batches: 1024 red, then green, then blue values, each row-major.
    expected = data.reshape(6, 3, 32, 32)
    assert test.images.dtype == torch.uint8 and test.images.shape == (6, 3, 32, 32)
    assert np.array_equal(test.images.numpy(), expected)
    assert test.labels.tolist() == labels.tolist()
    assert test.classes == list(CIFAR10_CLASSES) and test.source == "CIFAR-10"
    with pytest.warns(UserWarning):
        train = load_dataset("cifar10", "train", root=tmp_path)
    assert len(train) == 20
    assert np.array_equal(train.images[16:].numpy(), written["data_batch_5"][0].reshape(4, 3, 32, 32))


def test_cifar100_uses_fine_labels(tmp_path):
    written = _write_cifar_batches(tmp_path / "cifar-100-python", {"train": 5, "test": 3}, "fine_labels", 100)
    with pytest.warns(UserWarning):
        test = load_dataset("cifar100", "test", root=tmp_path)
    assert test.labels.tolist() == written["test"][1].tolist()
    assert len(test.classes) == 100 == len(set(CIFAR100_CLASSES)) and test.classes[0] == "apple"


@pytest.mark.parametrize("rows, labels, match", [
    (np.zeros((2, 3000), np.uint8), [0, 1], r"\(N, 3072\)"),
    (np.zeros((2, 3072), np.uint8), [0, 10], r"\[0, 10\)"),
], ids=["wrong row length", "label out of range"])
def test_bad_cifar_batches_are_rejected(tmp_path, rows, labels, match):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(folder, {"test_batch": 2}, "labels", 10)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": rows, "labels": labels}, f)
    with pytest.raises(DataFormatError, match=match):
        load_dataset("cifar10", "test", root=tmp_path)


# ------------------------------------------------------------------------------------- JPEG mirror


def _mirror_entries(per_class=(2, 1), seed=0) -> dict:
    """{'train/<class>/NNNN.jpg': jpeg bytes} for every class, in the mirror's layout."""
    rng = np.random.default_rng(seed)
    entries = {}
    for split, count in zip(("train", "test"), per_class):
        for cls in CIFAR10_CLASSES:
            for i in range(count):
                entries[f"{split}/{cls}/{i:04d}.jpg"] = _jpeg_bytes(rng.integers(0, 256, (32, 32, 3), np.uint8), 75)
    return entries


def _write_tarball(path: Path, entries: dict) -> None:
    with tarfile.open(path, "w:xz") as tar:
        for name in sorted({str(Path(n).parent) for n in entries} | {"train", "test"}):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _expected_mirror(entries: dict, split: str):
    names = sorted((n for n in entries if n.startswith(split + "/")),
                   key=lambda n: (CIFAR10_CLASSES.index(n.split("/")[1]), n.split("/")[2]))
    images = np.stack([_pil_decode(entries[n]) for n in names])
    labels = [CIFAR10_CLASSES.index(n.split("/")[1]) for n in names]
    return _hwc_to_chw(images), labels


def test_mirror_tarball_decodes_like_pil_and_is_cached(tmp_path):
    entries = _mirror_entries()
    _write_tarball(tmp_path / "cifar10-jpeg.tar.xz", entries)
    with pytest.warns(UserWarning, match="official set has 50000"):
        train = load_dataset("cifar10", "train", root=tmp_path)
    images, labels = _expected_mirror(entries, "train")
    assert torch.equal(train.images, images) and train.labels.tolist() == labels
    assert train.source == "CIFAR-10 (JPEG q75 mirror)"
    cached = list((tmp_path / "cache").glob("cifar10-jpeg-*.npz"))
    assert len(cached) == 1
    with pytest.warns(UserWarning):
        test = load_dataset("cifar10", "test", root=tmp_path)
    images, labels = _expected_mirror(entries, "test")
    assert torch.equal(test.images, images) and test.labels.tolist() == labels
    # A changed tarball gets a new cache entry instead of the stale arrays.
    entries["test/cat/0000.jpg"] = _jpeg_bytes(np.zeros((32, 32, 3), np.uint8))
    _write_tarball(tmp_path / "cifar10-jpeg.tar.xz", entries)
    with pytest.warns(UserWarning):
        test = load_dataset("cifar10", "test", root=tmp_path)
    assert int(test.images[test.labels == 3].max()) < 10
    assert len(list((tmp_path / "cache").glob("cifar10-jpeg-*.npz"))) == 2


def test_mirror_unpacked_tree_loads_too(tmp_path):
    entries = _mirror_entries(seed=1)
    for name, data in entries.items():
        (tmp_path / "cifar10-jpeg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cifar10-jpeg" / name).write_bytes(data)
    with pytest.warns(UserWarning):
        test = load_dataset("cifar10", "test", root=tmp_path, use_cache=False)
    images, labels = _expected_mirror(entries, "test")
    assert torch.equal(test.images, images) and test.labels.tolist() == labels


def test_mirror_with_unknown_class_folder_is_rejected(tmp_path):
    entries = _mirror_entries()
    entries["train/unicorn/0000.jpg"] = entries["train/cat/0000.jpg"]
    _write_tarball(tmp_path / "cifar10-jpeg.tar.xz", entries)
    with pytest.raises(DataFormatError, match="unicorn"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_mirror_with_wrong_image_size_is_rejected(tmp_path):
    entries = _mirror_entries()
    entries["test/dog/0000.jpg"] = _jpeg_bytes(np.zeros((30, 32, 3), np.uint8))
    _write_tarball(tmp_path / "cifar10-jpeg.tar.xz", entries)
    with pytest.raises(DataFormatError, match="32x32"):
        load_dataset("cifar10", "test", root=tmp_path)


@pytest.mark.skipif(not (REAL_ROOT / "cifar10-jpeg.tar.xz").is_file(),
                    reason="the real JPEG mirror is not in $AUGMAX_DATA")
def test_real_mirror_test_split(monkeypatch):
    # The user's own decode cache: the first run decodes all 60000 images once (about 15 s), later runs
    # read the cached arrays.
    if REAL_CACHE is None:
        monkeypatch.delenv("AUGMAX_CACHE")
    else:
        monkeypatch.setenv("AUGMAX_CACHE", REAL_CACHE)
    test = load_dataset("cifar10", "test", root=REAL_ROOT, progress=False)
    assert test.images.shape == (10000, 3, 32, 32) and test.source == "CIFAR-10 (JPEG q75 mirror)"
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    train = load_dataset("cifar10", "train", root=REAL_ROOT, progress=False)
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    with tarfile.open(REAL_ROOT / "cifar10-jpeg.tar.xz", "r:xz") as tar:
        member = next(m for m in tar if m.isfile())  # the archive starts with train/airplane/0000.jpg
        first = _pil_decode(tar.extractfile(member).read())
    assert member.name == "train/airplane/0000.jpg"
    assert np.array_equal(train.images[0].permute(1, 2, 0).numpy(), first)


# ------------------------------------------------------------------------------------------ CIFAR-C


def _write_cifar_c(folder: Path, names, per_severity: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = rng.integers(0, 10, per_severity)
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    data = {}
    for name in names:
        data[name] = rng.integers(0, 256, (5 * per_severity, 32, 32, 3), dtype=np.uint8)
        np.save(folder / f"{name}.npy", data[name])
    return data, labels


def test_cifar_c_severity_blocks(tmp_path):
    data, labels = _write_cifar_c(tmp_path / "CIFAR-10-C", ["fog", "snow"])
    with pytest.warns(UserWarning, match="official set has 50000"):
        s3 = load_cifar_c("fog", 3, root=tmp_path)
    assert torch.equal(s3.images, _hwc_to_chw(data["fog"][6:9]))
    assert s3.labels.tolist() == labels.tolist() and s3.labels.dtype == torch.int64
    with pytest.warns(UserWarning):
        s5 = load_corrupted("cifar10", "snow", 5, root=tmp_path)
    assert torch.equal(s5.images, _hwc_to_chw(data["snow"][12:15]))


def test_cifar_c_missing_file_says_where_and_how(tmp_path):
    _write_cifar_c(tmp_path / "CIFAR-10-C", ["fog"])
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar_c("frost", 1, root=tmp_path)
    assert str(tmp_path / "CIFAR-10-C" / "frost.npy") in str(err.value)
    assert "zenodo.org/record/2535967" in str(err.value)


def test_cifar_c_checks_count_dtype_and_labels(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    _write_cifar_c(folder, ["fog"])
    np.save(folder / "fog.npy", np.zeros((14, 32, 32, 3), np.uint8))
    with pytest.raises(DataFormatError, match="multiple of 5"):
        load_cifar_c("fog", 1, root=tmp_path)
    np.save(folder / "fog.npy", np.zeros((15, 32, 32, 3), np.float32))
    with pytest.raises(DataFormatError, match="uint8"):
        load_cifar_c("fog", 1, root=tmp_path)
    np.save(folder / "fog.npy", np.zeros((15, 32, 32, 3), np.uint8))
    np.save(folder / "labels.npy", np.arange(15) % 10)
    with pytest.raises(DataFormatError, match="severity 2 differ"):
        load_cifar_c("fog", 1, root=tmp_path)
    np.save(folder / "labels.npy", np.arange(10))
    with pytest.raises(DataFormatError, match="expected 15 labels"):
        load_cifar_c("fog", 1, root=tmp_path)


# --------------------------------------------------------------------------------------- CIFAR-10.1


@pytest.mark.parametrize("version, n", [("v4", 2021), ("v6", 2000)])
def test_cifar101_official_layout(tmp_path, version, n):
    folder = tmp_path / "CIFAR-10.1" / "datasets"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    np.save(folder / f"cifar10.1_{version}_data.npy", images)
    np.save(folder / f"cifar10.1_{version}_labels.npy", labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official count: no warning
        got = load_cifar101(version, root=tmp_path)
    assert torch.equal(got.images, _hwc_to_chw(images)) and got.labels.tolist() == labels.tolist()
    assert got.source == f"CIFAR-10.1 {version}"


def test_cifar101_missing_and_malformed(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="modestyachts/CIFAR-10.1"):
        load_cifar101("v6", root=tmp_path)
    np.save(tmp_path / "cifar10.1_v6_data.npy", np.zeros((4, 32, 32), np.uint8))
    np.save(tmp_path / "cifar10.1_v6_labels.npy", np.zeros(4, np.int64))
    with pytest.raises(DataFormatError, match=r"\(N, H, W, 3\)"):
        load_cifar101("v6", root=tmp_path)
    with pytest.raises(ValueError, match="version"):
        load_cifar101("v5", root=tmp_path)


# ------------------------------------------------------------------------------------ Tiny-ImageNet

WNIDS = ["n02124075", "n01443537", "n09256479"]  # sorted: n01443537, n02124075, n09256479


def _write_tin(base: Path, per_class=2, val_per_class=2, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    folder = base / "tiny-imagenet-200"
    (folder / "val" / "images").mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    files = {"train": {}, "val": {}}
    for wnid in WNIDS:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            data = _jpeg_bytes(rng.integers(0, 256, (64, 64, 3), np.uint8))
            (images / f"{wnid}_{i}.JPEG").write_bytes(data)
            files["train"][(wnid, f"{wnid}_{i}.JPEG")] = data
    lines, k = [], 0
    for i in range(val_per_class):
        for wnid in WNIDS[::-1]:
            name = f"val_{k}.JPEG"
            grey = k == 0  # Tiny-ImageNet has some greyscale JPEGs; they load as RGB
            pixels = rng.integers(0, 256, (64, 64) if grey else (64, 64, 3), np.uint8)
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
            (folder / "val" / "images" / name).write_bytes(buf.getvalue())
            files["val"][(wnid, name)] = buf.getvalue()
            lines.append(f"{name}\t{wnid}\t0\t0\t63\t63")
            k += 1
    (folder / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return files


def _expected_folder(files: dict, classes):
    keys = sorted(files, key=lambda k: (classes.index(k[0]), k[1]))
    return _hwc_to_chw(np.stack([_pil_decode(files[k]) for k in keys])), [classes.index(k[0]) for k in keys]


def test_tinyimagenet_train_and_val(tmp_path):
    files = _write_tin(tmp_path)
    classes = sorted(WNIDS)
    with pytest.warns(UserWarning, match="official set has 100000"):
        train = load_tinyimagenet("train", root=tmp_path, progress=False)
    images, labels = _expected_folder(files["train"], classes)
    assert train.classes == classes and train.images.shape == (6, 3, 64, 64)
    assert torch.equal(train.images, images) and train.labels.tolist() == labels
    with pytest.warns(UserWarning):
        val = load_dataset("tinyimagenet", "test", root=tmp_path, progress=False)
    images, labels = _expected_folder(files["val"], classes)
    assert torch.equal(val.images, images) and val.labels.tolist() == labels
    grey = val.images[val.labels.tolist().index(classes.index(WNIDS[-1]))]
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])


def test_tinyimagenet_val_annotation_errors(tmp_path):
    _write_tin(tmp_path)
    ann = tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    text = ann.read_text()
    ann.write_text(text.replace(WNIDS[0], "n99999999", 1))
    with pytest.raises(DataFormatError, match="n99999999.*not in wnids.txt"):
        load_tinyimagenet("val", root=tmp_path)
    ann.write_text("\n".join(text.splitlines()[1:]))
    with pytest.raises(DataFormatError, match="not listed"):
        load_tinyimagenet("val", root=tmp_path)


def test_tinyimagenet_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="tiny-imagenet-200.zip"):
        load_tinyimagenet("train", root=tmp_path)


def _write_c_folders(base: Path, corruption: str, severity: int, classes, per_class: int, size: int, seed=0):
    rng = np.random.default_rng(seed)
    files = {}
    for cls in classes:
        folder = base / corruption / str(severity) / cls
        folder.mkdir(parents=True)
        for i in range(per_class):
            data = _jpeg_bytes(rng.integers(0, 256, (size, size, 3), np.uint8))
            (folder / f"{cls}_{i}.JPEG").write_bytes(data)
            files[(cls, f"{cls}_{i}.JPEG")] = data
    return files


def test_tinyimagenet_c_folders(tmp_path):
    classes = sorted(WNIDS)
    files = _write_c_folders(tmp_path / "Tiny-ImageNet-C", "fog", 3, classes, 2, 64)
    with pytest.warns(UserWarning):
        got = load_corrupted("tinyimagenet", "fog", 3, root=tmp_path, classes=classes, progress=False)
    images, labels = _expected_folder(files, classes)
    assert torch.equal(got.images, images) and got.labels.tolist() == labels
    with pytest.raises(DatasetNotFoundError) as err:
        load_tinyimagenet_c("fog", 4, root=tmp_path)
    assert str(tmp_path / "Tiny-ImageNet-C" / "fog" / "4") in str(err.value)
    with pytest.raises(DataFormatError, match="not among"):
        load_tinyimagenet_c("fog", 3, root=tmp_path, classes=classes[:2])


def _pil_eval_crop(data: bytes) -> np.ndarray:
    """The reference's Resize(256) + CenterCrop(224), written in PIL: shorter side to 256 (bilinear, the long
    side truncated as torchvision does), then the central 224x224 (offsets rounded half to even)."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        im = im.resize(size, Image.BILINEAR)
        left, top = round((size[0] - 224) / 2), round((size[1] - 224) / 2)
        return np.asarray(im.crop((left, top, left + 224, top + 224)))


def _torchvision_eval_crop(data: bytes) -> np.ndarray:
    """The authors' own transform (torchvision.transforms v1, as in AugMax dataloaders/imagenet.py)."""
    from torchvision import transforms

    with Image.open(io.BytesIO(data)) as im:
        out = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])(im.convert("RGB"))
        return np.asarray(out)


def test_imagenet_c_is_lazy_labelled_and_resized_like_the_reference(tmp_path):
    # ImageNet-C images are 224x224: the reference still resizes them to 256x256 and crops the centre.
    classes = sorted(WNIDS)
    files = _write_c_folders(tmp_path / "ImageNet-C", "contrast", 5, classes, 1, 224)
    data = load_imagenet_c("contrast", 5, root=tmp_path)
    assert isinstance(data, FolderSet) and len(data) == 3 and data.classes == classes
    x, y = data[2]
    assert x.dtype == torch.uint8 and x.shape == (3, 224, 224) and y == 2
    raw = files[(classes[2], f"{classes[2]}_0.JPEG")]
    got = x.permute(1, 2, 0).numpy()
    assert np.array_equal(got, _pil_eval_crop(raw)) and np.array_equal(got, _torchvision_eval_crop(raw))
    assert not np.array_equal(got, _pil_decode(raw))  # not the bare centre crop (a no-op at 224x224)


@pytest.mark.parametrize("height, width", [(250, 333), (301, 260), (256, 256)])
def test_imagenet_val_is_resize_256_then_centre_crop_224(tmp_path, height, width):
    rng = np.random.default_rng(height)
    raw = {}
    for cls in WNIDS:
        folder = tmp_path / "imagenet" / "val" / cls
        folder.mkdir(parents=True)
        raw[cls] = _jpeg_bytes(rng.integers(0, 256, (height, width, 3), np.uint8))
        (folder / "a.JPEG").write_bytes(raw[cls])
    with pytest.warns(UserWarning):
        val = load_imagenet("test", root=tmp_path)
    x, y = val[1]
    ref = raw[sorted(WNIDS)[1]]
    assert x.shape == (3, 224, 224) and x.dtype == torch.uint8 and y == 1
    assert np.array_equal(x.permute(1, 2, 0).numpy(), _pil_eval_crop(ref))
    assert np.array_equal(x.permute(1, 2, 0).numpy(), _torchvision_eval_crop(ref))
    with pytest.raises(DatasetNotFoundError, match="imagenet"):
        load_imagenet("train", root=tmp_path)


def test_deepaugment_folders_are_appended(tmp_path):
    base = ImageSet(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1, 2, 3]),
                    list(CIFAR10_CLASSES), "CIFAR-10", "cifar10")
    files = _write_c_folders(tmp_path / "DeepAugment", "EDSR", 1, ["cat", "dog"], 2, 32)
    both = with_deepaugment(base, ["DeepAugment/EDSR/1"], root=tmp_path, progress=False)
    images, _ = _expected_folder(files, ["cat", "dog"])
    assert len(both) == 8 and torch.equal(both.images[4:], images)
    assert both.labels.tolist() == [0, 1, 2, 3, 3, 3, 5, 5]
    assert "DeepAugment" in both.source
    _write_c_folders(tmp_path / "DeepAugment", "CAE", 1, ["unicorn"], 1, 32)
    with pytest.raises(DataFormatError, match="unicorn"):
        with_deepaugment(base, [tmp_path / "DeepAugment" / "CAE" / "1"])
    with pytest.raises(DatasetNotFoundError):
        with_deepaugment(base, ["nowhere"], root=tmp_path)


# ---------------------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_balanced_and_loud():
    with pytest.warns(UserWarning, match="SYNTHETIC"):
        a = load_dataset("synthetic", "train", n=200, seed=3)
    with pytest.warns(UserWarning):
        b = load_dataset("synthetic", "train", n=200, seed=3, use_cache=False)
    with pytest.warns(UserWarning):
        test = load_dataset("synthetic", "test", n=200, seed=3)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, test.images)
    assert torch.bincount(a.labels).tolist() == [20] * 10
    assert a.source == SYNTHETIC_SOURCE and "SYNTHETIC" in a.source and "not" in a.source
    assert a.images.dtype == torch.uint8 and a.images.shape == (200, 3, 32, 32)


def test_synthetic_classes_are_learnable():
    # A linear classifier on edge-orientation features must beat chance by far: the classes carry structure.
    train, test = make_synthetic(1000, seed=0), make_synthetic(300, seed=1)

    def features(s):
        g = s.images.float().mean(1, keepdim=True) / 255
        dx, dy = g[..., :, 1:] - g[..., :, :-1], g[..., 1:, :] - g[..., :-1, :]
        parts = [torch.nn.functional.avg_pool2d(t.abs(), 4).flatten(1) for t in (dx[..., :-1, :], dy[..., :, :-1])]
        return torch.cat(parts, 1)

    xtr, xte = features(train), features(test)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w = torch.linalg.lstsq(torch.cat([xtr, torch.ones(len(xtr), 1)], 1),
                           torch.nn.functional.one_hot(train.labels, 10).float(), driver="gelsd").solution
    pred = (torch.cat([xte, torch.ones(len(xte), 1)], 1) @ w).argmax(1)
    assert (pred == test.labels).float().mean() > 0.5


# ------------------------------------------------------------------------------------- DeviceLoader


def _numbered_set(n: int, size: int = 8, seed: int = 0) -> ImageSet:
    """Random images whose label is their index, so that a batch tells where each image came from."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return ImageSet(images, torch.arange(n), [str(i) for i in range(n)], "test", "numbered")


@pytest.mark.parametrize("mode", ["zeros", "reflect"])
def test_device_loader_crops_are_crops_of_the_padded_image(mode):
    data = _numbered_set(40)
    loader = DeviceLoader(data, 16, padding=2, padding_mode=mode, seed=1)
    np_mode = "constant" if mode == "zeros" else "reflect"
    padded = np.pad(data.images.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)), mode=np_mode)
    offsets, flips = set(), []
    for _ in range(5):
        for x, y in loader:
            assert x.dtype == torch.uint8 and x.shape[1:] == (3, 8, 8)
            for img, label in zip(x.numpy(), y.tolist()):
                candidates = [(t, s, f) for t in range(5) for s in range(5) for f in (False, True)
                              if np.array_equal(img, (padded[label, :, t:t + 8, s:s + 8][..., ::-1] if f
                                                      else padded[label, :, t:t + 8, s:s + 8]))]
                assert candidates, "a yielded image is no crop/flip of its padded source"
                offsets.add(candidates[0][:2])
                flips.append(candidates[0][2])
    assert len(offsets) == 25  # every offset of the 5x5 range occurs in 200 draws
    assert 0.3 < np.mean(flips) < 0.7


def test_device_loader_float_output_and_no_augmentation():
    data = _numbered_set(10)
    x, y = next(iter(DeviceLoader(data, 10, shuffle=False, augment=False, dtype=torch.float32)))
    assert x.dtype == torch.float32 and torch.equal(x, data.images.float() / 255) and y.tolist() == list(range(10))


def test_device_loader_epochs_are_permutations():
    data = _numbered_set(50)
    loader = DeviceLoader(data, 8, seed=5)
    assert len(loader) == 7
    epochs = []
    for _ in range(3):
        labels = torch.cat([y for _, y in loader])
        assert sorted(labels.tolist()) == list(range(50))
        epochs.append(labels)
    assert not torch.equal(epochs[0], epochs[1]) and not torch.equal(epochs[1], epochs[2])
    loader.set_epoch(1)
    assert torch.equal(torch.cat([y for _, y in loader]), epochs[1])
    dropped = DeviceLoader(data, 8, drop_last=True)
    assert len(dropped) == 6 and sum(len(y) for _, y in dropped) == 48


@pytest.mark.parametrize("n", [60, 62])
def test_device_loader_ddp_shards_are_disjoint_and_cover(n):
    data = _numbered_set(n)
    shards = []
    for rank in range(3):
        loader = DeviceLoader(data, 7, seed=2, rank=rank, world_size=3)
        loader.set_epoch(4)
        got = torch.cat([y for _, y in loader]).tolist()
        assert len(got) == n // 3 and len(loader) == -(-(n // 3) // 7)
        shards.append(set(got))
    assert not (shards[0] & shards[1]) and not (shards[1] & shards[2]) and not (shards[0] & shards[2])
    assert len(set.union(*shards)) == 3 * (n // 3)
    with pytest.raises(ValueError, match="rank"):
        DeviceLoader(data, 7, rank=3, world_size=3)


def test_split_validation_is_stratified_disjoint_and_deterministic():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    data = ImageSet(torch.zeros(100, 1, 2, 2, dtype=torch.uint8), labels, ["a", "b", "c"], "t", "t")
    data.images[:, 0, 0, 0] = torch.arange(100, dtype=torch.uint8)  # tells the images apart
    train, val = split_validation(data, 0.1, seed=1)
    assert torch.bincount(val.labels).tolist() == [5, 3, 2] and len(train) == 90
    train, val = split_validation(data, 10, seed=1)
    again, other = split_validation(data, 10, seed=1)[1], split_validation(data, 10, seed=2)[1]
    tr_ids, va_ids = set(train.images[:, 0, 0, 0].tolist()), set(val.images[:, 0, 0, 0].tolist())
    assert not (tr_ids & va_ids) and len(tr_ids | va_ids) == 100
    assert torch.equal(val.images, again.images) and not torch.equal(val.images, other.images)
    rand = split_validation(data, 0.25, stratified=False, seed=0)[1]
    assert len(rand) == 25
    with pytest.raises(ValueError, match="size"):
        split_validation(data, 0)


def test_imageset_rejects_bad_tensors():
    with pytest.raises(DataFormatError, match="uint8"):
        ImageSet(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(DataFormatError, match="2 images but 3 labels"):
        ImageSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataFormatError, match="out of range"):
        ImageSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 5]), ["a", "b"])


# ------------------------------------------------------------------------------------------ broken files
# Each broken file is made here from a good one; the error names the file, says what is wrong (expected and
# found sizes or shapes) and how to get the file again, and nothing decoded from it is cached.


def _cut(path: Path, keep: int) -> int:
    """Truncate ``path`` to ``keep`` bytes; returns its former size."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return len(data)


def test_truncated_cifar_c_file_names_expected_and_found_bytes(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    _write_cifar_c(folder, ["fog"])
    size = _cut(folder / "fog.npy", 1000)
    message = (re.escape(str(folder / "fog.npy")) + rf": truncated: its header promises uint8 of shape "
               rf"\(15, 32, 32, 3\) \({size} bytes\) but the file holds 1000 bytes\. To get it again: download "
               r".*zenodo.org/record/2535967")
    with pytest.raises(DataFormatError, match=message):
        load_cifar_c("fog", 1, root=tmp_path)


@pytest.mark.parametrize("content, match", [
    (b"not an array at all" * 5, r"fog\.npy: not a \.npy array file"),
    (None, r"fog\.npy: expected shape \(N, H, W, 3\), got \(15, 32, 32\)"),
], ids=["not npy", "wrong shape"])
def test_cifar_c_file_of_another_kind(tmp_path, content, match):
    folder = tmp_path / "CIFAR-10-C"
    _write_cifar_c(folder, ["fog"])
    if content is None:
        np.save(folder / "fog.npy", np.zeros((15, 32, 32), np.uint8))
    else:
        (folder / "fog.npy").write_bytes(content)
    with pytest.raises(DataFormatError, match=match + r".*To get it again"):
        load_cifar_c("fog", 1, root=tmp_path)


def test_cifar_c_labels_truncated_or_pickled(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    _write_cifar_c(folder, ["fog"])
    _cut(folder / "labels.npy", 140)
    with pytest.raises(DataFormatError, match=r"labels\.npy: truncated: .*\(15,\).*holds 140 bytes"):
        load_cifar_c("fog", 1, root=tmp_path)
    np.save(folder / "labels.npy", np.array([None] * 15, dtype=object), allow_pickle=True)
    with pytest.raises(DataFormatError, match=r"labels\.npy: holds Python objects"):
        load_cifar_c("fog", 1, root=tmp_path)


def test_cifar101_wrong_label_count_says_how_to_get_it(tmp_path):
    folder = tmp_path / "CIFAR-10.1" / "datasets"
    folder.mkdir(parents=True)
    np.save(folder / "cifar10.1_v6_data.npy", np.zeros((6, 32, 32, 3), np.uint8))
    np.save(folder / "cifar10.1_v6_labels.npy", np.zeros(5, np.int64))
    with pytest.raises(DataFormatError, match=r"cifar10\.1_v6_labels\.npy: expected 6 labels of shape \(6,\), got "
                                              r"shape \(5,\)\. To get it again: .*modestyachts/CIFAR-10\.1"):
        load_cifar101("v6", root=tmp_path)


def test_truncated_cifar_batch_names_the_file_and_its_size(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    _write_cifar_batches(folder, {"test_batch": 4}, "labels", 10)
    _cut(folder / "test_batch", 5000)
    with pytest.raises(DataFormatError, match=r"test_batch: not a readable CIFAR python batch .*holds 5000 bytes"
                                              r".*To get it again: download .*cifar-10-python\.tar\.gz"):
        load_dataset("cifar10", "test", root=tmp_path)


def test_truncated_mirror_tarball_is_named_and_nothing_is_cached(tmp_path):
    tarball = tmp_path / "cifar10-jpeg.tar.xz"
    _write_tarball(tarball, _mirror_entries())
    _cut(tarball, tarball.stat().st_size - 300)
    message = (re.escape(str(tarball)) + rf": not a complete xz-compressed tar archive \(EOFError.*holds "
               rf"{tarball.stat().st_size} bytes \(the course's copy holds 18575848\)\. To get it again")
    with pytest.raises(DataFormatError, match=message):
        load_dataset("cifar10", "test", root=tmp_path, progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    tarball.write_bytes(b"\0" * 512)
    with pytest.raises(DataFormatError, match="not a complete xz-compressed tar archive"):
        load_dataset("cifar10", "test", root=tmp_path, progress=False)


def test_corrupt_jpeg_in_a_mirror_tree_is_named_and_nothing_is_cached(tmp_path):
    entries = _mirror_entries()
    for name, data in entries.items():
        (tmp_path / "cifar10-jpeg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "cifar10-jpeg" / name).write_bytes(data)
    bad = tmp_path / "cifar10-jpeg" / "test" / "dog" / "0000.jpg"
    _cut(bad, 300)
    with pytest.raises(DataFormatError, match=re.escape(str(bad)) + ": cannot decode the image .*holds 300 bytes"):
        load_dataset("cifar10", "test", root=tmp_path, progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_tinyimagenet_broken_files(tmp_path):
    _write_tin(tmp_path)
    folder = tmp_path / "tiny-imagenet-200"
    bad = folder / "train" / WNIDS[1] / "images" / f"{WNIDS[1]}_1.JPEG"
    _cut(bad, 200)
    message = re.escape(str(bad)) + r": cannot decode the image .*holds 200 bytes.*To get it again: download " \
        r".*tiny-imagenet-200\.zip"
    with pytest.raises(DataFormatError, match=message):
        load_tinyimagenet("train", root=tmp_path, progress=False)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DataFormatError, match=r"no labels for the validation images: expected .*val_annotations\.txt"):
        load_tinyimagenet("val", root=tmp_path, progress=False)
    (folder / "wnids.txt").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(DataFormatError, match=r"wnids\.txt: not a text file"):
        load_tinyimagenet("train", root=tmp_path, progress=False)
