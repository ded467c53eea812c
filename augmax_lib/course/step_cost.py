"""What one training step of a config costs, phase by phase: augment, attack, forward, backward.

The engine's step functions (``augmax_lib.train.methods``) wrap their phases in ``ctx.phase(name)``;
:class:`PhaseTimer` fills that hook with a clock, so the phases timed here are exactly those of training.
"""
from __future__ import annotations

import contextlib
import copy
import statistics
import time
from typing import Mapping, Optional

import torch

__all__ = ["PHASES", "PhaseTimer", "time_training_step", "plot_step_costs"]

# The phases of a step in the order they run; "backward" includes the optimiser step.
PHASES = ("augment", "attack", "forward", "backward")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """``timer(name)`` is a context manager that adds the wall time of its block to ``timer.times[name]``.

    On CUDA it synchronises the device at both ends of a block, so that a phase is charged for its own kernels.
    """

    def __init__(self, device="cpu", enabled: bool = True):
        self.device = torch.device(device)
        self.enabled = enabled
        self.times: dict = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        if not self.enabled:
            yield
            return
        _sync(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            _sync(self.device)
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


def time_training_step(config: Mapping, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                       repeats: int = 3, warmup: int = 1, seed: int = 0, device=None) -> dict:
    """Median seconds per phase of one training step of ``config``'s method on ``(images, labels)``.

    ``config``: a validated training config (``Run.config``, ``augmax_lib.train.load_config``); its method
    and options are used. ``model``: the model to time (a trained one gives the real attack cost, since
    FAT-style attacks stop early on images the model already gets wrong); it is copied, never changed.
    ``images``: a uint8 or float batch (N, C, H, W). Returns ``{"augment", "attack", "forward", "backward"
    (seconds, 0.0 for a phase the method lacks), "total", "totals" (each repeat's seconds), "images",
    "attack_steps" (mean attack steps per image, or None)}``.
    """
    from augmax_lib.train.engine import training_step
    from augmax_lib.train.methods import StepContext, get_step

    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats and warmup: expected repeats >= 1 and warmup >= 0, got {repeats} and {warmup}")
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"images: expected a tensor (N, C, H, W), got "
                         f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if not isinstance(labels, torch.Tensor) or labels.shape != images.shape[:1]:
        raise ValueError(f"labels: expected a tensor of shape ({images.shape[0]},), one label per image")
    try:
        method = dict(config["method"])
    except (KeyError, TypeError):
        raise ValueError("config: expected a validated training config with a 'method' section") from None
    step = get_step(method.pop("name"))
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    net = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    x, y = images.to(device), labels.to(device)

    scaler = torch.amp.GradScaler(device.type, enabled=False)

    def one_step(timer: PhaseTimer) -> Optional[float]:
        ctx = StepContext(model=net, net=net, options=method, generator=generator, phase=timer)
        result = training_step(step, ctx, x, y, optimizer, scaler)  # the engine's own step; its backward is timed
        taken = result.extras.get("attack_steps")
        return None if taken is None else float(taken)

    for _ in range(warmup):
        one_step(PhaseTimer(device, enabled=False))
    runs, steps_taken = [], []
    for _ in range(repeats):
        timer = PhaseTimer(device)
        _sync(device)
        start = time.perf_counter()
        taken = one_step(timer)
        _sync(device)
        timer.times["total"] = time.perf_counter() - start
        runs.append(timer.times)
        if taken is not None:
            steps_taken.append(taken)
    out = {name: statistics.median(run.get(name, 0.0) for run in runs) for name in (*PHASES, "total")}
    out["totals"] = [run["total"] for run in runs]  # every repeat's seconds, for the spread
    out["images"] = int(y.shape[0])
    out["attack_steps"] = statistics.mean(steps_taken) if steps_taken else None
    return out


def plot_step_costs(costs: Mapping[str, Mapping], title: str = ""):
    """Stacked horizontal bars, one per method: milliseconds per image in each phase of a step.

    ``costs`` maps a label to a :func:`time_training_step` result.
    """
    import matplotlib.pyplot as plt

    labels = list(costs)
    fig, ax = plt.subplots(figsize=(8.5, 0.9 + 0.55 * len(labels)))
    left = [0.0] * len(labels)
    colors = plt.get_cmap("tab10")
    for i, phase in enumerate(PHASES):
        widths = [1e3 * costs[k][phase] / costs[k]["images"] for k in labels]
        ax.barh(labels, widths, left=left, color=colors(i), label=phase)
        left = [a + b for a, b in zip(left, widths)]
    for row, k in enumerate(labels):
        total = 1e3 * costs[k]["total"] / costs[k]["images"]
        ax.text(left[row], row, f"  {total:.2f} ms/img", va="center", fontsize=8)
    ax.set_xlim(0, max(left) * 1.3 if max(left) > 0 else 1)
    ax.invert_yaxis()
    ax.set_xlabel("milliseconds per training image")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
