"""Training configuration: the schema with the paper's defaults, YAML loading, profile overlays and ``--set`` overrides.

A config is a nested dict with the sections ``paper``, ``data``, ``model``, ``method``, ``optim``,
``schedule`` and ``train``, plus ``name`` and ``description``. Defaults are the paper's CIFAR protocol
(REFERENCE.md section 5), so a paper row's YAML names only what differs. The options of ``method``
depend on ``method.name``. Every key is checked: an unknown key, a wrong type or a value outside its
choices raises :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import copy
import difflib
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from .methods import METHODS
from .options import Option, opt

__all__ = ["ConfigError", "Option", "METHODS", "PRECISIONS", "SCHEDULES", "RENAMED_KEYS", "SCHEMA", "METHOD_OPTIONS",
           "PROFILES_DIR", "PROFILE_ONLY_KEYS", "AUTO_KEYS", "same_setting", "load_config", "validate", "merge",
           "parse_override", "apply_overrides", "load_profile", "profile_name", "dump_config", "method_options"]

# configs/ at the root of the source tree (this file is augmax_lib/train/config.py).
PROFILES_DIR = Path(__file__).resolve().parents[2] / "configs" / "profiles"


class ConfigError(ValueError):
    """A config file, profile or override that does not fit the schema."""


# The methods' options live with their step functions (augmax_lib.train.methods, one record per method).
METHOD_OPTIONS: dict[str, dict[str, Option]] = {name: dict(m.options) for name, m in METHODS.items()}
# Forward-pass arithmetic: fp32 as the paper ran, or autocast to a 16-bit type (an opt-in speed setting), or
# "auto": bf16 where the device computes it natively, else fp32. A run records what "auto" became
# (augmax_lib._device.resolve_precision): on a CPU without native bf16 it is emulated and runs about ten times
# slower than fp32 (bench/README.md), so a profile meant for any CPU asks for "auto".
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
# Keys whose requested value "auto" accepts whatever a run resolved it to (see same_setting).
AUTO_KEYS = ("train.precision", "eval.precision")
# Learning-rate schedules: AugMax's cosine stepped once per epoch, AugMix's (cifar.py) once per optimiser step.
SCHEDULES = ("cosine", "cosine_per_step", "multistep", "constant")
# Sections of a profile file that are not config keys: a one-line note for readers, and the sizes, budgets and
# models the course notebooks use in that profile (augmax_lib.course.params reads them).
PROFILE_ONLY_KEYS = ("about", "course")
# Keys that were replaced: reading one is an error that names its successors.
RENAMED_KEYS = {
    "train.amp": "train.amp was replaced by train.precision ('fp32', 'bf16' or 'fp16') and train.channels_last "
                 "(true/false); the old 'auto' meant bf16 + channels-last on CUDA and fp32 on the CPU, while the "
                 "default is now fp32 everywhere",
}

SCHEMA: dict[str, Any] = {
    "name": opt("run", str, "run name (the default run directory is runs/<name>)"),
    "profile": opt(None, str, "the profile overlay the config was loaded with (set by load_config; recorded in "
                    "results.json; changes nothing by itself)", nullable=True),
    "description": opt("", str, "what this config reproduces"),
    "paper": {
        "table": opt("", str, "the paper table this config reproduces"),
        "row": opt("", str, "the row of that table"),
        "sa": opt(None, float, "published clean accuracy (%)", nullable=True),
        "ra": opt(None, float, "published robust accuracy (%)", nullable=True),
        "mce": opt(None, float, "published mCE (%)", nullable=True),
        "cifar101": opt(None, float, "published CIFAR-10.1 accuracy (%)", nullable=True),
        "sta": opt(None, float, "published CIFAR10-STA accuracy (%)", nullable=True),
    },
    "data": {
        "dataset": opt("cifar10", str, "data set name for augmax_lib.data.load_dataset"),
        "root": opt(None, str, "data root (default: $AUGMAX_DATA, else ~/.cache/augmax)", nullable=True),
        "val_size": opt(5000, int, "images held out from the training set for model selection", minimum=0),
        "train_size": opt(None, int, "use only this many training images (after the hold-out)", nullable=True,
                           minimum=1),
        "split_seed": opt(0, int, "seed of the train/validation split"),
        "crop_padding": opt(4, int, "random-crop padding in pixels (0 turns the crop off)", minimum=0),
        "flip": opt(True, bool, "random horizontal flip"),
        "image_size": opt(None, int, "training crop size; null keeps the data set's size", nullable=True, minimum=8),
        "extra_train": opt([], list, "extra training folders (DeepAugment), concatenated with the train set",
                            item=str),
        "options": opt({}, dict, "further keyword arguments of load_dataset (e.g. n for synthetic)"),
        "workers": opt(8, int, "loader processes for lazily read sets (ImageNet)", minimum=0),
    },
    "model": {
        "name": opt("resnet18", str, "backbone for augmax_lib.models.build_model"),
        "norm": opt("bn", str, "normalisation layers", choices=("bn", "ibn", "dubn", "dubin")),
        "width": opt(None, int, "channel width (null: the paper's)", nullable=True, minimum=1),
        "kwargs": opt({}, dict, "further keyword arguments of the model builder"),
        "input_mean": opt(None, list, "normalise inputs inside the model: (x - mean) / std per channel (null: the "
                           "backbone's default, ImageNet statistics for *_imagenet, none otherwise)", nullable=True,
                           item=float),
        "input_std": opt(None, list, "per-channel std of that normalisation (set with input_mean)", nullable=True,
                          item=float),
    },
    "method": {"name": opt("normal", str, "training method", choices=tuple(METHODS))},
    "optim": {
        "name": opt("sgd", str, "optimiser", choices=("sgd",)),
        "lr": opt(0.1, float, "learning rate at batch size 256", minimum=0.0),
        "lr_batch_scale": opt(False, bool, "scale lr by batch_size / 256 (the reference does so on TIN and ImageNet)"),
        "momentum": opt(0.9, float, "SGD momentum", minimum=0.0),
        "weight_decay": opt(5e-4, float, "L2 weight decay", minimum=0.0),
        "nesterov": opt(False, bool, "Nesterov momentum"),
    },
    "schedule": {
        "name": opt("cosine", str, "learning-rate schedule: 'cosine' (per epoch, AugMax's), 'cosine_per_step' "
                     "(per optimiser step, AugMix's cifar.py), 'multistep' or 'constant'", choices=SCHEDULES),
        "milestones": opt([100, 150], list, "multistep: epochs where lr is multiplied by gamma", item=int),
        "gamma": opt(0.1, float, "multistep: factor at each milestone", minimum=0.0),
        "min_lr": opt(0.0, float, "cosine schedules: the learning rate they end at (AugMix's cifar.py: 1e-6)",
                       minimum=0.0),
    },
    "train": {
        "epochs": opt(200, int, "training epochs", minimum=1),
        "batch_size": opt(256, int, "global batch size (split across DDP ranks)", minimum=1),
        "eval_batch_size": opt(1024, int, "batch size for validation", minimum=1),
        "steps_per_epoch": opt(None, int, "cap on optimiser steps per epoch (null: the whole training set)",
                                nullable=True, minimum=1),
        "seed": opt(0, int, "seed of the model init, data order and augmentation"),
        "device": opt("auto", str, "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'"),
        "precision": opt("fp32", str, "arithmetic of forward passes in training, attacks and validation: 'fp32' "
                          "(the paper's), autocast to 'bf16' / 'fp16' (opt-in speed; fp16 adds a grad scaler), or "
                          "'auto' (bf16 where the device computes it natively, else fp32; the run records which)",
                          choices=PRECISIONS),
        "channels_last": opt(False, bool, "channels-last memory format (opt-in speed, same arithmetic)"),
        "compile": opt(False, bool, "torch.compile the model (opt-in speed)"),
        "log_every": opt(50, int, "steps between progress updates (the only host syncs of a step)", minimum=1),
        "eval_every": opt(1, int, "epochs between validations", minimum=1),
        "select_metric": opt("val_acc", str, "metric of the best checkpoint: val_acc (highest) or val_loss (lowest)",
                              choices=("val_acc", "val_loss")),
        "progress": opt(True, bool, "show tqdm progress bars"),
        "checkpoint_every_steps": opt(None, int, "also write last.pt every this many optimiser steps inside an epoch "
                                       "(null: after each epoch only); a preempted job then loses at most that "
                                       "many steps, and the resume stays exact", nullable=True, minimum=1),
    },
    "eval": {
        "images_per_set": opt(None, int, "robustness evaluation (python -m augmax_lib evaluate --run) on this many "
                               "class-balanced test images, the same in every set (null: the whole test set)",
                               nullable=True, minimum=1),
        "subset_seed": opt(0, int, "seed of the evaluation subset's indices"),
        "precision": opt("fp32", str, "evaluate --run: forward passes in 'fp32' (the paper's), under 'bf16' / "
                          "'fp16' autocast (opt-in speed), or 'auto' (bf16 where native, else fp32); --precision "
                          "overrides", choices=PRECISIONS),
        "channels_last": opt(False, bool, "evaluate --run: channels-last memory format (opt-in speed)"),
        "compile": opt(False, bool, "evaluate --run: torch.compile the model (opt-in speed)"),
    },
}


def same_setting(key: str, recorded, requested) -> bool:
    """Whether a run that recorded ``recorded`` for the dotted ``key`` is what ``requested`` asks for: equal, or
    ``requested`` is "auto" for a key of :data:`AUTO_KEYS` and ``recorded`` is what auto gives somewhere (bf16 or
    fp32): a run made on other hardware keeps the precision it used."""
    return recorded == requested or (key in AUTO_KEYS and requested == "auto" and recorded in ("bf16", "fp32"))


def method_options(name: str) -> dict[str, Option]:
    """The options of training method ``name`` (besides ``name``)."""
    if name not in METHOD_OPTIONS:
        raise ConfigError(f"method.name: expected one of {', '.join(METHODS)}, got {name!r}")
    return METHOD_OPTIONS[name]


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_float(value, path: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{path}: expected a number, got the boolean {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:  # "8/255" and "0.1" both parse exactly as fractions
            return float(Fraction(value.replace(" ", "")))
        except (ValueError, ZeroDivisionError):
            pass
    raise ConfigError(f"{path}: expected a number (e.g. 0.1 or 8/255), got {value!r}")


def _check_value(path: str, value, opt: Option):
    """Return ``value`` converted to the option's type, or raise ConfigError naming ``path``."""
    if value is None:
        if opt.nullable:
            return None
        raise ConfigError(f"{path}: expected {opt.type.__name__} ({opt.help}), got null")
    if opt.type is float:
        value = _parse_float(value, path)
    elif opt.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer ({opt.help}), got {value!r}")
    elif opt.type is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false ({opt.help}), got {value!r}")
    elif opt.type is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string ({opt.help}), got {value!r}")
    elif opt.type is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list ({opt.help}), got {value!r}")
        value = [_check_value(f"{path}[{i}]", v, Option(None, opt.item, opt.help)) for i, v in enumerate(value)]
    elif opt.type is dict:
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{path}: expected a mapping with string keys ({opt.help}), got {value!r}")
        value = copy.deepcopy(dict(value))
    if opt.choices is not None and value not in opt.choices:
        raise ConfigError(f"{path}: expected one of {', '.join(map(repr, opt.choices))}, got {value!r}")
    if opt.minimum is not None and isinstance(value, (int, float)) and value < opt.minimum:
        raise ConfigError(f"{path}: expected a value >= {opt.minimum} ({opt.help}), got {value!r}")
    return value


