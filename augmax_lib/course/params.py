"""A notebook's parameters cell turned into one :class:`Setup`: profile, data (with the synthetic fallback), device.

Every notebook starts with ``setup = resolve(profile, data_root, device, dataset=..., seed=..., runs_dir=...)``.
What a profile does in the course (how many test images a measurement uses, which models the analysis
chapters study, which rows notebook 7 trains) is data in the profile's YAML file, under ``course:``; no code
here or in a notebook branches on a profile's name. ``setup.label`` is the provenance line printed beside
every number, ``setup.run(config)`` asks :func:`augmax_lib.course.shared_runs.get_run` for a shared run, and
``setup.analysis_model(config)`` gives the model an analysis chapter studies (shipped or trained, as the
profile says).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from .._device import resolve_device
from .._malloc import keep_freed_memory
from .shared_runs import CONFIGS_DIR, Run, find_config, get_run, shown_path

__all__ = ["Course", "Setup", "AnalysisModel", "resolve", "profile_facts", "profile_about", "known_profiles",
           "SHIPPED_COLLECTION", "SHIPPED_RESULTS"]

# The shipped models the course studies when a profile says `course.models: shipped`, and the committed results
# of the profile that trained them (all seeds), from which the analysis chapters take their spread over seeds.
SHIPPED_COLLECTION = "long"
SHIPPED_RESULTS = CONFIGS_DIR.parent / "results" / SHIPPED_COLLECTION


def known_profiles() -> list[str]:
    """The profile names under configs/profiles/."""
    return sorted(p.stem for p in (CONFIGS_DIR / "profiles").glob("*.yaml"))


def _load_profile(profile: str) -> dict:
    from augmax_lib.train.config import load_profile

    return load_profile(profile)


# What a dry run keeps of the course section's amounts (each only lowered); steps, rows and models stay.
# Two repeats: the timing tables report a spread.
DRY_RUN_COURSE = {"images": 20, "embedding_images": 40, "exercise_images": 10, "corruption_timing_images": 32,
                  "timing_batch": 32, "timing_repeats": 2, "step_batch": 8, "step_repeats": 2, "trajectory_images": 2,
                  "synthetic_train_images": 320}


class Course:
    """The ``course:`` section of a profile, as attributes (``setup.course.images``); a missing key is an error
    that names the profile file and the key. ``dry_run`` caps its amounts (DRY_RUN_COURSE)."""

    def __init__(self, values: dict, profile: str, dry_run: bool = False):
        self._values, self._profile = dict(values or {}), profile
        if dry_run:
            for key, cap in DRY_RUN_COURSE.items():
                if key in self._values and (self._values[key] is None or self._values[key] > cap):
                    self._values[key] = cap

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        if key not in self._values:
            raise KeyError(f"profile {self._profile!r}: its course section sets no {key!r} (configs/profiles/full.yaml "
                           f"lists every key); add it to the profile's file")
        return self._values[key]

    def as_dict(self) -> dict:
        return dict(self._values)

    def __repr__(self) -> str:
        return f"Course({self._profile!r}, {self._values})"


def profile_about(profile: str) -> str:
    """The profile's ``about`` text (what its numbers mean), from its file."""
    return " ".join(str(_load_profile(profile).get("about") or f"The {profile} profile.").split())


def profile_facts(profile: str, config: str = "cifar10/resnet18_normal") -> str:
    """What the profile trains and evaluates, read from its file through ``config`` (one sentence)."""
    from augmax_lib.train import load_config

    c = load_config(find_config(config)[0], profile)
    d, t, m, e = c["data"], c["train"], c["model"], c["eval"]
    images = f"{d['train_size']:,} training images" if d["train_size"] else \
        f"every training image the {d['val_size']:,}-image hold-out leaves"
    width = f"width {m['width']}" if m["width"] else "the paper's width"
    evaluated = f"{e['images_per_set']:,} test images per set" if e["images_per_set"] else "the whole test set"
    course = _load_profile(profile).get("course") or {}
    studied = {"shipped": f"the shipped {SHIPPED_COLLECTION}-profile models",
               "trained": "this profile's own runs"}.get(course.get("models"), "this profile's own runs")
    epochs = f"{t['epochs']} epoch{'s' if t['epochs'] != 1 else ''}"
    return (f"{profile}: {images}, {epochs} at batch {t['batch_size']}, {m['name']} at {width}, "
            f"{_arithmetic(t['precision'])}; robustness on {evaluated}; the analysis chapters study {studied}.")


