"""The paper's backbones behind one builder: ``build_model(name, num_classes, norm)``, ``list_models()``.

CIFAR/Tiny-ImageNet models take float images in [0, 1] without normalisation; the ImageNet models take
normalised images. ``norm`` picks the normalisation: ``bn``, ``ibn``, ``dubn`` or ``dubin`` (see
``augmax_lib.norm``); IBN/DuBIN sit where REFERENCE.md section 3 says, every other layer is BN/DuBN.
"""
from __future__ import annotations

from ..norm import NORMS
from .reference_checkpoint import ReferenceCheckpointError, load_reference_checkpoint, to_reference_state_dict
from .registry import build_model, list_models

__all__ = ["build_model", "list_models", "load_reference_checkpoint", "to_reference_state_dict",
           "ReferenceCheckpointError", "NORMS"]
