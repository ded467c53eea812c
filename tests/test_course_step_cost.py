"""augmax_lib.course.step_cost: phase times of a training step, measured through the engine's phase hooks."""
import time

import pytest
import torch

from augmax_lib.course.step_cost import PHASES, PhaseTimer, time_training_step
from augmax_lib.models import build_model
from augmax_lib.train.config import validate


def _batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.randint(0, 10, (n,),
                                                                                                  generator=g)


def test_phase_timer_sums_the_time_of_each_named_block():
    timer = PhaseTimer("cpu")
    for _ in range(2):
        with timer("sleep"):
            time.sleep(0.02)
    with timer("other"):
        pass
    assert 0.04 <= timer.times["sleep"] < 0.5
    assert timer.times["other"] < 0.02
    off = PhaseTimer("cpu", enabled=False)
    with off("sleep"):
        time.sleep(0.001)
    assert off.times == {}


def test_normal_step_has_only_forward_and_backward_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = _batch()
    out = time_training_step(validate({"method": {"name": "normal"}}), model, x, y, repeats=2, warmup=1)
    assert out["augment"] == 0.0 and out["attack"] == 0.0
    assert out["forward"] > 0 and out["backward"] > 0
    assert out["total"] >= out["forward"] + out["backward"]
    assert out["images"] == 8 and out["attack_steps"] is None
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_augmax_step_times_every_phase_and_counts_attack_steps():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, norm="dubin", width=4)
    x, y = _batch()
    config = validate({"method": {"name": "augmax", "steps": 2, "attack": "pgd"}})
    out = time_training_step(config, model, x, y, repeats=1, warmup=0)
    assert all(out[p] > 0 for p in PHASES)
    assert out["total"] >= sum(out[p] for p in PHASES) * 0.99
    assert out["attack_steps"] == pytest.approx(2.0)  # plain PGD inner loop: every image takes every step


def test_bad_arguments_name_what_was_expected():
    model = build_model("resnet18", 10, width=4)
    x, y = _batch()
    with pytest.raises(ValueError, match="labels"):
        time_training_step(validate({}), model, x, y[:3])
    with pytest.raises(ValueError, match="repeats"):
        time_training_step(validate({}), model, x, y, repeats=0)
    with pytest.raises(ValueError, match="config"):
        time_training_step({"name": "x"}, model, x, y)
