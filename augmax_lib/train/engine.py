"""The training engine: ``train(config) -> run directory``.

A run directory holds ``config.yaml`` (the validated config), ``log.csv`` and ``log.json`` (one row per
epoch), ``last.pt`` (everything needed to resume, written after every epoch), ``best.pt`` (the weights
that did best on the validation split held out from the training set; the test set is never looked at)
and, once the last epoch is done, ``results.json`` (provenance: config, git commit, torch version,
device, data source, numerics, wall time, images per second). Every file is written atomically.

The fast path on a GPU: the training set lives on the device as uint8 and is cropped and flipped there
(``augmax_lib.data.DeviceLoader``) and the chains and the mixing run on the device. Forward passes run in
fp32, as the paper's did; ``train.precision`` (bf16 or fp16 autocast), ``train.channels_last`` and
``train.compile`` are opt-in speed settings (CPU too) that apply to training steps, attacks and validation
alike, and ``results.json`` records them under ``numerics``. Losses and accuracies are summed on the device
and read once per ``train.log_every`` steps, the only host syncs the engine adds.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import platform
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from augmax_lib._progress import tqdm

from augmax_lib._checks import to_float
from augmax_lib._malloc import keep_freed_memory
from augmax_lib.norm import dual_layers, route

from . import distributed as dist_utils
from .checkpoint import (CheckpointError, atomic_write_text, capture_rng, config_mismatches, load_checkpoint,
                         restore_rng, save_checkpoint)
from .config import ConfigError, dump_config, load_config
from .methods import StepContext, get_step, training_routes
from .runs import backbone, build_run_model

__all__ = ["train", "RunDirError", "TrainData", "build_data", "evaluate_split", "provenance", "run_dir_for", "numerics",
           "cosine_per_step_factor"]


class RunDirError(RuntimeError):
    """The run directory cannot be used: it holds another run (without --resume) or nothing to resume."""


def run_dir_for(config: Mapping, out=None) -> Path:
    """The run directory: ``out`` if given, else ``runs/<config name>``."""
    return Path(out) if out is not None else Path("runs") / config["name"]


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers, the same on every machine."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> 1)


# ----------------------------------------------------------------------------------------------- data
@dataclass
class TrainData:
    """The training batches (``loader``: iterable with ``set_epoch``), the validation split and facts for reports."""

    loader: Any
    val: Any  # ImageSet, a torch Dataset, or None without a validation split
    classes: list
    source: str
    num_train: int
    image_size: tuple

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class _LazyLoader:
    """Batches from a lazily read data set (ImageNet folders) through worker processes, sharded like DeviceLoader."""

    def __init__(self, dataset, batch_size: int, device: torch.device, seed: int, info: dist_utils.DistInfo,
                 workers: int):
        from torch.utils.data import DataLoader, DistributedSampler

        self.sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                          seed=seed, drop_last=True)
        self.generator = torch.Generator()
        self.seed, self.rank, self.device, self.epoch = seed, info.rank, device, 0
        self.loader = DataLoader(dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers,
                                 pin_memory=device.type == "cuda", drop_last=True, generator=self.generator,
                                 persistent_workers=False)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.sampler.set_epoch(self.epoch)
        # Worker seeds (and so the random crops and flips) follow from (seed, epoch, rank).
        self.generator.manual_seed(_seed(self.seed, self.epoch, self.rank, 7))

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def _split_indices(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(_seed(seed, 3)))
    return torch.sort(perm[k:]).values, torch.sort(perm[:k]).values


def build_data(config: Mapping, info: dist_utils.DistInfo, device: torch.device) -> TrainData:
    """Load the training set, hold out the validation split, add DeepAugment folders, make the loader."""
    from augmax_lib import data as data_lib

    d, t = config["data"], config["train"]
    local_batch = dist_utils.local_batch_size(t["batch_size"], info)
    full = data_lib.load_dataset(d["dataset"], "train", root=d["root"], **_lazy_options(d))
    if isinstance(full, data_lib.ImageSet):
        if d["image_size"] is not None and tuple(full.image_size) != (d["image_size"],) * 2:
            raise ConfigError(f"data.image_size: {d['dataset']} holds {full.image_size[0]}x{full.image_size[1]} "
                              f"images and trains at that size; set data.image_size to null")
        _check_sizes(d, len(full))
        if d["val_size"]:
            train_set, val = data_lib.split_validation(full, d["val_size"], seed=d["split_seed"])
        else:
            train_set, val = full, None
        if d["train_size"] is not None and d["train_size"] < len(train_set):
            _, train_set = data_lib.split_validation(train_set, d["train_size"], seed=d["split_seed"] + 1)
        if d["extra_train"]:
            train_set = data_lib.with_deepaugment(train_set, d["extra_train"], root=d["root"],
                                                  progress=info.is_main and t["progress"])
        if len(train_set) // info.world_size < local_batch:
            raise ConfigError(f"train.batch_size: {t['batch_size']} is larger than the {len(train_set)} training "
                              f"images (per process: {len(train_set) // info.world_size}); lower it")
        loader = data_lib.DeviceLoader(train_set, local_batch, device, shuffle=True, augment=True,
                                       padding=d["crop_padding"], flip=d["flip"], drop_last=True,
                                       seed=t["seed"], rank=info.rank, world_size=info.world_size)
        return TrainData(loader, val, list(full.classes), train_set.source or full.source, len(train_set),
                         tuple(full.image_size))
    return _build_lazy_data(config, full, info, device, local_batch)


def _lazy_options(d: Mapping) -> dict:
    options = dict(d["options"])
    if d["dataset"] == "imagenet" and "transform" not in options:
        from augmax_lib.data import imagenet_transform

        options["transform"] = imagenet_transform(train=True, size=d["image_size"] or 224)
    return options


def _check_sizes(d: Mapping, n: int) -> None:
    if d["val_size"] >= n:
        raise ConfigError(f"data.val_size: {d['val_size']} leaves no training images of the {n} in {d['dataset']}")


def _build_lazy_data(config, full, info, device, local_batch) -> TrainData:
    from torch.utils.data import ConcatDataset, Subset

    from augmax_lib import data as data_lib

    d, t = config["data"], config["train"]
    size = d["image_size"] or 224
    _check_sizes(d, len(full))
    train_idx, val_idx = _split_indices(len(full), d["val_size"], d["split_seed"])
    if d["train_size"] is not None and d["train_size"] < len(train_idx):
        keep = torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(_seed(d["split_seed"], 4)))
        train_idx = torch.sort(train_idx[keep[:d["train_size"]]]).values
    parts = [Subset(full, train_idx.tolist())]
    source = full.source
    if d["extra_train"]:
        extended = data_lib.with_deepaugment(full, d["extra_train"], root=d["root"])
        parts += [Subset(part, range(len(part))) for part in extended.parts[1:]]
        source = extended.source
    train_set = ConcatDataset(parts) if len(parts) > 1 else parts[0]
    if len(train_set) // info.world_size < local_batch:
        raise ConfigError(f"train.batch_size: {t['batch_size']} is larger than the {len(train_set)} training "
                          f"images (per process: {len(train_set) // info.world_size}); lower it")
    val = None
    if d["val_size"]:
        eval_view = data_lib.FolderSet(full.folder, data_lib.imagenet_transform(train=False, size=size,
                                                                                resize=round(size * 256 / 224)),
                                       full.classes, source=full.source, name=full.name)
        val = Subset(eval_view, val_idx.tolist())
    loader = _LazyLoader(train_set, local_batch, device, t["seed"], info, d["workers"])
    return TrainData(loader, val, list(full.classes), source, len(train_set), (size, size))


# ------------------------------------------------------------------------------------------ evaluation
@torch.no_grad()
def evaluate_split(model: nn.Module, data, batch_size: int, device: torch.device, info: dist_utils.DistInfo,
                   autocast=contextlib.nullcontext, workers: int = 0) -> dict:
    """Loss and accuracy of ``model`` (eval mode, route "M") on ``data``, sharded over ranks and summed."""
    was_training = model.training
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    try:
        with route(model, "M"):
            for x, y in _eval_batches(data, batch_size, device, info, workers):
                with autocast():
                    logits = model(to_float(x))
                logits = logits.float()
                totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
                totals[1] += (logits.argmax(1) == y).sum().double()
                totals[2] += y.numel()
    finally:
        model.train(was_training)
    dist_utils.all_reduce_sum(totals, info)
    loss, correct, count = totals.tolist()
    return {"val_loss": loss / max(count, 1), "val_acc": correct / max(count, 1)}


def _eval_batches(data, batch_size, device, info, workers):
    from augmax_lib.data import ImageSet

    if isinstance(data, ImageSet):
        index = torch.arange(info.rank, len(data), info.world_size)
        for part in index.split(batch_size):
            yield data.images[part].to(device, non_blocking=True), data.labels[part].to(device, non_blocking=True)
        return
    from torch.utils.data import DataLoader, Subset

    shard = Subset(data, range(info.rank, len(data), info.world_size))
    for x, y in DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers):
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


# ------------------------------------------------------------------------------------------ provenance
def _git(args: list[str]) -> Optional[str]:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def device_name(device: torch.device) -> str:
    """A readable name of the device the run used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device, info: dist_utils.DistInfo) -> dict:
    """Where a result came from: code version, library versions, machine."""
    import torchvision

    commit = _git(["rev-parse", "HEAD"])
    dirty = _git(["status", "--porcelain", "--untracked-files=no"])
    return {
        "git_commit": commit,
        "git_dirty": None if dirty is None else bool(dirty),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "world_size": info.world_size,
        "backend": info.backend,
    }


