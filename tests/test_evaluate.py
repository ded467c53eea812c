"""augmax_lib.evaluate: every metric on models and data whose answer is known by construction, the
spatial transform against PIL, mCE against hand-computed values, provenance against hashlib."""
from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from _planted import PlantedPixelModel, labels_with_errors, planted_images
from PIL import Image
from torch import nn

from augmax_lib.data import CIFAR10_CLASSES, ImageSet
from augmax_lib.evaluate import (
    ALEXNET_ERR,
    EvalOptions,
    cifar101_accuracy,
    clean_accuracy,
    corruption_accuracy,
    corruption_errors,
    eval_mode,
    evaluate_model,
    mce,
    pgd_accuracy,
    robust_accuracy,
    sample_spatial_params,
    sha256_file,
    spatial_attack_accuracy,
    spatial_transform,
    table_to_dict,
    to_jsonable,
    write_json_atomic,
)
from augmax_lib.norm import DuBN


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("AUGMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUGMAX_DATA", raising=False)


def _planted_set(n: int, wrong: int, seed: int = 0, name: str = "planted") -> ImageSet:
    rng = np.random.default_rng(seed)
    seen = rng.integers(0, 10, n)
    images = planted_images(seen, rng)
    labels = labels_with_errors(seen, wrong)
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels),
                    list(CIFAR10_CLASSES), "planted", name)


# ------------------------------------------------------------------------------------------ eval mode


class _Probe(nn.Module):
    """Records the mode and the DuBN route seen during forward."""

    def __init__(self):
        super().__init__()
        self.norm = DuBN(3)
        self.drop = nn.Dropout(0.5)
        self.seen = []

    def forward(self, x):
        self.seen.append((self.training, self.drop.training, self.norm.route))
        return self.norm(x).mean((2, 3)) @ torch.ones(3, 10)


def test_metrics_run_in_eval_mode_route_m_and_restore_the_model():
    model = _Probe().train()
    model.norm.route = "A"
    model.drop.eval()  # a mixed state must come back exactly
    data = _planted_set(12, 0)
    clean_accuracy(model, data, batch_size=5, progress=False)
    assert model.seen and all(s == (False, False, "M") for s in model.seen)
    assert model.training and not model.drop.training and model.norm.route == "A"
    with pytest.raises(RuntimeError):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert model.training and model.norm.route == "A"


class _NumericsProbe(nn.Module):
    """Records whether autocast was on, its dtype and the input's memory format; one linear layer on the mean."""

    def __init__(self):
        super().__init__()
        self.norm = DuBN(3)
        self.fc = nn.Linear(3, 10)
        self.seen = []

    def forward(self, x):
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
                          x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous(),
                          self.training, self.norm.route))
        return self.fc(self.norm(x).mean((2, 3)))


