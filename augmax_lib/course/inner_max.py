"""AugMax's inner maximisation made visible: the mixing parameters, images and loss after every attack step."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from augmax_lib.augmax import AttackOptions, augmax_attack
from augmax_lib.norm import route

__all__ = ["Trajectory", "augmax_trajectory"]


@dataclass
class Trajectory:
    """Per attack step k = 0..steps (k = 0: the random start): images, ``m``, ``w``, loss and correctness per image."""

    images: torch.Tensor   # (steps + 1, N, C, H, W) float in [0, 1]
    m: torch.Tensor        # (steps + 1, N)
    w: torch.Tensor        # (steps + 1, N, width)
    loss: torch.Tensor     # (steps + 1, N) cross-entropy of the model (route "A", eval mode) on the images
    correct: torch.Tensor  # (steps + 1, N) bool
    steps_taken: torch.Tensor  # (N,) updates each image received in the full attack (early stopping freezes some)


@torch.no_grad()
def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    was_training = model.training
    model.eval()
    try:
        with route(model, "A"):
            logits = model(x).float()
    finally:
        model.train(was_training)
    return F.cross_entropy(logits, y, reduction="none").cpu(), (logits.argmax(1) == y).cpu()


def augmax_trajectory(model: nn.Module, x: torch.Tensor, chains: torch.Tensor, y: torch.Tensor, steps: int = 10,
                      step_size: float = 0.1, seed: int = 0, early_stop: bool = False, tau: int = 1) -> Trajectory:
    """Run :func:`augmax_lib.augmax.augmax_attack` for 0, 1, ..., ``steps`` steps from the same random start.

    Every run starts from the generator seeded with ``seed``, so run k is the first k steps of the full
    attack: its result is the state after step k (quadratic in ``steps``; meant for a handful of images).
    """
    device = x.device
    images, ms, ws, losses, correct = [], [], [], [], []
    last = None
    for k in range(steps + 1):
        generator = torch.Generator(device=device).manual_seed(seed)
        options = AttackOptions(steps=k, step_size=step_size, tau=tau, early_stop=early_stop, generator=generator)
        last = augmax_attack(model, x, chains, y, options)
        loss, ok = _loss(model, last.x_adv, y)
        images.append(last.x_adv.cpu())
        ms.append(last.m.detach().cpu())
        ws.append(last.w.detach().cpu())
        losses.append(loss)
        correct.append(ok)
    return Trajectory(torch.stack(images), torch.stack(ms), torch.stack(ws), torch.stack(losses),
                      torch.stack(correct), last.steps_taken.cpu())
