"""Load the AugMax authors' released checkpoints into our backbones, and export ours to their layout.

The reference saves ``model.state_dict()`` of a DataParallel-wrapped model (``best_SA.pth``: every key
starts with ``module.``) or a dict holding it under ``model`` (``latest.pth``). Our CIFAR backbones use the
reference's module names, so a reference key is ``"module." + our key``: DuBN ``bn.0`` is route "M" and
``bn.1`` route "A"; DuBIN ``IN`` covers the first ``int(0.5 * C)`` channels and ``BN`` the rest. Every key
on both sides must be used exactly once with the same shape, or the load fails naming the offenders (and
the backbone the keys do fit, if any). The stem depends on the data set: their Tiny-ImageNet (64x64) models
use a stride-2 first convolution (``init_stride=2``), the CIFAR ones stride 1; the key layout is the same,
so the data set must be known (given, or told by the head's class count) and is never guessed.
"""
from __future__ import annotations

import functools
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .._checks import InputError
from .registry import build_model, list_models

__all__ = ["ReferenceCheckpointError", "REFERENCE_PREFIX", "REFERENCE_DATASETS", "load_reference_checkpoint",
           "reference_checkpoint_dataset", "read_reference_checkpoint", "to_reference_state_dict"]

REFERENCE_PREFIX = "module."
# The data sets the authors released models for: classes of the head, stem stride of the CIFAR families
# (their test.py: init_stride 1 for cifar10/cifar100, 2 for 'tin'; ImageNet models have their own stem).
REFERENCE_DATASETS = {"cifar10": (10, 1), "cifar100": (100, 1), "tinyimagenet": (200, 2), "imagenet": (1000, None)}
_SHOWN = 12  # keys listed per problem in an error message


class ReferenceCheckpointError(ValueError, InputError):
    """A checkpoint that cannot be loaded into the requested backbone; the message says why.

    ``fits``: other backbone names whose keys and shapes the checkpoint matches exactly; ``head_classes``: the
    class count of the checkpoint's head when it differs from the model's; ``missing``/``extra``/``wrong``:
    the offending keys.
    """

    def __init__(self, message: str, fits=(), head_classes=None, missing=(), extra=(), wrong=()):
        super().__init__(message)
        self.fits, self.head_classes = list(fits), head_classes
        self.missing, self.extra, self.wrong = list(missing), list(extra), list(wrong)


def read_reference_checkpoint(path) -> Mapping:
    """``torch.load`` of a checkpoint file on the CPU with ``weights_only=True``; clear errors for bad files."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"source: expected a file path or a loaded dict, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"source: no checkpoint file at {path.resolve()}; the authors' trained models (best_SA.pth / "
            f"latest.pth) are linked from the VITA-Group/AugMax README: download one and pass its path")
    try:
        # weights_only: a checkpoint is data, never code; map_location: whatever device it was saved from.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL (\S+)", str(error))
        if found is None:  # e.g. "Unsupported operand 109": not a pickle of a checkpoint at all
            raise _not_a_checkpoint(path, error) from error
        raise ReferenceCheckpointError(
            f"{path}: holds objects other than tensors and plain containers ({found.group(1)}), which are not "
            f"loaded (weights_only=True): a checkpoint is data, never code") from error
    except MemoryError:
        raise
    except Exception as error:  # a cut or foreign file fails inside torch.load in many ways; all mean the same
        raise _not_a_checkpoint(path, error) from error
    if not isinstance(loaded, Mapping):
        raise ReferenceCheckpointError(f"{path}: holds a {type(loaded).__name__}, expected a state dict")
    return loaded


def _not_a_checkpoint(path: Path, error: Exception) -> ReferenceCheckpointError:
    text = str(error).strip()
    detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)  # torch's advice around it would mislead here
    # Otherwise torch's messages run to several sentences of advice; the first says what failed.
    first = detail.group(1).strip() if detail else (text.splitlines()[0].split(". ")[0] if text else "")
    return ReferenceCheckpointError(
        f"{path}: not a readable torch checkpoint ({type(error).__name__}{': ' + first if first else ''}); the "
        f"file holds {path.stat().st_size} bytes and may be truncated or another kind of file: download it again")


def _read_source(source) -> Mapping:
    """The loaded object: ``source`` itself if it is a mapping, else the file read by read_reference_checkpoint."""
    return source if isinstance(source, Mapping) else read_reference_checkpoint(source)


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


@functools.lru_cache(maxsize=None)
def _key_layout(name: str) -> tuple:
    """(state-dict keys, head weight key) of backbone ``name``: the names do not depend on the width, so a
    narrow CPU build tells them in milliseconds (meta tensors would pull in torch's compiler to initialise)."""
    model = build_model(name, 1, norm="dubin", width=8)
    head = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1] + ".weight"
    return frozenset(model.state_dict()), head


def _head_key(model: nn.Module) -> str:
    return [n for n, m in model.named_modules() if isinstance(m, nn.Linear)][-1] + ".weight"


def _head_classes(state: dict, name: str):
    """The class count of the checkpoint's head as backbone ``name`` names it, or None if it has no such head."""
    head = state.get(_key_layout(name)[1])
    return int(head.shape[0]) if isinstance(head, torch.Tensor) and head.dim() == 2 else None