# -------------------------------------------------------------------------------------------- logging
def _write_logs(run_dir: Path, history: list[dict]) -> None:
    atomic_write_text(run_dir / "log.json", json.dumps(history, indent=1) + "\n")
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / "log.csv", buffer.getvalue())


def _as_config(config, profile, overrides) -> dict:
    if isinstance(config, (str, Path)):
        return load_config(config, profile, overrides)
    if not isinstance(config, Mapping):
        raise ConfigError(f"config: expected a path to a YAML file or a mapping, got {type(config).__name__}")
    # The same path as a file: the profile's per_method, per_model and ablations sections apply to a mapping too.
    return load_config(base=config, profile=profile, overrides=overrides)


def _prepare_run_dir(run_dir: Path, resume: bool, config: Mapping) -> Optional[dict]:
    """Check the run directory (every rank, read only) and load the resume checkpoint when asked."""
    if resume:
        last = run_dir / "last.pt"
        if not last.is_file():
            raise RunDirError(f"--resume: nothing to resume in {str(run_dir)!r} (no last.pt); "
                              f"start the run without --resume")
        return load_checkpoint(last, map_location="cpu", kind="last")
    if run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == ["config.yaml"] and \
            (run_dir / "config.yaml").read_text() == dump_config(config):
        return None  # a start of this very run that ended before its first checkpoint: start again
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        names = sorted(p.name for p in run_dir.iterdir())[:6] if run_dir.is_dir() else []
        raise RunDirError(f"run directory {str(run_dir)!r} is not empty ({', '.join(names)}); pass --resume to "
                          f"continue that run, or choose another --out; nothing was overwritten")
    return None


