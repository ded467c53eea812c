"""augmax_lib.course.shared_corruptions: evaluations share generated corrupted sets, with identical results."""
import pytest
import torch
from torch import nn

from augmax_lib.course.shared_corruptions import SharedCorruptions
from augmax_lib.data import make_synthetic
from augmax_lib.evaluate import evaluate_model, suite


class Tiny(nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) * 10)


def _evaluate(model, test):
    return evaluate_model(model, "synthetic", test_set=test, corruptions=["gaussian_noise", "contrast"],
                          skip=("spatial", "cifar101"), generate_corruptions=True, progress=False)["metrics"]


def test_results_equal_uncached_and_sets_are_made_once():
    test = make_synthetic(40, seed=9)
    models = [Tiny(1), Tiny(2)]
    plain = [_evaluate(m, test) for m in models]
    shared = SharedCorruptions()
    with shared:
        first = _evaluate(models[0], test)
    with shared:  # a later cell: the sets are still there
        second = _evaluate(models[1], test.subset(torch.arange(40)))  # same images, another object
    assert first["corruption_accuracy"] == plain[0]["corruption_accuracy"]
    assert second["corruption_accuracy"] == plain[1]["corruption_accuracy"]
    assert (shared.made, shared.reused) == (10, 10)
    assert suite.generated_corruptions.__module__ == "augmax_lib.evaluate.corruption"  # restored


def test_other_images_or_settings_are_not_confused_and_memory_is_capped():
    a, b = make_synthetic(20, seed=1), make_synthetic(20, seed=2)
    shared = SharedCorruptions(max_bytes=20 * 3 * 32 * 32 * 3)  # room for three sets
    with shared:
        _evaluate(Tiny(1), a)
        _evaluate(Tiny(1), b)
    assert shared.made == 20 and shared.reused == 0
    assert len(shared.sets) == 3 and shared.kept_bytes == 3 * 20 * 3 * 32 * 32
    with pytest.raises(ValueError, match="max_bytes"):
        SharedCorruptions(-1)


def test_nested_use_is_refused_and_the_generator_comes_back_after_errors():
    shared = SharedCorruptions()
    with pytest.raises(RuntimeError, match="already active"):
        with shared:
            with shared:
                pass
    assert suite.generated_corruptions.__module__ == "augmax_lib.evaluate.corruption"
