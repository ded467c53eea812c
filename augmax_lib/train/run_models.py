"""Models of training runs: build the model a config describes, and load a finished run for evaluation.

Every model built here takes float images in [0, 1]. The ImageNet backbones expect normalised input,
so they are wrapped in :class:`NormalizedInput`, as is any model whose config sets ``model.input_mean``;
checkpoints hold the backbone's own state dict (the layout of ``augmax_lib.models.build_model``), so they
load into the bare backbone as well.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from augmax_lib.models import build_model
from augmax_lib.models.normalized import NormalizedInput

from .checkpoint import CheckpointError, load_checkpoint
from .config import validate

__all__ = ["NormalizedInput", "build_run_model", "backbone", "load_run", "RUN_FILES"]

# What a run directory holds (see augmax_lib.train.engine).
RUN_FILES = ("config.yaml", "log.csv", "log.json", "last.pt", "best.pt", "results.json")


def build_run_model(config: dict, num_classes: int) -> nn.Module:
    """The model of ``config["model"]`` with a ``num_classes``-way head, taking [0, 1] images."""
    spec = config["model"]
    kwargs = dict(spec["kwargs"])
    if spec["width"] is not None:
        kwargs["width"] = spec["width"]
    try:
        net = build_model(spec["name"], num_classes, norm=spec["norm"], **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model (name {spec['name']!r}, norm {spec['norm']!r}, kwargs {kwargs}): {err}") from err
    if spec.get("input_mean") is not None:  # e.g. AugMix's own recipe: Normalize(0.5, 0.5) before the network
        return NormalizedInput(net, spec["input_mean"], spec["input_std"])
    if spec["name"].endswith("_imagenet"):
        from augmax_lib.data import IMAGENET_MEAN, IMAGENET_STD

        return NormalizedInput(net, IMAGENET_MEAN, IMAGENET_STD)
    return net


def backbone(model: nn.Module) -> nn.Module:
    """The backbone inside DDP, ``torch.compile`` and :class:`NormalizedInput` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, NormalizedInput):
            model = model.net
        else:
            return model


def load_run(run_dir, which: str = "best", device="cpu") -> tuple[nn.Module, dict]:
    """The model of a training run (``which``: "best", selected on the validation split, or "last") and its config.

    The model is in eval mode on ``device``, takes [0, 1] images, and uses norm route "M" (the default).
    """
    run_dir = Path(run_dir)
    if which not in ("best", "last"):
        raise ValueError(f"which: expected 'best' or 'last', got {which!r}")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run_dir: {str(run_dir)!r} is not a directory (expected a training run made by "
                                f"`python -m augmax_lib train`)")
    path = run_dir / f"{which}.pt"
    if not path.is_file():
        raise CheckpointError(f"run {str(run_dir)!r} has no {which}.pt (files: "
                              f"{', '.join(sorted(p.name for p in run_dir.iterdir())) or 'none'})")
    state = load_checkpoint(path, map_location="cpu", kind=which)
    config = validate(state["config"])
    model = build_run_model(config, int(state["num_classes"]))
    try:
        backbone(model).load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: the weights do not fit the model of its config ({err})") from err
    return model.to(device).eval(), config
