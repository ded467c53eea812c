"""augmax_lib: AugMix and AugMax (Wang et al., NeurIPS 2021) as fast, batched PyTorch code."""
import importlib

__version__ = "0.1.0"

# Submodules load on first use, so `import augmax_lib` stays cheap.
_SUBMODULES = ("ops", "augmix", "augmax", "losses", "pgd_attack", "norm", "models", "data",
               "corruptions", "evaluate", "train")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'augmax_lib' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