def cosine_per_step_factor(total_steps: int, lr: float, min_lr: float):
    """AugMix's cosine (cifar.py) as a factor of ``lr``: step t of T runs at min_lr + (lr - min_lr)(1+cos(pi t/T))/2."""
    floor = min_lr / lr if lr > 0 else 0.0

    def factor(step: int) -> float:
        return floor + (1 - floor) * 0.5 * (1 + math.cos(step / total_steps * math.pi))

    return factor


def _make_scheduler(optimizer, config, steps_per_epoch: int):
    """The learning-rate schedule; ``cosine_per_step`` is stepped after every optimiser step, the others per epoch."""
    s, epochs = config["schedule"], config["train"]["epochs"]
    if s["name"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=s["min_lr"])
    if s["name"] == "cosine_per_step":
        # A closure, not a callable object: LambdaLR's state dict then holds no function state (the config does).
        factor = cosine_per_step_factor(epochs * steps_per_epoch, optimizer.param_groups[0]["lr"], s["min_lr"])
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
    milestones = s["milestones"] if s["name"] == "multistep" else []
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=s["gamma"])


_AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def numerics(config: Mapping) -> dict:
    """How the forward passes computed (results.json's ``numerics``): precision, channels-last, torch.compile."""
    t = config["train"]
    return {"precision": t["precision"], "channels_last": t["channels_last"], "compile": t["compile"]}


