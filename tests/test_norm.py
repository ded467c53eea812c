"""DuBN, DuBIN, IBN and the route switch, checked against the normalisation formulas computed in numpy."""
import numpy as np
import pytest
import torch
from torch import nn

from augmax_lib.norm import IBN, NORMS, DuBIN, DuBN, make_norm, route, running_variances

EPS = 1e-5


def _randomise(module: nn.Module, seed: int) -> None:
    """Distinct random affine parameters and running statistics in every BatchNorm/InstanceNorm."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
                    m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _np(t):
    return t.detach().double().numpy()


def bn_eval_reference(x, bn):
    """BatchNorm in eval mode: (x - running_mean) / sqrt(running_var + eps) * weight + bias, per channel."""
    shape = (1, -1, 1, 1)
    return ((_np(x) - _np(bn.running_mean).reshape(shape)) / np.sqrt(_np(bn.running_var).reshape(shape) + EPS)
            * _np(bn.weight).reshape(shape) + _np(bn.bias).reshape(shape))


def in_reference(x, weight, bias):
    """InstanceNorm: each image and channel normalised by its own spatial mean and biased variance."""
    x = _np(x)
    mean = x.mean(axis=(2, 3), keepdims=True)
    var = x.var(axis=(2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * _np(weight).reshape(1, -1, 1, 1) + _np(bias).reshape(1, -1, 1, 1)


@pytest.fixture
def x6():
    return torch.randn(2, 6, 5, 5, generator=torch.Generator().manual_seed(1)) * 2 + 0.3


def test_dubn_keys_and_default_route():
    layer = DuBN(6)
    assert layer.route == "M"
    assert sorted(layer.state_dict()) == sorted(
        f"bn.{i}.{n}" for i in (0, 1) for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))


@pytest.mark.parametrize("which, index", [("M", 0), ("A", 1)])
def test_dubn_eval_uses_the_route_statistics(x6, which, index):
    layer = DuBN(6).eval()
    _randomise(layer, 0)
    with route(layer, which):
        y = layer(x6)
    np.testing.assert_allclose(_np(y), bn_eval_reference(x6, layer.bn[index]), rtol=1e-5, atol=1e-5)


def test_train_under_route_a_updates_only_the_auxiliary_statistics(x6):
    layer = DuBN(6).train()
    _randomise(layer, 0)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    with route(layer, "A"):
        y = layer(x6)
    after = layer.state_dict()
    for key in ("running_mean", "running_var", "num_batches_tracked"):
        assert torch.equal(after[f"bn.0.{key}"], before[f"bn.0.{key}"]), key
    assert after["bn.1.num_batches_tracked"].item() == before["bn.1.num_batches_tracked"].item() + 1
    # PyTorch's update rule: new = (1 - momentum) * old + momentum * batch statistic (unbiased variance).
    xs = _np(x6).transpose(1, 0, 2, 3).reshape(6, -1)
    np.testing.assert_allclose(_np(after["bn.1.running_mean"]),
                               0.9 * _np(before["bn.1.running_mean"]) + 0.1 * xs.mean(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(after["bn.1.running_var"]),
                               0.9 * _np(before["bn.1.running_var"]) + 0.1 * xs.var(1, ddof=1), rtol=1e-5, atol=1e-6)
    # The output is normalised with the batch statistics and the auxiliary affine parameters.
    expected = ((_np(x6) - xs.mean(1).reshape(1, -1, 1, 1)) / np.sqrt(xs.var(1).reshape(1, -1, 1, 1) + EPS)
                * _np(layer.bn[1].weight).reshape(1, -1, 1, 1) + _np(layer.bn[1].bias).reshape(1, -1, 1, 1))
    np.testing.assert_allclose(_np(y), expected, rtol=1e-4, atol=1e-5)


def test_train_under_route_m_leaves_the_auxiliary_statistics(x6):
    layer = DuBN(6).train()
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(x6)
    after = layer.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("bn.1."))
    assert not torch.equal(after["bn.0.running_mean"], before["bn.0.running_mean"])


@pytest.mark.parametrize("channels, instance_channels", [(6, 3), (7, 3), (5, 2)])
@pytest.mark.parametrize("which, index", [("M", 0), ("A", 1)])
def test_dubin_halves(channels, instance_channels, which, index):
    x = torch.randn(2, channels, 4, 5, generator=torch.Generator().manual_seed(2)) * 3 - 1
    layer = DuBIN(channels).eval()
    _randomise(layer, 3)
    assert layer.IN.weight.shape == (instance_channels,)
    assert layer.IN.running_mean is None  # no running statistics: always the image's own
    assert layer.BN.bn[0].num_features == channels - instance_channels
    with route(layer, which):
        y = layer(x)
    first, rest = x[:, :instance_channels], x[:, instance_channels:]
    np.testing.assert_allclose(_np(y[:, :instance_channels]), in_reference(first, layer.IN.weight, layer.IN.bias),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_np(y[:, instance_channels:]), bn_eval_reference(rest, layer.BN.bn[index]),
                               rtol=1e-5, atol=1e-5)


def test_ibn_halves(x6):
    layer = IBN(6).eval()
    _randomise(layer, 4)
    assert isinstance(layer.BN, nn.BatchNorm2d) and layer.BN.num_features == 3
    y = layer(x6)
    np.testing.assert_allclose(_np(y[:, :3]), in_reference(x6[:, :3], layer.IN.weight, layer.IN.bias),
                               rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(_np(y[:, 3:]), bn_eval_reference(x6[:, 3:], layer.BN), rtol=1e-5, atol=1e-5)


def test_route_switches_every_layer_and_restores_each_previous_route():
    model = nn.Sequential(DuBN(3), DuBIN(4), nn.BatchNorm2d(4), DuBN(4))
    model[3].route = "A"  # a layer already on "A" must come back to "A", the others to "M"
    with route(model, "A") as same:
        assert same is model
        assert [model[0].route, model[1].BN.route, model[3].route] == ["A", "A", "A"]
    assert [model[0].route, model[1].BN.route, model[3].route] == ["M", "M", "A"]


def test_route_restores_on_error():
    model = nn.Sequential(DuBN(3), DuBIN(4))
    with pytest.raises(RuntimeError, match="boom"):
        with route(model, "A"):
            raise RuntimeError("boom")
    assert model[0].route == "M" and model[1].BN.route == "M"


def test_route_is_a_no_op_without_dual_layers_and_rejects_bad_routes():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
    with route(model, "A"):
        pass
    with pytest.raises(ValueError, match="'M'.*'A'"):
        with route(model, "B"):
            pass
    layer = DuBN(3)
    layer.route = "X"
    with pytest.raises(ValueError, match="route"):
        layer(torch.zeros(1, 3, 2, 2))


def test_running_variances_reads_both_routes():
    model = nn.Sequential(DuBN(3), DuBIN(4))
    _randomise(model, 5)
    table = running_variances(model)
    assert sorted(table) == ["0", "1.BN"]
    assert torch.equal(table["0"]["M"], model[0].bn[0].running_var)
    assert torch.equal(table["0"]["A"], model[0].bn[1].running_var)
    assert torch.equal(table["1.BN"]["A"], model[1].BN.bn[1].running_var)
    assert table["1.BN"]["M"].shape == (2,)
    table["0"]["M"].zero_()  # copies: the model keeps its statistics
    assert model[0].bn[0].running_var.min() > 0


def test_make_norm_kinds_and_error():
    assert type(make_norm("bn", 4, instance_site=True)) is nn.BatchNorm2d
    assert type(make_norm("ibn", 4, instance_site=True)) is IBN
    assert type(make_norm("ibn", 4)) is nn.BatchNorm2d
    assert type(make_norm("dubn", 4, instance_site=True)) is DuBN
    assert type(make_norm("dubin", 4, instance_site=True)) is DuBIN
    assert type(make_norm("dubin", 4)) is DuBN
    assert NORMS == ("bn", "ibn", "dubn", "dubin")
    with pytest.raises(ValueError, match="bn, ibn, dubn, dubin"):
        make_norm("gn", 4)
    with pytest.raises(ValueError, match="ratio"):
        DuBIN(4, ratio=1.0)


def test_dubin_channels_last_and_bf16_autocast(x6):
    layer = DuBIN(6).train()
    x = x6.clone().requires_grad_(True)
    reference = layer(x)
    x_cl = x6.clone().to(memory_format=torch.channels_last).requires_grad_(True)
    y_cl = DuBIN(6).train()(x_cl)
    torch.testing.assert_close(y_cl, reference, rtol=1e-5, atol=1e-5)
    # The output keeps the input's layout (the next conv and ReLU would otherwise mix layouts).
    assert y_cl.is_contiguous(memory_format=torch.channels_last) and reference.is_contiguous()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    y.float().square().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.IN.weight.grad).all()
    assert torch.isfinite(layer.BN.bn[0].weight.grad).all() and layer.BN.bn[1].weight.grad is None
