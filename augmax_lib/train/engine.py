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
import copy
import csv
import io
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import numpy as np
import torch
from torch import nn

from augmax_lib._device import resolve_precision
from augmax_lib._io import atomic_write_text
from augmax_lib._malloc import keep_freed_memory
from augmax_lib._progress import tqdm
from augmax_lib.evaluate.provenance import device_description, git_commit
from augmax_lib.norm import dual_layers

from . import distributed as dist_utils
from .checkpoint import CheckpointError, capture_rng, config_mismatches, load_checkpoint, restore_rng, save_checkpoint
from .config import ConfigError, dump_config, load_config
from .data import TrainData, build_data, derived_seed, evaluate_split
from .methods import StepContext, StepResult, get_step, training_routes
from .run_models import backbone, build_run_model

__all__ = ["train", "training_step", "RunDirError", "TrainData", "build_data", "evaluate_split", "provenance",
           "run_dir_for", "numerics", "cosine_per_step_factor"]


class RunDirError(RuntimeError):
    """The run directory cannot be used: it holds another run (without --resume) or nothing to resume."""


def run_dir_for(config: Mapping, out=None) -> Path:
    """The run directory: ``out`` if given, else ``runs/<config name>``."""
    return Path(out) if out is not None else Path("runs") / config["name"]


# ------------------------------------------------------------------------------------------ provenance
def provenance(device: torch.device, info: dist_utils.DistInfo) -> dict:
    """Where a training result came from: code version, library versions, machine (one record with evaluation's:
    ``augmax_lib.evaluate.provenance``)."""
    import platform

    import torchvision

    git = git_commit() or {}
    return {
        "git_commit": git.get("commit"),
        "git_dirty": git.get("dirty"),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_description(device),
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


@dataclass
class _Session:
    """Everything one training session holds: data, model (bare, compiled, wrapped), optimiser, schedule, random
    generators, the step, and where the run stands (epoch, log, best checkpoint, wall time of earlier sessions)."""

    config: dict
    data: TrainData
    net: nn.Module                 # the bare model (checkpoints hold its state)
    fast: nn.Module                # net, or torch.compile(net): the attacks and validation run it
    model: nn.Module               # fast, or its DDP wrapper: the training forward passes run it
    optimizer: Any
    scheduler: Any
    scaler: Any
    generators: dict
    ctx: StepContext
    step_fn: Callable
    steps_per_epoch: int
    per_step_schedule: bool
    start_epoch: int = 0
    start_step: int = 0            # > 0: resuming inside epoch start_epoch, after that many steps
    partial: Optional[dict] = None  # the sums of those steps and the epoch's starting lr (see _save_within_epoch)
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"epoch": None, "value": None})
    wall_before: float = 0.0


def _concrete_precision(config: dict, device: torch.device, saved: Optional[Mapping] = None) -> dict:
    """``config`` with ``train.precision`` "auto" made concrete: a resumed run's own (``saved``, so that it continues
    exactly), else bf16 where ``device`` computes it natively and fp32 elsewhere. The run records the result."""
    if config["train"]["precision"] != "auto":
        return config
    out = copy.deepcopy(config)
    recorded = ((saved or {}).get("train") or {}).get("precision")
    out["train"]["precision"] = recorded if recorded not in (None, "auto") else resolve_precision("auto", device)
    return out


def _check_resume(state: Optional[dict], config: dict, run_dir: Path, info: dist_utils.DistInfo) -> None:
    """Refuse a checkpoint of another config; warn when the number of processes changed."""
    if state is None:
        return
    diffs = config_mismatches(state["config"], config)
    if diffs:
        raise CheckpointError(f"--resume: {run_dir / 'last.pt'} was made with another config; differences: "
                              + "; ".join(diffs))
    if state["world_size"] != info.world_size:
        warnings.warn(f"resuming a run made with {state['world_size']} processes on {info.world_size}: the "
                      f"data order and augmentation draws differ from an uninterrupted run", stacklevel=4)


