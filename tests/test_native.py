"""The C kernel of uint8 AugMix chains (augmax_lib/ops/native.py, chains.c) against PIL, and its fallback."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference.pil_augmix import pil_op

from augmax_lib.augmix import apply_chains, augmix, sample_chain_params
from augmax_lib.ops import OPS_AUGMIX, native

ROOT = Path(__file__).resolve().parents[1]
TONE = ("autocontrast", "equalize", "posterize", "solarize")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def kernel():
    if not native.available():
        reason = native.unavailable_reason()
        if "no C compiler" in reason:
            pytest.skip(reason)
        pytest.fail(reason)  # a compiler that fails on chains.c is a bug, not a missing tool
    return native


def _pil_chains(images: np.ndarray, params, ops) -> np.ndarray:
    """Every chain run op by op with PIL: (width, N, H, W, C) uint8."""
    out = np.empty((params.width, *images.shape), np.uint8)
    for i in range(params.width):
        for n, image in enumerate(images):
            img = Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)
            for s in range(params.op_index.shape[2]):
                if params.active[i, n, s]:
                    img = pil_op(img, ops[params.op_index[i, n, s]], float(params.values[i, n, s]))
            out[i, n] = np.asarray(img).reshape(image.shape)
    return out


def _native_chains(x, params):
    chains = native.run_chains(x, params.ops, params.op_index, params.values, params.active)
    assert chains is not None and chains.dtype == torch.uint8
    return chains.permute(0, 1, 3, 4, 2).numpy()


@pytest.mark.parametrize("severity", [3, 10])
def test_chains_equal_pil_exactly(kernel, images_hwc, severity):
    """Rotations, shears, translations and tone ops, chained: every pixel as PIL computes it."""
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    params = sample_chain_params(len(x), 32, severity=severity, generator=_gen(severity))
    np.testing.assert_array_equal(_native_chains(x, params), _pil_chains(images_hwc, params, OPS_AUGMIX))


@pytest.mark.parametrize("shape", [(17, 23, 3), (40, 24, 1)])
def test_other_sizes_and_grayscale_equal_pil_exactly(kernel, shape):
    h, w, c = shape
    images = np.random.default_rng(h).integers(0, 256, (12, h, w, c), dtype=np.uint8)
    images[:, : h // 3] //= 3  # some structure: dark bands for autocontrast and equalize to stretch
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    params = sample_chain_params(12, (h, w), severity=10, generator=_gen(w))
    np.testing.assert_array_equal(_native_chains(x, params), _pil_chains(images, params, OPS_AUGMIX))


def test_tone_chains_equal_the_pytorch_kernels(kernel, images_hwc):
    """The tone ops are exact in both implementations, so their chains agree bit for bit."""
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    params = sample_chain_params(len(x), 32, severity=10, ops=TONE, generator=_gen(7))
    ours = apply_chains(x, params)
    with native.disabled():
        theirs = apply_chains(x, params)
    assert torch.equal(ours, theirs)


def test_augmix_uses_the_kernel_only_where_it_applies(kernel, images_hwc, monkeypatch):
    x = torch.from_numpy(images_hwc[:8]).permute(0, 3, 1, 2).contiguous()
    calls = []
    real = native.chains_u8
    monkeypatch.setattr(native, "chains_u8", lambda *a: calls.append(1) or real(*a))
    augmix(x, generator=_gen(0))
    augmix(x.double() / 255, generator=_gen(0))  # float images: on their 8-bit levels
    assert len(calls) == 2
    augmix(x, ops=OPS_AUGMIX + ("contrast",), generator=_gen(0))  # an op the kernel lacks
    xf = (x.float() / 255).requires_grad_()
    apply_chains(xf, sample_chain_params(8, 32, generator=_gen(2)))  # autograd through the image
    values = sample_chain_params(8, 32, generator=_gen(1)).values.requires_grad_()  # a gradient asked for
    assert native.run_chains(x, OPS_AUGMIX, torch.zeros(3, 8, 3, dtype=torch.long), values,
                             torch.ones(3, 8, 3, dtype=torch.bool)) is None
    with native.disabled():
        augmix(x, generator=_gen(0))
    assert len(calls) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_float_images_run_on_their_levels(kernel, images_hwc, dtype):
    """A float image is chained as its 8-bit levels are: the uint8 chains / 255, in the image's dtype."""
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    params = sample_chain_params(len(x), 32, severity=10, generator=_gen(11))
    xf = (x.double() / 255 + 0.4 / 255).to(dtype)  # off the level grid by less than half a level
    chains = apply_chains(xf, params)
    assert chains.dtype == dtype
    assert torch.equal(chains, (apply_chains(x, params).double() * 255).round().to(dtype).div(255))


def test_same_draw_with_and_without_the_kernel_within_bilinear_rounding(kernel, images_hwc):
    """The PyTorch warp samples in float32 (within one grey level of PIL); the rest of AugMix is shared."""
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    ours = augmix(x, generator=_gen(3))
    with native.disabled():
        theirs = augmix(x, generator=_gen(3))
    diff = (ours - theirs).abs() * 255
    assert diff.mean() < 0.1 and (diff > 1.01).float().mean() < 0.01


def test_built_atomically_into_the_cache_folder(tmp_path):
    """A fresh cache: one build, the library and nothing else left there; a second process loads it."""
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    code = ("from augmax_lib.ops import native; print(native.available(), native.unavailable_reason()); "
            "print(native.library_path(native._compiler()))")
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        if done.stdout.startswith("False") and "no C compiler" in done.stdout:
            pytest.skip(done.stdout)
        assert done.stdout.startswith("True None"), done.stdout
    built = sorted(p.name for p in (tmp_path / "augmax" / "native").iterdir())
    assert built == [Path(done.stdout.split()[-1]).name]


def test_without_a_compiler_chains_fall_back_with_one_warning(images_hwc):
    env = {**os.environ, "CC": "", "PATH": "/nonexistent", "PYTHONPATH": str(ROOT)}
    code = ("import warnings, torch; from augmax_lib.augmix import augmix; from augmax_lib.ops import native\n"
            "x = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)\n"
            "native._compiler = lambda: None\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    a = augmix(x, generator=torch.Generator().manual_seed(0))\n"
            "    b = augmix(x, generator=torch.Generator().manual_seed(0))\n"
            "print(len([w for w in seen if 'AUGMAX_NATIVE=0' in str(w.message)]), native.unavailable_reason(), "
            "torch.equal(a, b), tuple(a.shape))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "1" and "no C compiler" in done.stdout
    assert done.stdout.strip().endswith("True (4, 3, 8, 8)")


def test_opt_out_is_silent():
    env = {**os.environ, "AUGMAX_NATIVE": "0", "PYTHONPATH": str(ROOT)}
    code = ("import warnings, torch; warnings.simplefilter('error'); from augmax_lib.augmix import augmix\n"
            "from augmax_lib.ops import native\n"
            "augmix(torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8))\n"
            "print(native.available(), native.unavailable_reason())")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False AUGMAX_NATIVE=0"


def test_an_unwritable_cache_falls_back_to_a_private_temp_folder(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "XDG_CACHE_HOME": str(blocked / "cache"), "TMPDIR": str(temp), "PYTHONPATH": str(ROOT)}
    code = "from augmax_lib.ops import native; print(native.available(), native.unavailable_reason())"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    if "no C compiler" in done.stdout:
        pytest.skip(done.stdout)
    assert done.stdout.startswith("True None"), done.stdout
    (private,) = temp.glob("augmax-native-*")
    assert private.stat().st_mode & 0o077 == 0 and len(list(private.glob("chains-*"))) == 1
