"""AugMix chains and mixing, batched: every image gets its own random chains, drawn on its device.

An AugMix image is ``(1 - m) x + m * sum_i w_i chain_i(x)`` with ``w ~ Dirichlet(alpha)`` and
``m ~ Beta(alpha, alpha)``; each of the ``width`` chains applies 1 to 3 random ops (REFERENCE.md
section 1). Each chain draws its own depth, as the reference does (AugMax's ``augmax_modules/augmax.py``
calls its ``aug`` once per chain and each call draws a depth; AugMix's ``cifar.py`` draws it inside the
chain loop); only an early version of google-research's numpy demo reused the first chain's depth.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from ._checks import check_generator, check_images, like_input, to_float
from .ops import OPS_AUGMIX, apply_ops, check_ops, group_by_kernel, native, op_tables

__all__ = ["ChainParams", "level_to_value", "value_bounds", "sample_chain_params", "apply_chains",
           "sample_chains", "sample_mixing", "mix", "augmix", "AugMix"]

_MAX_DEPTH = 3  # depth=-1 draws each chain's depth uniformly from 1..3


@dataclass
class ChainParams:
    """Random chains for a batch: op ``op_index[i, n, s]`` of ``ops`` with parameter ``values[i, n, s]``
    runs at step ``s`` of chain ``i`` of image ``n`` where ``active[i, n, s]``."""

    op_index: torch.Tensor  # (width, N, D) long
    values: torch.Tensor    # (width, N, D) float, in each op's natural unit (see augmax_lib.ops.apply_op)
    active: torch.Tensor    # (width, N, D) bool
    ops: tuple[str, ...]
    # Which images run which kernel at each step depends on op_index and active, and, for values
    # that need no gradient, on which translations are whole pixels (a cheaper exact kernel). It is
    # cached with the identity and version of `values` it read, so an attack that changes `values`
    # with autograd reuses it instead of paying a host sync per call.
    _groups: list | None = field(default=None, init=False, repr=False, compare=False)
    _groups_key: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def _values_key(self) -> tuple:
        if self.values.requires_grad:
            return ("grad",)
        return (self.values.data_ptr(), self.values._version, tuple(self.values.shape))

    def kernel_groups(self) -> tuple[list, torch.Tensor]:
        """Per step, the chain images of each kernel group (see ``ops.group_by_kernel``), and their in-group indices."""
        key = self._values_key()
        if self._groups is None or self._groups_key != key:
            width, n, steps = self.op_index.shape
            group_of, local_of, whole_of = op_tables(self.ops, self.op_index.device)
            op_index = self.op_index.permute(2, 0, 1).reshape(steps, width * n)
            group = group_of[op_index]
            if not self.values.requires_grad:
                values = self.values.permute(2, 0, 1).reshape(steps, width * n)
                group = torch.where(values == values.round(), whole_of[op_index], group)
            keys = torch.where(self.active.permute(2, 0, 1).reshape(steps, -1), group, -1)
            self._groups, self._groups_key = [group_by_kernel(keys), local_of[op_index]], key
        return self._groups[0], self._groups[1]

    @property
    def width(self) -> int:
        return self.op_index.shape[0]

    def detach(self) -> "ChainParams":
        out = ChainParams(self.op_index, self.values.detach(), self.active, self.ops)
        out._groups, out._groups_key = self._groups, self._groups_key
        return out


def _level_map(name: str, height: int, width: int) -> tuple[float, bool, bool, float, float]:
    """How op ``name`` maps a level to its value: ``t = level * maximum / 10``, floored where ``floors``, then
    ``t * sign + offset`` where ``signed``, else ``t * scale + offset``: (maximum, floors, signed, scale, offset)."""
    # The reference's int_parameter(l, max) = int(l * max / 10), float_parameter = l * max / 10.
    if name in ("autocontrast", "equalize"):
        return 0.0, False, False, 1.0, 0.0
    if name == "posterize":
        return 4.0, True, False, -1.0, 4.0  # 4 - int_parameter(l, 4)
    if name == "solarize":
        return 256.0, True, False, -1.0, 256.0  # 256 - int_parameter(l, 256)
    if name == "rotate":
        return 30.0, True, True, 1.0, 0.0
    if name in ("shear_x", "shear_y"):
        return 0.3, False, True, 1.0, 0.0
    if name == "translate_x":
        return width / 3, True, True, 1.0, 0.0
    if name == "translate_y":
        return height / 3, True, True, 1.0, 0.0
    return 1.8, False, False, 1.0, 0.1  # color, contrast, brightness, sharpness


@functools.lru_cache(maxsize=64)
def _level_tables(ops: tuple[str, ...], height: int, width: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``_level_map`` of every op as tables on ``device``: (K, 3) maximum, scale, offset and (K, 2) floors, signed.

    Cached: a host-to-device copy per batch would stall a CUDA stream.
    """
    rows = [_level_map(name, height, width) for name in ops]
    numbers = torch.tensor([[r[0], r[3], r[4]] for r in rows], dtype=dtype, device=device)
    flags = torch.tensor([[r[1], r[2]] for r in rows], dtype=torch.bool, device=device)
    return numbers, flags