def _better(value: float, best: Optional[float], metric: str) -> bool:
    if best is None:
        return True
    return value > best if metric == "val_acc" else value < best


# ------------------------------------------------------------------------------------------------ train
def train(config, out=None, resume: bool = False, profile: Optional[str] = None, overrides: Iterable[str] = (),
          stop_after: Optional[int] = None, on_epoch: Optional[Callable[[dict], None]] = None) -> Path:
    """Train the model ``config`` describes (a YAML path or a mapping) and return the run directory.

    ``out`` is the run directory (default ``runs/<name>``); it must be empty or absent unless ``resume``,
    which continues from its ``last.pt`` with the same optimiser, scheduler, scaler and random states.
    ``profile`` and ``overrides`` (``key=value``) adjust the config as the command line does.
    ``stop_after`` ends this session after that many epochs (resume later to go on). ``on_epoch`` is called on
    rank 0 with each epoch's log row once its checkpoint is written (a caller's own progress display).
    Under ``torchrun`` every process calls this; rank 0 writes the files.
    """
    config = _as_config(config, profile, overrides)
    keep_freed_memory()  # a CPU step's tensors come from the heap, not page-faulted in again (_malloc.py)
    info = dist_utils.setup(config["train"]["device"])
    try:
        return _train(config, run_dir_for(config, out), resume, stop_after, info, on_epoch)
    finally:
        dist_utils.cleanup(info)


