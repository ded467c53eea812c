"""One training step per method of the paper's tables: builds the training images and returns the loss.

A step function takes a :class:`StepContext`, a batch ``x`` (N, C, H, W) (uint8 after crop and flip,
or float in [0, 1]) and labels ``y``, and returns a :class:`StepResult`; the engine does the backward
pass and the optimiser step. Chains are applied to the uint8 images where the method allows it, so the
ops see 8-bit images between steps as PIL's do in the reference; AdvMix/AdvMax need float images to
differentiate through the magnitudes.

Methods (REFERENCE.md sections 2 and 7):

- ``normal``: cross-entropy on the (cropped, flipped) images.
- ``augmix``: AugMix's JSD loss ``CE(clean) + lam * JS(clean, aug1, aug2)`` in one 3N pass, or with
  ``jsd: false`` cross-entropy on one AugMix image per example (the AugMix paper's no-JSD variant).
  ``aug_route: A`` sends the AugMix images through the auxiliary norms of a dual-norm model (the
  AugMix-DuBN/DuBIN rows of the normalisation ablation); the clean images always take route "M".
- ``augmax``: chains, the adversarial mixing (``augmax_attack``, FAT or plain inner loop, untargeted or
  targeted) and ``augmax_loss`` (``loss: reference`` or ``paper``). The AugMix image of the reference
  loss uses chains of its own, as the reference's second image tuple.
- ``advmix`` / ``advmax``: as ``augmax`` with ``advmix_attack`` / ``advmax_attack`` (attacked op
  magnitudes; random or attacked mixing) and the same outer loss.
- ``pgdat``: L-infinity PGD adversarial training, cross-entropy on the adversarial images only.
- ``fat``: as ``pgdat`` with early-stopped PGD (``tau``).
- ``augmix+pgdat``: PGD on the AugMix image, cross-entropy on the result (the naive combination).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Dict, Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn

from augmax_lib._checks import to_float
from augmax_lib.augmax import AttackOptions, advmax_attack, advmix_attack, augmax_attack
from augmax_lib.augmix import augmix, sample_chain_params, sample_chains
from augmax_lib.losses import augmax_loss, augmix_loss
from augmax_lib.norm import route
from augmax_lib.ops import OPS_ALL, OPS_AUGMIX

from ..pgd_attack import pgd_linf
from .options import Option, opt

__all__ = ["StepContext", "StepResult", "Method", "METHODS", "get_step", "training_routes", "OP_SETS"]

OP_SETS = {"augmix": OPS_AUGMIX, "all": OPS_ALL}


def _no_phase(name: str) -> ContextManager:
    return contextlib.nullcontext()


@dataclass
class StepContext:
    """What a step needs besides the batch.

    ``model`` runs the forward passes that train (it may be DDP-wrapped); ``net`` is the bare model the
    attacks query (no gradient synchronisation). ``options`` are the config's method options.
    ``generator`` drives every random draw of the step. ``autocast`` wraps model forward passes (not the
    augmentation kernels); ``phase(name)`` wraps the phases "augment", "attack" and "forward" so that a
    benchmark can time them.
    """

    model: nn.Module
    net: nn.Module
    options: dict
    generator: Optional[torch.Generator] = None
    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    phase: Callable[[str], ContextManager] = _no_phase


@dataclass
class StepResult:
    """The loss to minimise, detached logits for the training accuracy, and detached scalars to log.

    ``logits`` are the predictions on the images the cross-entropy uses: the clean images where the
    loss has a clean term, else the training images (AugMix no-JSD, PGDAT, FAT, AugMix+PGDAT).
    """

    loss: torch.Tensor
    logits: torch.Tensor
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)


def _chain_kwargs(o: dict) -> dict:
    return dict(width=o["width"], depth=o["depth"], severity=o["severity"], ops=OP_SETS[o["ops"]])


def _augmix_image(ctx: StepContext, x: torch.Tensor) -> torch.Tensor:
    o = ctx.options
    return augmix(x, alpha=o["alpha"], generator=ctx.generator, **_chain_kwargs(o))


def step_normal(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """Cross-entropy on the batch."""
    with ctx.phase("forward"), ctx.autocast(), route(ctx.model, "M"):
        logits = ctx.model(to_float(x))
    loss = F.cross_entropy(logits.float(), y)
    return StepResult(loss, logits.detach())


def step_augmix(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """AugMix: JSD loss over (clean, aug1, aug2), or cross-entropy on one AugMix image (``jsd: false``)."""
    o = ctx.options
    n = x.shape[0]
    with ctx.phase("augment"):
        augs = [_augmix_image(ctx, x) for _ in range(2 if o["jsd"] else 1)]
    with ctx.phase("forward"), ctx.autocast():
        if not o["jsd"]:
            with route(ctx.model, o["aug_route"]):
                logits = ctx.model(augs[0])
            loss = F.cross_entropy(logits.float(), y)
            return StepResult(loss, logits.detach())
        clean = to_float(x)
        if o["aug_route"] == "M":  # one 3N pass, as AugMix: batch statistics over all three
            with route(ctx.model, "M"):
                logits_clean, logits_1, logits_2 = ctx.model(torch.cat([clean, *augs])).split(n)
        else:
            with route(ctx.model, "M"):
                logits_clean = ctx.model(clean)
            with route(ctx.model, "A"):
                logits_1, logits_2 = ctx.model(torch.cat(augs)).split(n)
        loss = augmix_loss(logits_clean, logits_1, logits_2, y, lam=o["lam"])
    return StepResult(loss, logits_clean.detach())


def _adversarial_mix_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor, kind: str) -> StepResult:
    o = ctx.options
    options = AttackOptions(steps=o["steps"], step_size=o["step_size"], tau=o["tau"], early_stop=o["attack"] == "fat",
                            targeted=o["targeted"], generator=ctx.generator)
    with ctx.phase("augment"):
        if kind == "augmax":
            chains = sample_chains(x, generator=ctx.generator, **_chain_kwargs(o))
        else:
            params = sample_chain_params(x.shape[0], tuple(x.shape[-2:]), device=x.device, generator=ctx.generator,
                                         **_chain_kwargs(o))
        x_augmix = _augmix_image(ctx, x) if o["loss"] == "reference" else None
    with ctx.phase("attack"), ctx.autocast():
        if kind == "augmax":
            found = augmax_attack(ctx.net, x, chains, y, options)
        elif kind == "advmix":
            found = advmix_attack(ctx.net, x, params, y, options, severity=o["severity"], alpha=o["alpha"])
        else:
            found = advmax_attack(ctx.net, x, params, y, options, severity=o["severity"])
    with ctx.phase("forward"), ctx.autocast():
        loss, info = augmax_loss(ctx.model, to_float(x), found.x_adv, x_augmix, y, loss=o["loss"], lam=o["lam"])
    extras = {"ce": info["ce"], "consistency": info["consistency"],
              "attack_steps": found.steps_taken.float().mean()}
    return StepResult(loss, info["logits_clean"], extras)


def step_augmax(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """AugMax: adversarial mixing of random chains, then the reference's or the paper's outer loss."""
    return _adversarial_mix_step(ctx, x, y, "augmax")


def step_advmix(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """AdvMix: adversarial op magnitudes with random mixing; AugMax's outer loss."""
    return _adversarial_mix_step(ctx, x, y, "advmix")


