"""Checkpoints of a training run: atomic writes, clear errors on corrupt or mismatched files, RNG capture.

``last.pt`` holds everything a resumed run needs (model, optimiser, scheduler, grad scaler, every random
state including the ``torch.Generator`` objects of data order and augmentation, the epoch, the best
metric and the log so far). ``best.pt`` holds the weights selected on the validation split with the config
that built them. Files are written to a temporary file in the same folder and moved into place with
``os.replace``, so a crash never leaves a half-written checkpoint under the final name.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Mapping

import torch

from augmax_lib._io import atomic_path
from augmax_lib.train.config import same_setting

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "save_checkpoint",
           "load_checkpoint", "capture_rng", "restore_rng", "config_mismatches", "RESUMABLE_KEYS"]

CHECKPOINT_FORMAT = "augmax_lib.train/1"

# Keys a resumed run may change without invalidating the checkpoint: they do not alter what is computed.
RESUMABLE_KEYS = ("data.root", "data.workers", "train.device", "train.progress", "train.log_every",
                  "train.eval_batch_size", "train.compile", "train.checkpoint_every_steps", "name", "description",
                  "paper", "profile", "eval")  # evaluation settings never touch training


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, of another format, or from another config."""


def save_checkpoint(path, state: Mapping[str, Any]) -> None:
    """Save ``state`` (tensors, numbers, strings, lists, dicts) atomically, tagged with the checkpoint format."""
    payload = {"format": CHECKPOINT_FORMAT, **state}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path, map_location="cpu", kind: str | None = None) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`; raise CheckpointError with the reason otherwise.

    ``kind`` ("last" or "best"), when given, must match the file's ``kind`` entry.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except MemoryError:
        raise
    except Exception as err:  # a cut or foreign file fails inside torch.load in many ways (struct.error, KeyError...)
        # torch's own message for a bad pickle talks about weights_only, which would mislead here.
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or not a torch checkpoint (reading it "
                              f"failed with {type(err).__name__}; the file may be truncated); it was left "
                              f"untouched") from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {str(path)!r} is not an augmax_lib training checkpoint "
                              f"(expected format {CHECKPOINT_FORMAT!r}, found {found!r})")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"checkpoint {str(path)!r}: expected a {kind!r} checkpoint, found {state.get('kind')!r}")
    return state


def _flatten(config: Mapping, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and key not in ("kwargs", "options"):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def config_mismatches(saved: Mapping, current: Mapping, allowed=RESUMABLE_KEYS) -> list[str]:
    """Keys (dotted) whose values differ between two configs, ignoring those under ``allowed`` prefixes; a
    ``current`` precision of "auto" accepts the one ``saved`` recorded (:func:`~augmax_lib.train.config.same_setting`)."""
    a, b = _flatten(saved), _flatten(current)
    keys = sorted(set(a) | set(b))

    def free(key):
        return any(key == p or key.startswith(p + ".") for p in allowed)

    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys
            if not free(k) and not same_setting(k, a.get(k, "<absent>"), b.get(k, "<absent>"))]


def capture_rng(generators: Mapping[str, torch.Generator] | None = None) -> dict:
    """Every random state a run draws from: Python, torch CPU, torch CUDA (all devices), and ``generators``."""
    state = {
        "python": random.getstate(),
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: gen.get_state() for name, gen in (generators or {}).items()},
    }
    return state


def restore_rng(state: Mapping, generators: Mapping[str, torch.Generator] | None = None) -> None:
    """Put back what :func:`capture_rng` saved; the generator names must match."""
    random.setstate(_as_python_state(state["python"]))
    torch.set_rng_state(state["torch_cpu"])
    if state.get("torch_cuda") and torch.cuda.is_available():
        if len(state["torch_cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["torch_cuda"])
    saved = state.get("generators", {})
    wanted = dict(generators or {})
    if set(saved) != set(wanted):
        raise CheckpointError(f"checkpoint random generators {sorted(saved)} do not match this run's {sorted(wanted)}")
    for name, gen in wanted.items():
        gen.set_state(saved[name])


def _as_python_state(value):
    # torch.load returns tuples as saved, but a state that went through lists (e.g. JSON) must become tuples.
    version, internal, gauss = value
    return int(version), tuple(int(v) for v in internal), gauss