def _train(config: dict, run_dir: Path, resume: bool, stop_after: Optional[int],
           info: dist_utils.DistInfo, on_epoch: Optional[Callable[[dict], None]] = None) -> Path:
    t = config["train"]
    device = info.device
    state = _prepare_run_dir(run_dir, resume, config)
    if state is not None:
        diffs = config_mismatches(state["config"], config)
        if diffs:
            raise CheckpointError(f"--resume: {run_dir / 'last.pt'} was made with another config; differences: "
                                  + "; ".join(diffs))
        if state["world_size"] != info.world_size:
            warnings.warn(f"resuming a run made with {state['world_size']} processes on {info.world_size}: the "
                          f"data order and augmentation draws differ from an uninterrupted run", stacklevel=3)
    dist_utils.barrier(info)  # every rank has checked the directory before rank 0 writes to it
    show = info.is_main and t["progress"]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    torch.manual_seed(t["seed"])  # the same model initialisation on every rank
    data = build_data(config, info, device)
    net = build_run_model(config, data.num_classes).to(device)
    if t["channels_last"]:
        net = net.to(memory_format=torch.channels_last)
    lr = config["optim"]["lr"] * (t["batch_size"] / 256 if config["optim"]["lr_batch_scale"] else 1.0)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=config["optim"]["momentum"],
                                weight_decay=config["optim"]["weight_decay"], nesterov=config["optim"]["nesterov"])
    steps_per_epoch = len(data.loader) if t["steps_per_epoch"] is None else min(len(data.loader),
                                                                                 t["steps_per_epoch"])
    scheduler = _make_scheduler(optimizer, config, steps_per_epoch)
    per_step_schedule = config["schedule"]["name"] == "cosine_per_step"
    amp_dtype = _AUTOCAST_DTYPES[t["precision"]]
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    aug_generator = torch.Generator(device=device).manual_seed(_seed(t["seed"], 11, info.rank))
    generators = {"augmentation": aug_generator}

    start_epoch, history, best, wall_before = 0, [], {"epoch": None, "value": None}, 0.0
    if state is not None:
        try:
            backbone(net).load_state_dict(state["model"])
        except RuntimeError as err:
            raise CheckpointError(f"{run_dir / 'last.pt'}: its weights do not fit the model of the config "
                                  f"({err})") from err
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        restore_rng(rng[info.rank] if info.rank < len(rng) else rng[0], generators)
        start_epoch, history, best = int(state["epoch"]), list(state["history"]), dict(state["best"])
        wall_before = float(state["wall_time_s"])

    fast = torch.compile(net) if t["compile"] else net
    # A dual-norm model trained through one route only leaves the other route's norms without gradient.
    one_route = len(training_routes(config["method"])) < 2 and any(True for _ in dual_layers(net))
    model = dist_utils.wrap_model(fast, info, unused_parameters=one_route)
    if state is not None and state.get("rank_buffers") and len(state["rank_buffers"]) == info.world_size:
        # After DDP's initial broadcast: each rank gets back its own BatchNorm statistics, which its attacks use.
        with torch.no_grad():
            for name, buffer in backbone(net).named_buffers():
                buffer.copy_(state["rank_buffers"][info.rank][name])
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    ctx = StepContext(model=model, net=fast, options={k: v for k, v in config["method"].items() if k != "name"},
                      generator=aug_generator, autocast=autocast)
    step_fn = get_step(config["method"]["name"])

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(config))
    metric = t["select_metric"]
    session_start, epochs_done_now = time.perf_counter(), 0
    for epoch in range(start_epoch, t["epochs"]):
        if stop_after is not None and epochs_done_now >= stop_after:
            break
        epoch_start = time.perf_counter()
        data.loader.set_epoch(epoch)
        lr_now = optimizer.param_groups[0]["lr"]
        sums = _run_epoch(model, optimizer, scaler, step_fn, ctx, data.loader, steps_per_epoch, t["log_every"],
                          device, show, f"epoch {epoch + 1}/{t['epochs']}",
                          scheduler if per_step_schedule else None)
        dist_utils.all_reduce_sum(sums["tensor"], info)
        train_time = time.perf_counter() - epoch_start
        if not per_step_schedule:
            scheduler.step()
        totals = sums["tensor"].tolist()
        count = max(totals[2], 1.0)
        row = {"epoch": epoch + 1, "lr": lr_now, "train_loss": totals[0] / count, "train_acc": totals[1] / count}
        row.update({name: totals[3 + i] / count for i, name in enumerate(sums["extras"])})
        if data.val is not None and ((epoch + 1) % t["eval_every"] == 0 or epoch + 1 == t["epochs"]):
            row.update(evaluate_split(fast, data.val, t["eval_batch_size"], device, info, autocast,
                                      config["data"]["workers"]))
        row["train_images_per_s"] = totals[2] / train_time
        row["epoch_time_s"] = time.perf_counter() - epoch_start
        history.append(row)
        improved = (metric in row and _better(row[metric], best["value"], metric)) or data.val is None
        if improved:
            best = {"epoch": epoch + 1, "value": row.get(metric), "metric": metric}
        rank_states = _gather_rank_states(generators, net, info)
        if info.is_main:
            common = {"config": config, "num_classes": data.num_classes, "classes": data.classes,
                      "data_source": data.source}
            if improved:
                save_checkpoint(run_dir / "best.pt", {"kind": "best", "epoch": epoch + 1,
                                                      "model": backbone(net).state_dict(), "best": best, **common})
            save_checkpoint(run_dir / "last.pt", {
                "kind": "last", "epoch": epoch + 1, "model": backbone(net).state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": [r["rng"] for r in rank_states],
                "rank_buffers": [r["buffers"] for r in rank_states] if info.distributed else None,
                "best": best, "history": history,
                "world_size": info.world_size, "wall_time_s": wall_before + time.perf_counter() - session_start,
                **common})
            _write_logs(run_dir, history)
            if show:
                tqdm.write(_epoch_line(row))
            if on_epoch is not None:
                on_epoch(dict(row))
        dist_utils.barrier(info)
        epochs_done_now += 1

    finished = bool(history) and history[-1]["epoch"] == t["epochs"]
    if info.is_main and finished and (epochs_done_now or not (run_dir / "results.json").exists()):
        wall = wall_before + time.perf_counter() - session_start
        rates = [row["train_images_per_s"] for row in history]
        best_row = next((row for row in history if row["epoch"] == best["epoch"]), history[-1])
        results = {
            "name": config["name"], "profile": config["profile"], "description": config["description"],
            "paper": config["paper"],
            "method": config["method"]["name"], "model": config["model"]["name"], "norm": config["model"]["norm"],
            "data_source": data.source, "num_train_images": data.num_train,
            "num_val_images": 0 if data.val is None else len(data.val),
            "epochs": t["epochs"], "best": {**best, "row": best_row}, "final": history[-1],
            "wall_time_s": wall, "train_images_per_s": float(np.mean(rates)) if rates else None,
            "numerics": numerics(config), "provenance": provenance(device, info), "config": config,
            "image_size": list(data.image_size),
        }
        atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    dist_utils.barrier(info)
    return run_dir


