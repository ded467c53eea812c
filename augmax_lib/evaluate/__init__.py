"""Robustness evaluation: SA, corruption accuracy (RA, CE, mCE), CIFAR-10.1, the spatial attack, PGD.

Every metric puts the model in eval mode with norm route "M" and restores it afterwards; accuracies
are fractions in [0, 1] (mCE too: 1.0 = as good as the anchor), and results are plain JSON-ready values.
"""
from __future__ import annotations

from .accuracy import cifar101_accuracy, clean_accuracy
from .corruption import (
    ALEXNET_ERR,
    REFERENCE_TIN_RESNET18_CE,
    corruption_accuracy,
    corruption_errors,
    generated_corruptions,
    mce,
    robust_accuracy,
    table_to_dict,
)
from .corruption_cache import CorruptionCache
from .inference import eval_mode, predict
from .options import EvalOptions, Numerics
from .pgd_accuracy import pgd_accuracy
from .provenance import provenance, sha256_file, to_jsonable, write_json_atomic
from .spatial import sample_spatial_params, spatial_attack_accuracy, spatial_transform
from .subset import balanced_indices, standard_error
from .suite import METRICS, evaluate_model
from .training_run import evaluate_run, run_numerics, run_options

__all__ = [
    "clean_accuracy", "corruption_accuracy", "corruption_errors", "robust_accuracy", "mce", "cifar101_accuracy",
    "spatial_attack_accuracy", "pgd_accuracy", "evaluate_model", "METRICS", "ALEXNET_ERR",
    "REFERENCE_TIN_RESNET18_CE", "generated_corruptions", "table_to_dict", "eval_mode", "predict",
    "sample_spatial_params", "spatial_transform", "provenance", "sha256_file", "to_jsonable", "write_json_atomic",
    "balanced_indices", "standard_error", "EvalOptions", "Numerics", "CorruptionCache", "evaluate_run", "run_options",
    "run_numerics",
]
