"""What a model sees: penultimate features of a batch of images and a shared 2-D PCA of several sets of them."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from augmax_lib._checks import check_images, to_float
from augmax_lib.norm import route

__all__ = ["penultimate_features", "pca_2d"]


def _last_linear(model: nn.Module) -> nn.Linear:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise ValueError("model: expected a classifier ending in an nn.Linear head (its input is the penultimate "
                         f"feature), found none in {type(model).__name__}")
    return last


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 256, which: str = "M") -> torch.Tensor:
    """The input of the model's last linear layer for every image of ``x``: float32 (N, D) on the CPU.

    The model runs in eval mode under norm route ``which`` (mode and route are restored).
    """
    check_images(x, "x")
    head = _last_linear(model)
    device = next(model.parameters()).device
    captured = []
    hook = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().float().cpu()))
    was_training = model.training
    try:
        model.eval()
        with route(model, which):
            for part in x.split(batch_size):
                model(to_float(part.to(device)))
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(captured)


def pca_2d(*features: torch.Tensor) -> list[np.ndarray]:
    """Each (N_i, D) feature set projected on the two leading principal axes of all sets together."""
    if not features:
        raise ValueError("features: expected at least one (N, D) tensor")
    sizes = [f.shape[0] for f in features]
    stacked = torch.cat([f.double() for f in features])
    centred = stacked - stacked.mean(0, keepdim=True)
    # Right singular vectors are the principal axes; the sign is fixed so the picture does not flip between runs.
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    axes = vh[:2]
    axes = axes * torch.sign(axes[:, axes.abs().argmax(1)].diagonal()).unsqueeze(1)
    points = (centred @ axes.T).numpy()
    return list(np.split(points, np.cumsum(sizes)[:-1]))