def _gather_rank_states(generators, net: nn.Module, info: dist_utils.DistInfo) -> list:
    """Every rank's random states and, under DDP, its own BatchNorm statistics (gathered on rank 0, rank order).

    Buffers are not synchronised during training, so each rank's running statistics, which its attacks use in
    eval mode, must come back on resume for the run to continue exactly.
    """
    mine = {"rng": capture_rng(generators), "buffers": None}
    if not info.distributed:
        return [mine]
    import torch.distributed as dist

    mine["buffers"] = {name: b.detach().cpu().clone() for name, b in backbone(net).named_buffers()}
    gathered = [None] * info.world_size if info.is_main else None
    dist.gather_object(mine, gathered, dst=0)
    return gathered if info.is_main else []


def _epoch_line(row: Mapping) -> str:
    parts = [f"epoch {row['epoch']}", f"lr {row['lr']:.4g}", f"loss {row['train_loss']:.4f}",
             f"acc {100 * row['train_acc']:.2f}%"]
    if "val_acc" in row:
        parts.append(f"val acc {100 * row['val_acc']:.2f}% (loss {row['val_loss']:.4f})")
    parts.append(f"{row['train_images_per_s']:.0f} img/s")
    return " | ".join(parts)


def _run_epoch(model, optimizer, scaler, step_fn, ctx: StepContext, loader, steps: int, log_every: int,
               device: torch.device, show: bool, desc: str, step_scheduler=None) -> dict:
    """One pass over the training batches; returns the summed loss, correct count, count and extras on device.

    ``step_scheduler`` (a per-step schedule) is stepped after every optimiser step.
    """
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    extra_sums: dict[str, torch.Tensor] = {}
    bar = tqdm(total=steps, desc=desc, leave=False, disable=not show, dynamic_ncols=True, unit="step")
    try:
        for index, (x, y) in enumerate(loader):
            if index >= steps:
                break
            result = step_fn(ctx, x, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(result.loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if step_scheduler is not None:
                step_scheduler.step()
            n = y.shape[0]
            loss_sum += result.loss.detach().double() * n
            correct += (result.logits.argmax(1) == y).sum().double()
            count += n
            for name, value in result.extras.items():
                extra_sums.setdefault(name, torch.zeros((), dtype=torch.float64, device=device))
                extra_sums[name] += value.detach().double() * n
            bar.update(1)
            if show and ((index + 1) % log_every == 0 or index + 1 == steps):
                seen = count.item()  # the one host sync per log interval
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100 * correct.item() / seen:.1f}%")
    finally:
        bar.close()
    if not math.isfinite(loss_sum.item()):
        raise FloatingPointError(f"{desc}: the training loss is not finite ({loss_sum.item()}); lower optim.lr, or "
                                 f"use train.precision=fp32 if it was 16-bit (ResNeXt at lr 0.1 is known to diverge "
                                 f"now and then)")
    names = sorted(extra_sums)
    tensor = torch.stack([loss_sum, correct, count] + [extra_sums[k] for k in names])
    return {"tensor": tensor, "extras": names}