def _fitting_models(state: dict, exclude: str) -> list:
    """Other backbones whose every key and shape the state dict matches (with its own head size)."""
    fits = []
    for other in list_models():
        if other == exclude or _key_layout(other)[0] != set(state):
            continue
        expected = build_model(other, _head_classes(state, other), norm="dubin").state_dict()
        if all(state[k].shape == v.shape for k, v in expected.items()):
            fits.append(other)
    return fits


def _check_one_to_one(state: dict, model: nn.Module, prefix: str, name: str, description: str) -> None:
    """Raise naming every key that is missing, extra or wrongly shaped; pass only on an exact match."""
    expected = model.state_dict()
    missing = [prefix + k for k in expected if k not in state]
    extra = [prefix + k for k in state if k not in expected]
    wrong = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if not (missing or extra or wrong):
        return
    problems, head_classes = [], None
    fits = _fitting_models(state, exclude=name) if (missing or extra) else []
    if fits:
        problems.append(f"its keys and shapes fit {' and '.join(map(repr, fits))} instead: pass name={fits[0]!r}")
    if missing:
        problems.append(f"missing from the checkpoint ({len(missing)}): {_listing(missing)}")
    if extra:
        problems.append(f"not in the model ({len(extra)}): {_listing(extra)}")
    if wrong:
        shapes = [f"{prefix}{k} {got} in the checkpoint vs {want} in the model" for k, got, want in wrong]
        problems.append(f"wrongly shaped ({len(wrong)}): {_listing(shapes)}")
        head = _head_key(model)
        if head in state and state[head].dim() == 2 and state[head].shape != expected[head].shape:
            head_classes = int(state[head].shape[0])
            known = [d for d, (c, _) in REFERENCE_DATASETS.items() if c == head_classes]
            problems.append(f"the checkpoint's head has {head_classes} classes: pass num_classes={head_classes}"
                            + (f" (a {known[0]} model: dataset={known[0]!r})" if known else ""))
    raise ReferenceCheckpointError(
        f"the checkpoint does not map one to one onto {description}: " + "; ".join(problems),
        fits=fits, head_classes=head_classes, missing=missing, extra=extra, wrong=[w[0] for w in wrong])


def reference_checkpoint_dataset(source, name: str):
    """The data set a reference checkpoint of backbone ``name`` was trained on, told by its head's class count.

    None when the checkpoint has no head under ``name``'s key (another backbone); ReferenceCheckpointError
    when the count is none of REFERENCE_DATASETS' (pass the data set to the loader instead).
    """
    state, _ = _unwrap_state_dict(_read_source(source))
    classes = _head_classes(state, name)
    if classes is None:
        return None
    imagenet = name.endswith("_imagenet")
    known = [d for d, (c, _) in REFERENCE_DATASETS.items() if c == classes and (d == "imagenet") == imagenet]
    if not known:
        listed = ", ".join(f"{d} ({c} classes)" for d, (c, _) in REFERENCE_DATASETS.items())
        raise ReferenceCheckpointError(
            f"cannot tell which data set the checkpoint was trained on: its head has {classes} classes and the "
            f"authors released {name} models for {listed}; pass dataset= (the stem depends on it)",
            head_classes=classes)
    return known[0]


def _stem_kwargs(name: str, dataset: str) -> dict:
    """Keywords for build_model that give backbone ``name`` the stem of ``dataset``'s models."""
    if dataset not in REFERENCE_DATASETS:
        raise ValueError(f"dataset: expected one of {', '.join(REFERENCE_DATASETS)} (the data sets the authors "
                         f"released models for), got {dataset!r}")
    stride = REFERENCE_DATASETS[dataset][1]
    if name.endswith("_imagenet") != (stride is None):
        raise ValueError(f"dataset={dataset!r} does not go with backbone {name!r}: the authors' ImageNet models are "
                         f"the *_imagenet backbones, their CIFAR and Tiny-ImageNet models the others")
    return {} if stride is None else {"stem_stride": stride}


def load_reference_checkpoint(source: Union[str, os.PathLike, Mapping], name: str, num_classes: Optional[int] = None,
                              dataset: Optional[str] = None) -> nn.Module:
    """A ``build_model(name, num_classes, norm="dubin")`` filled from the reference's checkpoint, in eval mode, route "M".

    ``source``: a ``best_SA.pth``/``latest.pth`` path (loaded on the CPU with ``weights_only=True``) or an
    already loaded dict. Keys may carry the ``module.`` prefix (all of them) or not (none of them).
    ``dataset`` (one of REFERENCE_DATASETS) sets the stem, stride 2 for ``tinyimagenet``; when None it is
    told by the head's class count (10, 100, 200 or 1000), and a checkpoint with another count is refused.
    ``num_classes`` defaults to the data set's.
    """
    state, prefix = _unwrap_state_dict(_read_source(source))
    if name not in list_models():
        build_model(name, 1)  # raises the registry's error naming the valid names
    if dataset is None:
        dataset = reference_checkpoint_dataset(state, name)
    if dataset is None:  # no head under this backbone's key: another backbone; the check below says which
        dataset = "imagenet" if name.endswith("_imagenet") else "cifar10"
    kwargs = _stem_kwargs(name, dataset)
    if num_classes is None:
        num_classes = REFERENCE_DATASETS[dataset][0]
    model = build_model(name, num_classes, norm="dubin", **kwargs)
    description = (f"build_model({name!r}, num_classes={num_classes}, norm='dubin'"
                   + "".join(f", {k}={v!r}" for k, v in kwargs.items()) + f") for {dataset}")
    _check_one_to_one(state, model, prefix, name, description)
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
