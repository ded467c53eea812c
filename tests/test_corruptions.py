"""augmax_lib.corruptions against independent references written here with numpy, scipy and PIL
(plus OpenCV and the `imagecorruptions` package where they are installed).

Tolerances: deterministic corruptions must equal the reference's float result to within float32
round-off (F_TOL) for float input. For uint8 input they must match what the generators stored,
``np.uint8(np.clip(f, 0, 1) * 255)`` (truncation) of the transcription's float result ``f``: at most
one level apart anywhere and 0.1 level apart on average (float32 vs float64 round-off decides values
that are exactly on a level); with ``rounding="nearest"`` they are ``f``'s nearest level. Pixelate
and jpeg_compression must equal PIL's 8-bit output exactly. Glass blur must equal a transcription of
the generators' loop given the same offsets. Random corruptions: their deterministic parts are checked
exactly, and their outputs are compared in distribution (moments over many seeded draws, tolerances
stated per test).
"""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from augmax_lib.corruptions import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    EXTRA_CORRUPTIONS,
    PRESETS,
    RANDOM_CORRUPTIONS,
    _filters,
    _spatter_ops,
    blur,
    corrupt,
    digital,
    textures,
)

U8_TOL = 0.5 + 1e-3          # rounding="nearest": within half a level of the float reference
U8_MAX_DEV, U8_MEAN_DEV = 1, 0.1   # truncation: vs the generators' np.uint8 of the float reference
# float32 sums over 224x224 zoom stacks drift by a few 1e-6 with the thread count's summation
# order; 1e-5 is still 0.003 of a grey level.
F_TOL = 1e-5


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) -> (N, C, H, W), same dtype."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()


def to_hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).cpu().numpy()


def frost_textures_installed() -> bool:
    try:
        textures.frost_dir()
        return True
    except RuntimeError:
        return False


# frost reads its textures from the `imagecorruptions` package; only its absence excuses skipping frost.
FROST_OK = frost_textures_installed()


def generator_uint8(f: np.ndarray) -> np.ndarray:
    """What make_{cifar,tinyimagenet,imagenet}_c.py store of a float result in [0, 1]: np.uint8 truncates."""
    return np.uint8(np.clip(f, 0, 1) * 255)


def uint8_deviation(ours_u8: np.ndarray, ref_u8: np.ndarray) -> tuple[float, int]:
    """(mean, max) of |ours - ref| in grey levels."""
    dev = np.abs(ours_u8.astype(np.int64) - ref_u8.astype(np.int64))
    return float(dev.mean()), int(dev.max())


def check_deterministic(images_u8, name, severity, reference, preset="cifar"):
    """Compare corrupt() on float and uint8 input against ``reference`` (float64 HWC in [0, 1])."""
    ref = np.stack([reference(im.astype(np.float64) / 255.0) for im in images_u8])
    out_f = to_hwc(corrupt(to_tensor(images_u8.astype(np.float32) / 255.0), name, severity, preset))
    np.testing.assert_allclose(out_f, ref, atol=F_TOL, rtol=0, err_msg=f"{name} s{severity} float")
    out_u8 = to_hwc(corrupt(to_tensor(images_u8), name, severity, preset))
    mean, worst = uint8_deviation(out_u8, generator_uint8(ref))
    assert worst <= U8_MAX_DEV and mean <= U8_MEAN_DEV, f"{name} s{severity} uint8: mean {mean}, max {worst}"
    nearest = to_hwc(corrupt(to_tensor(images_u8), name, severity, preset, rounding="nearest")).astype(np.float64)
    assert np.abs(nearest - ref * 255).max() <= U8_TOL, f"{name} s{severity} uint8 nearest"


# ---------------------------------------------------------------- references (Hendrycks' formulas)

def ref_rgb2hsv(rgb):
    v = rgb.max(-1)
    delta = v - rgb.min(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(delta > 0, delta / np.where(v > 0, v, 1), 0.0)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        d = np.where(delta > 0, delta, 1)
        h = np.where(b == v, 4 + (r - g) / d, 0.0)
        h = np.where(g == v, 2 + (b - r) / d, h)
        h = np.where(r == v, (g - b) / d, h)
    h = (h / 6.0) % 1.0
    h = np.where(delta > 0, h, 0.0)
    return np.stack([h, s, v], -1)


def ref_hsv2rgb(hsv):
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6).astype(int) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros(hsv.shape)
    for k, (rr, gg, bb) in enumerate(choices):
        m = i == k
        out[..., 0][m], out[..., 1][m], out[..., 2][m] = rr[m], gg[m], bb[m]
    return out


def ref_brightness(c):
    def f(x):
        hsv = ref_rgb2hsv(x)
        hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
        return np.clip(ref_hsv2rgb(hsv), 0, 1)
    return f


def ref_saturate(c):
    def f(x):
        hsv = ref_rgb2hsv(x)
        hsv[..., 1] = np.clip(hsv[..., 1] * c[0] + c[1], 0, 1)
        return np.clip(ref_hsv2rgb(hsv), 0, 1)
    return f


def ref_contrast(c):
    def f(x):
        m = x.mean(axis=(0, 1), keepdims=True)
        return np.clip((x - m) * c + m, 0, 1)
    return f


