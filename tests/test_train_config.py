"""Training configs: schema checks, profiles, --set overrides, and the paper rows' settings (REFERENCE.md 5, 7)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from augmax_lib.train.config import (
    METHODS,
    ConfigError,
    apply_overrides,
    dump_config,
    load_config,
    merge,
    parse_override,
    validate,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ROWS = sorted(p for p in CONFIGS.glob("*/*.yaml") if p.parent.name != "profiles")
# AugMix's own recipe (google-research/augmix cifar.py), shipped beside the paper rows but not one of them.
AUGMIX_RECIPE = CONFIGS / "augmix_original_recipe"
PAPER_ROWS = [p for p in ROWS if p.parent != AUGMIX_RECIPE]


def test_defaults_are_the_cifar_protocol():
    # REFERENCE.md section 5: 200 epochs, batch 256, SGD lr 0.1 momentum 0.9 wd 5e-4, cosine, crop pad 4 + flip.
    c = validate({})
    assert (c["train"]["epochs"], c["train"]["batch_size"]) == (200, 256)
    assert (c["optim"]["lr"], c["optim"]["momentum"], c["optim"]["weight_decay"]) == (0.1, 0.9, 5e-4)
    assert c["schedule"]["name"] == "cosine"
    assert (c["data"]["crop_padding"], c["data"]["flip"]) == (4, True)


def test_numerics_default_to_fp32_and_the_old_amp_key_names_its_successors():
    c = validate({})
    assert (c["train"]["precision"], c["train"]["channels_last"], c["train"]["compile"]) == ("fp32", False, False)
    assert (c["eval"]["precision"], c["eval"]["channels_last"], c["eval"]["compile"]) == ("fp32", False, False)
    fast = validate({"train": {"precision": "bf16", "channels_last": True, "compile": True},
                     "eval": {"precision": "bf16", "channels_last": True}})
    assert fast["train"]["precision"] == "bf16" and fast["eval"]["channels_last"]
    for old in ("auto", "off", "bf16"):
        with pytest.raises(ConfigError, match=r"train\.amp was replaced by train\.precision .*train\.channels_last"):
            validate({"train": {"amp": old}})
    with pytest.raises(ConfigError, match="train.precision"):
        validate({"train": {"precision": "fp64"}})
    with pytest.raises(ConfigError, match="train.channels_last"):
        validate({"train": {"channels_last": None}})  # the old 'null: on for CUDA' is gone


def test_every_shipped_config_computes_in_fp32():
    for path in ROWS:
        for profile in (None, "full"):
            c = load_config(path, profile)
            assert (c["train"]["precision"], c["train"]["channels_last"], c["train"]["compile"]) == \
                ("fp32", False, False), path
            assert c["eval"]["precision"] == "fp32" and not c["eval"]["channels_last"], path


def test_a_profile_can_opt_into_the_speed_settings(tmp_path):
    fast = tmp_path / "fast.yaml"
    fast.write_text("train: {precision: bf16, channels_last: true, compile: true}\n"
                    "eval: {precision: bf16, channels_last: true}\n")
    c = load_config(CONFIGS / "cifar10" / "resnet18_augmax_dubin.yaml", str(fast))
    assert (c["train"]["precision"], c["train"]["channels_last"], c["train"]["compile"]) == ("bf16", True, True)
    assert (c["eval"]["precision"], c["eval"]["channels_last"]) == ("bf16", True)


def test_attack_steps_are_one_override_away():
    # The published CIFAR rows: the authors' commands pass --steps 10 (our configs), their CLI default and the
    # checkpoint path of their README example say 5.
    row = CONFIGS / "cifar10" / "resnet18_augmax_dubin.yaml"
    assert load_config(row)["method"]["steps"] == 10
    assert load_config(row, "quick", ["method.steps=5"])["method"]["steps"] == 5


def test_input_normalisation_keys():
    c = validate({"model": {"input_mean": [0.5, 0.5, 0.5], "input_std": ["1/2", 0.5, 0.5]}})
    assert c["model"]["input_std"] == [0.5, 0.5, 0.5]
    assert validate({})["model"]["input_mean"] is None
    for bad in ({"input_mean": [0.5] * 3}, {"input_mean": [0.5] * 3, "input_std": [0.5] * 2},
                {"input_mean": [0.5] * 2, "input_std": [0.5] * 2}, {"input_mean": [0.5], "input_std": [0.0]}):
        with pytest.raises(ConfigError, match="model.input_"):
            validate({"model": bad})


def test_the_augmix_recipe_configs_carry_cifar_py_settings():
    # google-research/augmix cifar.py: 100 epochs, batch 128, SGD lr 0.1 momentum 0.9 Nesterov wd 5e-4, cosine per
    # step to 1e-6, Normalize([0.5] * 3, [0.5] * 3), JSD with lambda 12, severity 3, all 50,000 training images.
    paths = sorted(AUGMIX_RECIPE.glob("*.yaml"))
    assert {p.stem for p in paths} == {"cifar10_resnet18_augmix", "cifar10_wrn40_2_augmix"}
    for path in paths:
        c = load_config(path)
        assert (c["train"]["epochs"], c["train"]["batch_size"], c["data"]["val_size"]) == (100, 128, 0)
        o = c["optim"]
        assert (o["lr"], o["momentum"], o["weight_decay"], o["nesterov"], o["lr_batch_scale"]) == \
            (0.1, 0.9, 5e-4, True, False)
        assert (c["schedule"]["name"], c["schedule"]["min_lr"]) == ("cosine_per_step", 1e-6)
        assert c["model"]["input_mean"] == [0.5] * 3 and c["model"]["input_std"] == [0.5] * 3
        m = c["method"]
        assert (m["name"], m["jsd"], m["lam"], m["severity"], m["width"], m["depth"]) == \
            ("augmix", True, 12.0, 3, 3, -1)
        assert c["model"]["norm"] == "bn" and c["train"]["precision"] == "fp32"


def test_method_defaults_follow_the_paper():
    augmax = validate({"method": {"name": "augmax"}})["method"]
    assert (augmax["steps"], augmax["step_size"], augmax["tau"], augmax["lam"]) == (10, 0.1, 1, 10.0)
    assert (augmax["attack"], augmax["loss"], augmax["width"], augmax["severity"]) == ("fat", "reference", 3, 3)
    augmix = validate({"method": {"name": "augmix"}})["method"]
    assert (augmix["lam"], augmix["jsd"], augmix["depth"]) == (12.0, True, -1)
    pgd = validate({"method": {"name": "pgdat"}})["method"]
    assert pgd["eps"] == pytest.approx(8 / 255) and pgd["step_size"] == pytest.approx(2 / 255) and pgd["steps"] == 10


@pytest.mark.parametrize("raw, key", [
    ({"trian": {}}, "trian"),
    ({"train": {"epoch": 3}}, "train.epoch"),
    ({"method": {"name": "augmix", "eps": 0.1}}, "method.eps"),
    ({"method": {"name": "normal", "lam": 1}}, "method.lam"),
])
def test_unknown_keys_are_errors_naming_the_key(raw, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        validate(raw)


@pytest.mark.parametrize("raw, key", [
    ({"train": {"epochs": "ten"}}, "train.epochs"),
    ({"train": {"epochs": 2.5}}, "train.epochs"),
    ({"train": {"compile": "yes"}}, "train.compile"),
    ({"data": {"flip": 1}}, "data.flip"),
    ({"optim": {"lr": True}}, "optim.lr"),
    ({"model": {"norm": "groupnorm"}}, "model.norm"),
    ({"method": {"name": "sgd"}}, "method.name"),
    ({"train": {"batch_size": 0}}, "train.batch_size"),
    ({"data": {"extra_train": "folder"}}, "data.extra_train"),
    ({"schedule": {"milestones": [1, "x"]}}, r"schedule.milestones\[1\]"),
    ({"method": {"name": "augmax", "tau": 0}}, "method.tau"),
    ({"train": {"device": "gpu"}}, "train.device"),
])
def test_wrong_types_and_values_are_errors_naming_the_key(raw, key):
    with pytest.raises(ConfigError, match=key):
        validate(raw)


def test_fractions_and_numbers():
    m = validate({"method": {"name": "pgdat", "eps": "4/255", "step_size": 1}})["method"]
    assert m["eps"] == 4 / 255 and isinstance(m["step_size"], float) and m["step_size"] == 1.0


def test_validate_is_idempotent_and_dump_round_trips():
    c = validate({"method": {"name": "augmax", "lam": 1}, "model": {"norm": "dubin"}})
    assert validate(c) == c
    assert validate(yaml.safe_load(dump_config(c))) == c


def test_overrides_are_typed_and_checked():
    assert parse_override("method.lam=1") == (["method", "lam"], 1)
    assert parse_override("data.extra_train=[a, b]") == (["data", "extra_train"], ["a", "b"])
    raw = apply_overrides({"method": {"name": "augmax"}}, ["method.lam=1", "train.epochs=3", "data.root=/x:y"])
    c = validate(raw)
    assert (c["method"]["lam"], c["train"]["epochs"], c["data"]["root"]) == (1.0, 3, "/x:y")
    with pytest.raises(ConfigError, match="train.epochs"):
        validate(apply_overrides({}, ["train.epochs=many"]))
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.epochs")
    # Changing the method through --set brings that method's defaults.
    assert validate(apply_overrides({}, ["method.name=fat"]))["method"]["tau"] == 1


def test_merge_is_deep_but_replaces_kwargs():
    base = {"model": {"name": "resnet18", "kwargs": {"stem_stride": 2}}, "train": {"epochs": 5}}
    out = merge(base, {"model": {"kwargs": {}}, "train": {"batch_size": 8}})
    assert out == {"model": {"name": "resnet18", "kwargs": {}}, "train": {"epochs": 5, "batch_size": 8}}


def test_profiles_overlay_every_row(tmp_path):
    row = CONFIGS / "cifar10" / "resnet18_augmax_dubin.yaml"
    smoke = load_config(row, "smoke")
    assert smoke["train"]["epochs"] == 1 and smoke["model"]["width"] is not None
    assert smoke["data"]["train_size"] <= 512
    assert smoke["method"] == load_config(row)["method"]  # a profile never touches the method
    # The full profile changes nothing but the record of which profile was used (results.json carries it).
    assert {**load_config(row, "full"), "profile": None} == load_config(row)
    assert load_config(row, "full")["profile"] == "full" and smoke["profile"] == "smoke"
    assert load_config(row, str(CONFIGS / "profiles" / "quick.yaml"))["profile"] == "quick.yaml"
    quick = load_config(row, "quick", ["train.epochs=2"])
    assert quick["train"]["epochs"] == 2  # overrides come after the profile
    with pytest.raises(ConfigError, match="no profile named 'fast'"):
        load_config(row, "fast")
    bad = tmp_path / "p.yaml"
    bad.write_text("method: {lam: 1}\n")
    with pytest.raises(ConfigError, match="may not set method"):
        load_config(row, str(bad))


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


@pytest.mark.parametrize("path", ROWS, ids=[f"{p.parent.name}/{p.stem}" for p in ROWS])
def test_every_paper_row_validates_under_every_profile(path):
    for profile in (None, "smoke", "quick", "full"):
        load_config(path, profile)


def _row(rel: str) -> dict:
    return load_config(CONFIGS / rel)


def test_the_rows_cover_the_tables():
    names = {f"{p.parent.name}/{p.stem}" for p in ROWS}
    for ds in ("cifar10", "cifar100"):
        for model in ("resnet18", "wrn40_2", "resnext29"):
            assert {f"{ds}/{model}_normal", f"{ds}/{model}_augmix", f"{ds}/{model}_augmax_dubin"} <= names
        for row in ("augmix_bn", "augmix_ibn", "augmix_dubn", "augmix_dubin", "augmax_dubn", "augmax_dubin"):
            assert f"ablation_norm/{ds}_wrn40_2_{row}" in names
    for ds in ("tinyimagenet", "imagenet"):
        for row in ("normal", "augmix", "augmax_dubin", "deepaug_augmix", "deepaug_augmax_dubin"):
            assert f"{ds}/resnet18_{row}" in names
    strategies = {p.stem.split("resnet18_")[1] for p in ROWS if p.parent.name == "ablation_strategy"}
    assert strategies == {"normal", "augmix", "pgdat", "fat", "advmax", "augmix_pgdat", "advmix", "augmax_dubin"}
    assert {_row(f"ablation_strategy/{p.name}")["method"]["name"]
            for p in (CONFIGS / "ablation_strategy").glob("*.yaml")} == set(METHODS)
    assert {p.stem for p in (CONFIGS / "other_shifts").glob("*.yaml")} == {
        "cifar10_resnext29_normal", "cifar10_resnext29_augmix", "cifar10_resnext29_augmax_dubin"}


def test_rows_carry_the_papers_settings():
    # Lambda: 10 on CIFAR and TIN, 1 for ResNet18 on CIFAR-100, 12 on ImageNet (REFERENCE.md section 2).
    for path in PAPER_ROWS:
        c = load_config(path)
        m, ds = c["method"], c["data"]["dataset"]
        if m["name"] == "augmax":
            assert c["model"]["norm"] in ("dubin", "dubn")
            expected = 12.0 if ds == "imagenet" else 1.0 if (ds, c["model"]["name"]) == ("cifar100", "resnet18") \
                else 10.0
            assert m["lam"] == expected, path
            assert m["steps"] == (5 if ds == "imagenet" else 10), path
        if m["name"] == "augmix":
            assert m["lam"] == 12.0 and m["severity"] == (1 if ds == "imagenet" else 3), path
        if ds in ("cifar10", "cifar100", "tinyimagenet"):
            assert (c["train"]["epochs"], c["train"]["batch_size"], c["optim"]["weight_decay"]) == (200, 256, 5e-4)
            assert c["schedule"]["name"] == "cosine" and c["data"]["val_size"] > 0
            assert not c["optim"]["nesterov"] and c["model"]["input_mean"] is None
        if ds == "tinyimagenet":
            assert c["model"]["kwargs"] == {"stem_stride": 2}
        if ds == "imagenet":
            deep = bool(c["data"]["extra_train"])
            assert c["optim"]["weight_decay"] == 1e-4 and c["optim"]["lr_batch_scale"]
            assert c["train"]["epochs"] == (30 if deep else 90)
            assert c["schedule"]["milestones"] == ([10, 20] if deep else [30, 60])
    assert _row("cifar10/resnext29_augmax_dubin.yaml")["paper"]["ra"] == 92.11
    assert _row("imagenet/resnet18_deepaug_augmax_dubin.yaml")["paper"]["mce"] == 68.47
    assert _row("ablation_norm/cifar10_wrn40_2_augmix_dubin.yaml")["method"]["aug_route"] == "A"
    assert _row("ablation_norm/cifar10_wrn40_2_augmix_ibn.yaml")["method"]["aug_route"] == "M"


def test_resume_may_change_evaluation_settings_but_not_training_ones():
    from augmax_lib.train.checkpoint import config_mismatches

    saved = validate({"eval": {"images_per_set": None}})
    changed_eval = validate({"eval": {"images_per_set": 500, "subset_seed": 3}})
    changed_train = validate({"train": {"batch_size": 64}})
    assert config_mismatches(saved, changed_eval) == []
    assert [m.split(":")[0] for m in config_mismatches(saved, changed_train)] == ["train.batch_size"]


def test_profile_per_method_options_reach_only_that_method(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("train: {epochs: 2}\nper_method: {augmax: {steps: 5}, pgdat: {steps: 3}}\n")
    augmax = load_config(CONFIGS / "cifar10" / "resnet18_augmax_dubin.yaml", profile=str(profile))
    normal = load_config(CONFIGS / "cifar10" / "resnet18_normal.yaml", profile=str(profile))
    assert augmax["method"]["steps"] == 5 and augmax["train"]["epochs"] == 2
    assert normal["method"] == {"name": "normal"} and normal["train"]["epochs"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("per_method: {augmox: {steps: 5}}\n")
    with pytest.raises(ConfigError, match="augmox"):
        load_config(CONFIGS / "cifar10" / "resnet18_normal.yaml", profile=str(bad))


def test_profile_per_model_and_ablation_budget_reach_only_their_configs(tmp_path):
    profile = tmp_path / "p.yaml"
    profile.write_text("model: {width: 16}\ntrain: {epochs: 6}\nper_model: {wrn40_2: {width: 4}}\n"
                       "ablations: {train: {epochs: 3}, eval: {images_per_set: 500}}\n")
    main_resnet = load_config(CONFIGS / "cifar10" / "resnet18_normal.yaml", profile=str(profile))
    main_wrn = load_config(CONFIGS / "cifar10" / "wrn40_2_normal.yaml", profile=str(profile))
    table8_wrn = load_config(CONFIGS / "ablation_norm" / "cifar10_wrn40_2_augmix_bn.yaml", profile=str(profile))
    table10 = load_config(CONFIGS / "ablation_strategy" / "cifar100_resnet18_fat.yaml", profile=str(profile))
    assert (main_resnet["model"]["width"], main_resnet["train"]["epochs"]) == (16, 6)
    assert main_resnet["eval"]["images_per_set"] is None
    assert (main_wrn["model"]["width"], main_wrn["train"]["epochs"]) == (4, 6)
    assert (table8_wrn["model"]["width"], table8_wrn["train"]["epochs"], table8_wrn["eval"]["images_per_set"]) \
        == (4, 3, 500)
    assert (table10["model"]["width"], table10["train"]["epochs"]) == (16, 3)
    # --set still wins over every part of the profile.
    override = load_config(CONFIGS / "ablation_strategy" / "cifar100_resnet18_fat.yaml", profile=str(profile),
                           overrides=["train.epochs=1"])
    assert override["train"]["epochs"] == 1
    for text, needle in (("per_model: {wrn50: {width: 4}}\n", "wrn50"),
                         ("ablations: {method: {steps: 1}}\n", "ablations"),
                         ("ablations: [1]\n", "ablations")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=needle):
            load_config(CONFIGS / "cifar10" / "resnet18_normal.yaml", profile=str(bad))


@pytest.mark.parametrize("path", PAPER_ROWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_full_profile_is_each_paper_row_unchanged(path):
    # `full` must stay the paper: a profile edit that shrinks it (epochs, width, batch, lr, fp32) fails here.
    from augmax_lib.train.checkpoint import config_mismatches

    assert config_mismatches(load_config(path), load_config(path, "full"), allowed=("profile",)) == []


def test_what_full_means_for_the_main_cifar_row():
    from augmax_lib.train.run_models import build_run_model

    c = load_config(CONFIGS / "cifar10" / "resnet18_augmax_dubin.yaml", "full")
    assert (c["train"]["epochs"], c["train"]["batch_size"], c["optim"]["lr"], c["optim"]["weight_decay"]) == \
        (200, 256, 0.1, 5e-4)
    assert (c["train"]["precision"], c["train"]["channels_last"], c["eval"]["images_per_set"]) == ("fp32", False, None)
    assert (c["method"]["steps"], c["method"]["lam"], c["data"]["train_size"]) == (10, 10.0, None)
    stem = next(m for m in build_run_model(c, 10).modules() if isinstance(m, torch.nn.Conv2d))
    assert stem.out_channels == 64  # ResNet18 at its full width
    i = load_config(CONFIGS / "imagenet" / "resnet18_augmax_dubin.yaml", "full")
    assert (i["train"]["epochs"], i["train"]["batch_size"], i["data"]["image_size"]) == (90, 256, 224)


@pytest.mark.parametrize("path", PAPER_ROWS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_a_dry_run_changes_only_amounts_and_only_lowers_them(path):
    from augmax_lib.train.checkpoint import config_mismatches
    from augmax_lib.train.dry_run import DRY_RUN_CAPS, with_dry_run

    full = load_config(path, "full")
    dry = load_config(path, "full", with_dry_run(path, "full"))
    changed = {m.split(":")[0] for m in config_mismatches(full, dry, allowed=())}
    assert changed <= set(DRY_RUN_CAPS), changed
    for key in changed:
        section, name = key.split(".")
        before, after = full[section][name], dry[section][name]
        assert after <= DRY_RUN_CAPS[key] and (before is None or after < before), key
    assert (dry["model"], dry["method"], dry["optim"], dry["schedule"]) == \
        (full["model"], full["method"], full["optim"], full["schedule"])