def _start(config: dict, info: dist_utils.DistInfo) -> _Session:
    """Data, model, optimiser, schedule, scaler and generators of a fresh run, in the order that fixes its draws."""
    t, device = config["train"], info.device
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
    amp_dtype = _AUTOCAST_DTYPES[t["precision"]]
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    aug_generator = torch.Generator(device=device).manual_seed(derived_seed(t["seed"], 11, info.rank))
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    ctx = StepContext(model=net, net=net, options={k: v for k, v in config["method"].items() if k != "name"},
                      generator=aug_generator, autocast=autocast)
    return _Session(config, data, net, net, net, optimizer, scheduler, scaler, {"augmentation": aug_generator}, ctx,
                    get_step(config["method"]["name"]), steps_per_epoch,
                    config["schedule"]["name"] == "cosine_per_step")


def _restore(s: _Session, state: Optional[dict], run_dir: Path, info: dist_utils.DistInfo) -> None:
    """Put back what ``last.pt`` saved: weights, optimiser, schedule, scaler, every random state, the log."""
    if state is None:
        return
    try:
        backbone(s.net).load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{run_dir / 'last.pt'}: its weights do not fit the model of the config "
                              f"({err})") from err
    s.optimizer.load_state_dict(state["optimizer"])
    s.scheduler.load_state_dict(state["scheduler"])
    s.scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    restore_rng(rng[info.rank] if info.rank < len(rng) else rng[0], s.generators)
    s.start_epoch, s.history, s.best = int(state["epoch"]), list(state["history"]), dict(state["best"])
    s.start_step = int(state.get("step") or 0)
    if s.start_step:
        partial = state["partial"]
        s.partial = {"lr": partial["lr"], "sums": partial["sums"][info.rank if info.rank < len(partial["sums"]) else 0]}
    s.wall_before = float(state["wall_time_s"])


def _wrap(s: _Session, state: Optional[dict], info: dist_utils.DistInfo) -> None:
    """torch.compile and DDP around the model (after the restore), and each rank's own BatchNorm statistics back."""
    s.fast = torch.compile(s.net) if s.config["train"]["compile"] else s.net
    # A dual-norm model trained through one route only leaves the other route's norms without gradient.
    one_route = len(training_routes(s.config["method"])) < 2 and any(True for _ in dual_layers(s.net))
    s.model = dist_utils.wrap_model(s.fast, info, unused_parameters=one_route)
    if state is not None and state.get("rank_buffers") and len(state["rank_buffers"]) == info.world_size:
        # After DDP's initial broadcast: each rank gets back its own BatchNorm statistics, which its attacks use.
        with torch.no_grad():
            for name, buffer in backbone(s.net).named_buffers():
                buffer.copy_(state["rank_buffers"][info.rank][name])
    s.ctx.model, s.ctx.net = s.model, s.fast


def _epoch(s: _Session, epoch: int, info: dist_utils.DistInfo, show: bool, save_within: Callable) -> dict:
    """Train one epoch, step an epoch schedule, validate; returns the epoch's log row."""
    t, device = s.config["train"], info.device
    epoch_start = time.perf_counter()
    s.data.loader.set_epoch(epoch)
    lr_now = s.partial["lr"] if s.partial else s.optimizer.param_groups[0]["lr"]
    sums = _run_epoch(s, device, show, f"epoch {epoch + 1}/{t['epochs']}",
                      lambda step, partial: save_within(epoch, step, {"lr": lr_now, "sums": partial}))
    dist_utils.all_reduce_sum(sums["tensor"], info)
    dist_utils.all_reduce_sum(sums["seen_now"], info)
    train_time = time.perf_counter() - epoch_start
    if not s.per_step_schedule:
        s.scheduler.step()
    totals = sums["tensor"].tolist()
    count = max(totals[2], 1.0)
    row = {"epoch": epoch + 1, "lr": lr_now, "train_loss": totals[0] / count, "train_acc": totals[1] / count}
    row.update({name: totals[3 + i] / count for i, name in enumerate(sums["extras"])})
    if s.data.val is not None and ((epoch + 1) % t["eval_every"] == 0 or epoch + 1 == t["epochs"]):
        row.update(evaluate_split(s.fast, s.data.val, t["eval_batch_size"], device, info, s.ctx.autocast,
                                  s.config["data"]["workers"]))
    row["train_images_per_s"] = float(sums["seen_now"]) / train_time  # the images of this session only
    row["epoch_time_s"] = time.perf_counter() - epoch_start
    return row


def _common(s: _Session) -> dict:
    return {"config": s.config, "num_classes": s.data.num_classes, "classes": s.data.classes,
            "data_source": s.data.source}