def step_advmax(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """AdvMax: adversarial op magnitudes and mixing; AugMax's outer loss."""
    return _adversarial_mix_step(ctx, x, y, "advmax")


def _pgd_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor, tau: Optional[int]) -> StepResult:
    o = ctx.options
    with ctx.phase("attack"), ctx.autocast():
        x_adv = pgd_linf(ctx.net, x, y, eps=o["eps"], step_size=o["step_size"], steps=o["steps"],
                         random_start=o["random_start"], tau=tau, generator=ctx.generator)
    with ctx.phase("forward"), ctx.autocast(), route(ctx.model, "M"):
        logits = ctx.model(x_adv)
    loss = F.cross_entropy(logits.float(), y)
    return StepResult(loss, logits.detach())


def step_pgdat(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """PGD adversarial training: cross-entropy on L-infinity PGD images."""
    return _pgd_step(ctx, x, y, None)


def step_fat(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """Friendly adversarial training: cross-entropy on early-stopped PGD images."""
    return _pgd_step(ctx, x, y, ctx.options["tau"])


def step_augmix_pgdat(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> StepResult:
    """AugMix + PGDAT: PGD on the AugMix image, cross-entropy on the result."""
    with ctx.phase("augment"):
        x_aug = _augmix_image(ctx, x)
    return _pgd_step(ctx, x_aug, y, None)


# ------------------------------------------------------------------------------------- the method records
_CHAINS = {
    "width": opt(3, int, "number of augmentation chains k", minimum=1),
    "depth": opt(-1, int, "ops per chain; -1 draws 1..3 per chain", minimum=-1),
    "severity": opt(3, int, "op severity (level drawn from U(0.1, severity))", minimum=1),
    "ops": opt("augmix", str, "op set: 'augmix' (9 ops) or 'all' (adds the 4 enhance ops)", choices=("augmix", "all")),
    "alpha": opt(1.0, float, "Dirichlet/Beta parameter of the random mixing", minimum=0.0),
}
_AUGMAX_ATTACK = {
    "attack": opt("fat", str, "inner maximisation: 'fat' (early-stopped, the reference default) or 'pgd'",
                  choices=("fat", "pgd")),
    "steps": opt(10, int, "attack steps (10 on CIFAR/TIN, as the authors recommend)", minimum=0),
    "step_size": opt(0.1, float, "signed-gradient step on the attacked parameters", minimum=0.0),
    "tau": opt(1, int, "FAT: a sample stops after it has been misclassified tau times", minimum=0),
    "targeted": opt(False, bool, "targeted attack towards a random wrong class"),
    "loss": opt("reference", str, "outer loss: 'reference' (released code) or 'paper' (the poster's equation)",
                choices=("reference", "paper")),
    "lam": opt(10.0, float, "weight of the Jensen-Shannon consistency (Lambda)", minimum=0.0),
}
_PGD = {
    "eps": opt(8 / 255, float, "L-infinity radius of the pixel attack (fractions like 8/255 work)", minimum=0.0),
    "step_size": opt(2 / 255, float, "PGD step size", minimum=0.0),
    "steps": opt(10, int, "PGD steps", minimum=0),
    "random_start": opt(True, bool, "start from a uniform point in the eps-ball (Madry et al.)"),
}
_AUGMIX = {**_CHAINS,
           "jsd": opt(True, bool, "AugMix's JSD loss over (clean, aug1, aug2); false trains on one AugMix image"),
           "lam": opt(12.0, float, "weight of the Jensen-Shannon consistency", minimum=0.0),
           "aug_route": opt("M", str, "norm route of the AugMix images on dual-norm models (clean always 'M')",
                            choices=("M", "A"))}


def _main_route(options: Mapping) -> frozenset:
    return frozenset({"M"})


def _both_routes(options: Mapping) -> frozenset:
    return frozenset({"M", "A"})


def _augmix_routes(options: Mapping) -> frozenset:
    # The clean images take route "M" (with the JSD loss); the AugMix images take aug_route.
    return frozenset({"M", options["aug_route"]}) if options["jsd"] else frozenset({options["aug_route"]})


@dataclass(frozen=True)
class Method:
    """Everything about one training method: the options of its config section (``method.*``), the step
    function that builds its images and loss, and the norm routes ("M", "A") that a step with given options
    trains. Adding a method is adding one record to :data:`METHODS`."""

    name: str
    options: Mapping[str, Option]
    step: Callable[[StepContext, torch.Tensor, torch.Tensor], StepResult]
    routes: Callable[[Mapping], frozenset] = _main_route


METHODS: Dict[str, Method] = {m.name: m for m in (
    Method("normal", {}, step_normal),
    Method("augmix", _AUGMIX, step_augmix, _augmix_routes),
    Method("augmax", {**_CHAINS, **_AUGMAX_ATTACK}, step_augmax, _both_routes),
    Method("advmix", {**_CHAINS, **_AUGMAX_ATTACK}, step_advmix, _both_routes),
    Method("advmax", {**_CHAINS, **_AUGMAX_ATTACK}, step_advmax, _both_routes),
    Method("pgdat", dict(_PGD), step_pgdat),
    Method("fat", {**_PGD, "tau": opt(1, int, "a sample stops after it has been misclassified tau times", minimum=0)},
           step_fat),
    Method("augmix+pgdat", {**_CHAINS, **_PGD}, step_augmix_pgdat),
)}


def training_routes(method: Mapping) -> frozenset:
    """The norm routes ("M", "A") whose layers a step with these method options (a config's ``method``) trains."""
    return METHODS[method["name"]].routes(method)


def get_step(name: str):
    """The step function of method ``name``."""
    if name not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {name!r}")
    return METHODS[name].step
