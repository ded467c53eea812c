"""Accuracy under an L-infinity PGD attack (Madry et al.), for the hardness ablation."""
from __future__ import annotations

import torch
from torch import nn

from augmax_lib._progress import tqdm

from .._checks import to_float
from ..pgd_attack import pgd_linf
from .inference import eval_mode, forward, iter_batches, model_device, num_items

__all__ = ["pgd_accuracy"]


class _AsEvaluated(nn.Module):
    """The model as the evaluation runs it: input transform, its own numerics (fp32 by default), float32 logits."""

    def __init__(self, model: nn.Module, device: torch.device, input_transform=None):
        super().__init__()
        self.model, self.device, self.input_transform = model, device, input_transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return forward(self.model, x, self.device, self.input_transform)


def pgd_accuracy(model, data, eps: float = 8 / 255, alpha: float = 2 / 255, steps: int = 10,
                 random_start: bool = True, seed: int = 0, batch_size: int = 500, device=None,
                 input_transform=None, progress: bool = True) -> float:
    """Accuracy on images perturbed by ``steps`` signed-gradient ascent steps of size ``alpha`` on the
    cross-entropy, projected to the L-inf ball of radius ``eps`` and to [0, 1] (model in eval mode,
    route "M"; the attack is ``augmax_lib.pgd_attack.pgd_linf``). The random start is drawn per image from
    ``seed``, independent of the batch size."""
    if eps < 0 or alpha <= 0 or steps < 0:
        raise ValueError(f"eps, alpha, steps: expected eps >= 0, alpha > 0, steps >= 0; got {eps}, {alpha}, {steps}")
    device = torch.device(device) if device is not None else model_device(model)
    attacked = _AsEvaluated(model, device, input_transform)
    n = num_items(data)
    g = torch.Generator().manual_seed(int(seed))
    correct, offset = [], 0
    with eval_mode(model), tqdm(total=n, desc=f"PGD-{steps}", unit="img", disable=not progress, leave=False) as bar:
        for x, y in iter_batches(data, batch_size):
            b = y.shape[0]
            x = to_float(x.to(device, non_blocking=True))
            y = y.to(device, non_blocking=True)
            # Drawn on the CPU in data order, so every image gets the same start whatever the batch size.
            start = (torch.rand(x.shape, generator=g) * 2 - 1) * eps if random_start else None
            x_adv = pgd_linf(attacked, x, y, eps=eps, step_size=alpha, steps=steps, random_start=False, start=start)
            with torch.no_grad():
                correct.append(forward(model, x_adv, device, input_transform).argmax(1) == y)
            offset += b
            bar.update(b)
    if not offset:
        raise ValueError("data: the set to attack is empty")
    return float(torch.cat(correct).double().mean())