def test_evaluation_is_fp32_unless_numerics_opt_in():
    from augmax_lib.evaluate.inference import forward, numerics_record, with_numerics

    data = _planted_set(8, 0)
    model = _NumericsProbe()
    assert with_numerics(model) is model  # fp32, no channels-last, no compile: the model itself
    clean_accuracy(model, data, batch_size=4, progress=False)
    assert model.seen and all(not on and not cl for on, _, cl, _, _ in model.seen)
    assert numerics_record() == {"precision": "fp32", "channels_last": False, "compile": False}

    fast = with_numerics(_NumericsProbe().train(), "bf16", channels_last=True)
    fast.model.norm.route = "A"
    clean_accuracy(fast, data, batch_size=4, progress=False)
    # Autocast to bf16 on the CPU, channels-last input, and still eval mode with route "M" inside the wrapper.
    assert fast.model.seen and all(s == (True, torch.bfloat16, True, False, "M") for s in fast.model.seen)
    assert fast.model.training and fast.model.norm.route == "A"
    assert forward(fast, data.images[:4], torch.device("cpu")).dtype == torch.float32
    assert numerics_record("bf16", True) == {"precision": "bf16", "channels_last": True, "compile": False}
    with pytest.raises(ValueError, match="precision"):
        with_numerics(model, "fp64")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_evaluation_is_fp32_unless_numerics_opt_in():
    from augmax_lib.evaluate.inference import with_numerics

    seen = []
    model = nn.Sequential(nn.Conv2d(3, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).cuda()
    model[0].register_forward_hook(lambda m, i, o: seen.append((torch.is_autocast_enabled("cuda"), o.dtype)))
    data = _planted_set(8, 0)
    clean_accuracy(model, data, batch_size=4, progress=False)
    assert seen and all(s == (False, torch.float32) for s in seen)
    seen.clear()
    clean_accuracy(with_numerics(model, "bf16", channels_last=True), data, batch_size=4, progress=False)
    assert seen and all(s == (True, torch.bfloat16) for s in seen)


# ---------------------------------------------------------------------------------- clean accuracy


def test_clean_accuracy_is_the_known_fraction_for_any_batch_size():
    data = _planted_set(50, wrong=13)
    model = PlantedPixelModel()
    for batch in (7, 50, 64):
        assert clean_accuracy(model, data, batch_size=batch, progress=False) == pytest.approx(37 / 50, abs=1e-12)


def test_clean_accuracy_reads_lazy_datasets_and_tensor_pairs():
    data = _planted_set(20, wrong=4)

    class Lazy(torch.utils.data.Dataset):
        def __len__(self):
            return len(data)

        def __getitem__(self, i):
            return data.images[i], int(data.labels[i])

    model = PlantedPixelModel()
    from augmax_lib.evaluate.inference import predict

    preds, labels = predict(model, Lazy(), batch_size=6, progress=False, num_workers=0)
    assert labels.tolist() == data.labels.tolist() and (preds == labels).sum() == 16
    assert clean_accuracy(model, (data.images, data.labels), batch_size=3, progress=False) == pytest.approx(0.8)


# ---------------------------------------------------------------------------- corruption accuracy


def test_corruption_table_ra_and_ce_match_planted_errors():
    n = 20
    wrong = {("fog", s): s for s in range(1, 6)} | {("snow", s): 2 * s for s in range(1, 6)}

    def source(c, s):
        return _planted_set(n, wrong[(c, s)], seed=s)

    table = corruption_accuracy(PlantedPixelModel(), corruptions=["fog", "snow"], source=source, batch_size=8,
                                progress=False)
    assert list(table.index) == ["fog", "snow"] and list(table.columns) == [1, 2, 3, 4, 5]
    for (c, s), k in wrong.items():
        assert table.loc[c, s] == pytest.approx(1 - k / n)
    ce = corruption_errors(table)
    assert ce["fog"] == pytest.approx(np.mean([s / n for s in range(1, 6)]))
    assert ce["snow"] == pytest.approx(np.mean([2 * s / n for s in range(1, 6)]))
    assert robust_accuracy(table) == pytest.approx(1 - (ce["fog"] + ce["snow"]) / 2)
    as_dict = table_to_dict(table)
    assert as_dict["snow"]["5"] == pytest.approx(0.5) and json.loads(json.dumps(as_dict)) == as_dict


def test_corruption_accuracy_reads_cifar_c_files(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    rng = np.random.default_rng(0)
    seen = rng.integers(0, 10, 8)
    labels = labels_with_errors(seen, 0)
    np.save(folder / "labels.npy", np.tile(labels, 5))
    for name, shift in (("fog", 0), ("frost", 1)):
        # Severity s shows the wrong class on its first s - 1 + shift images.
        blocks = [planted_images(labels_with_errors(seen, s - 1 + shift), rng) for s in range(1, 6)]
        np.save(folder / f"{name}.npy", np.concatenate(blocks))
    with pytest.warns(UserWarning):
        table = corruption_accuracy(PlantedPixelModel(), "cifar10", tmp_path, ["fog", "frost"], progress=False)
    for s in range(1, 6):
        assert table.loc["fog", s] == pytest.approx(1 - (s - 1) / 8)
        assert table.loc["frost", s] == pytest.approx(1 - s / 8)


def test_mce_against_alexnet_and_a_baseline():
    # Errors at exactly r times AlexNet's: mCE = r.
    r = 0.6
    acc = {c: [1 - r * e] * 5 for c, e in ALEXNET_ERR.items()}
    table = pd.DataFrame.from_dict(acc, orient="index", columns=[1, 2, 3, 4, 5])
    assert mce(table) == pytest.approx(r)
    assert len(ALEXNET_ERR) == 15 and ALEXNET_ERR["gaussian_noise"] == 0.886428
    assert ALEXNET_ERR["jpeg_compression"] == 0.6065
    # A model against itself reads 1.0 (the paper's Normal = 100.00); against a hand-made baseline:
    base = pd.DataFrame({1: [0.5, 0.8], 2: [0.5, 0.8], 3: [0.5, 0.8], 4: [0.5, 0.8], 5: [0.5, 0.8]},
                        index=["fog", "snow"])
    model = pd.DataFrame({1: [0.9, 0.9], 2: [0.7, 0.9], 3: [0.8, 0.9], 4: [0.8, 0.9], 5: [0.8, 0.9]},
                         index=["fog", "snow"])
    assert mce(base, base) == pytest.approx(1.0)
    assert mce(model, base) == pytest.approx(((1 - 0.8) / 0.5 + (1 - 0.9) / 0.2) / 2)
    assert mce(model, {"fog": 0.4, "snow": 0.1}) == pytest.approx((0.2 / 0.4 + 0.1 / 0.1) / 2)
    with pytest.raises(ValueError, match="snow"):
        mce(model, {"fog": 0.4})


def test_cifar101_accuracy_per_version(tmp_path):
    folder = tmp_path / "CIFAR-10.1" / "datasets"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for version, n, wrong in (("v4", 2021, 21), ("v6", 2000, 500)):
        seen = rng.integers(0, 10, n)
        np.save(folder / f"cifar10.1_{version}_data.npy", planted_images(seen, rng))
        np.save(folder / f"cifar10.1_{version}_labels.npy", labels_with_errors(seen, wrong))
    got = cifar101_accuracy(PlantedPixelModel(), tmp_path, batch_size=1000, progress=False)
    assert got == pytest.approx({"v4": 2000 / 2021, "v6": 0.75})


# --------------------------------------------------------------------------------------- spatial


def test_spatial_draws_follow_the_reference_distribution():
    angles, shifts = sample_spatial_params(20000, k=2, seed=3)
    assert angles.shape == (2, 20000) and shifts.shape == (2, 20000, 2) and shifts.dtype == torch.int64
    assert angles.abs().max() <= 30 and abs(float(angles.mean())) < 0.5
    assert float(angles.std()) == pytest.approx(30 / math.sqrt(3), rel=0.02)  # uniform on [-30, 30]
    counts = torch.bincount((shifts + 3).flatten(), minlength=7).double() / shifts.numel()
    # round(U(-3, 3)): 0 and +-1, +-2 have probability 1/6, +-3 have 1/12.
    expected = torch.tensor([1, 2, 2, 2, 2, 2, 1], dtype=torch.double) / 12
    assert torch.allclose(counts, expected, atol=0.01)
    again = sample_spatial_params(20000, k=2, seed=3)
    assert torch.equal(again[0], angles) and torch.equal(again[1], shifts)


def test_spatial_transform_matches_pil():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float()
    for angle in (-30.0, -12.5, 7.0, 30.0):
        ref = np.asarray(Image.fromarray(img).rotate(angle, resample=Image.NEAREST))
        out = spatial_transform(x, torch.tensor([angle]), torch.tensor([[0, 0]]))[0].permute(1, 2, 0).numpy()
        assert (out.round().astype(np.uint8) != ref).any(-1).mean() < 0.01, angle
    out = spatial_transform(x, torch.tensor([0.0]), torch.tensor([[2, -3]]))[0].permute(1, 2, 0).numpy()
    ref = np.zeros_like(img)
    ref[:29, 2:] = img[3:, :30]  # content moves 2 px right and 3 px up, black fills in
    assert np.array_equal(out.astype(np.uint8), ref)


class _BlockColumnModel(nn.Module):
    """Reads the column of a bright 2x2 block (centred in the image) and answers as a table says:
    shift 0: p = (.5, .25, .25), right: p = (.45, .55, 0), left: p = (.34, .33, .33). Label 0."""

    def forward(self, x):
        col = x.sum((1, 2)).argmax(1) - 15
        probs = torch.tensor([[0.5, 0.25, 0.25], [0.45, 0.55, 1e-6], [0.34, 0.33, 0.33]])
        which = torch.where(col == 0, 0, torch.where(col > 0, 1, 2))
        return probs[which].log()


def test_spatial_attack_selection_rules_on_a_known_model():
    # The 2x2 block at the centre survives any rotation within 30 degrees (nearest neighbour) and moves
    # with the shift, so the model sees dx. Worst loss is a left shift (correct), then a right shift
    # (wrong): the two rules disagree exactly where a draw went left and another went right.
    n, k = 300, 4
    x = torch.zeros(n, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 15:17, 15:17] = 255
    data = ImageSet(x, torch.zeros(n, dtype=torch.long), ["a", "b", "c"], "t", "t")
    got = spatial_attack_accuracy(_BlockColumnModel(), data, k=k, seed=7, batch_size=64, progress=False)
    _, shifts = sample_spatial_params(n, k, seed=7)
    dx = shifts[..., 0]
    any_left, any_right = (dx < 0).any(0), (dx > 0).any(0)
    expect_loss = (any_left | ~any_right).double().mean()
    expect_any = (~any_right).double().mean()
    assert got["worst_loss"] == pytest.approx(float(expect_loss))
    assert got["any_misclassified"] == pytest.approx(float(expect_any))
    assert got["mean_draw"] == pytest.approx(float((dx <= 0).double().mean()))
    assert got["worst_loss"] > got["any_misclassified"]
    again = spatial_attack_accuracy(_BlockColumnModel(), data, k=k, seed=7, batch_size=300, progress=False)
    assert again == got


def test_spatial_attack_on_an_invariant_model_changes_nothing():
    data = _planted_set(30, wrong=6)

    class Constant(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 10).index_fill_(1, torch.tensor([3]), 1.0)

    expected = float((data.labels == 3).double().mean())
    got = spatial_attack_accuracy(Constant(), data, k=3, progress=False)
    assert got["worst_loss"] == got["any_misclassified"] == pytest.approx(expected)


# ------------------------------------------------------------------------------------------- PGD


class _Linear1Pixel(nn.Module):
    """Two classes decided by one pixel: class 0 iff pixel < 0.5."""

    def forward(self, x):
        v = x[:, 0, 0, 0] - 0.5
        return torch.stack([-10 * v, 10 * v], 1)


def test_pgd_flips_exactly_the_images_within_eps():
    # Class 0 images at 0.5 - margin: PGD with eps = 0.05 flips those with margin < eps only.
    margins = torch.tensor([0.01, 0.02, 0.03, 0.04, 0.06, 0.08, 0.1, 0.2])
    x = torch.full((8, 3, 4, 4), 0.3)
    x[:, 0, 0, 0] = 0.5 - margins
    data = (x, torch.zeros(8, dtype=torch.long))
    acc = pgd_accuracy(_Linear1Pixel(), data, eps=0.05, alpha=0.01, steps=10, progress=False)
    assert acc == pytest.approx(0.5)
    assert pgd_accuracy(_Linear1Pixel(), data, eps=0.0, alpha=0.01, steps=3, progress=False) == 1.0
    no_start = pgd_accuracy(_Linear1Pixel(), data, eps=0.05, alpha=0.01, steps=10, random_start=False,
                            progress=False)
    assert no_start == pytest.approx(0.5)


def test_pgd_stays_in_the_eps_ball_and_the_image_range():
    seen = []

    class Spy(_Linear1Pixel):
        def forward(self, x):
            seen.append(x.detach().clone())
            return super().forward(x)

    x = torch.rand(6, 3, 4, 4)
    pgd_accuracy(Spy(), (x, torch.zeros(6, dtype=torch.long)), eps=0.1, alpha=0.07, steps=4, progress=False)
    for xa in seen:
        assert (xa - x).abs().max() <= 0.1 + 1e-6 and xa.min() >= 0 and xa.max() <= 1


# ---------------------------------------------------------------------------------- whole protocol


def test_evaluate_model_reports_skips_with_where_and_how(tmp_path):
    data = _planted_set(40, wrong=10)
    results = evaluate_model(PlantedPixelModel(), "cifar10", tmp_path, EvalOptions(spatial_k=2, progress=False),
                             test_set=data)
    assert results["metrics"]["sa"] == pytest.approx(0.75)
    assert "CIFAR-10-C" in results["skipped"]["ra"] and "zenodo.org" in results["skipped"]["ra"]
    assert "modestyachts/CIFAR-10.1" in results["skipped"]["cifar101_v4"]
    assert results["metrics"]["spatial"]["k"] == 2 and results["protocol"]["norm_route"] == "M"
    json.dumps(results, allow_nan=False)
    with pytest.raises(ValueError, match="skip"):
        evaluate_model(PlantedPixelModel(), "cifar10", tmp_path, EvalOptions(skip=["nope"]), test_set=data)


def test_evaluate_model_generates_corruptions_for_the_synthetic_set():
    data = _planted_set(10, wrong=0)
    results = evaluate_model(PlantedPixelModel(), "synthetic", options=EvalOptions(
        corruptions=["contrast", "fog"], skip=["spatial"], progress=False), test_set=data)
    m = results["metrics"]
    assert "generated on the fly" in m["corruption_source"]
    table = pd.DataFrame(m["corruption_accuracy"]).T
    assert m["ra"] == pytest.approx(float(table.values.mean()))
    assert set(m["corruption_error"]) == {"contrast", "fog"}


# ------------------------------------------------------------------------------------- provenance


def test_sha256_json_and_atomic_write(tmp_path):
    blob = tmp_path / "ckpt.pth"
    blob.write_bytes(b"abc" * 1000)
    assert sha256_file(blob) == hashlib.sha256(b"abc" * 1000).hexdigest()
    obj = {"a": np.float32(0.5), "b": torch.tensor([1, 2]), "c": float("nan"), 3: (1, np.int64(2)),
           "d": pd.Series({"x": 1.0})}
    assert to_jsonable(obj) == {"a": 0.5, "b": [1, 2], "c": None, "3": [1, 2], "d": {"x": 1.0}}
    path = write_json_atomic(tmp_path / "out" / "results.json", obj)
    assert json.loads(path.read_text())["b"] == [1, 2]
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]