def ref_disk(radius, alias_blur):
    support = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = 3 if radius <= 8 else 5
    xx, yy = np.meshgrid(support, support)
    disk = ((xx ** 2 + yy ** 2) <= radius ** 2).astype(np.float64)
    disk /= disk.sum()
    t = np.arange(ksize) - ksize // 2
    g = np.exp(-t ** 2 / (2 * alias_blur ** 2))
    g /= g.sum()
    disk = ndimage.correlate1d(disk, g, axis=0, mode="mirror")      # OpenCV BORDER_REFLECT_101
    return ndimage.correlate1d(disk, g, axis=1, mode="mirror")


def ref_defocus(c):
    k = ref_disk(*c)

    def f(x):
        return np.clip(np.stack([ndimage.correlate(x[..., d], k, mode="mirror") for d in range(3)], -1), 0, 1)
    return f


def ref_clipped_zoom(img, z):
    h = img.shape[0]
    ch = int(np.ceil(h / z))
    top = (h - ch) // 2
    img = ndimage.zoom(img[top:top + ch, top:top + ch], (z, z, 1), order=1)
    trim = (img.shape[0] - h) // 2
    return img[trim:trim + h, trim:trim + h]


def ref_zoom_blur(zooms):
    def f(x):
        x = x.astype(np.float32)
        out = np.zeros_like(x)
        for z in zooms:
            out += ref_clipped_zoom(x, z)
        return np.clip((x + out) / (len(zooms) + 1), 0, 1)
    return f


def ref_gaussian_blur(sigma):
    return lambda x: np.clip(ndimage.gaussian_filter(x, (sigma, sigma, 0), mode="nearest", truncate=4.0), 0, 1)


def pil_pixelate(im, c):
    h, w = im.shape[:2]
    small = Image.fromarray(im).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX))


def pil_jpeg(im, quality):
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf))


def ref_motion_blur(x, radius, sigma, angle):
    """The `imagecorruptions` port of ImageMagick's motion blur, with np.roll shifts and edge fill."""
    width = 2 * radius + 1
    k = np.exp(-np.arange(width) ** 2 / (2 * sigma ** 2))
    k /= k.sum()
    py, px = width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle))
    hyp = math.hypot(py, px)
    out = np.zeros(x.shape)
    h, w = x.shape[:2]
    for i in range(width):
        oy = math.ceil(i * py / hyp - 0.5)
        ox = math.ceil(i * px / hyp - 0.5)
        if abs(oy) >= h or abs(ox) >= w:
            break
        rows = np.clip(np.arange(h) + oy, 0, h - 1)
        cols = np.clip(np.arange(w) + ox, 0, w - 1)
        out += k[i] * x[rows][:, cols]
    return out


# ---------------------------------------------------------------- API

def test_names_and_order():
    assert CORRUPTIONS == ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                           "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                           "elastic_transform", "pixelate", "jpeg_compression")
    assert EXTRA_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    for preset in PRESETS.values():
        assert set(preset.params) == set(ALL_CORRUPTIONS)
        assert all(len(v) == 5 for v in preset.params.values())


@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_dtype_shape_and_determinism(images_hwc, name):
    if name == "frost" and not FROST_OK:
        pytest.skip("frost textures need: pip install imagecorruptions")
    x = to_tensor(images_hwc[:4])
    for inp in (x, x.float() / 255, x.double() / 255, x.half() / 255):
        out = corrupt(inp, name, 3, generator=torch.Generator().manual_seed(1))
        assert out.dtype == inp.dtype and out.shape == inp.shape and out.device == inp.device
        if out.dtype != torch.uint8:
            assert 0 <= float(out.min()) and float(out.max()) <= 1 and not out.isnan().any()
    a = corrupt(x, name, 5, generator=torch.Generator().manual_seed(7))
    b = corrupt(x, name, 5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    if name in RANDOM_CORRUPTIONS:
        c = corrupt(x, name, 5, generator=torch.Generator().manual_seed(8))
        assert not torch.equal(a, c)
    # uint8 and float input agree to within one level (8-bit rounding of the input and output)
    f = corrupt(x.float() / 255, name, 2, generator=torch.Generator().manual_seed(3))
    u = corrupt(x, name, 2, generator=torch.Generator().manual_seed(3))
    if name not in RANDOM_CORRUPTIONS:
        assert (f * 255 - u.float()).abs().max() <= 1.0 + 1e-3
    # single-channel images work too
    g = corrupt(x[:, :1], name, 2, generator=torch.Generator().manual_seed(3))
    assert g.shape == (4, 1, 32, 32) and g.dtype == torch.uint8


@pytest.mark.parametrize("preset,size,n", [("tinyimagenet", 64, 2), ("imagenet", 224, 1)])
def test_other_presets_run(preset, size, n):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8))
    for name in ALL_CORRUPTIONS:
        if name == "frost" and not FROST_OK:
            continue
        out = corrupt(x, name, 5, preset=preset, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == torch.uint8, name


def test_empty_batch_and_errors(images_hwc):
    x = to_tensor(images_hwc[:2])
    assert corrupt(x[:0], "fog", 1).shape == (0, 3, 32, 32)
    with pytest.raises(ValueError, match="name"):
        corrupt(x, "rain", 1)
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="severity"):
            corrupt(x, "fog", bad)
    with pytest.raises(ValueError, match="preset"):
        corrupt(x, "fog", 1, preset="mnist")
    with pytest.raises(TypeError, match="generator"):
        corrupt(x, "fog", 1, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="channels"):
        corrupt(x[:, :2], "fog", 1)
    with pytest.raises(ValueError, match="4 dimensions"):
        corrupt(x[0], "fog", 1)


