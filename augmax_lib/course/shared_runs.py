"""Shared training runs for the notebooks: load a finished run, resume a partial one, train a missing one.

A run of config ``cifar10/resnet18_normal`` in profile ``quick`` with seed 0 lives in
``runs/quick/cifar10/resnet18_normal/seed0/``; a finished run of the same config that
``python -m augmax_lib sweep --out runs/quick`` made (``runs/quick/cifar10_resnet18_normal/seed0/``) is used
instead when that folder is empty, so ``make results`` then ``make book`` trains nothing twice. Every
notebook that asks for the same (config, profile, seed, overrides) gets the same folder, so a book build
trains each model once, and a run interrupted half-way continues from its ``last.pt``.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import torch

from augmax_lib._device import resolve_device
from augmax_lib.train.checkpoint import RESUMABLE_KEYS, _flatten, config_mismatches
from augmax_lib.train.config import PROFILES_DIR, ConfigError, load_config, parse_override

__all__ = ["CONFIGS_DIR", "Run", "get_run", "find_config", "run_dir", "evaluate_run", "shown_path"]

# configs/ of the source tree (profiles/ sits inside it).
CONFIGS_DIR = PROFILES_DIR.parent


def find_config(config) -> tuple[Path, str]:
    """The YAML file of ``config`` (a path, or a name like ``cifar10/resnet18_normal``) and its run name.

    The run name is the file's path under ``configs/`` without ``.yaml`` (its stem when it is elsewhere).
    """
    if not isinstance(config, (str, Path)) or not str(config):
        raise ConfigError(f"config: expected a YAML path or a config name like 'cifar10/resnet18_normal', "
                          f"got {config!r}")
    text = str(config)
    given = Path(text).expanduser()
    if given.suffix in (".yaml", ".yml"):
        candidates = [given] if given.is_absolute() else [given, CONFIGS_DIR.parent / given, CONFIGS_DIR / given]
    else:
        candidates = [Path("configs") / f"{text}.yaml", CONFIGS_DIR / f"{text}.yaml"]
    for path in candidates:
        if path.is_file():
            path = path.resolve()
            for parent in path.parents:
                if parent.name == "configs":
                    return path, path.relative_to(parent).with_suffix("").as_posix()
            return path, path.stem
    known = sorted(p.relative_to(CONFIGS_DIR).with_suffix("").as_posix() for p in CONFIGS_DIR.glob("*/*.yaml")
                   if p.parent.name != "profiles") if CONFIGS_DIR.is_dir() else []
    raise ConfigError(f"config: no file for {text!r} (looked at {', '.join(str(p) for p in candidates)}); "
                      f"known names: {', '.join(known[:12]) or 'none (is the repository checked out?)'}"
                      f"{' ...' if len(known) > 12 else ''}")


def _is_resumable(key: str) -> bool:
    return any(key == p or key.startswith(p + ".") for p in RESUMABLE_KEYS)


def _split_overrides(overrides: Iterable[str]) -> tuple[list[str], list[str]]:
    """(overrides that change what is computed, overrides that do not: data root, device, progress ...)."""
    if isinstance(overrides, str):
        raise ConfigError(f"overrides: expected a list of 'key=value' strings, got the string {overrides!r}")
    computed, free = [], []
    for text in overrides:
        path, _ = parse_override(text)
        key = ".".join(path)
        if key == "train.seed":
            raise ConfigError("overrides: set the seed with get_run(..., seed=k), not train.seed (it names the "
                              "run folder seed<k>)")
        (free if _is_resumable(key) else computed).append(text.strip())
    return computed, free


def run_dir(name: str, profile: str, seed: int, runs_dir="runs", overrides: Iterable[str] = ()) -> Path:
    """``runs_dir/<profile>/<name>/seed<k>``, with a short hash of the computing overrides when there are any."""
    computed, _ = _split_overrides(overrides)
    leaf = f"seed{int(seed)}"
    if computed:
        # A set: the same override given twice (a notebook's data set and a table's) names the same run.
        leaf += "-" + hashlib.sha256("\n".join(sorted(set(computed))).encode()).hexdigest()[:8]
    return Path(runs_dir) / str(Path(profile).stem) / name / leaf


@dataclass
class Run:
    """A training run folder and what the notebooks read from it (the model is loaded on first use)."""

    dir: Path
    config: dict
    profile: str
    seed: int = 0
    device: torch.device = field(default_factory=resolve_device)
    action: str = "loaded"  # what get_run did: "loaded", "resumed" or "trained"
    _model: Optional[torch.nn.Module] = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def complete(self) -> bool:
        """Whether training finished (``results.json`` is written after the last epoch)."""
        return (self.dir / "results.json").is_file()

    @property
    def model(self) -> torch.nn.Module:
        """The best checkpoint's model (chosen on the validation split), eval mode, on ``device``."""
        if self._model is None:
            self._model = self.load("best")
        return self._model

    def load(self, which: str = "best") -> torch.nn.Module:
        """A fresh copy of the model of ``best.pt`` or ``last.pt`` (eval mode, on ``device``)."""
        from augmax_lib.train import load_run

        model, _ = load_run(self.dir, which, device=self.device)
        return model

    @property
    def log(self):
        """One row per epoch (pandas DataFrame): lr, train_loss, train_acc, val_loss, val_acc, timings, extras."""
        import pandas as pd

        path = self.dir / "log.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    @property
    def results(self) -> Optional[dict]:
        """``results.json`` (provenance, best and final rows) with the evaluation under ``"evaluation"`` when run."""
        path = self.dir / "results.json"
        if not path.is_file():
            return None
        out = json.loads(path.read_text())
        evaluation = self.evaluation
        if evaluation is not None:
            out["evaluation"] = evaluation
        return out

    @property
    def evaluation(self) -> Optional[dict]:
        """``evaluation/results.json`` written by :func:`evaluate_run`, or None."""
        path = self.dir / "evaluation" / "results.json"
        return json.loads(path.read_text()) if path.is_file() else None

    @property
    def data_source(self) -> str:
        results = self.results
        return results["data_source"] if results else self.config["data"]["dataset"]

    def describe(self) -> str:
        """One line saying where this run's numbers come from: profile, data, seed, epochs, device."""
        results = self.results or {}
        prov = results.get("provenance", {})
        epochs = len(self.log)
        m = self.config["model"]
        return (f"{self.name} ({m['name']}-{m['norm']}, {self.config['method']['name']}) "
                f"[{self.profile} profile, {self.data_source}, seed {self.seed}, "
                f"{epochs}/{self.config['train']['epochs']} epochs, "
                f"{results.get('num_train_images', '?')} training images, trained on {prov.get('device_name', '?')}]")

    def __repr__(self) -> str:
        return f"Run({str(self.dir)!r}, {self.action}, complete={self.complete})"


