"""augmax_lib.course.shifts: the worst-of-k spatial curve and where CIFAR-10.1 is (or should be)."""
import numpy as np
import pytest
import torch
from torch import nn

from augmax_lib.course.shifts import cifar101_status, worst_of_k_curve, worst_spatial_images
from augmax_lib.data import make_synthetic
from augmax_lib.evaluate import spatial_attack_accuracy


class Constant(nn.Module):
    """Always predicts class ``c``: any transform leaves its accuracy at the share of class c."""

    def __init__(self, c=3, classes=10):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(classes))
        with torch.no_grad():
            self.bias[c] = 5.0

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1)


class MeanBrightness(nn.Module):
    """Logits from a few image statistics: sensitive to rotations and shifts (black fill changes them)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 16, 10)

    def forward(self, x):
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)[:, :48] * 10)


def test_constant_model_is_unaffected_at_every_k():
    data = make_synthetic(60, seed=1)
    curve = worst_of_k_curve(Constant(3), data, k=4, progress=False)
    share = float((data.labels == 3).double().mean())
    assert list(curve.index) == [1, 2, 3, 4]
    assert np.allclose(curve["worst_loss"], share) and np.allclose(curve["any_misclassified"], share)


def test_curve_is_nested_and_ends_at_the_library_attack():
    data = make_synthetic(80, seed=2)
    model = MeanBrightness()
    curve = worst_of_k_curve(model, data, k=5, seed=7, batch_size=32, progress=False)
    assert (np.diff(curve["any_misclassified"].to_numpy()) <= 1e-12).all()
    assert (curve["any_misclassified"] <= curve["worst_loss"] + 1e-12).all()
    ref = spatial_attack_accuracy(model, data, k=5, seed=7, progress=False)
    assert curve.loc[5, "worst_loss"] == pytest.approx(ref["worst_loss"])
    assert curve.loc[5, "any_misclassified"] == pytest.approx(ref["any_misclassified"])
    # One draw: the mean over single draws of the library's attack averages k such columns.
    assert 0.0 <= curve.loc[1, "worst_loss"] <= 1.0


def test_worst_images_stay_within_the_attack_budget():
    data = make_synthetic(6, seed=3)
    out = worst_spatial_images(MeanBrightness(), data.images, data.labels, k=4, seed=1)
    assert out["images"].shape == (6, 3, 32, 32) and out["images"].dtype == torch.float32
    assert (out["degrees"].abs() <= 30).all() and (out["shifts"].abs() <= 3).all()
    assert out["pred"].shape == (6,) and out["clean_pred"].shape == (6,)


def test_bad_input_and_empty_sets():
    with pytest.raises(ValueError, match="k"):
        worst_of_k_curve(Constant(), make_synthetic(4), k=0)
    with pytest.raises(ValueError, match="empty"):
        worst_of_k_curve(Constant(), (torch.zeros(0, 3, 8, 8, dtype=torch.uint8), torch.zeros(0, dtype=torch.long)))


def test_cifar101_status_finds_present_files_and_says_where_missing_ones_go(tmp_path):
    folder = tmp_path / "CIFAR-10.1" / "datasets"
    folder.mkdir(parents=True)
    np.save(folder / "cifar10.1_v6_data.npy", np.zeros((2, 32, 32, 3), np.uint8))
    np.save(folder / "cifar10.1_v6_labels.npy", np.zeros(2, np.int64))
    status = cifar101_status(tmp_path)
    assert status["v6"]["present"] and status["v6"]["folder"] == str(folder)
    assert not status["v4"]["present"]
    assert status["v4"]["folder"] == str(folder)
    assert status["v4"]["files"] == ["cifar10.1_v4_data.npy", "cifar10.1_v4_labels.npy"]
    assert "modestyachts/CIFAR-10.1" in status["v4"]["url"]
