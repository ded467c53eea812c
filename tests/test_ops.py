"""augmax_lib.ops against PIL: each image its own value, across each op's whole range.

Tolerances: the point ops (autocontrast, equalize, posterize, solarize) and the enhance ops
(color, contrast, brightness, sharpness) match PIL exactly on uint8. The resampling ops (rotate,
shear, translate) differ from PIL's double-precision bilinear by at most one grey level, in well
under 1% of pixels (float32 sampling lands on the other side of a truncation boundary).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from reference.pil_augmix import pil_op

from augmax_lib.ops import OPS_ALL, OPS_AUGMIX, apply_op, shift_pixels

N = 48


def _values(name: str, rng: np.random.Generator) -> np.ndarray:
    """Each op's parameter across (and a little beyond) the range AugMix draws from."""
    half = N // 2
    table = {
        "autocontrast": np.zeros(N), "equalize": np.zeros(N),
        "posterize": rng.integers(1, 9, N), "solarize": rng.integers(0, 257, N),
        "rotate": np.concatenate([rng.uniform(-30, 30, half), rng.integers(-30, 31, half)]),
        "shear_x": rng.uniform(-0.3, 0.3, N), "shear_y": rng.uniform(-0.3, 0.3, N),
        "translate_x": np.concatenate([rng.uniform(-11, 11, half), rng.integers(-11, 12, half)]),
        "translate_y": np.concatenate([rng.uniform(-11, 11, half), rng.integers(-11, 12, half)]),
    }
    factors = np.concatenate([[0.0, 1.0, 2.5], rng.uniform(0.1, 1.9, N - 3)])
    return table.get(name, factors).astype(np.float32)


def _pil_batch(images: np.ndarray, name: str, values: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(pil_op(Image.fromarray(img), name, float(v)))
                     for img, v in zip(images, values)]).astype(np.int64)


def _ours(images: np.ndarray, name: str, values: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    return apply_op(x, name, torch.from_numpy(values)).permute(0, 2, 3, 1).numpy().astype(np.int64)


EXACT = ("autocontrast", "equalize", "posterize", "solarize", "color", "contrast", "brightness", "sharpness")
RESAMPLING = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def test_op_lists_match_reference():
    assert OPS_AUGMIX == ("autocontrast", "equalize", "posterize", "rotate", "solarize",
                          "shear_x", "shear_y", "translate_x", "translate_y")
    assert OPS_ALL == OPS_AUGMIX + ("color", "contrast", "brightness", "sharpness")


@pytest.mark.parametrize("name", EXACT)
def test_point_and_enhance_ops_equal_pil_on_uint8(images_hwc, name):
    values = _values(name, np.random.default_rng(1))
    np.testing.assert_array_equal(_ours(images_hwc, name, values), _pil_batch(images_hwc, name, values))


@pytest.mark.parametrize("name", RESAMPLING)
def test_resampling_ops_match_pil_within_bilinear_rounding(images_hwc, name):
    values = _values(name, np.random.default_rng(2))
    diff = np.abs(_ours(images_hwc, name, values) - _pil_batch(images_hwc, name, values))
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01


@pytest.mark.parametrize("name", RESAMPLING)
def test_resampling_ops_on_a_larger_image(name):
    from conftest import _made_images
    images = _made_images(4, size=64, seed=3)
    values = _values(name, np.random.default_rng(3))[:4]
    diff = np.abs(_ours(images, name, values) - _pil_batch(images, name, values))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_integer_translations_are_exact_shifts(images_hwc):
    x = torch.from_numpy(images_hwc[:4]).permute(0, 3, 1, 2).contiguous()
    out = apply_op(x, "translate_x", torch.tensor([3.0, -2.0, 0.0, 5.0]))
    # Output column c reads input column c + t; columns read from outside are black.
    assert torch.equal(out[0, :, :, :-3], x[0, :, :, 3:]) and (out[0, :, :, -3:] == 0).all()
    assert torch.equal(out[1, :, :, 2:], x[1, :, :, :-2]) and (out[1, :, :, :2] == 0).all()
    assert torch.equal(out[2], x[2])


@pytest.mark.parametrize("name", ["translate_x", "translate_y"])
def test_whole_pixel_shifts_equal_pil_translations_exactly(images_hwc, name):
    values = np.random.default_rng(6).integers(-11, 12, N).astype(np.float32)
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    ours = shift_pixels(x, torch.from_numpy(values), dim=-1 if name == "translate_x" else -2)
    np.testing.assert_array_equal(ours.permute(0, 2, 3, 1).numpy(), _pil_batch(images_hwc, name, values))


def test_grayscale_images_are_supported(images_hwc):
    gray = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in images_hwc[:8]])
    x = torch.from_numpy(gray).unsqueeze(1)
    for name in ("equalize", "contrast", "sharpness", "color"):
        values = np.full(8, 0.6, np.float32)
        ref = np.stack([np.asarray(pil_op(Image.fromarray(g), name, 0.6)) for g in gray])
        np.testing.assert_array_equal(apply_op(x, name, torch.from_numpy(values))[:, 0].numpy(), ref)
    rot = apply_op(x, "rotate", torch.full((8,), 7.5))[:, 0].numpy().astype(int)
    ref = np.stack([np.asarray(pil_op(Image.fromarray(g), "rotate", 7.5)) for g in gray]).astype(int)
    assert np.abs(rot - ref).max() <= 1