def test_missing_imagecorruptions_says_how_to_install(monkeypatch):
    monkeypatch.setattr(textures.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="pip install imagecorruptions"):
        textures.frost_dir()


# ---------------------------------------------------------------- deterministic corruptions

# Each deterministic CIFAR corruption against its numpy/scipy formula, at every severity.
CIFAR_DETERMINISTIC = {"brightness": ref_brightness, "contrast": ref_contrast, "saturate": ref_saturate,
                       "defocus_blur": ref_defocus, "zoom_blur": ref_zoom_blur, "gaussian_blur": ref_gaussian_blur}


@pytest.mark.parametrize("severity", range(1, 6))
@pytest.mark.parametrize("name", list(CIFAR_DETERMINISTIC))
def test_deterministic_corruptions_match_their_formulas(images_hwc, name, severity):
    param = PRESETS["cifar"].params[name][severity - 1]
    check_deterministic(images_hwc[:12], name, severity, CIFAR_DETERMINISTIC[name](param))


def test_hsv_edge_cases():
    # black, white, greys and pure colours: hue 0 for greys makes saturate tint them red
    ims = np.array([[[[0, 0, 0], [255, 255, 255], [128, 128, 128], [255, 0, 0]],
                     [[0, 255, 0], [0, 0, 255], [10, 200, 200], [1, 0, 0]]]], np.uint8)
    for s in range(1, 6):
        p = PRESETS["cifar"].params
        check_deterministic(ims, "brightness", s, ref_brightness(p["brightness"][s - 1]))
        check_deterministic(ims, "saturate", s, ref_saturate(p["saturate"][s - 1]))


@pytest.mark.parametrize("preset", ["tinyimagenet", "imagenet"])
def test_blurs_other_sizes(images_hwc, preset):
    size = PRESETS[preset].image_size
    ims = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in images_hwc[:1]])
    p = PRESETS[preset].params
    for s in (1, 5):
        check_deterministic(ims, "defocus_blur", s, ref_defocus(p["defocus_blur"][s - 1]), preset)
        check_deterministic(ims, "zoom_blur", s, ref_zoom_blur(p["zoom_blur"][s - 1]), preset)


@pytest.mark.parametrize("preset", ["cifar", "tinyimagenet", "imagenet"])
def test_pixelate_and_jpeg_equal_pil(images_hwc, preset):
    size = PRESETS[preset].image_size
    n = 16 if size == 32 else 2
    ims = images_hwc[:n]
    if size != 32:
        ims = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in ims])
    p = PRESETS[preset].params
    x = to_tensor(ims)
    for s in range(1, 6):
        ref = np.stack([pil_pixelate(im, p["pixelate"][s - 1]) for im in ims])
        np.testing.assert_array_equal(to_hwc(corrupt(x, "pixelate", s, preset)), ref)
        # float input: exact box means, so within one level of PIL's two rounded 8-bit passes
        out_f = to_hwc(corrupt(x.float() / 255, "pixelate", s, preset)) * 255
        assert np.abs(out_f - ref).max() <= 1.0 + 1e-3
        ref = np.stack([pil_jpeg(im, p["jpeg_compression"][s - 1]) for im in ims])
        np.testing.assert_array_equal(to_hwc(corrupt(x, "jpeg_compression", s, preset)), ref)


def test_against_imagecorruptions_at_imagenet_size(images_hwc):
    """The `imagecorruptions` package (ImageNet parameters) where it runs with current libraries."""
    icc = pytest.importorskip("imagecorruptions.corruptions", exc_type=ImportError)
    ims = np.stack([np.asarray(Image.fromarray(im).resize((224, 224), Image.BICUBIC)) for im in images_hwc[:2]])
    x = to_tensor(ims)
    for name in ("brightness", "contrast", "saturate", "defocus_blur", "pixelate", "jpeg_compression"):
        for s in (1, 3, 5):
            # the functions themselves: float results before the package's final uint8 cast
            ref = np.stack([np.asarray(getattr(icc, name)(Image.fromarray(im), s), dtype=np.float64)
                            for im in ims])
            out = to_hwc(corrupt(x, name, s, "imagenet"))
            if name in ("pixelate", "jpeg_compression"):
                np.testing.assert_array_equal(out, ref)
            else:
                mean, worst = uint8_deviation(out, np.uint8(ref))      # the generator's np.uint8
                # Saturation x2 (s3) puts every pixel's lowest channel exactly on a level, where
                # skimage's float64 lands a hair below or not depending on the values: up to 0.2 level.
                limit = 0.25 if name == "saturate" else U8_MEAN_DEV
                assert worst <= U8_MAX_DEV and mean <= limit, (name, s, mean, worst)


# ---------------------------------------------------------------- random corruptions: exact parts

def test_filters_border_rules():
    i = np.arange(-5, 9)
    np.testing.assert_array_equal(_filters.fold_index(i, 4, "nearest"), np.clip(i, 0, 3))
    np.testing.assert_array_equal(_filters.fold_index(i, 4, "reflect101"),
                                  np.pad(np.arange(4), 5, mode="reflect")[i + 5])
    np.testing.assert_array_equal(_filters.fold_index(i, 4, "symmetric"),
                                  np.pad(np.arange(4), 5, mode="symmetric")[i + 5])
    # a Gaussian much wider than the image folds several times, as scipy's reflect mode does
    rng = np.random.default_rng(0)
    field = rng.uniform(-1, 1, (1, 12, 12))
    ours = _filters.gaussian_blur(torch.from_numpy(field), 9.0, mode="symmetric", truncate=3.0).numpy()
    ref = ndimage.gaussian_filter(field[0], 9.0, mode="reflect", truncate=3.0)
    np.testing.assert_allclose(ours[0], ref, atol=1e-12)


