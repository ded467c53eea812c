"""augmax_lib.evaluate.CorruptionCache: evaluations share generated corrupted sets, with identical results,
passed explicitly to the evaluation (nothing of the library is patched)."""
import pytest
import torch
from torch import nn

from augmax_lib.data import make_synthetic
from augmax_lib.evaluate import CorruptionCache, EvalOptions, evaluate_model, suite

OPTIONS = EvalOptions(corruptions=("gaussian_noise", "contrast"), skip=("spatial", "cifar101"),
                      generate_corruptions=True, progress=False)


class Tiny(nn.Module):
    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.fc = nn.Linear(48, 10)

    def forward(self, x):
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 4).flatten(1) * 10)


def _evaluate(model, test, cache=None):
    return evaluate_model(model, "synthetic", options=OPTIONS, test_set=test, cache=cache)["metrics"]


def test_results_equal_uncached_and_sets_are_made_once():
    test = make_synthetic(40, seed=9)
    models = [Tiny(1), Tiny(2)]
    plain = [_evaluate(m, test) for m in models]
    cache = CorruptionCache()
    first = _evaluate(models[0], test, cache)
    second = _evaluate(models[1], test.subset(torch.arange(40)), cache)  # same images, another object
    assert first["corruption_accuracy"] == plain[0]["corruption_accuracy"]
    assert second["corruption_accuracy"] == plain[1]["corruption_accuracy"]
    assert (cache.made, cache.reused) == (10, 10)
    assert suite.generated_corruptions.__module__ == "augmax_lib.evaluate.corruption"  # never replaced


def test_other_images_or_settings_are_not_confused_and_memory_is_capped():
    a, b = make_synthetic(20, seed=1), make_synthetic(20, seed=2)
    cache = CorruptionCache(max_bytes=20 * 3 * 32 * 32 * 3)  # room for three sets
    _evaluate(Tiny(1), a, cache)
    _evaluate(Tiny(1), b, cache)
    assert cache.made == 20 and cache.reused == 0
    assert len(cache.sets) == 3 and cache.kept_bytes == 3 * 20 * 3 * 32 * 32
    # Another seed of the random draws is another set, not a cached one.
    evaluate_model(Tiny(1), "synthetic", options=OPTIONS.replace(seed=1), test_set=a, cache=cache)
    assert cache.reused == 0
    with pytest.raises(ValueError, match="max_bytes"):
        CorruptionCache(-1)
