"""Load the AugMax authors' released checkpoints into our backbones, and export ours to their layout.

The reference saves ``model.state_dict()`` of a DataParallel-wrapped model (``best_SA.pth``: every key
starts with ``module.``) or a dict holding it under ``model`` (``latest.pth``). Our CIFAR backbones use the
reference's module names, so a reference key is ``"module." + our key``: DuBN ``bn.0`` is route "M" and
``bn.1`` route "A"; DuBIN ``IN`` covers the first ``int(0.5 * C)`` channels and ``BN`` the rest. Every key
on both sides must be used exactly once with the same shape, or the load fails naming the offenders.
"""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Union

import torch
from torch import nn

from .registry import build_model

__all__ = ["ReferenceCheckpointError", "REFERENCE_PREFIX", "load_reference_checkpoint", "to_reference_state_dict"]

REFERENCE_PREFIX = "module."
_SHOWN = 12  # keys listed per problem in an error message


class ReferenceCheckpointError(ValueError):
    """A checkpoint that does not map one to one onto the requested backbone."""


def _read_source(source) -> Mapping:
    """The loaded object: ``source`` itself if it is a mapping, else ``torch.load`` of the file on the CPU."""
    if isinstance(source, Mapping):
        return source
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source: expected a file path or a loaded dict, got {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"source: no checkpoint file at {path.resolve()}; the authors' trained models (best_SA.pth / "
            f"latest.pth) are linked from the VITA-Group/AugMax README: download one and pass its path")
    try:
        # weights_only: a checkpoint is data, never code; map_location: whatever device it was saved from.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ReferenceCheckpointError(
            f"source: {path} holds objects other than tensors and plain containers, which are not loaded "
            f"(weights_only=True): {error}") from error
    if not isinstance(loaded, Mapping):
        raise ReferenceCheckpointError(f"source: {path} holds a {type(loaded).__name__}, expected a state dict")
    return loaded


def _unwrap_state_dict(obj: Mapping) -> tuple[dict, str]:
    """The state dict (``latest.pth`` keeps it under ``model``) with ``module.`` removed, and the prefix it had."""
    if "model" in obj and isinstance(obj["model"], Mapping):
        obj = obj["model"]
    keys = list(obj)
    if not keys:
        raise ReferenceCheckpointError("source: the checkpoint's state dict is empty")
    not_str = [k for k in keys if not isinstance(k, str)]
    if not_str:
        raise ReferenceCheckpointError(f"source: state-dict keys must be strings, got {not_str[:_SHOWN]!r}")
    prefixed = [k.startswith(REFERENCE_PREFIX) for k in keys]
    if all(prefixed):
        prefix = REFERENCE_PREFIX
    elif not any(prefixed):
        prefix = ""
    else:
        bare = [k for k, p in zip(keys, prefixed) if not p]
        raise ReferenceCheckpointError(
            f"source: some keys start with {REFERENCE_PREFIX!r} and some do not, e.g. {', '.join(bare[:_SHOWN])}")
    state = {}
    for key in keys:
        value = obj[key]
        if not isinstance(value, torch.Tensor):
            raise ReferenceCheckpointError(f"source: {key!r} holds a {type(value).__name__}, expected a tensor")
        state[key[len(prefix):]] = value
    return state, prefix


def _listing(names, limit: int = _SHOWN) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f" ... and {len(names) - limit} more" if len(names) > limit else "")


def _check_one_to_one(state: dict, model: nn.Module, prefix: str, description: str) -> None:
    """Raise naming every key that is missing, extra or wrongly shaped; pass only on an exact match."""
    expected = model.state_dict()
    missing = [prefix + k for k in expected if k not in state]
    extra = [prefix + k for k in state if k not in expected]
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if not (missing or extra or wrong):
        return
    problems = []
    if missing:
        problems.append(f"missing from the checkpoint ({len(missing)}): {_listing(missing)}")
    if extra:
        problems.append(f"not in the model ({len(extra)}): {_listing(extra)}")
    if wrong:
        shapes = [f"{prefix}{k} {got} in the checkpoint vs {want} in the model" for k, got, want in wrong]
        problems.append(f"wrongly shaped ({len(wrong)}): {_listing(shapes)}")
        head = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1] + ".weight"
        if head in state and state[head].dim() == 2 and state[head].shape != expected[head].shape:
            problems.append(f"the checkpoint's head has {state[head].shape[0]} classes: "
                            f"pass num_classes={state[head].shape[0]}")
    raise ReferenceCheckpointError(f"the checkpoint does not map one to one onto {description}: " + "; ".join(problems))


def load_reference_checkpoint(source: Union[str, os.PathLike, Mapping], name: str, num_classes: int = 10) -> nn.Module:
    """A ``build_model(name, num_classes, norm="dubin")`` filled from the reference's checkpoint, in eval mode, route "M".

    ``source``: a ``best_SA.pth``/``latest.pth`` path (loaded on the CPU with ``weights_only=True``) or an
    already loaded dict. Keys may carry the ``module.`` prefix (all of them) or not (none of them).
    """
    state, prefix = _unwrap_state_dict(_read_source(source))
    model = build_model(name, num_classes, norm="dubin")
    _check_one_to_one(state, model, prefix, f"build_model({name!r}, num_classes={num_classes}, norm='dubin')")
    model.load_state_dict(state, strict=True)
    return model.eval()


def _unwrap_model(model: nn.Module) -> nn.Module:
    """The module under torch.compile / DataParallel / DistributedDataParallel wrappers."""
    while True:
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def to_reference_state_dict(model: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """``model``'s state dict in the reference's layout (CPU copies, keys prefixed ``module.``), for their test script."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    state = _unwrap_model(model).state_dict()
    return OrderedDict((REFERENCE_PREFIX + key, value.detach().to("cpu", copy=True)) for key, value in state.items())