def generator_pixel_loop(x: np.ndarray, delta: int, iterations: int, offset) -> np.ndarray:
    """make_*_c.py's glass-blur loop, line for line, on an (H, W, C) array; ``offset(it, h, w)`` -> (dx, dy).

    Its "swap" assigns numpy views: x[h, w] receives x[h', w'], then x[h', w'] receives the view of
    x[h, w], which already holds x[h', w']'s values, so x[h', w'] keeps them. Nothing here copies.
    """
    x = x.copy()
    height, width = x.shape[:2]
    for i in range(iterations):
        for h in range(height - delta, delta, -1):
            for w in range(width - delta, delta, -1):
                dx, dy = offset(i, h, w)
                h_prime, w_prime = h + dy, w + dx
                # swap
                x[h, w], x[h_prime, w_prime] = x[h_prime, w_prime], x[h, w]
    return x


def offsets_from(dy, dx, height, width, delta, image):
    """The generator's per-step draw, read from our (iterations, P, N) offsets for one image."""
    positions, _ = blur.shuffle_schedule(height, width, delta)
    slot = {int(p): i for i, p in enumerate(positions)}

    def offset(i, h, w):
        j = slot[h * width + w]
        return int(dx[i, j, image]), int(dy[i, j, image])
    return offset


@pytest.mark.parametrize("delta,iterations", [(1, 2), (2, 1), (3, 1), (4, 2)])
def test_glass_blur_pixel_loop_copies_in_generator_order(delta, iterations):
    """The wave-parallel schedule gives exactly the generators' sequential loop (copies, not swaps)."""
    h = w = 24
    positions, _ = blur.shuffle_schedule(h, w, delta)
    n = 3
    g = torch.Generator().manual_seed(0)
    dy, dx = blur.glass_blur_offsets(n, h, w, delta, iterations, g)
    ours = blur.local_shuffle_source(h, w, delta, dy, dx).numpy()
    for k in range(n):
        index = np.repeat(np.arange(h * w).reshape(h, w, 1), 3, axis=2)     # an (H, W, 3) image of indices
        ref = generator_pixel_loop(index, delta, iterations, offsets_from(dy, dx, h, w, delta, k))
        np.testing.assert_array_equal(ours[k], ref[..., 0].ravel())
        # a copy loop leaves duplicates: some pixels are lost, as in the published files
        assert len(np.unique(ours[k])) < h * w


def generator_glass_blur(im: np.ndarray, sigma: float, delta: int, iterations: int, offset) -> np.ndarray:
    """make_*_c.py's glass_blur on one uint8 (H, W, 3) image, stored as np.uint8 (the float steps via skimage)."""
    from skimage.filters import gaussian

    x = np.uint8(gaussian(np.array(im) / 255., sigma=sigma, channel_axis=-1) * 255)
    x = generator_pixel_loop(x, delta, iterations, offset)
    return np.uint8(np.clip(gaussian(x / 255., sigma=sigma, channel_axis=-1), 0, 1) * 255)


@pytest.mark.parametrize("preset,severities,n", [("cifar", (1, 2, 3, 4, 5), 12), ("tinyimagenet", (4, 5), 2)])
def test_glass_blur_equals_generator_on_the_same_offsets(images_hwc, preset, severities, n):
    """uint8 glass blur vs the transcription fed our offsets: equal but for float round-off at a level."""
    pytest.importorskip("skimage")
    size = PRESETS[preset].image_size
    ims = images_hwc[:n]
    if size != 32:
        ims = np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.BICUBIC)) for im in ims])
    for s in severities:
        sigma, delta, iterations = PRESETS[preset].params["glass_blur"][s - 1]
        ours = to_hwc(corrupt(to_tensor(ims), "glass_blur", s, preset, generator=torch.Generator().manual_seed(s)))
        dy, dx = blur.glass_blur_offsets(n, size, size, delta, iterations, torch.Generator().manual_seed(s))
        ref = np.stack([generator_glass_blur(im, sigma, delta, iterations, offsets_from(dy, dx, size, size, delta, k))
                        for k, im in enumerate(ims)])
        mean, worst = uint8_deviation(ours, ref)
        # Equal, but where a flat patch's float64 blur lands within 1e-13 of a level: scipy's summation
        # order puts it a hair below for some levels (np.uint8 then drops one), ours need not (0.1 %).
        assert worst <= 1 and (ours != ref).mean() < 0.005 and mean <= 0.01, (preset, s, mean, worst)


def test_glass_blur_strength_matches_generator(images_hwc):
    """Mean change per severity: ours vs the transcription with numpy-drawn offsets (5 %): catches swaps."""
    pytest.importorskip("skimage")
    ims = images_hwc[:24]
    rng = np.random.default_rng(0)
    for s, (sigma, delta, iters) in enumerate(PRESETS["cifar"].params["glass_blur"], 1):
        refs = np.stack([generator_glass_blur(im, sigma, delta, iters,
                                              lambda i, h, w: rng.integers(-delta, delta, size=2)) for im in ims])
        ref_change = np.abs(refs / 255.0 - ims / 255.0).mean()
        ours = to_hwc(corrupt(to_tensor(ims), "glass_blur", s, generator=torch.Generator().manual_seed(s)))
        our_change = np.abs(ours / 255.0 - ims / 255.0).mean()
        assert abs(our_change - ref_change) <= 0.05 * ref_change, (s, our_change, ref_change)


