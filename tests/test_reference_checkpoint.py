"""Loading the authors' checkpoints (built here from their key listings) and exporting ours to their layout."""
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from augmax_lib.models import ReferenceCheckpointError, build_model, load_reference_checkpoint, to_reference_state_dict
from augmax_lib.norm import route

FIXTURES = Path(__file__).parent / "fixtures" / "reference_keys"
NAMES = ["resnet18", "wrn40_2", "resnext29"]
# The first DuBIN layer and a plain DuBN layer of each backbone, named as in the listings.
FIRST_DUBIN = {"resnet18": "layer1.0.bn1", "wrn40_2": "block1.layer.0.bn1", "resnext29": "stage_1.0.bn_reduce"}
A_DUBN = {"resnet18": "bn1", "wrn40_2": "block3.layer.0.bn1", "resnext29": "bn_1"}
EPS = 1e-5


def read_listing(name):
    """[(key, shape)] from a listing line ``name (d1, d2, ...)``."""
    entries = []
    for line in (FIXTURES / f"{name}_dubin_cifar10.keys.txt").read_text().splitlines():
        key, shape = line.split(" ", 1)
        entries.append((key, tuple(int(d) for d in re.findall(r"\d+", shape))))
    return entries


def random_reference_state(name, seed=0):
    """A state dict with exactly the listed keys and shapes and random values, as the reference would save it."""
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in read_listing(name):
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(1, 10_000, shape, generator=g, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        elif len(shape) > 1:  # conv/linear weights at He scale, so deep random models stay finite
            fan_in = int(np.prod(shape[1:]))
            state[key] = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        else:
            state[key] = torch.randn(shape, generator=g)
    return state


def _np(t):
    return t.detach().double().numpy()


@pytest.mark.parametrize("name", NAMES)
def test_fixture_listings_have_the_documented_sizes(name):
    entries = read_listing(name)
    assert len(entries) == {"resnet18": 234, "wrn40_2": 436, "resnext29": 355}[name]
    assert all(key.startswith("module.") for key, _ in entries)


@pytest.mark.parametrize("name", NAMES)
def test_every_listed_value_lands_under_its_name(name):
    state = random_reference_state(name)
    model = load_reference_checkpoint(state, name)
    assert not model.training
    for key, value in state.items():
        *path, leaf = key[len("module."):].split(".")
        module = model.get_submodule(".".join(path))
        assert torch.equal(getattr(module, leaf), value), key


def _np_batchnorm_eval(x: torch.Tensor, state, prefix: str) -> np.ndarray:
    """Eval-mode BatchNorm in numpy with the running statistics and affine parameters under ``prefix``."""
    bn = {k: _np(state[prefix + k])[None, :, None, None] for k in ("weight", "bias", "running_mean", "running_var")}
    return (_np(x) - bn["running_mean"]) / np.sqrt(bn["running_var"] + EPS) * bn["weight"] + bn["bias"]


@pytest.mark.parametrize("name", NAMES)
def test_dubin_halves_use_the_right_parameters(name):
    state = random_reference_state(name, seed=1)
    model = load_reference_checkpoint(state, name)
    prefix = f"module.{FIRST_DUBIN[name]}."
    layer = model.get_submodule(FIRST_DUBIN[name])
    channels = state[prefix + "IN.weight"].shape[0] + state[prefix + "BN.bn.0.weight"].shape[0]
    half = int(0.5 * channels)
    x = torch.randn(2, channels, 4, 4, generator=torch.Generator().manual_seed(2)) * 2 + 0.5
    # First int(0.5 * C) channels: InstanceNorm with the listing's IN parameters (numpy formula).
    first = _np(x[:, :half])
    expected_in = ((first - first.mean((2, 3), keepdims=True)) / np.sqrt(first.var((2, 3), keepdims=True) + EPS)
                   * _np(state[prefix + "IN.weight"])[None, :, None, None]
                   + _np(state[prefix + "IN.bias"])[None, :, None, None])
    for which, index in (("M", 0), ("A", 1)):
        with torch.no_grad(), route(model, which):
            y = layer(x)
        np.testing.assert_allclose(_np(y[:, :half]), expected_in, rtol=1e-4, atol=1e-4)
        expected_bn = _np_batchnorm_eval(x[:, half:], state, f"{prefix}BN.bn.{index}.")
        np.testing.assert_allclose(_np(y[:, half:]), expected_bn, rtol=1e-5, atol=1e-5)
    # Changing every BN entry of the layer leaves the first half untouched.
    altered = OrderedDict(state)
    for key in state:
        if key.startswith(prefix + "BN."):
            altered[key] = state[key] * 3 + 1
    other = load_reference_checkpoint(altered, name).get_submodule(FIRST_DUBIN[name])
    with torch.no_grad():
        assert torch.equal(other(x)[:, :half], layer(x)[:, :half])
        assert not torch.equal(other(x)[:, half:], layer(x)[:, half:])


@pytest.mark.parametrize("name", NAMES)
def test_route_a_uses_the_bn1_statistics(name):
    state = random_reference_state(name, seed=3)
    model = load_reference_checkpoint(state, name)
    prefix = f"module.{A_DUBN[name]}."
    layer = model.get_submodule(A_DUBN[name])
    channels = state[prefix + "bn.0.weight"].shape[0]
    x = torch.randn(2, channels, 3, 3, generator=torch.Generator().manual_seed(4))
    for which, index in (("M", 0), ("A", 1)):
        with torch.no_grad(), route(model, which):
            y = layer(x)
        np.testing.assert_allclose(_np(y), _np_batchnorm_eval(x, state, f"{prefix}bn.{index}."), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_latest_pth_wrapper_loads_the_same(name):
    state = random_reference_state(name, seed=5)
    wrapped = {"model": state, "optimizer": {"state": {}, "param_groups": []}, "epoch": 199, "best_SA": 0.95}
    loaded = load_reference_checkpoint(wrapped, name).state_dict()
    assert list(loaded) == [k[len("module."):] for k in state]
    assert all(torch.equal(loaded[k[len("module."):]], v) for k, v in state.items())


@pytest.mark.parametrize("name", NAMES)
def test_missing_extra_and_wrongly_shaped_keys_are_named(name):
    state = random_reference_state(name, seed=7)
    keys = list(state)
    missing = OrderedDict((k, v) for k, v in state.items() if k != keys[5])
    with pytest.raises(ReferenceCheckpointError, match=re.escape(keys[5])):
        load_reference_checkpoint(missing, name)
    extra = OrderedDict(state)
    extra["module.layer9.0.bn1.bn.2.weight"] = torch.zeros(3)
    with pytest.raises(ReferenceCheckpointError, match=re.escape("module.layer9.0.bn1.bn.2.weight")):
        load_reference_checkpoint(extra, name)
    wrong = OrderedDict(state)
    wrong[keys[1]] = torch.zeros(state[keys[1]].numel() + 1)
    with pytest.raises(ReferenceCheckpointError, match=re.escape(keys[1])):
        load_reference_checkpoint(wrong, name)
    with pytest.raises(ReferenceCheckpointError, match="num_classes=10"):
        load_reference_checkpoint(state, name, num_classes=100)
    mixed = OrderedDict((k[len("module."):] if i == 0 else k, v) for i, (k, v) in enumerate(state.items()))
    with pytest.raises(ReferenceCheckpointError, match=re.escape(keys[0][len("module."):])):
        load_reference_checkpoint(mixed, name)


def _trained_like(name):
    """A DuBIN model whose two routes hold different statistics, as after AugMax training."""
    torch.manual_seed(0)
    model = build_model(name, 10, norm="dubin").train()
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
        with route(model, "A"):
            model(torch.rand(2, 3, 32, 32) ** 3)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model.eval()


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_through_a_file(name, tmp_path):
    model = _trained_like(name)
    exported = to_reference_state_dict(model)
    assert [(k, tuple(v.shape)) for k, v in exported.items()] == read_listing(name)
    path = tmp_path / "best_SA.pth"
    torch.save(exported, path)
    loaded = load_reference_checkpoint(path, name)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        for which in ("M", "A"):
            with route(model, which), route(loaded, which):
                assert torch.equal(loaded(x), model(x)), which
        with route(model, "A"):
            assert not torch.equal(model(x), loaded(x))  # the routes really differ


def test_export_unwraps_compile_and_data_parallel_wrappers():
    model = build_model("resnet18", 10, norm="dubin", width=8)
    plain = to_reference_state_dict(model)
    for wrapped in (torch.nn.DataParallel(model), torch.compile(model, backend="eager")):
        assert list(to_reference_state_dict(wrapped)) == list(plain)
    assert all(v.device.type == "cpu" for v in plain.values())


def test_file_loading_uses_cpu_and_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "latest.pth"
    torch.save({"model": random_reference_state("resnet18")}, path)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_reference_checkpoint(str(path), "resnet18")
    assert seen["weights_only"] is True and str(seen["map_location"]) == "cpu"


class _NotData:
    pass


def test_files_with_code_objects_or_absent_files_fail_clearly(tmp_path):
    path = tmp_path / "odd.pth"
    state = random_reference_state("resnet18")
    state["module.extra_object"] = _NotData()
    torch.save(state, path)
    with pytest.raises(ReferenceCheckpointError, match="weights_only"):
        load_reference_checkpoint(path, "resnet18")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_reference_checkpoint(tmp_path / "nowhere.pth", "resnet18")


def _randomised_reference_resnet18(num_classes, init_stride, seed):
    """The authors' ResNet18 (transcribed) with random weights and running statistics, in eval mode."""
    from reference.augmax_resnet18_dubin import ResNet18DuBIN

    torch.manual_seed(seed)
    net = ResNet18DuBIN(num_classes=num_classes, init_stride=init_stride)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                tensor.normal_(0, 0.1)
            elif name.endswith("weight") and tensor.dim() == 1:
                tensor.uniform_(0.5, 1.5)
    return net.eval()


def test_tiny_imagenet_checkpoint_gets_the_stride_2_stem(tmp_path):
    ref = _randomised_reference_resnet18(200, init_stride=2, seed=11)
    path = tmp_path / "best_SA.pth"
    torch.save(torch.nn.DataParallel(ref).state_dict(), path)  # their key layout: every key under module.
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        expected = ref(x)
        for kwargs in ({"dataset": "tinyimagenet"}, {}):  # given, or told by the 200-class head
            ours = load_reference_checkpoint(path, "resnet18", **kwargs)
            assert ours.conv1.stride == (2, 2), kwargs
            np.testing.assert_allclose(ours(x).numpy(), expected.numpy(), rtol=0, atol=1e-5)
        # The same weights in a stride-1 stem load without a key error but compute something else.
        wrong = build_model("resnet18", 200, norm="dubin").eval()
        wrong.load_state_dict(load_reference_checkpoint(path, "resnet18").state_dict())
        assert (wrong(x) - expected).abs().max() > 1e-3


def test_cifar_checkpoint_keeps_the_stride_1_stem(tmp_path):
    ref = _randomised_reference_resnet18(10, init_stride=1, seed=13)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(14))
    state = torch.nn.DataParallel(ref).state_dict()
    with torch.no_grad():
        ours = load_reference_checkpoint(state, "resnet18")
        assert ours.conv1.stride == (1, 1)
        np.testing.assert_allclose(ours(x).numpy(), ref(x).numpy(), rtol=0, atol=1e-5)


def test_the_data_set_is_never_guessed():
    state = random_reference_state("resnet18")
    state["module.linear.weight"] = torch.zeros(43, 512)
    state["module.linear.bias"] = torch.zeros(43)
    with pytest.raises(ReferenceCheckpointError, match="43 classes.*pass dataset="):
        load_reference_checkpoint(state, "resnet18")
    # Given, the data set decides the stem; the head must still fit it.
    assert load_reference_checkpoint(state, "resnet18", 43, dataset="tinyimagenet").conv1.stride == (2, 2)
    with pytest.raises(ReferenceCheckpointError, match="num_classes=43"):
        load_reference_checkpoint(state, "resnet18", dataset="cifar100")
    with pytest.raises(ValueError, match="dataset: expected one of cifar10, cifar100, tinyimagenet, imagenet"):
        load_reference_checkpoint(state, "resnet18", dataset="tin")
    with pytest.raises(ReferenceCheckpointError, match="a tinyimagenet model: dataset='tinyimagenet'"):
        tin = random_reference_state("resnet18")
        tin["module.linear.weight"], tin["module.linear.bias"] = torch.zeros(200, 512), torch.zeros(200)
        load_reference_checkpoint(tin, "resnet18", dataset="cifar10")


@pytest.mark.parametrize("name, other", [("resnet18", "wrn40_2"), ("wrn40_2", "resnext29")])
def test_a_checkpoint_of_another_backbone_names_the_one_it_fits(name, other):
    state = random_reference_state(other)
    with pytest.raises(ReferenceCheckpointError, match=f"fit '{other}' instead: pass name='{other}'") as info:
        load_reference_checkpoint(state, name)
    assert info.value.fits == [other] and len(info.value.missing) > 100


def test_files_that_are_not_checkpoints_name_the_file(tmp_path):
    garbage = tmp_path / "notes.pth"
    garbage.write_bytes(b"this is not a checkpoint\n" * 10)
    path = tmp_path / "best_SA.pth"
    torch.save(random_reference_state("resnet18"), path)
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for bad in (garbage, truncated):
        with pytest.raises(ReferenceCheckpointError, match=re.escape(str(bad)) + ": not a readable torch checkpoint"
                           f".*holds {bad.stat().st_size} bytes"):
            load_reference_checkpoint(bad, "resnet18")