def _lock(path: Path):
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / f".{path.name}.lock"))


def get_run(config, *, profile: str = "quick", runs_dir="runs", seed: int = 0, overrides: Iterable[str] = (),
            device=None, evaluate: bool = False, progress: bool = True, cache=None) -> Run:
    """The run of ``config`` in ``profile``: loaded when finished, resumed from ``last.pt`` when partial, else trained.

    ``config``: a YAML path or a name under configs/ (``"cifar10/resnet18_normal"``). ``overrides``:
    ``key=value`` strings as for ``--set``; those that change the computation give the run its own folder.
    ``device``: where to train and load (default: CUDA when available). ``evaluate``: also run
    :func:`evaluate_run` unless its results exist (``cache``: a CorruptionCache shared with other evaluations).
    A lock file makes concurrent callers wait for one training.
    """
    path, name = find_config(config)
    overrides = list(overrides)
    computed, _ = _split_overrides(overrides)
    device = resolve_device(device)
    # The engine's own bars and epoch lines stay off: a notebook shows one progress line per run (_ensure_trained).
    extra = [f"train.seed={int(seed)}", f"train.device={device}", "train.progress=false"]
    cfg = load_config(path, profile, overrides + extra)
    folder = run_dir(name, profile, seed, runs_dir, computed)
    if not computed:
        folder = _swept_instead(folder, runs_dir, profile, seed, cfg)
    folder = _beside_another(folder, cfg)
    with _lock(folder):
        action = _ensure_trained(cfg, folder, progress)
        run = Run(folder, cfg, str(profile), int(seed), device, action)
        if evaluate and run.evaluation is None:
            evaluate_run(run, progress=progress, cache=cache)
    return run


def _swept_instead(folder: Path, runs_dir, profile: str, seed: int, cfg: dict) -> Path:
    """The folder ``python -m augmax_lib sweep --out runs_dir/<profile>`` wrote for this run, when it finished
    with the same config and the notebooks' own folder holds nothing yet; else ``folder``."""
    swept = Path(runs_dir) / str(Path(profile).stem) / cfg["name"] / f"seed{int(seed)}"
    if swept == folder or (folder / "results.json").is_file() or (folder / "last.pt").is_file():
        return folder
    try:
        saved = json.loads((swept / "results.json").read_text()).get("config", {})
    except (OSError, ValueError):
        return folder
    return swept if not config_mismatches(saved, cfg) else folder


