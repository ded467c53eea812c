"""The backbones: parameter counts, norm placement, routing through whole models, layouts against torchvision."""
import re
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from augmax_lib.models import build_model, list_models
from augmax_lib.norm import IBN, DuBIN, DuBN, route

FIXTURES = Path(__file__).parent / "fixtures" / "reference_keys"
CIFAR = ["resnet18", "wrn40_2", "resnext29"]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def resnext_param_count(num_classes=10, cardinality=4, base_width=32, widths=(64, 128, 256), blocks=3):
    """ResNeXt-29 (Xie et al.) counted from the architecture: stem, bottlenecks (reduce, grouped 3x3, expand), head."""
    total = 3 * 64 * 9 + 2 * 64  # 3x3 stem conv + BN
    in_ch = 64
    for planes in widths:
        inner = cardinality * (planes * base_width // 64)
        out = 4 * planes
        for b in range(blocks):
            total += in_ch * inner + 2 * inner  # 1x1 reduce + BN
            total += inner * (inner // cardinality) * 9 + 2 * inner  # grouped 3x3 + BN
            total += inner * out + 2 * out  # 1x1 expand + BN
            if in_ch != out:
                total += in_ch * out + 2 * out  # 1x1 projection + BN
            in_ch = out
    return total + in_ch * num_classes + num_classes


def listing_trainable_count(path):
    """Trainable parameters of one route in a reference key listing: IN params plus the ``bn.0`` BN params."""
    total = 0
    for line in path.read_text().splitlines():
        key, shape = line.split(" ", 1)
        if re.search(r"running_|num_batches_tracked|\.bn\.1\.", key):
            continue
        numel = 1
        for dim in re.findall(r"\d+", shape):
            numel *= int(dim)
        total += numel
    return total


def test_list_models():
    assert list_models() == ["resnet18", "wrn40_2", "resnext29", "resnet18_imagenet", "resnet50_imagenet"]


@pytest.mark.parametrize("name, expected", [("resnet18", 11_173_962), ("wrn40_2", 2_243_546)])
def test_cifar_parameter_counts(name, expected):
    assert n_params(build_model(name, 10)) == expected
    assert n_params(build_model(name, 10, norm="ibn")) == expected  # IN + BN halves hold as many as one BN


def test_resnext29_parameter_count_from_listing_and_architecture():
    from_listing = listing_trainable_count(FIXTURES / "resnext29_dubin_cifar10.keys.txt")
    from_architecture = resnext_param_count()
    assert from_listing == from_architecture == 6_807_882
    assert n_params(build_model("resnext29", 10)) == from_architecture


@pytest.mark.parametrize("name", ["resnet18", "wrn40_2"])
def test_listing_count_matches_published_count(name):
    published = {"resnet18": 11_173_962, "wrn40_2": 2_243_546}[name]
    assert listing_trainable_count(FIXTURES / f"{name}_dubin_cifar10.keys.txt") == published


@pytest.mark.parametrize("name, tv_builder", [("resnet18_imagenet", torchvision.models.resnet18),
                                              ("resnet50_imagenet", torchvision.models.resnet50)])
def test_imagenet_models_match_torchvision(name, tv_builder):
    ours, theirs = build_model(name, 1000), tv_builder()
    assert n_params(ours) == n_params(theirs) == {"resnet18_imagenet": 11_689_512, "resnet50_imagenet": 25_557_032}[name]
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert [(k, v.shape) for k, v in ours_sd.items()] == [(k, v.shape) for k, v in theirs_sd.items()]
    # Same weights, same function: torchvision's own forward is the reference.
    ours.load_state_dict(theirs_sd)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-5, atol=1e-5)


def _norm_layout(model):
    """Norm layers in module order: widths of DuBIN, standalone DuBN, IBN, standalone BN, and of every IN."""
    layout = {"DuBIN": [], "DuBN": [], "IBN": [], "BN": [], "IN": []}
    inner = set()
    for m in model.modules():
        if isinstance(m, (DuBIN, IBN)):
            layout[type(m).__name__].append(m.num_features)
            layout["IN"].append(m.IN.num_features)
            inner.add(id(m.BN))
            inner.update(id(b) for b in m.BN.modules())
        elif isinstance(m, DuBN) and id(m) not in inner:
            layout["DuBN"].append(m.num_features)
        elif isinstance(m, nn.BatchNorm2d) and id(m) not in inner and not _inside_dubn(model, m):
            layout["BN"].append(m.num_features)
    return layout


def _inside_dubn(model, bn):
    return any(isinstance(m, DuBN) and any(b is bn for b in m.bn) for m in model.modules())


# Expected placement, written from REFERENCE.md section 3 (module order: as each forward meets them).
RESNET18_INSTANCE = [64, 64, 128, 128, 256, 256]  # bn1 of every block, stages 1-3
# stem; bn2 of each block, the shortcut after it in the first block of stages 2-4; bn1 of stage 4's blocks
RESNET18_OTHER = [64] + [64] + [64] + [128, 128] + [128] + [256, 256] + [256] + [512, 512, 512] + [512, 512]
PLACEMENT = {
    "resnet18": (RESNET18_INSTANCE, RESNET18_OTHER),
    # pre-activation bn1 of blocks in groups 1-2; others: bn2 of all 18 blocks, bn1 of group 3, final bn1
    "wrn40_2": ([16, 32, 32, 32, 32, 32, 32, 64, 64, 64, 64, 64],
                [32] * 6 + [64] * 6 + [64, 128] + [128] * 10 + [128] * 1),
    # bn_reduce of blocks in stages 1-2; others: stem, bn, bn_expand, downsample, and bn_reduce of stage 3
    "resnext29": ([128] * 3 + [256] * 3,
                  [64] + [128, 256, 256] + [128, 256] * 2 + [256, 512, 512] + [256, 512] * 2
                  + [512, 512, 1024, 1024] + [512, 512, 1024] * 2),
    "resnet18_imagenet": (RESNET18_INSTANCE, RESNET18_OTHER),
    # bn1 of the 3 + 4 + 6 blocks of stages 1-3; others: stem, bn2/bn3/downsample, and bn1 of stage 4
    "resnet50_imagenet": ([64] * 3 + [128] * 4 + [256] * 6,
                          [64] + [64, 256, 256] + [64, 256] * 2 + [128, 512, 512] + [128, 512] * 3
                          + [256, 1024, 1024] + [256, 1024] * 5 + [512, 512, 2048, 2048] + [512, 512, 2048] * 2),
}


@pytest.mark.parametrize("name", list(PLACEMENT))
def test_norm_placement(name):
    instance_sites, other_sites = PLACEMENT[name]
    halves = [c // 2 for c in instance_sites]
    dubin = _norm_layout(build_model(name, 10, norm="dubin"))
    assert dubin == {"DuBIN": instance_sites, "DuBN": other_sites, "IBN": [], "BN": [], "IN": halves}
    ibn = _norm_layout(build_model(name, 10, norm="ibn"))
    assert ibn == {"DuBIN": [], "DuBN": [], "IBN": instance_sites, "BN": other_sites, "IN": halves}
    dubn = _norm_layout(build_model(name, 10, norm="dubn"))
    assert sorted(dubn["DuBN"]) == sorted(instance_sites + other_sites) and dubn["IN"] == dubn["BN"] == []
    bn = _norm_layout(build_model(name, 10, norm="bn"))
    assert sorted(bn["BN"]) == sorted(instance_sites + other_sites) and bn["DuBN"] == bn["IN"] == []


@pytest.mark.parametrize("name", CIFAR)
@pytest.mark.parametrize("norm", ["bn", "ibn", "dubn", "dubin"])
def test_cifar_forward_shapes(name, norm):
    model = build_model(name, 7, norm=norm, width=8)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("name, last, final_map", [("resnet18", "layer4", 4), ("wrn40_2", "block3", 8),
                                                   ("resnext29", "stage_3", 8)])
def test_tiny_imagenet_stem_stride(name, last, final_map):
    model = build_model(name, 200, norm="dubin", width=8, stem_stride=2)
    seen = {}
    model.get_submodule(last).register_forward_hook(lambda m, i, o: seen.update(map=o.shape))
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 200)
    # 64x64 input, stride-2 stem: the same final map as a 32x32 CIFAR image (the reference's fixed pooling size)
    assert seen["map"][-2:] == (final_map, final_map)
    assert next(model.children()).stride == (2, 2)  # the stem conv comes first in every family


def test_width_builds_narrow_models():
    full = n_params(build_model("resnet18", 10))
    narrow = build_model("resnet18", 10, width=16)
    assert narrow.conv1.out_channels == 16 and narrow.linear.in_features == 128
    assert n_params(narrow) < full / 10
    assert build_model("wrn40_2", 10, width=4).fc.in_features == 32
    assert build_model("resnext29", 10, width=16).classifier.in_features == 256


def test_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="resnet18, wrn40_2, resnext29, resnet18_imagenet, resnet50_imagenet"):
        build_model("vgg16", 10)
    with pytest.raises(ValueError, match="bn, ibn, dubn, dubin"):
        build_model("resnet18", 10, norm="ln")
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet18", 0)
    with pytest.raises(TypeError, match="cardinality.*width, drop_rate, stem_stride"):
        build_model("wrn40_2", 10, cardinality=8)
    with pytest.raises(ValueError, match="stem_stride"):
        build_model("resnet18", 10, stem_stride=4)


