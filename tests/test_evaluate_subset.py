"""Evaluation on a paired, class-balanced subset: the indices, the standard errors (numpy formulas) and
SA/RA on planted data whose per-image answers are known."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _planted import PlantedPixelModel, planted_images

from augmax_lib.data import CIFAR10_CLASSES, ImageSet
from augmax_lib.evaluate import EvalOptions, balanced_indices, evaluate_model, standard_error


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("AUGMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUGMAX_DATA", raising=False)


@pytest.mark.parametrize("n", [100, 105, 7])
def test_balanced_indices_spread_over_classes(n):
    labels = np.repeat(np.arange(10), 50)
    idx = balanced_indices(torch.from_numpy(labels), n, seed=3).numpy()
    assert len(idx) == n and len(np.unique(idx)) == n and np.all(np.diff(idx) > 0)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == n


def test_balanced_indices_fill_from_other_classes_when_one_is_small():
    labels = np.concatenate([np.zeros(3, int), np.repeat(np.arange(1, 5), 40)])
    idx = balanced_indices(torch.from_numpy(labels), 50, seed=0).numpy()
    counts = np.bincount(labels[idx], minlength=5)
    assert counts[0] == 3 and counts[1:].sum() == 47 and counts[1:].max() - counts[1:].min() <= 1


def test_balanced_indices_are_seeded_and_the_whole_set_when_n_is_large():
    labels = torch.arange(200) % 10
    assert torch.equal(balanced_indices(labels, 40, 1), balanced_indices(labels, 40, 1))
    assert not torch.equal(balanced_indices(labels, 40, 1), balanced_indices(labels, 40, 2))
    assert torch.equal(balanced_indices(labels, 500, 0), torch.arange(200))
    with pytest.raises(ValueError, match="images_per_set"):
        balanced_indices(labels, 0)


def test_standard_error_against_the_formula():
    rng = np.random.default_rng(0)
    correct = rng.random((6, 50)) < 0.7
    per_image = correct.mean(0)
    expected = per_image.std(ddof=1) / math.sqrt(50) * math.sqrt(1 - 50 / 400)
    assert standard_error(torch.from_numpy(correct), 400) == pytest.approx(expected, rel=1e-12)
    assert standard_error(torch.from_numpy(correct[0]), None) == pytest.approx(
        correct[0].std(ddof=1) / math.sqrt(50), rel=1e-12)
    assert standard_error(torch.from_numpy(correct[0]), 50) == 0.0


def test_subset_evaluation_is_paired_with_the_published_files(tmp_path):
    n_test, n = 300, 60
    rng = np.random.default_rng(1)
    seen = rng.integers(0, 10, n_test)
    wrong_clean = rng.random(n_test) < 0.3                 # images the model gets wrong on the clean set
    labels = np.where(wrong_clean, (seen + 1) % 10, seen)
    test = ImageSet(torch.from_numpy(planted_images(seen, rng)).permute(0, 3, 1, 2).contiguous(),
                    torch.from_numpy(labels), list(CIFAR10_CLASSES), "planted", "test")
    # CIFAR-10-C layout: severity s shows the wrong class on the images whose index i has i % 5 < s.
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    np.save(folder / "labels.npy", np.tile(labels, 5))
    i = np.arange(n_test)
    blocks = [planted_images(np.where(i % 5 < s, (labels + 1) % 10, labels), rng) for s in range(1, 6)]
    np.save(folder / "fog.npy", np.concatenate(blocks))

    with pytest.warns(UserWarning):
        out = evaluate_model(PlantedPixelModel(), "cifar10", tmp_path, EvalOptions(
            corruptions=["fog"], skip=("cifar101", "spatial"), images_per_set=n, subset_seed=5, progress=False),
            test_set=test)
    idx = np.array(out["protocol"]["subset_indices"])
    assert len(idx) == n == out["images_per_set"] and out["num_test_images"] == n_test
    assert np.bincount(labels[idx], minlength=10).max() - np.bincount(labels[idx], minlength=10).min() <= 1
    m = out["metrics"]
    assert m["sa"] == pytest.approx(1 - wrong_clean[idx].mean())
    per_sev = [(idx % 5 >= s).mean() for s in range(1, 6)]
    assert m["ra"] == pytest.approx(np.mean(per_sev))
    correct = np.stack([idx % 5 >= s for s in range(1, 6)])
    expected_se = correct.mean(0).std(ddof=1) / math.sqrt(n) * math.sqrt(1 - n / n_test)
    assert m["ra_se"] == pytest.approx(expected_se)


def test_subset_of_generated_corruptions_and_spatial_attack():
    from augmax_lib.data import load_dataset

    with pytest.warns(UserWarning):
        test = load_dataset("synthetic", "test", n=120)
    out = evaluate_model(PlantedPixelModel(), "synthetic", options=EvalOptions(
        corruptions=["brightness"], skip=("cifar101",), images_per_set=30, spatial_k=2, progress=False), test_set=test)
    m = out["metrics"]
    assert out["images_per_set"] == 30 and m["spatial"]["num_images"] == 30
    assert m["corruption_accuracy"]["brightness"].keys() == {"1", "2", "3", "4", "5"}
    assert 0 <= m["sa_se"] and 0 <= m["ra_se"] and 0 <= m["spatial"]["worst_loss_se"]