def _saved_config(folder: Path) -> Optional[dict]:
    """The config of the run in ``folder``: results.json's when it finished, else the config.yaml a start writes."""
    import yaml

    try:
        if (folder / "results.json").is_file():
            return json.loads((folder / "results.json").read_text()).get("config")
        if (folder / "config.yaml").is_file():
            return yaml.safe_load((folder / "config.yaml").read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return None


def _config_tag(cfg: dict) -> str:
    """8 hex digits naming what ``cfg`` computes (its keys that a resumed run may not change)."""
    items = sorted((k, v) for k, v in _flatten(cfg).items() if not _is_resumable(k))
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _beside_another(folder: Path, cfg: dict) -> Path:
    """``folder``, or when it holds a run of another config (say, one an older version of the profile trained at
    another budget), ``<folder>-c<config_tag>`` beside it: that run is kept as it is, and this one never blocks."""
    saved = _saved_config(folder)
    diffs = config_mismatches(saved, cfg) if saved else []
    if not diffs:
        return folder
    beside = folder.with_name(f"{folder.name}-c{_config_tag(cfg)}")
    more = f"; and {len(diffs) - 3} more" if len(diffs) > 3 else ""
    print(f"note: {shown_path(folder)}/ holds a run of another config ({'; '.join(diffs[:3])}{more}); it is kept, "
          f"and this run uses {shown_path(beside)}/", flush=True)
    return beside


def shown_path(path) -> str:
    """A folder as a page may show it: relative to the working folder when inside it, else only its last parts
    (no absolute path of this machine ends up in a notebook's output)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return str(path) if not path.is_absolute() else str(Path("...", *path.parts[-4:]))


def _ensure_trained(cfg: dict, folder: Path, progress: bool = True) -> str:
    from augmax_lib._progress import tqdm
    from augmax_lib.train import CheckpointError, train
    from augmax_lib.train.checkpoint import load_checkpoint

    if (folder / "results.json").is_file():
        saved = json.loads((folder / "results.json").read_text()).get("config", {})
        diffs = config_mismatches(saved, cfg)
        if diffs:
            raise CheckpointError(f"run {shown_path(folder)!r} was trained with another config ({'; '.join(diffs)}); "
                                  f"delete that folder or use another runs_dir to train it again")
        return "loaded"
    epochs = cfg["train"]["epochs"]
    done = 0
    if (folder / "last.pt").is_file():  # a partial run: continue it (train checks the config matches)
        done = int(load_checkpoint(folder / "last.pt", kind="last")["epoch"])
    verb = f"resuming from epoch {done}" if done else "training"
    print(f"{verb}: {cfg['name']} ({epochs} epochs on {cfg['train']['device']}) into {shown_path(folder)}/",
          flush=True)
    # One line per run: a bar over epochs where bars are shown, else the line above and a summary below.
    bar = tqdm(total=epochs, initial=done, desc=cfg["name"], unit="epoch", disable=not progress, leave=True)
    best = {"val_acc": None}

    def on_epoch(row: dict) -> None:
        if row.get("val_acc") is not None:
            best["val_acc"] = max(best["val_acc"] or 0.0, row["val_acc"])
        bar.update(1)
        bar.set_postfix_str(f"val acc {100 * row['val_acc']:.1f}%" if row.get("val_acc") is not None else "")

    start = time.perf_counter()
    try:
        train(cfg, out=folder, resume=bool(done), on_epoch=on_epoch)
    finally:
        bar.close()
    found = f", best validation accuracy {100 * best['val_acc']:.1f}%" if best["val_acc"] is not None else ""
    print(f"done: {cfg['name']} in {time.perf_counter() - start:.0f} s{found}", flush=True)
    return "resumed" if done else "trained"


def evaluate_run(run: Run, eval_images: Optional[int] = -1, *, generate_corruptions="auto", skip=(),
                 batch_size: int = 500, progress: bool = True, cache=None) -> dict:
    """Evaluate the run's best model as ``python -m augmax_lib evaluate --run`` does and write
    ``evaluation/results.json`` (:func:`augmax_lib.evaluate.evaluate_run`); returns the results.

    ``eval_images``: test images per set, class-balanced and the same in every set (-1: the config's
    ``eval.images_per_set``, which the smoke and quick profiles set; None: all). Numerics come from the config's
    ``eval`` section. Corruptions are generated on the fly when the published files are absent ("auto").
    ``cache``: an ``augmax_lib.evaluate.CorruptionCache`` shared by the evaluations of a table of runs.
    """
    from augmax_lib.evaluate import evaluate_run as evaluate_training_run
    from augmax_lib.evaluate import run_options

    changes = dict(generate_corruptions=generate_corruptions, skip=tuple(skip), batch_size=batch_size,
                   progress=progress)
    if eval_images != -1:
        changes["images_per_set"] = eval_images
    return evaluate_training_run(run.dir, run_options(run.config, **changes), device=run.device, cache=cache)