def _save_last(s: _Session, run_dir: Path, epoch: int, info: dist_utils.DistInfo, wall: float,
               step: int = 0, partial: Optional[dict] = None) -> bool:
    """last.pt after ``epoch`` whole epochs and ``step`` steps of the next (every rank's states gathered on rank 0);
    True on rank 0, which writes it."""
    rank_states = _gather_rank_states(s.generators, s.net, info, None if partial is None else partial["sums"])
    if not info.is_main:
        return False
    within = {} if not step else {"step": step, "partial": {"lr": partial["lr"],
                                                            "sums": [r["partial"] for r in rank_states]}}
    save_checkpoint(run_dir / "last.pt", {
        "kind": "last", "epoch": epoch, **within, "model": backbone(s.net).state_dict(),
        "optimizer": s.optimizer.state_dict(), "scheduler": s.scheduler.state_dict(),
        "scaler": s.scaler.state_dict(), "rng": [r["rng"] for r in rank_states],
        "rank_buffers": [r["buffers"] for r in rank_states] if info.distributed else None,
        "best": s.best, "history": s.history, "world_size": info.world_size, "wall_time_s": wall, **_common(s)})
    return True


def _save(s: _Session, run_dir: Path, row: dict, improved: bool, info: dist_utils.DistInfo, wall: float) -> None:
    """best.pt when the validation metric improved, last.pt, and the logs (rank 0)."""
    if not _save_last(s, run_dir, row["epoch"], info, wall):
        return
    if improved:
        save_checkpoint(run_dir / "best.pt", {"kind": "best", "epoch": row["epoch"],
                                              "model": backbone(s.net).state_dict(), "best": s.best, **_common(s)})
    _write_logs(run_dir, s.history)


def _write_results(s: _Session, run_dir: Path, wall: float, info: dist_utils.DistInfo) -> None:
    """results.json of a finished run: what it was, its best and final epochs, timing, numerics, provenance."""
    config, t = s.config, s.config["train"]
    rates = [row["train_images_per_s"] for row in s.history]
    best_row = next((row for row in s.history if row["epoch"] == s.best["epoch"]), s.history[-1])
    results = {
        "name": config["name"], "profile": config["profile"], "description": config["description"],
        "paper": config["paper"],
        "method": config["method"]["name"], "model": config["model"]["name"], "norm": config["model"]["norm"],
        "data_source": s.data.source, "num_train_images": s.data.num_train,
        "num_val_images": 0 if s.data.val is None else len(s.data.val),
        "epochs": t["epochs"], "best": {**s.best, "row": best_row}, "final": s.history[-1],
        "wall_time_s": wall, "train_images_per_s": float(np.mean(rates)) if rates else None,
        "numerics": numerics(config), "provenance": provenance(info.device, info), "config": config,
        "image_size": list(s.data.image_size),
    }
    atomic_write_text(run_dir / "results.json", json.dumps(results, indent=1, default=str) + "\n")


def _train(config: dict, run_dir: Path, resume: bool, stop_after: Optional[int],
           info: dist_utils.DistInfo, on_epoch: Optional[Callable[[dict], None]] = None) -> Path:
    requested = config
    config = _concrete_precision(requested, info.device)
    state = _prepare_run_dir(run_dir, resume, config)
    if state is not None:
        config = _concrete_precision(requested, info.device, state["config"])
    t = config["train"]
    _check_resume(state, config, run_dir, info)
    dist_utils.barrier(info)  # every rank has checked the directory before rank 0 writes to it
    show = info.is_main and t["progress"]
    if info.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    s = _start(config, info)
    _restore(s, state, run_dir, info)
    _wrap(s, state, info)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(config))
    metric = t["select_metric"]
    session_start, epochs_done_now = time.perf_counter(), 0
    def save_within(epoch: int, step: int, partial: dict) -> None:
        # A checkpoint inside an epoch (train.checkpoint_every_steps): a preempted job loses at most those steps.
        _save_last(s, run_dir, epoch, info, s.wall_before + time.perf_counter() - session_start, step, partial)

    for epoch in range(s.start_epoch, t["epochs"]):
        if stop_after is not None and epochs_done_now >= stop_after:
            break
        row = _epoch(s, epoch, info, show, save_within)
        s.start_step, s.partial = 0, None
        s.history.append(row)
        improved = (metric in row and _better(row[metric], s.best["value"], metric)) or s.data.val is None
        if improved:
            s.best = {"epoch": epoch + 1, "value": row.get(metric), "metric": metric}
        _save(s, run_dir, row, improved, info, s.wall_before + time.perf_counter() - session_start)
        if info.is_main:
            if show:
                tqdm.write(_epoch_line(row))
            if on_epoch is not None:
                on_epoch(dict(row))
        dist_utils.barrier(info)
        epochs_done_now += 1

    finished = bool(s.history) and s.history[-1]["epoch"] == t["epochs"]
    if info.is_main and finished and (epochs_done_now or not (run_dir / "results.json").exists()):
        _write_results(s, run_dir, s.wall_before + time.perf_counter() - session_start, info)
    dist_utils.barrier(info)
    return run_dir


