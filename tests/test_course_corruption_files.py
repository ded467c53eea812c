"""augmax_lib.course.corruption_files: rounding vs truncation, and generated vs published -C files."""
import numpy as np
import pytest
import torch
from torch import nn

from augmax_lib.course.corruption_files import generated_vs_published, quantisation_effect, quantise
from augmax_lib.data import make_synthetic
from augmax_lib.evaluate import generated_corruptions


class Constant(nn.Module):
    def __init__(self, c=2):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10))
        with torch.no_grad():
            self.bias[c] = 1.0

    def forward(self, x):
        return self.bias.expand(x.shape[0], -1)


def test_quantise_matches_numpy_rint_and_uint8_cast():
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    scaled = x.numpy() * 255
    assert np.array_equal(quantise(x, "round").numpy(), np.rint(scaled).astype(np.uint8))
    assert np.array_equal(quantise(x, "truncate").numpy(), scaled.astype(np.uint8))  # what np.uint8(x) does
    with pytest.raises(ValueError, match="rule"):
        quantise(x, "ceil")
    with pytest.raises(TypeError, match="float"):
        quantise((x * 255).to(torch.uint8), "round")


def test_quantisation_effect_of_a_constant_model_is_nil_and_rounding_is_brighter():
    data = make_synthetic(20, seed=4)
    table = quantisation_effect(Constant(2), data, ["gaussian_noise", "fog"], (1, 5), progress=False)
    share = float((data.labels == 2).double().mean())
    assert list(table.index) == [("gaussian_noise", 1), ("gaussian_noise", 5), ("fog", 1), ("fog", 5)]
    assert np.allclose(table["acc_round"], share) and np.allclose(table["acc_truncate"], share)
    assert (table["flipped"] == 0).all()
    # Rounding and truncation differ by one level on about half the pixels of a continuous image.
    assert ((table["mean_level_gap"] > 0.3) & (table["mean_level_gap"] < 0.7)).all()


def _write_published(root, test, corruption, shift):
    """A CIFAR-10-C style file: our generated images of every severity, ``shift`` levels brighter."""
    folder = root / "CIFAR-10-C"
    folder.mkdir(parents=True, exist_ok=True)
    source = generated_corruptions(test, seed=0)
    parts = []
    for s in range(1, 6):
        x = source(corruption, s).images.to(torch.int16) + shift
        parts.append(x.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy())
    np.save(folder / f"{corruption}.npy", np.concatenate(parts))
    np.save(folder / "labels.npy", np.tile(test.labels.numpy(), 5))
    return [np.concatenate(parts)[i * len(test):(i + 1) * len(test)] for i in range(5)]


@pytest.mark.filterwarnings("ignore:.*the official set has")
def test_generated_vs_published_reads_the_files_image_for_image(tmp_path):
    test = make_synthetic(16, seed=5)
    model = Constant(1)
    assert generated_vs_published(model, test, "cifar10", tmp_path, progress=False) is None
    published = _write_published(tmp_path, test, "contrast", 2)
    table = generated_vs_published(model, test, "cifar10", tmp_path, ["contrast", "fog"], progress=False)
    assert list(table.index.get_level_values(0).unique()) == ["contrast"]  # fog has no file: left out
    source = generated_corruptions(test, seed=0)
    for s in range(1, 6):
        gen = source("contrast", s).images.permute(0, 2, 3, 1).numpy().astype(np.float64)
        expected = (published[s - 1].astype(np.float64) - gen).mean()
        assert table.loc[("contrast", s), "mean_level_diff"] == pytest.approx(expected)
    assert (table["agree"] == 1.0).all()
    share = float((test.labels == 1).double().mean())
    assert np.allclose(table["acc_published"], share) and np.allclose(table["acc_generated"], share)


@pytest.mark.filterwarnings("ignore:.*the official set has")
def test_published_files_out_of_test_order_are_refused(tmp_path):
    test = make_synthetic(16, seed=5)
    _write_published(tmp_path, test, "contrast", 0)
    labels = np.load(tmp_path / "CIFAR-10-C" / "labels.npy")
    np.save(tmp_path / "CIFAR-10-C" / "labels.npy", np.roll(labels.reshape(5, -1), 1, axis=1).reshape(-1))
    with pytest.raises(ValueError, match="test-set order"):
        generated_vs_published(Constant(), test, "cifar10", tmp_path, ["contrast"], progress=False)


def test_quantisation_effect_of_several_models_shares_the_images():
    data = make_synthetic(12, seed=6)
    table = quantisation_effect({"a": Constant(2), "b": Constant(4)}, data, ["contrast"], (2,), progress=False)
    assert list(table.index) == [("a", "contrast", 2), ("b", "contrast", 2)]
    assert table.loc[("b", "contrast", 2), "acc_round"] == pytest.approx(float((data.labels == 4).double().mean()))
    assert table["mean_level_gap"].nunique() == 1
    with pytest.raises(ValueError, match="model"):
        quantisation_effect({}, data, ["contrast"], (2,), progress=False)
