"""A notebook's parameters cell turned into one :class:`Setup`: profile, data (with the synthetic fallback), device.

Every notebook starts with ``setup = resolve(profile, data_root, device, dataset=..., seed=..., runs_dir=...)``;
``setup.label`` is the provenance line printed beside every number, and ``setup.run(config)`` asks
:func:`augmax_lib.course.runs.get_run` for a shared run with the same data, device and seed.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from .._malloc import keep_freed_memory
from .runs import Run, default_device, get_run

__all__ = ["PROFILES", "SMOKE_SYNTHETIC_N", "Setup", "resolve"]

PROFILES = ("smoke", "quick", "full")
# Synthetic training images in the smoke profile (its 256 training + 64 validation images fit).
SMOKE_SYNTHETIC_N = 400
_PROFILE_NOTES = {
    "smoke": "SMOKE profile: tiny data, a width-8 model, one epoch. It checks that the notebook runs; "
             "every number below is meaningless.",
    "full": "FULL profile: the paper's settings (200 epochs, full width); meant for a GPU.",
}


@dataclass
class Setup:
    """The resolved parameters of one notebook."""

    profile: str
    dataset: str                 # the data set actually used (``synthetic`` after a fallback)
    requested_dataset: str       # the data set whose configs the runs use (cifar10 when synthetic was asked for)
    data_root: Optional[str]
    device: torch.device
    seed: int = 0
    runs_dir: str = "runs"
    model: str = "resnet18"
    source: str = ""             # the data's source label, e.g. "CIFAR-10 (JPEG q75 mirror)"
    fallback_reason: str = ""    # why the synthetic set is used instead, when it is
    _sets: dict = field(default_factory=dict, repr=False)

    @property
    def fallback(self) -> bool:
        return bool(self.fallback_reason)

    @property
    def short_source(self) -> str:
        """The data's name for figure titles ("SYNTHETIC shapes" without the long caveat the label carries)."""
        return self.source.split(" (")[0] if self.dataset == "synthetic" else self.source

    @property
    def label(self) -> str:
        """'smoke profile, CIFAR-10 (JPEG q75 mirror), seed 0, cpu': what every printed number says."""
        return f"{self.profile} profile, {self.source or self.dataset}, seed {self.seed}, {self.device.type}"

    @property
    def overrides(self) -> list[str]:
        """The ``--set`` overrides every run of this notebook gets (data set, data root)."""
        out = []
        if self.dataset != self.requested_dataset:
            out.append(f"data.dataset={self.dataset}")
            if self.dataset == "synthetic" and self.profile == "smoke":
                out.append(f"data.options.n={SMOKE_SYNTHETIC_N}")
        if self.data_root:
            out.append(f"data.root={self.data_root}")
        return out

    @property
    def eval_images(self) -> Optional[int]:
        """Test images per set this profile evaluates on (its ``eval.images_per_set``; None: all)."""
        from augmax_lib.train.config import ConfigError, load_profile

        try:
            own = (load_profile(self.profile).get("eval") or {}).get("images_per_set")
        except ConfigError:
            own = None
        return own

    def run(self, config, *, evaluate: bool = False, overrides=(), progress: bool = True) -> Run:
        """:func:`get_run` of ``config`` with this notebook's profile, data, device, seed and runs folder."""
        return get_run(config, profile=self.profile, runs_dir=self.runs_dir, seed=self.seed,
                       overrides=[*self.overrides, *overrides], device=self.device, evaluate=evaluate,
                       progress=progress)

    def data(self, split: str = "test"):
        """The ImageSet of ``split`` ('train' or 'test'), loaded once per notebook."""
        from augmax_lib.data import load_dataset

        if split not in self._sets:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the synthetic warning is shown once, loudly, by resolve()
                options = {}
                if self.dataset == "synthetic" and self.profile == "smoke" and split == "train":
                    options["n"] = SMOKE_SYNTHETIC_N  # the set the smoke runs train on; drawing 10000 takes long
                self._sets[split] = load_dataset(self.dataset, split, root=self.data_root, **options)
        return self._sets[split]

    def examples(self, n: int = 8, split: str = "test", distinct_classes: bool = True):
        """``n`` fixed example images (uint8 (n, C, H, W)) and labels: one per class first, chosen by ``seed``."""
        data = self.data(split)
        perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed))
        if distinct_classes:
            labels = data.labels[perm]
            firsts = [perm[(labels == c).nonzero()[0, 0]] for c in torch.unique(labels) if (labels == c).any()]
            rest = [i for i in perm[: 4 * n].tolist() if i not in set(int(f) for f in firsts)]
            index = torch.tensor([int(f) for f in firsts] + rest)[:n]
        else:
            index = perm[:n]
        return data.images[index], data.labels[index]

    def class_names(self, split: str = "test") -> list:
        return list(self.data(split).classes)


