"""AdvMix and AdvMax: the naive baselines of the poster's strategy ablation (Table 10), which attack the
magnitudes of the ops inside the chains instead of (AdvMix) or as well as (AdvMax) the mixing weights.

The reference code contains neither, so the definitions are ours:

- Attackable ops: the continuous ones, geometric (rotate, shear_x/y, translate_x/y) and enhance
  (color, contrast, brightness, sharpness); their kernels are differentiable in the magnitude. The tone
  ops (autocontrast, equalize, posterize, solarize) have no or integer parameters and keep the drawn one.
- Valid range of each magnitude: the range AugMix draws it from at severity ``s``
  (``augmax_lib.augmix.value_bounds``; REFERENCE.md section 1, levels up to ``s``): rotate
  [-int(3 s), int(3 s)] degrees, shear [-0.03 s, 0.03 s], translate_x [-int(W s / 30), int(W s / 30)]
  pixels and translate_y the same with H, enhance factors [0.118, 0.1 + 0.18 s]. At s = 3 on 32x32:
  +-9 degrees, +-0.09, +-3 pixels, [0.118, 0.64]. Inside the range the magnitude is continuous
  (fractional degrees and pixel shifts), and the sign may flip: both signs are valid AugMix draws.
- Start: the magnitudes in ``params`` (an AugMix draw, ``sample_chain_params``). Step: each magnitude
  moves by ``step_size`` times its range's width times the sign of its gradient, then is clamped into
  its range; so the default ``step_size=0.1`` can cross a range in ten steps, as it can ``m`` in [0, 1].
- AdvMix: mixing weights random and fixed, ``(m, w) = sample_mixing(...)`` (m ~ Beta(alpha, alpha),
  w ~ Dirichlet(alpha)). AdvMax: the magnitudes and AugMax's mixing parameters together, ``m`` and ``p``
  started as in ``augmax_attack`` (U(0, 1)) and moved by the same signed steps (``m`` clamped, ``p`` free).
- Loss, targeted mode, FAT early stopping and the model discipline (eval mode, no parameter gradients,
  BN route "A", all restored afterwards) are those of ``augmax_attack``. Cost per step: the chains
  are rebuilt (``apply_chains``, one host synchronisation to group the images by kernel) and one
  forward and backward run, on the still-active images only.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import nn

from augmax_lib._checks import to_float
from augmax_lib.augmix import apply_chains, mix, sample_mixing, value_bounds

from ._engine import AttackOptions, AugMaxResult, attack_mode, check_attack_args, check_options, signed_ascent
from .attack import parameter_dtype

__all__ = ["magnitude_ranges", "advmix_attack", "advmax_attack"]

_ATTACKED = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y",
             "color", "contrast", "brightness", "sharpness")
_FIXED = ("autocontrast", "equalize", "posterize", "solarize")


def magnitude_ranges(ops, severity: float, height: int, width: int) -> dict[str, Optional[tuple[float, float]]]:
    """The valid ``(low, high)`` magnitude of each op at AugMix ``severity`` (None: a tone op, not attacked)."""
    if isinstance(severity, bool) or not isinstance(severity, (int, float)) or not 0.1 < severity <= 10:
        raise ValueError(f"severity: expected a number in (0.1, 10] (AugMix levels), got {severity!r}")
    ranges: dict[str, Optional[tuple[float, float]]] = {}
    for name in ops:
        if name in _ATTACKED:
            ranges[name] = value_bounds(name, severity, height, width)
        elif name in _FIXED:
            ranges[name] = None
        else:
            raise ValueError(f"params.ops: unknown op {name!r}")
    return ranges


def _check_params(params, x: torch.Tensor):
    for field in ("op_index", "values", "active", "ops"):
        if not hasattr(params, field):
            raise TypeError(f"params: expected a ChainParams from augmax_lib.augmix.sample_chain_params, "
                            f"got {type(params).__name__} without {field!r}")
    n = x.shape[0]
    shape = params.op_index.shape
    if len(shape) != 3 or shape[1] != n:
        raise ValueError(f"params.op_index: expected shape (width, {n}, depth) for {n} images, got {tuple(shape)}")
    if params.values.shape != shape or params.active.shape != shape:
        raise ValueError(f"params: op_index, values and active must share one shape, got {tuple(shape)}, "
                         f"{tuple(params.values.shape)}, {tuple(params.active.shape)}")
    for field in ("op_index", "values", "active"):
        if getattr(params, field).device != x.device:
            raise ValueError(f"params.{field}: expected a tensor on {x.device} (the images' device), "
                             f"got {getattr(params, field).device}")
    if not params.values.dtype.is_floating_point:
        raise TypeError(f"params.values: expected float magnitudes, got {params.values.dtype}")


def _replace(params, **fields):
    """A copy of ``params`` with some fields swapped (ChainParams may be a dataclass or a NamedTuple)."""
    if dataclasses.is_dataclass(params):
        return dataclasses.replace(params, **fields)
    return params._replace(**fields)


def _magnitude_tables(params, severity: float, height: int, width: int, step_size: float, dtype: torch.dtype):
    """Per chain slot (width, N, depth): lower and upper bound and step size of its magnitude.

    Slots that are not attacked (tone ops, slots past a chain's depth) get bounds -inf/+inf and step 0,
    so the projected step leaves them unchanged. Raises if an attacked start value lies outside its range.
    """
    ranges = magnitude_ranges(params.ops, severity, height, width)
    per_op = [ranges[name] for name in params.ops]
    lows = [r[0] if r else -math.inf for r in per_op]
    highs = [r[1] if r else math.inf for r in per_op]
    steps = [step_size * (r[1] - r[0]) if r else 0.0 for r in per_op]
    device = params.values.device
    index, active = params.op_index, params.active.bool()
    low = torch.tensor(lows, dtype=dtype, device=device)[index]
    high = torch.tensor(highs, dtype=dtype, device=device)[index]
    step = torch.tensor(steps, dtype=dtype, device=device)[index]
    low = torch.where(active, low, -math.inf)
    high = torch.where(active, high, math.inf)
    step = torch.where(active, step, 0.0)
    values = params.values.to(dtype)
    slack = 1e-4 * (high - low).nan_to_num(posinf=0.0)
    outside = (values < low - slack) | (values > high + slack)
    if bool(outside.any()):  # one check per call
        first = outside.nonzero()[0].tolist()
        name = params.ops[int(index[tuple(first)])]
        raise ValueError(f"params.values: {name} magnitude {float(values[tuple(first)]):.4g} at {tuple(first)} lies "
                         f"outside {ranges[name]} for severity {severity}; pass the severity the params were drawn with")
    return low, high, step


def _prepare(model, x, params, y, steps, step_size, tau, targeted, target, generator, severity):
    check_attack_args(x, y, steps, step_size, tau, targeted, target, generator)
    _check_params(params, x)
    x = to_float(x).detach()
    dtype = parameter_dtype(x)
    low, high, step = _magnitude_tables(params, severity, x.shape[2], x.shape[3], step_size, dtype)
    values = params.values.detach().to(dtype).clamp(low, high)
    return x, dtype, values, low, high, step


def _step_values(values, grad, low, high, step):
    return torch.max(torch.min(values + step * grad.sign(), high), low)


def advmix_attack(model: nn.Module, x: torch.Tensor, params, y: torch.Tensor, options: AttackOptions = AttackOptions(),
                  *, severity: float = 3, alpha: float = 1.0, target: Optional[torch.Tensor] = None) -> AugMaxResult:
    """AdvMix: attack the op magnitudes of the chains ``params`` of ``x``, mixing with random fixed ``(m, w)``.

    ``(m, w)`` come from ``sample_mixing(N, width, alpha, generator=generator)``; the magnitudes start at
    ``params.values`` and take signed steps of ``step_size`` times their range (module docstring), kept
    in range for ``severity``. Returns the images, ``m``, ``w``, the step counts and the attacked
    ``params``. Loss, ``targeted``/``target``, ``tau``/``early_stop`` and model handling as ``augmax_attack``;
    ``options`` (:class:`AttackOptions`) as there.
    """
    steps, step_size, tau, generator = check_options(options).steps, options.step_size, options.tau, options.generator
    early_stop, targeted = options.early_stop, options.targeted
    x, dtype, values, low, high, step = _prepare(model, x, params, y, steps, step_size, tau, targeted, target,
                                                 generator, severity)
    n, width = x.shape[0], params.op_index.shape[0]
    m, w = sample_mixing(n, width, alpha=alpha, device=x.device, generator=generator)
    m, w = m.to(dtype), w.to(dtype)
    op_index, active = params.op_index, params.active

    def build(data, variables):
        xa, index, act, ma, wa = data[:5]
        chains = apply_chains(xa, _replace(params, op_index=index, values=variables[0], active=act))
        return mix(xa, chains, ma, wa)

    def step_fn(data, variables, grads):
        lo, hi, st = data[5:]
        return (_step_values(variables[0], grads[0], lo, hi, st),)

    data = [(x, 0), (op_index, 1), (active, 1), (m, 0), (w, 0), (low, 1), (high, 1), (step, 1)]
    with attack_mode(model):
        (values,), taken, target = signed_ascent(model, build, step_fn, data, [(values, 1)], y, target, steps, tau,
                                                 early_stop, targeted, generator)
    attacked = _replace(params, values=values.to(params.values.dtype))
    with torch.no_grad():
        x_adv = mix(x, apply_chains(x, attacked), m, w).clamp_(0.0, 1.0)
    return AugMaxResult(x_adv=x_adv, m=m, w=w, steps_taken=taken, target=target, params=attacked)


def advmax_attack(model: nn.Module, x: torch.Tensor, params, y: torch.Tensor, options: AttackOptions = AttackOptions(),
                  *, severity: float = 3, target: Optional[torch.Tensor] = None) -> AugMaxResult:
    """AdvMax: attack the op magnitudes of ``params`` and AugMax's mixing ``(m, w = softmax(p))`` together.

    ``m ~ U(0, 1)`` then ``p ~ U(0, 1)^width`` from ``generator`` (as ``augmax_attack``); magnitudes start
    at ``params.values``. Each step moves all three by their signed gradient: ``m`` and ``p`` by
    ``step_size`` (``m`` clamped to [0, 1]), each magnitude by ``step_size`` times its range, kept in range.
    ``options`` (:class:`AttackOptions`) as for ``augmax_attack``.
    """
    steps, step_size, tau, generator = check_options(options).steps, options.step_size, options.tau, options.generator
    early_stop, targeted = options.early_stop, options.targeted
    x, dtype, values, low, high, step = _prepare(model, x, params, y, steps, step_size, tau, targeted, target,
                                                 generator, severity)
    n, width = x.shape[0], params.op_index.shape[0]
    m0 = torch.rand(n, device=x.device, dtype=dtype, generator=generator)
    p0 = torch.rand(n, width, device=x.device, dtype=dtype, generator=generator)
    op_index, active = params.op_index, params.active

    def build(data, variables):
        xa, index, act = data[:3]
        v, m, p = variables
        chains = apply_chains(xa, _replace(params, op_index=index, values=v, active=act))
        return mix(xa, chains, m, torch.softmax(p, dim=1))

    def step_fn(data, variables, grads):
        lo, hi, st = data[3:]
        (v, m, p), (gv, gm, gp) = variables, grads
        return (_step_values(v, gv, lo, hi, st), (m + step_size * gm.sign()).clamp_(0.0, 1.0),
                p + step_size * gp.sign())

    data = [(x, 0), (op_index, 1), (active, 1), (low, 1), (high, 1), (step, 1)]
    with attack_mode(model):
        (values, m, p), taken, target = signed_ascent(model, build, step_fn, data, [(values, 1), (m0, 0), (p0, 0)],
                                                      y, target, steps, tau, early_stop, targeted, generator)
    attacked = _replace(params, values=values.to(params.values.dtype))
    with torch.no_grad():
        w = torch.softmax(p, dim=1)
        x_adv = mix(x, apply_chains(x, attacked), m, w).clamp_(0.0, 1.0)
    return AugMaxResult(x_adv=x_adv, m=m, w=w, steps_taken=taken, target=target, params=attacked)