def test_motion_blur_lines_match_port(images_hwc):
    x = images_hwc[:10] / 255.0
    angles = np.linspace(-135, 45, 10)
    for radius, sigma in ((6, 1), (9, 2.5), (14, 12)):
        ref = np.stack([ref_motion_blur(im, radius, sigma, a) for im, a in zip(x, angles)])
        ours = _filters.motion_blur_lines(to_tensor(x), radius, sigma, torch.from_numpy(angles))
        np.testing.assert_allclose(to_hwc(ours), ref, atol=1e-12)


def test_motion_blur_angles_in_distribution(images_hwc):
    """Mean over 256 draws on one image: ours vs the port with numpy-drawn angles (max pixel gap 0.02)."""
    im = images_hwc[5] / 255.0
    rng = np.random.default_rng(1)
    radius, sigma = PRESETS["cifar"].params["motion_blur"][4]
    ref = np.mean([ref_motion_blur(im, radius, sigma, rng.uniform(-45, 45)) for _ in range(256)], axis=0)
    x = to_tensor(np.repeat(im[None], 256, 0).astype(np.float32))
    ours = to_hwc(corrupt(x, "motion_blur", 5, generator=torch.Generator().manual_seed(0)))
    assert np.abs(ours.mean(0) - ref).max() < 0.02
    assert len({o.tobytes() for o in ours}) > 100        # every image draws its own angle


def test_warp_and_displacement_match_scipy(images_hwc):
    x = images_hwc[:4] / 255.0
    rng = np.random.default_rng(2)
    mats = []
    refs = []
    for im in x:
        a = np.eye(2) + rng.uniform(-0.15, 0.15, (2, 2))
        t = rng.uniform(-3, 3, 2)
        mats.append(np.concatenate([a, t[:, None]], 1))
        inv = np.linalg.inv(a)
        # scipy works in (row, col); OpenCV's matrix in (x, y)
        inv_rc = inv[::-1, ::-1]
        off_rc = (-inv @ t)[::-1]
        refs.append(np.stack([ndimage.affine_transform(im[..., d], inv_rc, off_rc, order=1, mode="mirror")
                              for d in range(3)], -1))
    ours = digital.warp_affine(to_tensor(x), torch.from_numpy(np.stack(mats)))
    np.testing.assert_allclose(to_hwc(ours), np.stack(refs), atol=1e-9)
    dy = rng.normal(0, 3, (4, 32, 32))
    dx = rng.normal(0, 3, (4, 32, 32))
    yy, xx = np.mgrid[0:32, 0:32]
    ref = np.stack([np.stack([ndimage.map_coordinates(im[..., d], (yy + a, xx + b), order=1, mode="reflect")
                              for d in range(3)], -1) for im, a, b in zip(x, dy, dx)])
    ours = digital.displace(to_tensor(x), torch.from_numpy(dy), torch.from_numpy(dx))
    np.testing.assert_allclose(to_hwc(ours), ref, atol=1e-9)


def test_frost_crops_are_texture_windows(images_hwc):
    """Constant images expose the added texture: it must be a window of one of the first five
    textures, resized as OpenCV does at scale 0.2 (which samples source pixel 5 i + 2)."""
    if not FROST_OK:
        pytest.skip("frost textures need: pip install imagecorruptions")
    folder = textures.frost_dir()
    texs = []
    for name in textures.FROST_FILES:
        t = np.asarray(Image.open(folder / name).convert("RGB"))
        rows, cols = int(np.rint(t.shape[0] * 0.2)), int(np.rint(t.shape[1] * 0.2))
        texs.append(t[2::5, 2::5][:rows, :cols].astype(np.float64))
    a, b = PRESETS["cifar"].params["frost"][1]          # image weight 1: the texture shows exactly
    x = torch.zeros((40, 3, 32, 32), dtype=torch.float64)
    out = to_hwc(corrupt(x, "frost", 2, generator=torch.Generator().manual_seed(0))) * 255
    crops = out / b
    used = set()
    for crop in crops:
        found = False
        for k, t in enumerate(texs):
            # candidate corners: where the crop's first pixel matches, then the whole window
            rows, cols = t.shape[0] - 32, t.shape[1] - 32          # randint(0, rows) excludes rows
            corner = np.abs(t[:rows, :cols] - crop[0, 0]).max(-1) < 1e-3
            for r, c in np.argwhere(corner):
                if np.abs(t[r:r + 32, c:c + 32] - crop).max() < 1e-3:
                    found = True
                    used.add(k)
                    break
            if found:
                break
        assert found
    assert len(used) >= 4


# ---------------------------------------------------------------- random corruptions: distributions