def _validate_section(path: str, raw, schema: Mapping[str, Any]) -> dict:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path or 'config'}: expected a mapping of keys to values, got {raw!r}")
    for key in raw:
        if key not in schema:
            where = f"{path}.{key}" if path else str(key)
            if where in RENAMED_KEYS:
                raise ConfigError(RENAMED_KEYS[where])
            raise ConfigError(f"unknown config key {where!r}{_suggest(str(key), schema)}; "
                              f"known keys{' of ' + path if path else ''}: {', '.join(schema)}")
    out = {}
    for key, spec in schema.items():
        where = f"{path}.{key}" if path else key
        if isinstance(spec, Option):
            out[key] = _check_value(where, raw[key], spec) if key in raw else copy.deepcopy(spec.default)
        else:
            out[key] = _validate_section(where, raw.get(key), spec)
    return out


def validate(raw: Mapping) -> dict:
    """Check ``raw`` against the schema and return a complete config with every default filled in."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config: expected a mapping of sections, got {type(raw).__name__}")
    raw = dict(raw)
    method_raw = raw.pop("method", None) or {}
    if not isinstance(method_raw, Mapping):
        raise ConfigError(f"method: expected a mapping with 'name' and its options, got {method_raw!r}")
    config = _validate_section("", raw, {k: v for k, v in SCHEMA.items() if k != "method"})
    name = _check_value("method.name", method_raw.get("name", SCHEMA["method"]["name"].default),
                        SCHEMA["method"]["name"])
    options = method_options(name)
    for key in method_raw:
        if key != "name" and key not in options:
            known = ", ".join(options) or "none"
            raise ConfigError(f"unknown config key 'method.{key}' for method {name!r}{_suggest(str(key), options)}; "
                              f"its options: {known}")
    config["method"] = {"name": name, **_validate_section("method", {k: v for k, v in method_raw.items()
                                                                      if k != "name"}, options)}
    _check_consistency(config)
    return {key: config[key] for key in SCHEMA}  # schema order, for readable dumps


def _check_consistency(config: dict) -> None:
    schedule = config["schedule"]
    if schedule["name"] == "multistep" and list(schedule["milestones"]) != sorted(schedule["milestones"]):
        raise ConfigError(f"schedule.milestones: expected increasing epochs, got {schedule['milestones']}")
    model = config["model"]
    if (model["input_mean"] is None) != (model["input_std"] is None):
        raise ConfigError("model.input_mean, model.input_std: expected both (per-channel lists) or neither, got "
                          f"{model['input_mean']!r} and {model['input_std']!r}")
    if model["input_mean"] is not None:
        if len(model["input_mean"]) != len(model["input_std"]) or len(model["input_mean"]) not in (1, 3):
            raise ConfigError(f"model.input_mean, model.input_std: expected lists of 1 or 3 values of the same "
                              f"length, got {model['input_mean']!r} and {model['input_std']!r}")
        if min(model["input_std"]) <= 0:
            raise ConfigError(f"model.input_std: expected positive values, got {model['input_std']!r}")
    device = config["train"]["device"]
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ConfigError(f"train.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    method = config["method"]
    early_stopped = method["name"] == "fat" or method.get("attack") == "fat"
    if early_stopped and method["tau"] < 1:
        raise ConfigError("method.tau: expected >= 1 with early stopping (tau = 0 would stop every sample "
                          f"before its first step), got {method['tau']}")


def merge(base: Mapping, overlay: Mapping) -> dict:
    """Deep-merge ``overlay`` onto ``base`` (mappings merge key by key; everything else is replaced)."""
    out = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key not in ("kwargs", "options"):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ConfigError(f"{what}: no such file {str(path)!r}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{what}: {str(path)!r} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what}: {str(path)!r} must hold a mapping of sections, got {type(data).__name__}")
    return dict(data)


def load_profile(profile: str, config_path: Path | None = None) -> dict:
    """The overlay of profile ``profile``: a name (smoke, quick, full) in configs/profiles/, or a YAML path."""
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml"):
        return _read_yaml(candidate, "profile")
    search = []
    if config_path is not None:  # a profiles/ folder beside or above the config file comes first
        for parent in Path(config_path).resolve().parents:
            search.append(parent / "profiles")
            if (parent / "profiles").is_dir():
                break
    search.append(PROFILES_DIR)
    for folder in search:
        path = folder / f"{profile}.yaml"
        if path.is_file():
            return _read_yaml(path, "profile")
    names = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")) if PROFILES_DIR.is_dir() else []
    raise ConfigError(f"profile: no profile named {profile!r} (looked in {', '.join(str(f) for f in search)}); "
                      f"known: {', '.join(names) or 'none'}")


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``section.key=value`` into the key path and the YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"--set: expected key=value (e.g. train.epochs=10), got {text!r}")
    key, _, value = text.partition("=")
    path = [part for part in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"--set: expected a dotted key like train.epochs, got {key!r}")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value  # a plain string that YAML cannot read (e.g. with a colon) stays a string
    return path, parsed


def apply_overrides(raw: Mapping, overrides: Iterable[str]) -> dict:
    """Apply ``--set key=value`` overrides to a raw (unvalidated) config; keys are checked by :func:`validate`."""
    out = copy.deepcopy(dict(raw))
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for depth, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {'.'.join(path[:depth + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return out


def _profile_section(overlay: dict, key: str, profile: str, names, what: str) -> dict:
    """Pop ``overlay[key]`` (a mapping from ``what`` names to option mappings), checking it."""
    section = overlay.pop(key, None) or {}
    if not isinstance(section, Mapping) or not all(isinstance(v, Mapping) for v in section.values()):
        raise ConfigError(f"profile {profile!r}: {key} must map {what} names to option mappings")
    unknown = sorted(set(section) - set(names))
    if unknown:
        raise ConfigError(f"profile {profile!r}: {key} names unknown {what}(s) {unknown}; expected names from {list(names)}")
    return dict(section)


def is_ablation(raw: Mapping) -> bool:
    """Whether a (raw) config is a row of one of the paper's ablation tables (its ``paper.table`` says so)."""
    table = (raw.get("paper") or {}).get("table") or ""
    return "ablation" in str(table).lower()