def _find_problem(dataset: str, root) -> str:
    """'' when ``dataset`` can be loaded from ``root``, else the reason (DatasetNotFoundError's message)."""
    from augmax_lib.data import DatasetNotFoundError, load_dataset

    if dataset == "synthetic":
        return ""
    try:
        load_dataset(dataset, "test", root=root)
    except DatasetNotFoundError as err:
        return str(err)
    return ""


def resolve(profile: str = "quick", data_root=None, device=None, *, dataset: str = "cifar10", seed: int = 0,
            runs_dir="runs", model: str = "resnet18", announce: bool = True) -> Setup:
    """Check the parameters cell and say in one loud block what this notebook runs on.

    ``device`` None or "auto" picks CUDA when available. When ``dataset`` is not found under ``data_root``
    (or $AUGMAX_DATA), the procedurally drawn ``synthetic`` set is used instead, with a warning saying
    where we looked; its results say nothing about CIFAR.
    """
    if profile not in PROFILES and not str(profile).endswith((".yaml", ".yml")):
        raise ValueError(f"profile: expected one of {', '.join(PROFILES)} (or a profile YAML path), got {profile!r}")
    root = str(Path(data_root).expanduser()) if data_root not in (None, "") else None
    dev = default_device() if device in (None, "", "auto") else torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} asked for CUDA, but torch sees no CUDA device; use 'cpu' or 'auto'")
    keep_freed_memory()  # the notebook's kernel trains and augments as the command line does (_malloc.py)
    problem = _find_problem(dataset, root)
    used = "synthetic" if problem else dataset
    # The synthetic set has no configs of its own: its runs are CIFAR-10's configs with data.dataset=synthetic
    # (Setup.overrides adds it), whether it was asked for or fallen back to.
    configs_of = "cifar10" if dataset == "synthetic" else dataset
    setup = Setup(str(profile), used, configs_of, root, dev, int(seed), str(runs_dir), model,
                  fallback_reason=problem)
    setup.source = setup.data("test").source
    if announce:
        _announce(setup)
    return setup


def _profile_note(profile: str) -> str:
    """One line on what ``profile`` trains, read from its file for ``quick`` (so it never goes stale)."""
    if profile != "quick":
        return _PROFILE_NOTES.get(profile, f"custom profile {profile!r}")
    from augmax_lib.train.config import load_profile

    p = load_profile(profile)
    data, train, evaluation = p.get("data", {}), p.get("train", {}), p.get("eval", {})
    return (f"QUICK profile: {data.get('train_size')} training images, {train.get('epochs')} epochs, width-"
            f"{p.get('model', {}).get('width')} ResNet18 on a CPU, robustness on {evaluation.get('images_per_set')} "
            f"test images per set (the ablation rows: a smaller budget, see configs/profiles/quick.yaml). Real but "
            f"small-scale results: they show how the methods differ, not the paper's numbers.")


def _announce(setup: Setup) -> None:
    lines = [f"profile: {setup.profile} | data: {setup.source} | device: {setup.device} | seed: {setup.seed} | "
             f"runs: {setup.runs_dir}/{setup.profile}/",
             _profile_note(setup.profile)]
    if setup.fallback:
        banner = ["!" * 100, f"!!! {setup.requested_dataset} NOT FOUND."]
        banner += [f"!!! {line}" for line in setup.fallback_reason.splitlines()]
        banner += ["!!! Falling back to the SYNTHETIC shapes data set: every image and number below is about "
                   "procedural shapes, not CIFAR.",
                   f"!!! To use {setup.requested_dataset}: set data_root (or $AUGMAX_DATA) to a folder holding it.",
                   "!" * 100]
        lines = banner + lines
        warnings.warn(f"{setup.requested_dataset} not found; using the synthetic data set", UserWarning,
                      stacklevel=3)
    print("\n".join(lines))