def test_noise_moments():
    x = torch.full((64, 3, 32, 32), 0.5)
    n = x.numel()
    g = torch.Generator().manual_seed(0)
    for s, sigma in enumerate(PRESETS["cifar"].params["gaussian_noise"], 1):
        y = corrupt(x, "gaussian_noise", s, generator=g)
        assert abs(float(y.std()) - sigma) < 0.02 * sigma and abs(float(y.mean()) - 0.5) < 1e-3
    for s, scale in enumerate(PRESETS["cifar"].params["speckle_noise"], 1):
        y = corrupt(x, "speckle_noise", s, generator=g)
        assert abs(float(y.std()) - 0.5 * scale) < 0.02 * 0.5 * scale
    for s, rate in enumerate(PRESETS["cifar"].params["shot_noise"], 1):
        y = corrupt(x, "shot_noise", s, generator=g)
        # Poisson(x c) / c: mean x, variance x / c; values on the 1/c grid
        assert abs(float(y.mean()) - 0.5) < 2e-3
        assert abs(float(y.var()) - 0.5 / rate) < 0.03 * 0.5 / rate
        assert torch.allclose(y * rate, torch.round(y * rate), atol=1e-3)
    for s, amount in enumerate(PRESETS["cifar"].params["impulse_noise"], 1):
        y = corrupt(x, "impulse_noise", s, generator=g)
        zeros, ones = float((y == 0).sum()) / n, float((y == 1).sum()) / n
        tol = 4 * math.sqrt(amount / 2 / n)
        assert abs(zeros - amount / 2) < tol and abs(ones - amount / 2) < tol
        assert float(((y != 0) & (y != 1) & (y != 0.5)).sum()) == 0


def ref_plasma(mapsize, decay, rng):
    m = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wm(a):
        return a / 4 + wibble * rng.uniform(-wibble, wibble, a.shape)
    while step >= 2:
        half = step // 2
        c = m[0::step, 0::step]
        sq = c + np.roll(c, -1, axis=0)
        sq = sq + np.roll(sq, -1, axis=1)
        m[half::step, half::step] = wm(sq)
        dr, ul = m[half::step, half::step], m[0::step, 0::step]
        m[0::step, half::step] = wm(dr + np.roll(dr, 1, axis=0) + ul + np.roll(ul, -1, axis=1))
        m[half::step, 0::step] = wm(dr + np.roll(dr, 1, axis=1) + ul + np.roll(ul, -1, axis=0))
        step //= 2
        wibble /= decay
    m -= m.min()
    return m / m.max()


def test_fog_in_distribution(images_hwc):
    """Mean and per-image spread over 200 draws on one image: ours vs numpy diamond-square (3 % / 5 %)."""
    im = images_hwc[3] / 255.0
    rng = np.random.default_rng(0)
    x = to_tensor(np.repeat(im[None], 200, 0).astype(np.float32))
    for s, (amp, decay) in enumerate(PRESETS["cifar"].params["fog"], 1):
        peak = im.max()
        ref = np.stack([np.clip((im + amp * ref_plasma(32, decay, rng)[..., None]) * peak / (peak + amp), 0, 1)
                        for _ in range(200)])
        ours = to_hwc(corrupt(x, "fog", s, generator=torch.Generator().manual_seed(s)))
        assert abs(ours.mean() - ref.mean()) < 0.03 * ref.mean(), s
        assert abs(ours.std(axis=(1, 2, 3)).mean() - ref.std(axis=(1, 2, 3)).mean()) < 0.05 * ref.std(axis=(1, 2, 3)).mean()


def ref_snow(x, c, rng):
    h = x.shape[0]
    layer = rng.normal(c[0], c[1], (h, h))
    layer = ref_clipped_zoom(layer[..., None], c[2])[..., 0]
    layer[layer < c[3]] = 0
    layer = np.floor(np.clip(layer, 0, 1) * 255) / 255
    # ImageMagick 6's 8-bit result of the blur is floored as well
    layer = np.floor(ref_motion_blur(layer, c[4], c[5], rng.uniform(-135, -45)) * 255 + 1e-6) / 255
    gray = x @ np.array([0.299, 0.587, 0.114])
    x = c[6] * x + (1 - c[6]) * np.maximum(x, gray[..., None] * 1.5 + 0.5)
    return np.clip(x + layer[..., None] + np.rot90(layer, 2)[..., None], 0, 1)


def test_snow_in_distribution(images_hwc):
    """Mean brightness and fraction of white pixels over 160 draws: ours vs the numpy reference (3 % / 0.03)."""
    ims = images_hwc[:8] / 255.0
    rng = np.random.default_rng(0)
    x = to_tensor(np.repeat(ims, 20, 0).astype(np.float32))
    for s, c in enumerate(PRESETS["cifar"].params["snow"], 1):
        ref = np.stack([ref_snow(im, c, rng) for im in np.repeat(ims, 20, 0)])
        ours = to_hwc(corrupt(x, "snow", s, generator=torch.Generator().manual_seed(s)))
        assert abs(ours.mean() - ref.mean()) < 0.03 * ref.mean(), s
        assert abs((ours >= 0.999).mean() - (ref >= 0.999).mean()) < 0.03, s