def load_config(path: str | Path | None = None, profile: str | None = None,
                overrides: Iterable[str] = (), base: Mapping | None = None) -> dict:
    """Read a config file (or start from ``base``), apply a profile overlay and ``--set`` overrides, validate.

    Order: file (or ``base``) < profile < overrides. A profile's keys are generic (data size, width, epochs),
    so one profile fits every paper row. Within the profile, ``per_model: {<model name>: {...}}`` sets model
    options of one backbone, ``ablations: {...}`` overlays the rows of the ablation tables (a smaller budget),
    and ``per_method: {<method name>: {...}}`` sets method options of one method.
    """
    raw = _read_yaml(Path(path), "config") if path is not None else copy.deepcopy(dict(base or {}))
    if profile:
        overlay = dict(load_profile(profile, Path(path) if path is not None else None))
        if "method" in overlay:
            raise ConfigError(f"profile {profile!r}: a profile may not set method options (they differ per method); "
                              f"put them under per_method: {{<method name>: {{...}}}}")
        # What a profile says to people and to the course notebooks: no config keys (augmax_lib.course.params).
        for key in PROFILE_ONLY_KEYS:
            overlay.pop(key, None)
        per_method = _profile_section(overlay, "per_method", profile, METHODS, "method")
        from augmax_lib.models import list_models  # the models package imports this module's neighbours
        per_model = _profile_section(overlay, "per_model", profile, list_models(), "model")
        ablations = overlay.pop("ablations", None) or {}
        if not isinstance(ablations, Mapping) or {"method", "per_method", "per_model"} & set(ablations):
            raise ConfigError(f"profile {profile!r}: ablations must be a mapping of config sections (data, model, "
                              f"train, eval), without method options")
        raw = merge(raw, overlay)
        model = (raw.get("model") or {}).get("name", SCHEMA["model"]["name"].default)
        if model in per_model:
            raw = merge(raw, {"model": per_model[model]})
        if ablations and is_ablation(raw):
            raw = merge(raw, ablations)
        name = (raw.get("method") or {}).get("name", SCHEMA["method"]["name"].default)
        if name in per_method:
            raw = merge(raw, {"method": per_method[name]})
        raw["profile"] = profile_name(profile)
    raw = apply_overrides(raw, overrides)
    return validate(raw)


def profile_name(profile) -> str:
    """How a profile is recorded: its name (``quick``), or the file name of a profile given as a YAML path."""
    path = Path(str(profile))
    return path.name if path.suffix in (".yaml", ".yml") else str(profile)


def dump_config(config: Mapping) -> str:
    """The config as YAML text, in schema order."""
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None)
