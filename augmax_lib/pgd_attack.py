"""L-infinity PGD on pixels: adversarial training (PGDAT), its early-stopped form (FAT), and PGD accuracy.

PGD (Madry et al. 2018): start at a uniform point of the eps-ball around ``x`` (or at ``x``), take
``steps`` signed-gradient ascent steps of ``step_size`` on the cross-entropy, project onto the ball
and onto [0, 1] after each. FAT (Zhang et al. 2020, "friendly" adversarial training): an image stops
being updated once it has been misclassified ``tau`` times, counted as ``augmax_attack`` counts them,
so ``tau=1`` stops an image at its first misclassified step (Zhang et al.'s tau = 0).

Unlike ``augmax_attack``, frozen images are masked rather than dropped from the batch: every step runs
the whole batch, which keeps the loop free of host synchronisation. The model runs in eval mode without
parameter gradients under norm route "M": PGDAT and FAT train on adversarial images only, so the
images must pass through the layers the evaluation uses. Mode, gradients flags and routes are restored.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from augmax_lib._checks import check_generator, check_images, to_float

# The same eval-mode, no-parameter-gradient context the AugMax attacks use, with the route as argument.
from augmax_lib.augmax._engine import attack_mode as frozen_eval

__all__ = ["pgd_linf", "frozen_eval"]


def pgd_linf(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float = 8 / 255, step_size: float = 2 / 255,
             steps: int = 10, random_start: bool = True, tau: Optional[int] = None,
             generator: Optional[torch.Generator] = None, start: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Adversarial images within ``eps`` (L-infinity) of ``x``, in [0, 1]; ``tau`` turns on FAT early stopping.

    ``x`` (N, C, H, W) uint8 or float in [0, 1]; returns float32, detached. The random start is drawn
    from ``generator`` on ``x``'s device, unless ``start`` gives the initial perturbation (clipped to
    the ball), e.g. one drawn per image so that results do not depend on the batch size.
    """
    check_images(x, "x")
    n = x.shape[0]
    if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.dtype != torch.int64:
        raise ValueError(f"y: expected int64 class indices of shape ({n},)")
    for name, value in (("eps", eps), ("step_size", step_size)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected an int >= 0, got {steps!r}")
    if tau is not None and (isinstance(tau, bool) or not isinstance(tau, int) or tau < 1):
        raise ValueError(f"tau: expected None (plain PGD) or an int >= 1, got {tau!r}")
    check_generator(generator, x.device)
    x = to_float(x).float().detach()
    if start is not None:
        if not isinstance(start, torch.Tensor) or start.shape != x.shape:
            got = tuple(start.shape) if isinstance(start, torch.Tensor) else type(start).__name__
            raise ValueError(f"start: expected a perturbation of shape {tuple(x.shape)}, got {got}")
        x_adv = (x + start.to(x.device, x.dtype).clamp(-eps, eps)).clamp_(0.0, 1.0)
    elif random_start and eps > 0:
        noise = torch.rand(x.shape, device=x.device, generator=generator)
        x_adv = (x + (2 * noise - 1) * eps).clamp_(0.0, 1.0)
    else:
        x_adv = x.clone()
    budget = torch.full((n,), tau if tau is not None else 0, device=x.device, dtype=torch.int64)
    with frozen_eval(model, "M"):
        for _ in range(steps):
            x_adv.requires_grad_(True)
            logits = model(x_adv).float()
            # Summed loss: each image's gradient is independent of the batch size.
            loss = F.cross_entropy(logits, y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, [x_adv])
            with torch.no_grad():
                proposed = x_adv + step_size * grad.sign()
                proposed = torch.min(torch.max(proposed, x - eps), x + eps).clamp_(0.0, 1.0)
                if tau is None:
                    x_adv = proposed
                else:
                    budget = (budget - (logits.argmax(1) != y).long()).clamp_(min=0)
                    keep = (budget > 0).view(-1, 1, 1, 1)
                    x_adv = torch.where(keep, proposed, x_adv)
            x_adv = x_adv.detach()
    return x_adv.detach()
