"""AugMax: the mixing of AugMix's chains, with the mixing parameters chosen adversarially per image."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from augmax_lib._checks import to_float
from augmax_lib.augmix import mix

from ._engine import AttackOptions, AugMaxResult, attack_mode, check_attack_args, check_options, signed_ascent

__all__ = ["augmax_attack", "check_chains"]


def check_chains(chains, x: torch.Tensor, name: str = "chains") -> torch.Tensor:
    """Raise unless ``chains`` is a float (width, N, C, H, W) stack of augmented copies of ``x``."""
    if not isinstance(chains, torch.Tensor) or chains.dim() != 5 or chains.shape[1:] != x.shape:
        got = tuple(chains.shape) if isinstance(chains, torch.Tensor) else type(chains).__name__
        raise ValueError(f"{name}: expected a (width, N, C, H, W) tensor with (N, C, H, W) = {tuple(x.shape)} "
                         f"(as augmax_lib.augmix.sample_chains returns), got {got}")
    if not chains.dtype.is_floating_point:
        raise TypeError(f"{name}: expected float images in [0, 1], got {chains.dtype}")
    if chains.device != x.device:
        raise ValueError(f"{name}: expected a tensor on {x.device} (the images' device), got {chains.device}")
    return chains


def parameter_dtype(x: torch.Tensor) -> torch.dtype:
    """dtype of the mixing parameters: the images' for float32/float64, float32 under half precision."""
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def augmax_attack(model: nn.Module, x: torch.Tensor, chains: torch.Tensor, y: torch.Tensor,
                  options: AttackOptions = AttackOptions(), *, target: Optional[torch.Tensor] = None) -> AugMaxResult:
    """Find per image the mixing ``(m, w = softmax(p))`` of ``x`` and its ``chains`` that the model gets most wrong.

    In: ``x`` (N, C, H, W) uint8 or float in [0, 1]; ``chains`` (width, N, C, H, W) float, the chains of ``x``
    (``augmax_lib.augmix.sample_chains``); ``y`` (N,) int64 labels; ``options`` (:class:`AttackOptions`: steps,
    step size, tau, early stop, targeted, generator). Out: an :class:`AugMaxResult` (the images ``x_adv``, ``m``,
    ``w``, the steps each image took).

    ``x* = (1 - m) x + m sum_i w_i chains[i]``. Initialisation as the reference: ``m ~ U(0, 1)`` (N,),
    then ``p ~ U(0, 1)^width`` (N, width), both drawn from ``generator`` in that order. Each step
    moves ``m`` and ``p`` by ``step_size`` times the sign of the cross-entropy gradient (ascent; with
    ``targeted``, descent on the cross-entropy to ``target``), then clamps ``m`` to [0, 1]; ``p`` is free.
    ``target`` defaults to a random other class per image, drawn from ``generator`` at the first step.
    ``early_stop`` is the FAT rule: an image stops once it has been misclassified (prediction != ``y``)
    ``tau`` times and stays exactly where it was. The model runs in eval mode, without parameter
    gradients and under BN route "A"; all three come back as they were afterwards, also on error.
    """
    steps, step_size, tau, generator = check_options(options).steps, options.step_size, options.tau, options.generator
    early_stop, targeted = options.early_stop, options.targeted
    check_attack_args(x, y, steps, step_size, tau, targeted, target, generator)
    chains = check_chains(chains, x)
    x = to_float(x)
    n, width = x.shape[0], chains.shape[0]
    dtype = parameter_dtype(x)
    m0 = torch.rand(n, device=x.device, dtype=dtype, generator=generator)
    p0 = torch.rand(n, width, device=x.device, dtype=dtype, generator=generator)
    chains = chains.detach()

    def build(data, variables):
        xa, ca = data
        m, p = variables
        return mix(xa, ca, m, torch.softmax(p, dim=1))

    def step(data, variables, grads):
        (m, p), (gm, gp) = variables, grads
        return (m + step_size * gm.sign()).clamp_(0.0, 1.0), p + step_size * gp.sign()

    with attack_mode(model):
        (m, p), taken, target = signed_ascent(model, build, step, [(x.detach(), 0), (chains, 1)], [(m0, 0), (p0, 0)],
                                              y, target, steps, tau, early_stop, targeted, generator)
    with torch.no_grad():
        w = torch.softmax(p, dim=1)
        x_adv = mix(x, chains, m, w).clamp_(0.0, 1.0)
    return AugMaxResult(x_adv=x_adv.detach(), m=m, w=w, steps_taken=taken, target=target)
