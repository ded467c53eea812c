"""Registry of the backbones: ``build_model`` and ``list_models``."""
from __future__ import annotations

import inspect

from torch import nn

from ..norm import NORMS
from .resnet_cifar import resnet18
from .resnet_imagenet import resnet18_imagenet, resnet50_imagenet
from .resnext import resnext29
from .wrn import wrn40_2

__all__ = ["build_model", "list_models"]

_BUILDERS = {
    "resnet18": resnet18,
    "wrn40_2": wrn40_2,
    "resnext29": resnext29,
    "resnet18_imagenet": resnet18_imagenet,
    "resnet50_imagenet": resnet50_imagenet,
}


def list_models() -> list[str]:
    """Names accepted by ``build_model``."""
    return list(_BUILDERS)


def build_model(name: str, num_classes: int, norm: str = "bn", **kwargs) -> nn.Module:
    """Build backbone ``name`` with a ``num_classes``-way head and norm layers of kind ``norm``.

    Extra keywords go to the family's builder: ``width`` (base channel count, to build narrow models for CPU
    runs) for every family, ``stem_stride`` (2 for 64x64 Tiny-ImageNet) for the CIFAR families, ``drop_rate``
    for ``wrn40_2``, ``cardinality``/``base_width`` for ``resnext29``.
    """
    if name not in _BUILDERS:
        raise ValueError(f"name: unknown model {name!r}; expected one of {', '.join(_BUILDERS)}")
    if norm not in NORMS:
        raise ValueError(f"norm: unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    builder = _BUILDERS[name]
    accepted = [p for p in inspect.signature(builder).parameters if p not in ("num_classes", "norm")]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"build_model({name!r}): unknown keyword(s) {', '.join(unknown)}; "
                        f"this model accepts {', '.join(accepted)}")
    return builder(num_classes=num_classes, norm=norm, **kwargs)