def _arithmetic(precision: str) -> str:
    """'bf16 arithmetic', or for "auto" what it is on this machine's CPU and why."""
    if precision != "auto":
        return f"{precision} arithmetic"
    from augmax_lib._device import native_bf16

    return ("bf16 arithmetic (this CPU computes bf16 natively)" if native_bf16("cpu") else
            "fp32 arithmetic (bf16 where a CPU computes it natively; this one does not)")


@dataclass
class AnalysisModel:
    """A trained model an analysis chapter studies, with where it came from and what it measured."""

    name: str                       # the config's name, e.g. cifar10_resnet18_normal
    model: torch.nn.Module          # eval mode, fp32 arithmetic, on the notebook's device
    source: str                     # "shipped" or "trained"
    config: dict
    metrics: Optional[dict]         # the evaluation's metrics (fractions), None when not evaluated
    where: str                      # one line: what the model is and where it came from

    def describe(self) -> str:
        return self.where


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
    course: Course = None
    dry_run: bool = False        # the profile's settings on a few images and steps (train.dry_run, DRY_RUN_COURSE)
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
            if self.dataset == "synthetic" and self.course.synthetic_train_images:
                out.append(f"data.options.n={int(self.course.synthetic_train_images)}")
        if self.data_root:
            out.append(f"data.root={self.data_root}")
        return out

    @property
    def eval_images(self) -> Optional[int]:
        """Test images per set this profile evaluates on (its ``eval.images_per_set``; None: all)."""
        images = (_load_profile(self.profile).get("eval") or {}).get("images_per_set")
        if self.dry_run:
            from augmax_lib.train.dry_run import DRY_RUN_CAPS

            images = min(images or DRY_RUN_CAPS["eval.images_per_set"], DRY_RUN_CAPS["eval.images_per_set"])
        return images

    def config(self, config, overrides=()) -> dict:
        """The validated config of ``config`` (a name under configs/ or a path) as this notebook's runs use it:
        its profile, data set, device, seed and ``overrides`` (and a dry run's caps)."""
        from augmax_lib.train import load_config

        path, _ = find_config(config)
        return load_config(path, self.profile, self.run_overrides(path, [f"train.device={self.device}",
                                                                        f"train.seed={self.seed}", *overrides]))

    def run_overrides(self, config, overrides=()) -> list:
        """The ``--set`` overrides of this notebook's run of ``config``: data set, data root, ``overrides`` and, in
        a dry run, the caps that make it one."""
        out = [*self.overrides, *overrides]
        if self.dry_run:
            from augmax_lib.train.dry_run import with_dry_run

            out = with_dry_run(find_config(config)[0], self.profile, out)
        return out

    @property
    def studies_shipped(self) -> bool:
        """Whether the analysis chapters study the shipped models (the profile says so and they fit the data)."""
        return self.course.models == "shipped" and self.dataset == "cifar10"

    def run(self, config, *, evaluate: bool = False, overrides=(), progress: bool = True, cache=None) -> Run:
        """:func:`get_run` of ``config`` with this notebook's profile, data, device, seed and runs folder."""
        return get_run(config, profile=self.profile, runs_dir=self.runs_dir, seed=self.seed,
                       overrides=self.run_overrides(config, overrides), device=self.device, evaluate=evaluate,
                       progress=progress, cache=cache)

    def analysis_model(self, config: str, *, evaluate: bool = False) -> AnalysisModel:
        """The model of ``config`` (e.g. ``cifar10/resnet18_normal``) that an analysis chapter studies.

        With ``course.models: shipped`` (and CIFAR-10 in use) it is the shipped long-profile model of that config,
        its file's hash checked; otherwise this profile's run of it, trained when missing (and evaluated when
        ``evaluate``).
        """
        from augmax_lib.models.pretrained import list_pretrained, load_pretrained, pretrained_info

        path, _ = find_config(config)
        from augmax_lib.train import load_config

        name = load_config(path)["name"]
        if self.studies_shipped and name in list_pretrained(SHIPPED_COLLECTION):
            info = pretrained_info(name, SHIPPED_COLLECTION)
            c = info["config"]
            metrics = info.get("metrics") or {}
            where = (f"{name}: the shipped {SHIPPED_COLLECTION}-profile model (seed {info['seed']}, "
                     f"{c['train']['epochs']} epochs on {c['data']['train_size'] or 50000 - c['data']['val_size']:,} "
                     f"images of {info['data_source']}, width {c['model']['width']}, commit "
                     f"{str(info['train_commit'])[:10]}; clean test accuracy {100 * metrics.get('sa', float('nan')):.1f}%)")
            return AnalysisModel(name, load_pretrained(name, SHIPPED_COLLECTION, device=self.device), "shipped", c,
                                 metrics, where)
        run = self.run(config, evaluate=evaluate)
        metrics = (run.evaluation or {}).get("metrics")
        return AnalysisModel(run.name, run.model, "trained", run.config, metrics, f"{run.action}: {run.describe()}")

    def seed_results(self):
        """Every evaluated run of all seeds behind the models this notebook studies (tables.RunRecord list): the
        committed results of the shipped models' profile, or this profile's runs folder."""
        from augmax_lib.tables import collect_runs

        folder = SHIPPED_RESULTS if self.studies_shipped else Path(self.runs_dir) / Path(self.profile).stem
        return collect_runs([folder]) if folder.is_dir() else []

    def data(self, split: str = "test"):
        """The ImageSet of ``split`` ('train' or 'test'), loaded once per notebook."""
        from augmax_lib.data import load_dataset

        if split not in self._sets:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the synthetic warning is shown once, loudly, by resolve()
                options = {}
                if self.dataset == "synthetic" and split == "train" and self.course.synthetic_train_images:
                    options["n"] = int(self.course.synthetic_train_images)  # the set this profile's runs train on
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
            runs_dir="runs", model: str = "resnet18", dry_run: bool = False, announce: bool = True) -> Setup:
    """Check the parameters cell and say in one loud block what this notebook runs on.

    ``profile``: a name under configs/profiles/ or a profile YAML path. ``device`` None or "auto" picks CUDA
    when available. When ``dataset`` is not found under ``data_root`` (or $AUGMAX_DATA), the procedurally drawn
    ``synthetic`` set is used instead, with a warning saying where we looked; its results say nothing about CIFAR.
    ``dry_run``: the profile's settings (models, widths, methods, steps) on a few images and training steps, a
    check that every code path of the profile runs; its numbers mean nothing.
    """
    from augmax_lib.train.config import ConfigError

    known = known_profiles()
    if profile not in known and not str(profile).endswith((".yaml", ".yml")):
        raise ValueError(f"profile: expected one of {', '.join(known)} (or a profile YAML path), got {profile!r}")
    try:
        course = Course(_load_profile(str(profile)).get("course") or {}, str(profile), dry_run=bool(dry_run))
    except ConfigError as err:
        raise ValueError(f"profile: {err}") from None
    root = str(Path(data_root).expanduser()) if data_root not in (None, "") else None
    dev = resolve_device(device, "device")
    keep_freed_memory()  # the notebook's kernel trains and augments as the command line does (_malloc.py)
    problem = _find_problem(dataset, root)
    used = "synthetic" if problem else dataset
    # The synthetic set has no configs of its own: its runs are CIFAR-10's configs with data.dataset=synthetic
    # (Setup.overrides adds it), whether it was asked for or fallen back to.
    configs_of = "cifar10" if dataset == "synthetic" else dataset
    setup = Setup(str(profile), used, configs_of, root, dev, int(seed), str(runs_dir), model,
                  fallback_reason=problem, course=course, dry_run=bool(dry_run))
    setup.source = setup.data("test").source
    if announce:
        _announce(setup)
    return setup


def _announce(setup: Setup) -> None:
    lines = [f"profile: {setup.profile} | data: {setup.source} | device: {setup.device} | seed: {setup.seed} | "
             f"runs: {shown_path(Path(setup.runs_dir) / Path(setup.profile).stem)}/",
             profile_about(setup.profile), profile_facts(setup.profile)]
    if setup.dry_run:
        lines.insert(0, f"DRY RUN: the {setup.profile} profile's models, methods and steps on a few images and training "
                        f"steps; a check that every code path runs, not a result")
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