def ref_elastic(x, c, rng):
    """Hendrycks' elastic transform with scipy in place of OpenCV's warpAffine (reflect-101 = scipy mirror)."""
    h = x.shape[0]
    centre = h // 2
    sq = h // 3
    pts1 = np.array([[centre + sq, centre + sq], [centre + sq, centre - sq], [centre - sq, centre - sq]], float)
    pts2 = pts1 + rng.uniform(-c[2], c[2], pts1.shape)
    src = np.c_[pts1, np.ones(3)]
    m = np.linalg.solve(src, pts2).T                       # (2, 3): dst = m @ [x, y, 1]
    inv = np.linalg.inv(m[:, :2])
    warped = np.stack([ndimage.affine_transform(x[..., d], inv[::-1, ::-1], (-inv @ m[:, 2])[::-1],
                                                order=1, mode="mirror") for d in range(3)], -1)
    if c[0] == 0:
        return np.clip(warped, 0, 1)
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, h)), c[1], mode="reflect", truncate=3) * c[0]
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, h)), c[1], mode="reflect", truncate=3) * c[0]
    yy, xx = np.mgrid[0:h, 0:h]
    return np.clip(np.stack([ndimage.map_coordinates(warped[..., d], (yy + dy, xx + dx), order=1, mode="reflect")
                             for d in range(3)], -1), 0, 1)


def test_elastic_in_distribution(images_hwc):
    """Mean absolute change over 5 draws of 24 images: ours vs the scipy reference (10 %)."""
    ims = np.repeat(images_hwc[:24], 5, 0) / 255.0
    rng = np.random.default_rng(0)
    x = to_tensor(ims.astype(np.float32))
    for s, c in enumerate(PRESETS["cifar"].params["elastic_transform"], 1):
        ref = np.stack([ref_elastic(im, c, rng) for im in ims])
        ours = to_hwc(corrupt(x, "elastic_transform", s, generator=torch.Generator().manual_seed(s)))
        ref_change, our_change = np.abs(ref - ims).mean(), np.abs(ours - ims).mean()
        assert abs(our_change - ref_change) < 0.1 * ref_change, (s, our_change, ref_change)


def test_spatter_steps_match_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    liquid = np.stack([ndimage.gaussian_filter(rng.normal(0.65, 0.3, (32, 32)), 1, mode="nearest")
                       for _ in range(24)])
    liquid[liquid < 0.69] = 0
    u8 = (liquid * 255).astype(np.uint8)
    edges = np.stack([cv2.Canny(im, 50, 150) for im in u8]) > 0
    np.testing.assert_array_equal(_spatter_ops.canny(torch.from_numpy(u8).float(), 50, 150).numpy(), edges)
    dist = np.stack([cv2.distanceTransform(255 - 255 * e.astype(np.uint8), cv2.DIST_L2, 5) for e in edges])
    ours = _spatter_ops.chamfer_distance(torch.from_numpy(edges), 20.0).numpy()
    np.testing.assert_allclose(ours, np.minimum(dist, 20), atol=1e-4)
    blurred = np.stack([cv2.blur(np.minimum(d, 20), (3, 3)) for d in dist]).astype(np.uint8)
    eq = np.stack([cv2.equalizeHist(b) for b in blurred])
    np.testing.assert_array_equal(_spatter_ops.equalize_hist(torch.from_numpy(blurred).float()).numpy(), eq)
    ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    emb = np.stack([cv2.filter2D(e, cv2.CV_8U, ker) for e in eq])
    np.testing.assert_array_equal(_spatter_ops.filter3_u8(torch.from_numpy(eq).float(), ker).numpy(), emb)


def test_spatter_in_distribution(images_hwc):
    """Mean change over 96 draws: ours vs the OpenCV reference (10 %)."""
    cv2 = pytest.importorskip("cv2")
    ims = np.repeat(images_hwc[:8], 12, 0).astype(np.float32) / 255.0
    rng = np.random.default_rng(0)
    x = to_tensor(ims)
    for s, c in enumerate(PRESETS["cifar"].params["spatter"], 1):
        refs = []
        for im in ims:
            liquid = ndimage.gaussian_filter(rng.normal(c[0], c[1], (32, 32)), c[2], mode="nearest")
            liquid[liquid < c[3]] = 0
            if c[5] == 0:
                u8 = (liquid * 255).astype(np.uint8)
                dist = cv2.distanceTransform(255 - cv2.Canny(u8, 50, 150), cv2.DIST_L2, 5)
                _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
                dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
                dist = cv2.filter2D(dist, cv2.CV_8U, np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]))
                dist = cv2.blur(dist, (3, 3)).astype(np.float32)
                m = liquid * dist
                m = m / m.max() * c[4] if m.max() > 0 else m
                refs.append(np.clip(im + m[..., None] * np.array([175, 238, 238]) / 255, 0, 1))
            else:
                m = ndimage.gaussian_filter((liquid > c[3]).astype(np.float32), c[4], mode="nearest")
                m[m < 0.8] = 0
                refs.append(np.clip(im * (1 - m[..., None]) + m[..., None] * np.array([63, 42, 20]) / 255, 0, 1))
        ref_change = np.abs(np.stack(refs) - ims).mean()
        ours = to_hwc(corrupt(x, "spatter", s, generator=torch.Generator().manual_seed(s)))
        our_change = np.abs(ours - ims).mean()
        assert abs(our_change - ref_change) < 0.1 * ref_change + 1e-4, (s, our_change, ref_change)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ALL_CORRUPTIONS)