def _level_values(numbers: torch.Tensor, flags: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    maximum, scale, offset = numbers.unbind(-1)
    floors, signed = flags.unbind(-1)
    t = level * maximum / 10  # the same float operations, in the same order, as the reference's formulas
    t = torch.where(floors, torch.floor(t), t)
    return t * torch.where(signed, sign, scale) + offset


def level_to_value(ops: tuple[str, ...], op_index: torch.Tensor, level: torch.Tensor, sign: torch.Tensor,
                   height: int, width: int) -> torch.Tensor:
    """Each op's natural-unit parameter from its level in (0, 10] and sign (+1/-1), as the reference maps it."""
    numbers, flags = _level_tables(tuple(ops), height, width, level.device, level.dtype)
    return _level_values(numbers[op_index], flags[op_index], level, sign)


def value_bounds(name: str, severity: float, height: int, width: int) -> tuple[float, float]:
    """The range of ``name``'s parameter at ``severity`` (levels up to ``severity``, both signs where they flip)."""
    levels = torch.tensor([float(severity), 0.1])
    hi, lo_level = level_to_value((name,), torch.zeros(2, dtype=torch.long), levels, torch.ones(2), height,
                                  width).tolist()
    if name in ("rotate", "shear_x", "shear_y", "translate_x", "translate_y"):
        return -hi, hi
    return min(lo_level, hi), max(lo_level, hi)


def _check_chain_args(width: int, depth: int, severity: float) -> None:
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width: expected a positive int (number of chains), got {width!r}")
    if not isinstance(depth, int) or depth == 0 or depth < -1:
        raise ValueError(f"depth: expected -1 (random 1..3 per chain) or a positive int, got {depth!r}")
    if not 0.1 < float(severity) <= 10:
        raise ValueError(f"severity: expected a number in (0.1, 10], got {severity!r}")


def sample_chain_params(n: int, image_size, width: int = 3, depth: int = -1, severity: float = 3,
                        ops=OPS_AUGMIX, device=None, generator: torch.Generator | None = None) -> ChainParams:
    """Draw ``width`` chains for each of ``n`` images: ops, levels U(0.1, severity), signs and depths."""
    _check_chain_args(width, depth, severity)
    ops = check_ops(ops)
    height, wide = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    device = torch.device(device) if device is not None else torch.device("cpu")
    check_generator(generator, device)
    steps = _MAX_DEPTH if depth < 0 else depth
    shape = (width, n, steps)
    op_index = torch.randint(len(ops), shape, device=device, generator=generator)
    level = 0.1 + (float(severity) - 0.1) * torch.rand(shape, device=device, generator=generator)
    sign = torch.where(torch.rand(shape, device=device, generator=generator) > 0.5, -1.0, 1.0)
    if depth < 0:
        chain_depth = torch.randint(1, _MAX_DEPTH + 1, (width, n, 1), device=device, generator=generator)
    else:
        chain_depth = torch.full((width, n, 1), depth, device=device)
    active = torch.arange(steps, device=device) < chain_depth
    values = level_to_value(ops, op_index, level, sign, height, wide)
    return ChainParams(op_index, values, active, ops)


def apply_chains(x: torch.Tensor, params: ChainParams) -> torch.Tensor:
    """Run every chain on its image: (width, N, C, H, W) float in [0, 1].

    uint8 images stay uint8 between ops, as PIL images do in the reference. On the CPU, without autograd,
    the chains run in the C kernel of ``ops.native`` when it is built: PIL's results exactly, float images
    on their nearest 8-bit levels. Otherwise, on float images the result is differentiable with respect to
    ``x`` and ``params.values`` through the geometric and enhance ops, and there is one host
    synchronisation per ``params`` (to size the per-kernel groups; it is cached, so applying the same
    draw again with other ``values`` costs none).
    """
    images = _run_chains(x, params)
    return to_float(images) if images.dtype == torch.uint8 else images


def _run_chains(x: torch.Tensor, params: ChainParams, levels: bool = False) -> torch.Tensor:
    """``apply_chains`` in ``x``'s dtype: uint8 chains come back as uint8 (``mix`` takes them as they are);
    with ``levels``, chains that the C kernel ran come back as its uint8 levels for float ``x`` too."""
    check_images(x, "x")
    width, n, steps = params.op_index.shape
    if n != x.shape[0]:
        raise ValueError(f"params: drawn for {n} images but x holds {x.shape[0]}")
    if params.op_index.device != x.device:
        raise ValueError(f"params: drawn on {params.op_index.device} but x is on {x.device}")
    if not (torch.is_grad_enabled() and (x.requires_grad or params.values.requires_grad)):
        # Images on the CPU: each image's chains in one C pass (ops.native), when it is built.
        chains = native.run_chains(x, params.ops, params.op_index, params.values, params.active)
        if chains is not None:
            return chains if x.dtype == torch.uint8 or levels else chains.to(x.dtype).div_(255.0)
    # Step-major layout: all width * N chain images advance one op per step.
    groups, local = params.kernel_groups()
    values = params.values.permute(2, 0, 1).reshape(steps, width * n)
    # Without autograd every step writes its results into one buffer; with it, each step is a new tensor.
    inplace = not (torch.is_grad_enabled() and (x.requires_grad or params.values.requires_grad))
    first = 0
    if inplace and groups[0][-1] is None:
        # Every chain image runs an op at step 0: it reads x directly, so x is never repeated.
        images = torch.empty((width * n, *x.shape[1:]), dtype=x.dtype, device=x.device)
        source_of = torch.arange(n, device=x.device).repeat(width)
        images = apply_ops(images, groups[0], local[0], values[0], inplace=True, source=x, source_of=source_of)
        first = 1
    else:
        images = x.unsqueeze(0).expand(width, *x.shape).reshape(width * n, *x.shape[1:])
    for s in range(first, steps):
        images = apply_ops(images, groups[s], local[s], values[s], inplace=inplace)
    return images.view(width, n, *x.shape[1:])


def sample_chains(x: torch.Tensor, width: int = 3, depth: int = -1, severity: float = 3, ops=OPS_AUGMIX,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``width`` random AugMix chains per image of ``x``: (width, N, C, H, W) float in [0, 1]."""
    check_images(x, "x")
    params = sample_chain_params(x.shape[0], tuple(x.shape[-2:]), width, depth, severity, ops,
                                 x.device, generator)
    return apply_chains(x, params)


def _standard_gamma(alpha: float, shape, device, generator) -> torch.Tensor:
    """Gamma(alpha, 1) draws from the generator (torch.distributions takes none)."""
    if alpha == 1.0:
        return -torch.log1p(-torch.rand(shape, device=device, generator=generator))
    # Marsaglia and Tsang; for alpha < 1 draw Gamma(alpha + 1) and scale by U^(1/alpha). Several
    # candidates at once (acceptance >= 95% each) keep it free of data-dependent loops.
    a = alpha + 1.0 if alpha < 1 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    tries = 8
    z = torch.randn((tries, *shape), device=device, generator=generator)
    u = torch.rand((tries, *shape), device=device, generator=generator)
    v = (1 + c * z) ** 3
    ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp(min=1e-30)))
    first = torch.argmax(ok.to(torch.uint8), dim=0, keepdim=True)
    g = (d * v).gather(0, first).squeeze(0)
    if alpha < 1:
        g = g * torch.rand(shape, device=device, generator=generator) ** (1.0 / alpha)
    return g


def sample_mixing(n: int, width: int = 3, alpha: float = 1.0, device=None,
                  generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """AugMix's random mixing: ``m ~ Beta(alpha, alpha)`` (N,) and ``w ~ Dirichlet(alpha)`` (N, width)."""
    if not alpha > 0:
        raise ValueError(f"alpha: expected a positive float, got {alpha!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    check_generator(generator, device)
    g = _standard_gamma(float(alpha), (n, width), device, generator)
    w = g / g.sum(1, keepdim=True)
    pair = _standard_gamma(float(alpha), (n, 2), device, generator)
    m = pair[:, 0] / pair.sum(1)
    return m, w


def mix(x: torch.Tensor, chains: torch.Tensor, m: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``(1 - m) x + m * sum_i w_i chains[i]`` per image; ``m`` (N,), ``w`` (N, width); float out.

    ``chains`` is float in [0, 1] or uint8 levels (read as level / 255).
    """
    check_images(x, "x")
    width, n = chains.shape[:2]
    if chains.dim() != 5 or chains.shape[1:] != x.shape:
        raise ValueError(f"chains: expected shape (width, {', '.join(map(str, x.shape))}), got {tuple(chains.shape)}")
    if m.shape != (n,):
        raise ValueError(f"m: expected shape ({n},), got {tuple(m.shape)}")
    if w.shape != (n, width):
        raise ValueError(f"w: expected shape ({n}, {width}), got {tuple(w.shape)}")
    x = to_float(x)
    # A short loop of fused multiply-adds beats einsum, which lowers to a badly shaped bmm here.
    if chains.dtype == torch.uint8:
        # Widening each chain first, then same-dtype arithmetic: mixed-dtype kernels are slower on a CPU.
        w = w.to(x.dtype) / 255.0
        mixed = chains[0].to(x.dtype).mul_(w[:, 0].view(-1, 1, 1, 1))
        for i in range(1, width):
            mixed.addcmul_(chains[i].to(x.dtype), w[:, i].view(-1, 1, 1, 1))
    else:
        w = w.to(chains.dtype)
        mixed = chains[0] * w[:, 0].view(-1, 1, 1, 1)
        for i in range(1, width):
            mixed = mixed.addcmul_(chains[i], w[:, i].view(-1, 1, 1, 1))
    m = m.to(x.dtype).view(-1, 1, 1, 1)
    if mixed.dtype == x.dtype:
        return torch.lerp(x, mixed, m)  # x + m (mixed - x) in one pass
    return x + m * (mixed - x)


def augmix(x: torch.Tensor, width: int = 3, depth: int = -1, severity: float = 3, ops=OPS_AUGMIX,
           alpha: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """The AugMix image of every image of ``x`` (N, C, H, W): float in [0, 1], same device."""
    check_images(x, "x")
    params = sample_chain_params(x.shape[0], tuple(x.shape[-2:]), width, depth, severity, ops,
                                 x.device, generator)
    chains = _run_chains(x, params, levels=True)  # uint8 chains stay uint8 up to the mixing
    m, w = sample_mixing(x.shape[0], width, alpha, x.device, generator)
    return mix(x, chains, m, w)


class AugMix(torch.nn.Module):
    """A transform in torchvision's style: AugMix on a batch (N, C, H, W) or one image (C, H, W),
    each image with its own chains; the output keeps the input's dtype (uint8 rounds to the nearest level).

    Unlike ``torchvision.transforms.v2.AugMix``, which draws one op chain per call for the whole
    batch, every image and chain draws its own ops, levels and depth.
    """

    def __init__(self, severity: float = 3, width: int = 3, depth: int = -1, alpha: float = 1.0,
                 ops=OPS_AUGMIX, generator: torch.Generator | None = None):
        super().__init__()
        _check_chain_args(width, depth, severity)
        if not alpha > 0:
            raise ValueError(f"alpha: expected a positive float, got {alpha!r}")
        self.severity, self.width, self.depth, self.alpha = severity, width, depth, alpha
        self.ops = check_ops(ops)
        self.generator = generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = isinstance(x, torch.Tensor) and x.dim() == 3
        batch = x.unsqueeze(0) if single else x
        out = augmix(batch, self.width, self.depth, self.severity, self.ops, self.alpha, self.generator)
        out = like_input(out, x.dtype)
        return out.squeeze(0) if single else out

    def extra_repr(self) -> str:
        return (f"severity={self.severity}, width={self.width}, depth={self.depth}, alpha={self.alpha}, "
                f"ops={len(self.ops)} ops")