def _gather_rank_states(generators, net: nn.Module, info: dist_utils.DistInfo, partial=None) -> list:
    """Every rank's random states, its sums of an unfinished epoch (``partial``) and, under DDP, its own BatchNorm
    statistics (gathered on rank 0, rank order).

    Buffers are not synchronised during training, so each rank's running statistics, which its attacks use in
    eval mode, must come back on resume for the run to continue exactly.
    """
    mine = {"rng": capture_rng(generators), "buffers": None, "partial": partial}
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


def training_step(step_fn, ctx: StepContext, x: torch.Tensor, y: torch.Tensor, optimizer, scaler,
                  scheduler=None) -> StepResult:
    """One optimiser step of a method: ``step_fn`` builds the images and the loss, then backward and update (under
    ``ctx.phase("backward")``, which a benchmark can time); a per-step ``scheduler`` steps after it.

    ``scaler`` is a ``torch.amp.GradScaler`` (disabled but for fp16). Returns the method's StepResult.
    """
    result = step_fn(ctx, x, y)
    with ctx.phase("backward"):
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(result.loss).backward()
        scaler.step(optimizer)
        scaler.update()
    if scheduler is not None:
        scheduler.step()
    return result


def _run_epoch(s: _Session, device: torch.device, show: bool, desc: str, save_within: Callable) -> dict:
    """One pass over the training batches; returns the summed loss, correct count, count and extras on device, and
    the images seen in this session. Every ``train.checkpoint_every_steps`` steps ``save_within(step, sums)`` runs."""
    s.model.train()
    steps, log_every = s.steps_per_epoch, s.config["train"]["log_every"]
    every = s.config["train"]["checkpoint_every_steps"]
    step_scheduler = s.scheduler if s.per_step_schedule else None
    zero = torch.zeros((), dtype=torch.float64, device=device)
    restored = (s.partial or {}).get("sums") or {"loss": 0.0, "correct": 0.0, "count": 0.0, "extras": {}}
    loss_sum, correct, count = (zero + restored["loss"], zero + restored["correct"], zero + restored["count"])
    extra_sums: dict[str, torch.Tensor] = {k: zero + v for k, v in restored["extras"].items()}
    seen_before = float(restored["count"])
    bar = tqdm(total=steps, initial=s.start_step, desc=desc, leave=False, disable=not show, dynamic_ncols=True,
               unit="step")
    try:
        for index, (x, y) in enumerate(s.data.loader):
            if index >= steps:
                break
            if index < s.start_step:  # done before the interruption; drawing the batch keeps the loader's draws
                continue
            result = training_step(s.step_fn, s.ctx, x, y, s.optimizer, s.scaler, step_scheduler)
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
            if every and (index + 1) % every == 0 and index + 1 < steps:
                save_within(index + 1, {"loss": loss_sum.item(), "correct": correct.item(), "count": count.item(),
                                        "extras": {k: v.item() for k, v in extra_sums.items()}})
    finally:
        bar.close()
    if not math.isfinite(loss_sum.item()):
        raise FloatingPointError(f"{desc}: the training loss is not finite ({loss_sum.item()}); lower optim.lr, or "
                                 f"use train.precision=fp32 if it was 16-bit (ResNeXt at lr 0.1 is known to diverge "
                                 f"now and then)")
    names = sorted(extra_sums)
    tensor = torch.stack([loss_sum, correct, count] + [extra_sums[k] for k in names])
    return {"tensor": tensor, "extras": names, "seen_now": count - seen_before}
