"""augmax_lib.augmix: sampled chains follow the reference's distributions; chains and mixing as its formulas."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from reference.pil_augmix import pil_op, sample_value
from scipy import stats

from augmax_lib.augmix import AugMix, apply_chains, augmix, mix, sample_chain_params, sample_chains, sample_mixing, value_bounds
from augmax_lib.ops import OPS_ALL

P_MIN = 1e-3  # fixed seeds: a correct sampler passes; a wrong formula fails by orders of magnitude


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def big_draw():
    return sample_chain_params(20000, 32, severity=3, ops=OPS_ALL, generator=_gen(1))


def test_ops_are_drawn_uniformly(big_draw):
    counts = torch.bincount(big_draw.op_index.flatten(), minlength=len(OPS_ALL)).numpy()
    assert stats.chisquare(counts).pvalue > P_MIN


def test_depths_are_uniform_per_chain_and_independent_across_chains(big_draw):
    depth = big_draw.active.sum(-1)  # (width, N)
    counts = torch.bincount(depth.flatten(), minlength=4).numpy()[1:]
    assert counts.sum() == depth.numel() and stats.chisquare(counts).pvalue > P_MIN
    # Each chain draws its own depth, as the reference does: three equal depths have probability 1/9.
    same = (depth == depth[0]).all(0).float().mean().item()
    assert abs(same - 1 / 9) < 0.01


@pytest.mark.parametrize("name", OPS_ALL)
def test_values_follow_the_reference_formulas(big_draw, name):
    k = OPS_ALL.index(name)
    ours = big_draw.values[big_draw.op_index == k].numpy().astype(np.float64)
    rng = np.random.default_rng(7)
    ref = np.array([sample_value(name, 3, 32, rng) for _ in range(20000)], np.float64)
    if name in ("shear_x", "shear_y") or name in OPS_ALL[9:]:
        assert stats.ks_2samp(ours, ref).pvalue > P_MIN
    else:
        levels = np.union1d(np.unique(ours), np.unique(ref))
        table = np.array([[np.sum(ours == v) for v in levels], [np.sum(ref == v) for v in levels]])
        if table.shape[1] > 1:
            assert stats.chi2_contingency(table).pvalue > P_MIN
        assert set(np.unique(ours)) <= set(np.unique(ref)) | {0.0}


def test_value_bounds_cover_what_is_drawn(big_draw):
    for k, name in enumerate(OPS_ALL):
        lo, hi = value_bounds(name, 3, 32, 32)
        v = big_draw.values[big_draw.op_index == k]
        assert lo <= v.min().item() and v.max().item() <= hi


def test_chains_apply_ops_in_order_as_pil_does(images_hwc):
    x = torch.from_numpy(images_hwc[:16]).permute(0, 3, 1, 2).contiguous()
    params = sample_chain_params(16, 32, ops=OPS_ALL, generator=_gen(3))
    ours = apply_chains(x, params).numpy()
    for i in range(params.width):
        for n in range(16):
            img = Image.fromarray(images_hwc[n])
            for s in range(params.op_index.shape[2]):
                if params.active[i, n, s]:
                    img = pil_op(img, OPS_ALL[params.op_index[i, n, s]], float(params.values[i, n, s]))
            ref = np.asarray(img).transpose(2, 0, 1) / 255.0
            diff = np.abs(ours[i, n] - ref) * 255
            # One grey level per resampling op; a tone op after one may move a pixel by more, rarely.
            assert np.mean(diff > 1.5) < 0.02 and diff.mean() < 0.5


def test_batch_images_get_different_chains():
    x = torch.full((16, 3, 32, 32), 100, dtype=torch.uint8)
    x[:, :, 8:20, 4:12] = 230
    chains = sample_chains(x, generator=_gen(4))
    flat = chains.reshape(3, 16, -1)
    distinct = {tuple(np.round(flat[0, n].numpy(), 4)) for n in range(16)}
    assert len(distinct) >= 8


def test_same_seed_same_output_different_seed_different_output():
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    a, b, c = augmix(x, generator=_gen(5)), augmix(x, generator=_gen(5)), augmix(x, generator=_gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mix_is_the_augmix_formula():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 3, 5, 5)).astype(np.uint8)
    chains = rng.random((3, 4, 3, 5, 5)).astype(np.float32)
    m = rng.random(4).astype(np.float32)
    w = rng.dirichlet([1, 1, 1], 4).astype(np.float32)
    ref = np.empty((4, 3, 5, 5), np.float64)
    for n in range(4):
        mixed = sum(w[n, i] * chains[i, n] for i in range(3))
        ref[n] = (1 - m[n]) * x[n] / 255.0 + m[n] * mixed
    out = mix(torch.from_numpy(x), torch.from_numpy(chains), torch.from_numpy(m), torch.from_numpy(w))
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-6)
    # uint8 chains (as augmix passes them for uint8 images) are read as level / 255.
    chains8 = rng.integers(0, 256, (3, 4, 3, 5, 5)).astype(np.uint8)
    ref8 = np.stack([(1 - m[n]) * x[n] / 255.0 + m[n] * sum(w[n, i] * chains8[i, n] / 255.0 for i in range(3))
                     for n in range(4)])
    out8 = mix(torch.from_numpy(x), torch.from_numpy(chains8), torch.from_numpy(m), torch.from_numpy(w))
    np.testing.assert_allclose(out8.numpy(), ref8, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_mixing_weights_follow_dirichlet_and_beta(alpha):
    m, w = sample_mixing(20000, 3, alpha=alpha, generator=_gen(8))
    torch.testing.assert_close(w.sum(1), torch.ones(20000))
    rng = np.random.default_rng(9)
    # Marginal of Dirichlet(alpha * 1_3) is Beta(alpha, 2 alpha); m is Beta(alpha, alpha).
    assert stats.kstest(w[:, 0].numpy(), stats.beta(alpha, 2 * alpha).cdf).pvalue > P_MIN
    assert stats.kstest(m.numpy(), stats.beta(alpha, alpha).cdf).pvalue > P_MIN
    assert stats.ks_2samp(w[:, 1].numpy(), rng.dirichlet([alpha] * 3, 20000)[:, 1]).pvalue > P_MIN


def test_augmix_output_shape_dtype_and_range():
    x8 = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    out = augmix(x8, generator=_gen(10))
    assert out.shape == x8.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    x64 = x8.double() / 255
    assert augmix(x64, generator=_gen(10)).dtype == torch.float64


def test_augmix_matches_pil_pipeline_in_distribution(images_hwc):
    """Mean and spread of AugMix pixel changes agree with the per-image PIL pipeline."""
    from reference.pil_augmix import augmix_one
    x = torch.from_numpy(images_hwc).permute(0, 3, 1, 2).contiguous()
    ours = torch.cat([augmix(x, generator=_gen(s)) for s in range(6)]).numpy()
    rng = np.random.default_rng(11)
    ref = np.stack([augmix_one(images_hwc[n % len(images_hwc)], rng) for n in range(len(ours))])
    base = np.concatenate([images_hwc] * 6).transpose(0, 3, 1, 2) / 255.0
    d_ours = np.abs(ours - base).mean(axis=(1, 2, 3))
    d_ref = np.abs(ref.transpose(0, 3, 1, 2) - base).mean(axis=(1, 2, 3))
    assert stats.ks_2samp(d_ours, d_ref).pvalue > P_MIN


def test_gradients_reach_the_op_values():
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    params = sample_chain_params(4, 16, ops=("rotate", "shear_x", "brightness"), generator=_gen(12))
    params.values.requires_grad_(True)
    apply_chains(x, params).square().sum().backward()
    assert x.grad.abs().sum() > 0
    active_grad = params.values.grad[params.active]
    assert (active_grad != 0).float().mean() > 0.9
    assert (params.values.grad[~params.active] == 0).all()


def test_fixed_depth():
    params = sample_chain_params(10, 32, depth=2, generator=_gen(13))
    assert params.op_index.shape == (3, 10, 2) and params.active.all()


@pytest.mark.parametrize("kwargs, match", [
    ({"width": 0}, "width"), ({"depth": 0}, "depth"), ({"severity": 11}, "severity"),
    ({"ops": ("rotate", "blur")}, "op name"), ({"ops": "rotate"}, "ops"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        sample_chains(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), **kwargs)


def test_a_seed_instead_of_a_generator_is_rejected():
    with pytest.raises(TypeError, match="generator: expected a torch.Generator"):
        sample_chains(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), generator=42)


def test_mix_shape_errors():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="chains"):
        mix(x, torch.zeros(3, 2, 3, 4, 5), torch.zeros(2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="w: expected"):
        mix(x, torch.zeros(3, 2, 3, 4, 4), torch.zeros(2), torch.zeros(2, 2))


def test_transform_keeps_dtype_takes_single_images_and_equals_the_function():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    out = AugMix(generator=_gen(14))(x)
    ref = augmix(x, generator=_gen(14))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    # uint8 output is the float AugMix image rounded to the nearest of the 256 levels
    assert (out.float() - ref * 255).abs().max() <= 0.5 + 1e-3
    single = AugMix(generator=_gen(15))(x[0])
    assert single.shape == x[0].shape and torch.equal(single, AugMix(generator=_gen(15))(x[:1])[0])
    xf = x.float() / 255
    torch.testing.assert_close(AugMix(generator=_gen(16))(xf), augmix(xf, generator=_gen(16)))
    with pytest.raises(ValueError, match="width"):
        AugMix(width=0)


def _pil_chains(images_hwc, params, ops):
    """(width, N, H, W, C) uint8: every chain of ``params`` run image by image with PIL."""
    out = []
    for i in range(params.width):
        row = []
        for n in range(params.op_index.shape[1]):
            img = Image.fromarray(images_hwc[n])
            for s in range(params.op_index.shape[2]):
                if params.active[i, n, s]:
                    img = pil_op(img, ops[params.op_index[i, n, s]], float(params.values[i, n, s]))
            row.append(np.asarray(img))
        out.append(np.stack(row))
    return np.stack(out)


def test_whole_pixel_translations_in_chains_equal_pil_exactly(images_hwc):
    """AugMix's translations are whole pixels; chains run them as gathers, which equal PIL exactly."""
    ops = ("translate_x", "translate_y")
    x = torch.from_numpy(images_hwc[:16]).permute(0, 3, 1, 2).contiguous()
    params = sample_chain_params(16, 32, severity=10, ops=ops, generator=_gen(20))
    assert torch.equal(params.values, params.values.round()) and params.values.abs().max() > 5
    ours = (apply_chains(x, params) * 255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()
    np.testing.assert_array_equal(ours, _pil_chains(images_hwc[:16], params, ops))


def test_chains_follow_values_changed_in_place(images_hwc):
    """Translations made fractional after a first run are resampled, not shifted by a stale grouping."""
    ops = ("translate_x", "translate_y")
    x = torch.from_numpy(images_hwc[:8]).permute(0, 3, 1, 2).contiguous()
    params = sample_chain_params(8, 32, depth=1, ops=ops, generator=_gen(21))
    apply_chains(x, params)
    params.values.add_(0.5)
    ours = (apply_chains(x, params) * 255).round().permute(0, 1, 3, 4, 2).numpy()
    diff = np.abs(ours - _pil_chains(images_hwc[:8], params, ops))
    assert diff.max() <= 1 and diff.mean() < 0.05


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
def test_cuda_chains_draw_on_device_and_repeat_with_the_seed():
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device="cuda")
    a = augmix(x, generator=torch.Generator("cuda").manual_seed(0))
    b = augmix(x, generator=torch.Generator("cuda").manual_seed(0))
    assert a.device.type == "cuda" and torch.equal(a, b)
