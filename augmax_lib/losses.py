"""Training objectives of AugMix and AugMax: the Jensen-Shannon consistency and the two AugMax losses.

``jsd`` is the reference code's consistency term: the mean over predictions of KL(p_i || M), with
M the mean of the softmaxes clamped to [1e-7, 1] and each KL averaged over the batch ("batchmean").

``augmax_loss`` offers the two formulations of AugMax's outer minimisation (REFERENCE.md section 2):

- ``loss="reference"`` (the released code): ``CE(f(x), y) + lam * jsd(f(x), f_A(x*), f(x_augmix))``,
  where ``f_A`` means the forward pass runs under the auxiliary BN route "A"; the clean and AugMix
  images use the main route "M".
- ``loss="paper"`` (the poster's equation): ``1/2 [CE(f_A(x*), y) + CE(f(x), y)] + lam * L_c(x, x*)``.
  The poster does not spell out L_c; we take the same consistency the code uses, restricted to the two
  predictions it names: ``L_c = jsd(f(x), f_A(x*))``. No AugMix image is needed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from augmax_lib._checks import check_images, to_float
from augmax_lib.norm import route

__all__ = ["LOSSES", "jsd", "augmix_loss", "augmax_loss"]

LOSSES = ("reference", "paper")
_MIXTURE_FLOOR = 1e-7  # the reference clamps the mixture to [1e-7, 1] before its log


def _check_logits(logits, name: str) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name}: expected logits of shape (N, num_classes), got {shape}")
    # Losses are taken in float32 even when the model ran under bf16/fp16 autocast.
    return logits.float()


def _check_labels(y, n: int, device: torch.device, name: str = "y") -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.dtype != torch.int64:
        shape = (tuple(y.shape), y.dtype) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name}: expected int64 class indices of shape ({n},), got {shape}")
    if y.device != device:
        raise ValueError(f"{name}: expected a tensor on {device} (the logits' device), got {y.device}")
    return y


def jsd(*logits: torch.Tensor) -> torch.Tensor:
    """Jensen-Shannon consistency of two or more predictions: mean_i KL(p_i || clamp(mean_j p_j, 1e-7, 1)), batchmean."""
    if len(logits) < 2:
        raise ValueError(f"logits: expected at least two (N, num_classes) tensors, got {len(logits)}")
    log_probs = [F.log_softmax(_check_logits(z, f"logits[{i}]"), dim=1) for i, z in enumerate(logits)]
    if any(lp.shape != log_probs[0].shape for lp in log_probs):
        raise ValueError(f"logits: expected equal shapes, got {[tuple(lp.shape) for lp in log_probs]}")
    mixture = torch.stack([lp.exp() for lp in log_probs]).mean(0)
    log_mixture = mixture.clamp(_MIXTURE_FLOOR, 1.0).log()
    # log_target=True evaluates p log p from log-probabilities, which stays exact where p underflows.
    kls = [F.kl_div(log_mixture, lp, reduction="batchmean", log_target=True) for lp in log_probs]
    return torch.stack(kls).mean()


def augmix_loss(logits_clean: torch.Tensor, logits_aug1: torch.Tensor, logits_aug2: torch.Tensor,
                y: torch.Tensor, lam: float = 12.0) -> torch.Tensor:
    """AugMix's loss: ``CE(clean, y) + lam * jsd(clean, aug1, aug2)``."""
    clean = _check_logits(logits_clean, "logits_clean")
    y = _check_labels(y, clean.shape[0], clean.device)
    return F.cross_entropy(clean, y) + lam * jsd(clean, logits_aug1, logits_aug2)


def _has_batch_statistics(model: nn.Module) -> bool:
    """True when some BatchNorm of ``model`` normalises with the statistics of the batch it is given."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or not m.track_running_stats)
               for m in model.modules())


def augmax_loss(model: nn.Module, x_clean: torch.Tensor, x_augmax: torch.Tensor, x_augmix: torch.Tensor | None,
                y: torch.Tensor, loss: str = "reference", lam: float = 10.0, fuse: bool | None = None):
    """AugMax's training loss and what to log: returns ``(loss, info)``.

    ``loss="reference"``: ``CE(f(x), y) + lam * jsd(f(x), f_A(x_augmax), f(x_augmix))``, the released code.
    ``loss="paper"``: ``1/2 [CE(f_A(x_augmax), y) + CE(f(x), y)] + lam * jsd(f(x), f_A(x_augmax))``; ``x_augmix``
    is not used and may be None. ``f_A`` is a forward pass under BN route "A", ``f`` one under route "M".

    Forward passes run in the reference's order: AugMax (route "A"), then AugMix, then clean (route "M").
    ``fuse`` decides whether the AugMix and clean images share one forward pass of 2N images. The
    reference runs them separately, and with BatchNorm in training mode that matters: each forward
    normalises with its own batch statistics and updates the running statistics once. ``fuse=None``
    (default) fuses only when no BatchNorm uses batch statistics (eval mode, or norm-free models), where
    both ways give the same numbers; ``True`` forces one 2N pass (AugMix-style statistics over both),
    ``False`` forces the reference's separate passes.

    ``info`` holds detached tensors for logging: ``logits_clean``, ``logits_augmax``, ``logits_augmix``
    (None for ``"paper"``), ``ce`` (the cross-entropy part) and ``consistency`` (the JS term before ``lam``).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    check_images(x_clean, "x_clean")
    check_images(x_augmax, "x_augmax")
    if x_augmax.shape != x_clean.shape:
        raise ValueError(f"x_augmax: expected the shape of x_clean {tuple(x_clean.shape)}, got {tuple(x_augmax.shape)}")
    if loss == "reference":
        if x_augmix is None:
            raise ValueError("x_augmix: loss='reference' needs the AugMix images (N, C, H, W); got None")
        check_images(x_augmix, "x_augmix")
        if x_augmix.shape != x_clean.shape:
            raise ValueError(f"x_augmix: expected the shape of x_clean {tuple(x_clean.shape)}, "
                             f"got {tuple(x_augmix.shape)}")
    n = x_clean.shape[0]
    y = _check_labels(y, n, x_clean.device)
    x_clean, x_augmax = to_float(x_clean), to_float(x_augmax).detach()

    with route(model, "A"):
        logits_augmax = model(x_augmax)
    logits_augmix = None
    with route(model, "M"):
        if loss == "paper":
            logits_clean = model(x_clean)
        else:
            x_augmix = to_float(x_augmix).detach()
            if fuse is None:
                fuse = not _has_batch_statistics(model)
            if fuse:
                logits_augmix, logits_clean = model(torch.cat([x_augmix, x_clean])).split(n)
            else:
                logits_augmix = model(x_augmix)
                logits_clean = model(x_clean)

    logits_clean, logits_augmax = _check_logits(logits_clean, "model output"), _check_logits(logits_augmax, "model output")
    if loss == "reference":
        ce = F.cross_entropy(logits_clean, y)
        consistency = jsd(logits_clean, logits_augmax, logits_augmix)
    else:
        ce = 0.5 * (F.cross_entropy(logits_augmax, y) + F.cross_entropy(logits_clean, y))
        consistency = jsd(logits_clean, logits_augmax)
    total = ce + lam * consistency
    info = {
        "logits_clean": logits_clean.detach(),
        "logits_augmax": logits_augmax.detach(),
        "logits_augmix": None if logits_augmix is None else logits_augmix.detach(),
        "ce": ce.detach(),
        "consistency": consistency.detach(),
    }
    return total, info