@pytest.mark.parametrize("name", OPS_ALL)
def test_float_input_matches_uint8_result(images_hwc, name):
    values = _values(name, np.random.default_rng(4))
    x8 = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    ref = torch.from_numpy(_pil_batch(images_hwc, name, values)).permute(0, 3, 1, 2).float() / 255
    out = apply_op(x8.float() / 255, name, torch.from_numpy(values))
    assert out.dtype == torch.float32
    # Float results are not truncated (<= 1 level) and contrast blends towards the exact mean
    # instead of PIL's rounded one (<= 0.5 level * |1 - factor| <= 1 level): 2 levels in all.
    assert (out - ref).abs().max() <= 2 / 255 + 1e-6


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_dtype_device_and_shape_are_kept(dtype):
    x = torch.rand(3, 3, 16, 20).to(dtype)
    for name in OPS_ALL:
        out = apply_op(x, name, torch.full((3,), 0.5 if name not in ("posterize", "solarize") else 4.0))
        assert out.dtype == dtype and out.shape == x.shape and out.device == x.device


GEOMETRIC_VALUES = {"rotate": 7.3, "shear_x": 0.13, "shear_y": -0.11, "translate_x": 1.3, "translate_y": -2.6}
ENHANCE_VALUES = {"color": 0.7, "contrast": 1.3, "brightness": 0.8, "sharpness": 1.4}


@pytest.mark.parametrize("name", list(GEOMETRIC_VALUES) + list(ENHANCE_VALUES))
def test_gradients_with_respect_to_image_and_value(name):
    torch.manual_seed(0)
    # Values inside [0.3, 0.7] keep the enhance blends away from their clipping at 0 and 1.
    x = (0.3 + 0.4 * torch.rand(2, 3, 8, 8, dtype=torch.float64)).requires_grad_()
    base = {**GEOMETRIC_VALUES, **ENHANCE_VALUES}[name]
    v = torch.tensor([base, base * 0.8], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: apply_op(a, name, b), (x, v), eps=1e-6, atol=1e-5)


def test_float_tone_ops_pass_gradients_straight_through():
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    apply_op(x, "solarize", torch.tensor([128.0, 64.0])).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_each_image_gets_its_own_value(images_hwc):
    x = torch.from_numpy(images_hwc[:4]).permute(0, 3, 1, 2).contiguous()
    values = torch.tensor([-9.0, 0.0, 4.0, 9.0])
    batch = apply_op(x, "rotate", values)
    for i in range(4):
        assert torch.equal(batch[i:i + 1], apply_op(x[i:i + 1], "rotate", values[i:i + 1]))


@pytest.mark.parametrize("bad, match", [
    (torch.zeros(3, 8, 8, dtype=torch.uint8), "4 dimensions"),
    (torch.zeros(2, 4, 8, 8, dtype=torch.uint8), "channels"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.int32), "dtype"),
    (np.zeros((2, 3, 8, 8), np.uint8), "torch.Tensor"),
])
def test_bad_images_raise_clear_errors(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        apply_op(bad, "rotate", torch.zeros(2))


def test_bad_value_and_name_raise_clear_errors():
    x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"value: expected shape \(2,\)"):
        apply_op(x, "rotate", torch.zeros(3))
    with pytest.raises(ValueError, match="op name: expected one of"):
        apply_op(x, "blur", torch.zeros(2))


def test_scalar_value_is_broadcast():
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(apply_op(x, "posterize", 2), apply_op(x, "posterize", torch.tensor([2.0, 2.0])))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.parametrize("name", OPS_ALL)
def test_cuda_matches_cpu(images_hwc, name):
    values = torch.from_numpy(_values(name, np.random.default_rng(5)))
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    cpu = apply_op(x, name, values)
    gpu = apply_op(x.cuda(), name, values.cuda())
    assert gpu.device.type == "cuda"
    assert (gpu.cpu().int() - cpu.int()).abs().max() <= 1
