"""The loop shared by the AugMax-style attacks: per-sample signed-gradient ascent with FAT early stopping.

An attack supplies per-sample constants (``data``), per-sample variables, a function that builds the
images from both and a function that takes one projected step. The loop runs the model on the samples
still being attacked only, and drops the ones that stop from every tensor it feeds the model.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from augmax_lib._checks import check_generator, check_images
from augmax_lib.norm import route

__all__ = ["AttackOptions", "AugMaxResult", "attack_mode", "signed_ascent", "check_attack_args"]


@dataclass(frozen=True)
class AttackOptions:
    """How an AugMax-style attack searches: ``steps`` signed-gradient steps of ``step_size``; with ``early_stop``
    (FAT, the reference's default) an image stops once it has been misclassified ``tau`` times; ``targeted``
    descends the cross-entropy to a target class instead of ascending it; ``generator`` drives every random
    draw (the start, a target). The defaults are the reference's CIFAR settings."""

    steps: int = 10
    step_size: float = 0.1
    tau: int = 1
    early_stop: bool = True
    targeted: bool = False
    generator: Optional[torch.Generator] = None


@dataclass(frozen=True)
class AugMaxResult:
    """What an attack found, per image: the mixed images and the parameters that made them.

    ``x_adv`` (N, C, H, W) float in [0, 1], detached; ``m`` (N,) the weight of the augmented branch;
    ``w`` (N, width) the chain weights (rows sum to one); ``steps_taken`` (N,) int64, the number of
    updates each image received (fewer than ``steps`` where early stopping froze it); ``target`` the
    classes aimed at in targeted mode (None otherwise, and when none was passed and no step ran);
    ``params`` the attacked chain parameters (AdvMix and AdvMax only, else None).
    """

    x_adv: torch.Tensor
    m: torch.Tensor
    w: torch.Tensor
    steps_taken: torch.Tensor
    target: Optional[torch.Tensor] = None
    params: Optional[object] = None


@contextlib.contextmanager
def attack_mode(model: nn.Module, which: str = "A"):
    """Eval mode, no parameter gradients, BN route ``which`` and autograd on; every module's mode and every
    parameter's ``requires_grad`` come back on exit, also when the body raises."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(param, param.requires_grad) for param in model.parameters()]
    try:
        model.eval()
        for param, _ in flags:
            param.requires_grad_(False)
        with route(model, which), torch.enable_grad():
            yield model
    finally:
        for module, training in modes:
            module.training = training
        for param, flag in flags:
            param.requires_grad_(flag)


def check_options(options) -> AttackOptions:
    """Raise unless ``options`` is an :class:`AttackOptions` (the attacks' settings are one record)."""
    if not isinstance(options, AttackOptions):
        raise TypeError(f"options: expected AttackOptions(steps=..., step_size=..., tau=..., early_stop=..., "
                        f"targeted=..., generator=...), got {type(options).__name__}")
    return options


def check_attack_args(x, y, steps, step_size, tau, targeted, target, generator) -> None:
    """Validate the arguments every attack shares; errors name the argument."""
    check_images(x, "x")
    n = x.shape[0]
    if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.dtype != torch.int64:
        got = (tuple(y.shape), y.dtype) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y: expected int64 class indices of shape ({n},), got {got}")
    if y.device != x.device:
        raise ValueError(f"y: expected a tensor on {x.device} (the images' device), got {y.device}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an int >= 0, got {steps!r}")
    if not isinstance(step_size, (int, float)) or isinstance(step_size, bool) or not step_size > 0:
        raise ValueError(f"step_size: expected a number > 0, got {step_size!r}")
    if isinstance(tau, bool) or not isinstance(tau, int) or tau < 1:
        raise ValueError(f"tau: expected an int >= 1 (misclassifications before a sample stops), got {tau!r}")
    if target is not None:
        if not targeted:
            raise ValueError("target: only used with targeted=True; pass target=None or set targeted=True")
        if not isinstance(target, torch.Tensor) or target.shape != (n,) or target.dtype != torch.int64:
            got = (tuple(target.shape), target.dtype) if isinstance(target, torch.Tensor) else type(target).__name__
            raise ValueError(f"target: expected int64 class indices of shape ({n},), got {got}")
        if target.device != x.device:
            raise ValueError(f"target: expected a tensor on {x.device} (the images' device), got {target.device}")
    check_generator(generator, x.device)


def _keep_view(keep: torch.Tensor, like: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * like.dim()
    shape[dim] = keep.shape[0]
    return keep.view(shape)


def signed_ascent(model: nn.Module, build: Callable, step: Callable, data: Sequence[tuple[torch.Tensor, int]],
                  variables: Sequence[tuple[torch.Tensor, int]], y: torch.Tensor, target: Optional[torch.Tensor],
                  steps: int, tau: int, early_stop: bool, targeted: bool,
                  generator: Optional[torch.Generator]) -> tuple[list[torch.Tensor], torch.Tensor, Optional[torch.Tensor]]:
    """Run ``steps`` signed-gradient steps on the per-sample ``variables``; returns (variables, steps_taken, target).

    ``data`` and ``variables`` are (tensor, batch dim) pairs. ``build(data, variables)`` makes the
    images of the active samples; ``step(data, variables, grads)`` returns the projected next values.
    The loss is the summed cross-entropy to ``y`` (ascent) or, when ``targeted``, to ``target``
    (descent); a per-sample sum keeps each sample's gradient free of the batch size. A missing
    ``target`` is drawn at the first step as ``(y + U{1..C-1}) mod C``, a random other class, as the
    reference does. FAT rule (``early_stop``): a sample whose prediction differs from ``y`` uses up one
    of its ``tau`` chances; with none left it is frozen where it is and leaves the batch. Per step there
    is one forward and one backward on the active samples, and, with ``early_stop``, exactly one host
    synchronisation: reading how many samples remain. Must run inside ``attack_mode(model)``.
    """
    n = y.shape[0]
    out_vars = [v.detach().clone() for v, _ in variables]
    out_taken = torch.zeros(n, dtype=torch.int64, device=y.device)
    var_dims = [d for _, d in variables]
    data_dims = [d for _, d in data]
    act_data = [t for t, _ in data]
    act_vars = list(out_vars)
    act_y, act_goal = y, target
    act_budget = torch.full((n,), tau, dtype=torch.int64, device=y.device)
    act_taken = out_taken.clone()
    positions: Optional[torch.Tensor] = None  # rows of the full batch that are still active; None: all of them
    active = n
    for _ in range(steps):
        leaves = [v.detach().requires_grad_(True) for v in act_vars]
        logits = model(build(act_data, leaves)).float()
        if targeted and act_goal is None:  # every sample is still active at the first step
            classes = logits.shape[1]
            offset = torch.randint(1, classes, (n,), device=y.device, generator=generator)
            act_goal = target = (y + offset) % classes
        loss = F.cross_entropy(logits, act_goal if targeted else act_y, reduction="sum")
        grads = torch.autograd.grad(-loss if targeted else loss, leaves)
        with torch.no_grad():
            proposed = step(act_data, act_vars, grads)
            if not early_stop:
                act_vars = list(proposed)
                act_taken += 1
                continue
            act_budget = act_budget - (logits.argmax(1) != act_y).long()
            keep = act_budget > 0
            act_vars = [torch.where(_keep_view(keep, new, d), new, old)
                        for new, old, d in zip(proposed, act_vars, var_dims)]
            act_taken = act_taken + keep.long()
            kept = keep.nonzero().squeeze(1)  # the step's one host sync: how many samples go on
            if kept.numel() == active:
                continue
            _write_back(out_vars, act_vars, var_dims, out_taken, act_taken, positions)
            active = kept.numel()
            if active == 0:
                break
            positions = kept if positions is None else positions.index_select(0, kept)
            act_data = [t.index_select(d, kept) for t, d in zip(act_data, data_dims)]
            act_vars = [v.index_select(d, kept) for v, d in zip(act_vars, var_dims)]
            act_y, act_budget, act_taken = act_y.index_select(0, kept), act_budget[kept], act_taken[kept]
            if targeted:
                act_goal = act_goal.index_select(0, kept)
    if active:
        _write_back(out_vars, act_vars, var_dims, out_taken, act_taken, positions)
    return out_vars, out_taken, target


def _write_back(out_vars, act_vars, dims, out_taken, act_taken, positions) -> None:
    """Copy the active samples' variables and step counts into the full-batch tensors."""
    for out, act, d in zip(out_vars, act_vars, dims):
        if positions is None:
            out.copy_(act)
        else:
            out.index_copy_(d, positions, act)
    if positions is None:
        out_taken.copy_(act_taken)
    else:
        out_taken.index_copy_(0, positions, act_taken)