def test_cuda_matches_cpu(images_hwc, name):
    """On the GPU: same dtype and device out; deterministic corruptions agree with the CPU to one level."""
    if name == "frost" and not FROST_OK:
        pytest.skip("frost textures need: pip install imagecorruptions")
    x = to_tensor(images_hwc[:8])
    g = torch.Generator(device="cuda").manual_seed(0)
    out = corrupt(x.cuda(), name, 4, generator=g)
    assert out.device.type == "cuda" and out.dtype == torch.uint8 and out.shape == x.shape
    outf = corrupt(x.cuda().float() / 255, name, 4, generator=g)
    assert outf.dtype == torch.float32 and 0 <= float(outf.min()) and float(outf.max()) <= 1
    if name not in RANDOM_CORRUPTIONS:
        assert (out.cpu().float() - corrupt(x, name, 4).float()).abs().max() <= 1


# ---------------------------------------------------------------- on-the-fly generation (evaluation)

def test_generated_corruptions_save_as_the_generators_did(images_hwc):
    """tinyimagenet/imagenet presets: every image through Pillow's JPEG at quality 85, as the published
    files were saved; cifar: none; jpeg_quality=None turns it off; settings say which was used."""
    from augmax_lib.data import ImageSet
    from augmax_lib.evaluate import generated_corruptions

    ims = np.stack([np.asarray(Image.fromarray(im).resize((64, 64), Image.BICUBIC)) for im in images_hwc[:4]])
    data = ImageSet(to_tensor(ims), torch.arange(4), ["a", "b", "c", "d"], "stand-in", "tin")
    plain = to_hwc(corrupt(data.images, "contrast", 2, "tinyimagenet"))
    published = np.stack([pil_jpeg(im, 85) for im in plain])
    src = generated_corruptions(data, preset="tinyimagenet")
    np.testing.assert_array_equal(to_hwc(src("contrast", 2).images), published)
    assert src.settings["jpeg_quality"] == 85 and "JPEG quality 85" in src.description
    assert src.settings["generator"].endswith("make_tinyimagenet_c.py") and src.settings["uint8"].startswith("trunc")
    off = generated_corruptions(data, preset="tinyimagenet", jpeg_quality=None)
    np.testing.assert_array_equal(to_hwc(off("contrast", 2).images), plain)
    assert off.settings["jpeg_quality"] is None and "no JPEG" in off.description
    small = ImageSet(to_tensor(images_hwc[:4]), torch.arange(4), ["a", "b", "c", "d"], "stand-in", "c10")
    cifar = generated_corruptions(small, preset="cifar")
    assert cifar.settings["jpeg_quality"] is None
    np.testing.assert_array_equal(cifar("contrast", 2).images, corrupt(small.images, "contrast", 2))
    with pytest.raises(ValueError, match="jpeg_quality"):
        generated_corruptions(data, preset="tinyimagenet", jpeg_quality=100)


# ---------------------------------------------------------------- ImageMagick 6, where installed

def imagemagick6():
    """The ImageMagick 6 convert binary (Debian: apt-get install imagemagick), or None."""
    import shutil

    for name in ("convert-im6.q16", "convert-im6"):
        path = shutil.which(name)
        if path:
            return path
    return None


def im6_motion_blur(convert, image: np.ndarray, radius, sigma, angle, tmp_path) -> np.ndarray:
    """What the generators' MotionImage.motion_blur + make_blob gave: an 8-bit PNG blurred by ImageMagick 6."""
    import subprocess

    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    Image.fromarray(image).save(src)
    subprocess.run([convert, str(src), "-motion-blur", f"{radius}x{sigma}+{angle}", str(dst)], check=True)
    with Image.open(dst) as im:
        return np.asarray(im.convert("L" if image.ndim == 2 else "RGB"))


def test_motion_blur_and_snow_layer_are_floored_as_imagemagick6_writes_them(images_hwc, tmp_path):
    """The 8-bit result of ImageMagick 6's motion blur (what make_*_c.py read back) is the blur floored:
    ours truncated equals it but for float round-off; rounded it would be half a level brighter."""
    from augmax_lib.corruptions import to_uint8_truncated

    convert = imagemagick6()
    if convert is None:
        pytest.skip("needs ImageMagick 6 (apt-get install imagemagick)")
    rng = np.random.default_rng(0)
    devs = []
    for k, im in enumerate(images_hwc[:10]):
        s = k % 5 + 1
        radius, sigma = PRESETS["cifar"].params["motion_blur"][s - 1]
        angle = float(rng.uniform(-45, 45))
        ref = im6_motion_blur(convert, im, radius, sigma, angle, tmp_path)
        blurred = _filters.motion_blur_lines(to_tensor(im[None].astype(np.float64) / 255), radius, sigma,
                                             torch.tensor([angle], dtype=torch.float64))
        devs.append(to_hwc(to_uint8_truncated(blurred))[0].astype(int) - ref)
        # the snow layer: a thresholded 8-bit layer, blurred at the snow angles
        c = PRESETS["cifar"].params["snow"][s - 1]
        layer = rng.normal(c[0], c[1], (32, 32))
        layer[layer < c[3]] = 0
        layer = np.uint8(np.clip(layer, 0, 1) * 255)
        angle = float(rng.uniform(-135, -45))
        ref = im6_motion_blur(convert, layer, c[4], c[5], angle, tmp_path)
        ours = _filters.floor_levels(_filters.motion_blur_lines(torch.from_numpy(layer / 255.0)[None, None],
                                                                c[4], c[5], torch.tensor([angle])))
        devs.append(ours[0, 0].numpy().astype(int) - ref)
    d = np.concatenate([x.ravel() for x in devs])
    assert np.abs(d).max() <= 1 and np.abs(d).mean() < 0.01, (np.abs(d).mean(), np.abs(d).max())