def _copy_route_into_single(dual, single, index):
    """Copy the weights of a dual-norm model into its single-norm twin, taking BN route ``index``."""
    state = {}
    for key, value in dual.state_dict().items():
        if re.search(r"\.bn\.\d\.", "." + key):
            if f"bn.{index}." not in key:
                continue
            key = re.sub(rf"(^|\.)bn\.{index}\.", r"\1", key)
        state[key] = value
    single.load_state_dict(state, strict=True)


@pytest.mark.parametrize("name", CIFAR)
@pytest.mark.parametrize("which, index", [("M", 0), ("A", 1)])
def test_dual_model_under_a_route_equals_plain_bn_model(name, which, index):
    # The plain-BN twin (norm "ibn" for a DuBIN model) with the route's weights is the independent reference.
    torch.manual_seed(0)
    dual = build_model(name, 10, norm="dubin", width=8)
    for m in dual.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
                if m.running_var is not None:
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
    single = build_model(name, 10, norm="ibn", width=8)
    _copy_route_into_single(dual, single, index)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), route(dual, which):
        torch.testing.assert_close(dual.eval()(x), single.eval()(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", CIFAR)
def test_train_forward_under_route_a_updates_only_auxiliary_statistics(name):
    model = build_model(name, 10, norm="dubin", width=8).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with route(model, "A"):
        model(torch.rand(2, 3, 32, 32))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    buffers = {k for k in before if re.search(r"running_|num_batches_tracked", k)}
    assert changed == {k for k in buffers if ".bn.1." in k}
    assert all(layer.route == "M" for layer in model.modules() if isinstance(layer, DuBN))


@pytest.mark.parametrize("name", CIFAR)
def test_channels_last_and_bf16_autocast(name):
    torch.manual_seed(0)
    model = build_model(name, 10, norm="dubin", width=8).eval()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model_cl(x.to(memory_format=torch.channels_last)), reference,
                                   rtol=1e-4, atol=1e-4)
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16), route(model, "A"):
        out = model(x.to(memory_format=torch.channels_last))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    nn.functional.cross_entropy(out.float(), torch.tensor([1, 2])).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
