"""augmax_lib.augmax: the AugMax attack and the AdvMix/AdvMax baselines on a fixed small DuBN model.

Reference points are recomputed independently: the initial mixing from a generator with the same seed,
the mix formula in numpy, the FAT rule simulated from the plain (no early stop) trajectory, the
magnitude ranges from REFERENCE.md section 1.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from augmax_lib.augmax import AttackOptions, advmax_attack, advmix_attack, augmax_attack, magnitude_ranges
from augmax_lib.augmix import apply_chains, sample_chain_params
from augmax_lib.norm import DuBN, route
from augmax_lib.ops import OPS_ALL

N, C, HW, WIDTH, CLASSES = 24, 3, 12, 3, 5


def make_model(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(C, 8, 3, padding=1), DuBN(8), nn.Tanh(), nn.AdaptiveAvgPool2d(2),
                          nn.Flatten(), nn.Linear(32, CLASSES)).double()
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # larger weights than the default init: predictions that vary with the input
        model[5].weight.mul_(5.0)
        model[1].bn[1].running_mean.fill_(0.2)  # distinct auxiliary statistics, so the route matters
        model[1].bn[1].running_var.fill_(2.0)
    return model


def make_batch(model, seed=1, n=N, hw=HW):
    """Images, three fixed "chains" (inverted, channel-rolled, flipped and darkened) and labels the model
    gets right on the clean images (so the attacks have work to do)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, C, hw, hw, generator=g, dtype=torch.float64)
    chains = torch.stack([1 - x, x.roll(1, 1), x.flip(3) * 0.5])
    y = predict(model, x)
    return x, chains, y


def logits_A(model, x):
    """Logits as the attack sees them: eval mode, route "A"."""
    was = model.training
    model.eval()
    with torch.no_grad(), route(model, "A"):
        out = model(x)
    model.train(was)
    return out


def predict(model, x):
    return logits_A(model, x).argmax(1)


def loss_A(model, x, y):
    return F.cross_entropy(logits_A(model, x), y, reduction="none").numpy()


def np_softmax(p):
    p = np.asarray(p, dtype=np.float64)
    e = np.exp(p - p.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_mix(x, chains, m, w):
    x, chains, m, w = (np.asarray(t, dtype=np.float64) for t in (x, chains, m, w))
    branch = np.einsum("kn,knchw->nchw", w.T, chains)
    return (1 - m)[:, None, None, None] * x + m[:, None, None, None] * branch


def initial_point(seed, n=N, width=WIDTH):
    """The documented initialisation: m ~ U(0, 1) then p ~ U(0, 1)^width from the generator."""
    g = torch.Generator().manual_seed(seed)
    m0 = torch.rand(n, generator=g, dtype=torch.float64)
    p0 = torch.rand(n, width, generator=g, dtype=torch.float64)
    return m0, p0, g


def gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- augmax_attack
def test_steps_zero_returns_the_initial_mix():
    model = make_model()
    x, chains, y = make_batch(model)
    r = augmax_attack(model, x, chains, y, AttackOptions(steps=0, generator=gen(7)))
    m0, p0, _ = initial_point(7)
    np.testing.assert_array_equal(r.m.numpy(), m0.numpy())
    np.testing.assert_allclose(r.w.numpy(), np_softmax(p0.numpy()), rtol=1e-12)
    np.testing.assert_allclose(r.x_adv.numpy(), np_mix(x, chains, m0, np_softmax(p0.numpy())), atol=1e-12)
    assert r.steps_taken.tolist() == [0] * N and r.target is None and r.params is None
    assert not r.x_adv.requires_grad


@pytest.mark.parametrize("early_stop", [True, False])
def test_attack_raises_the_loss_of_every_sample(early_stop):
    model = make_model()
    x, chains, y = make_batch(model)
    m0, p0, _ = initial_point(3)
    before = loss_A(model, torch.from_numpy(np_mix(x, chains, m0, np_softmax(p0.numpy()))), y)
    r = augmax_attack(model, x, chains, y, AttackOptions(early_stop=early_stop, generator=gen(3)))
    after = loss_A(model, r.x_adv, y)
    assert np.all(after >= before - 1e-12), (before, after)
    moved = r.steps_taken.numpy() > 0
    assert moved.sum() >= N // 2 and np.all(after[moved] > before[moved])
    assert r.m.shape == (N,) and r.w.shape == (N, WIDTH) and r.steps_taken.dtype == torch.int64
    assert float(r.m.min()) >= 0.0 and float(r.m.max()) <= 1.0
    np.testing.assert_allclose(r.w.sum(1).numpy(), 1.0, rtol=1e-12)
    assert float(r.w.min()) > 0.0
    # The returned images are the mix at the returned parameters.
    np.testing.assert_allclose(r.x_adv.numpy(), np_mix(x, chains, r.m, r.w), atol=1e-12)
    if not early_stop:
        assert r.steps_taken.tolist() == [10] * N


def _trajectory(model, x, chains, y, seed, steps):
    """Iterates 0..steps of the plain attack (no early stop): (m_t, w_t) for every t."""
    out = []
    for t in range(steps + 1):
        r = augmax_attack(model, x, chains, y, AttackOptions(steps=t, early_stop=False, generator=gen(seed)))
        out.append((r.m.numpy(), r.w.numpy()))
    return out


@pytest.mark.parametrize("tau", [1, 2])
def test_early_stopping_follows_the_fat_rule_and_frozen_samples_stay(tau):
    model = make_model()
    x, chains, y = make_batch(model)
    steps, seed = 6, 11
    traj = _trajectory(model, x, chains, y, seed, steps)
    # Simulate FAT: at step t a sample predicted != y spends one of its tau chances; with none left it
    # stops at iterate t (t updates taken); the loop ends when no sample is left.
    wrong = np.stack([predict(model, torch.from_numpy(np_mix(x, chains, m, w))).numpy() != y.numpy()
                      for m, w in traj[:steps]])
    stop_at = np.full(N, steps)
    for i in range(N):
        spent = np.cumsum(wrong[:, i])
        hit = np.nonzero(spent >= tau)[0]
        if hit.size:
            stop_at[i] = hit[0]
    assert 0 < (stop_at < steps).sum() < N and len(set(stop_at.tolist())) >= 3  # a mixed case
    sizes = []
    model[0].register_forward_hook(lambda mod, inp, out: sizes.append(inp[0].shape[0]))
    r = augmax_attack(model, x, chains, y, AttackOptions(steps=steps, tau=tau, generator=gen(seed)))
    np.testing.assert_array_equal(r.steps_taken.numpy(), stop_at)
    want_m = np.array([traj[stop_at[i]][0][i] for i in range(N)])
    want_w = np.stack([traj[stop_at[i]][1][i] for i in range(N)])
    np.testing.assert_allclose(r.m.numpy(), want_m, atol=1e-12)
    np.testing.assert_allclose(r.w.numpy(), want_w, atol=1e-12)
    # One forward per step, on the samples still active at that step only.
    active = [int((stop_at >= t).sum()) for t in range(steps)]
    assert sizes == [a for a in active if a > 0]
    # More steps move no frozen sample.
    longer = augmax_attack(model, x, chains, y, AttackOptions(steps=steps + 4, tau=tau, generator=gen(seed)))
    frozen = stop_at < steps
    np.testing.assert_array_equal(longer.m.numpy()[frozen], r.m.numpy()[frozen])
    np.testing.assert_array_equal(longer.w.numpy()[frozen], r.w.numpy()[frozen])
    np.testing.assert_array_equal(longer.steps_taken.numpy()[frozen], stop_at[frozen])


class SyncingOps(TorchDispatchMode):
    """Records the aten ops that make a CUDA caller wait for the device (data-dependent sizes, scalar reads)."""

    NAMES = ("nonzero", "_local_scalar_dense", "masked_select", "unique", "is_nonzero", "repeat_interleave")

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if any(key in name for key in self.NAMES):
            self.seen.append(name)
        if func is torch.ops.aten.index.Tensor and any(i is not None and i.dtype == torch.bool for i in args[1]):
            self.seen.append("boolean index")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("early_stop", [True, False])
def test_one_host_sync_per_step_with_early_stop_and_none_without(early_stop):
    model = make_model()
    x, chains, y = make_batch(model)
    calls = []
    model[0].register_forward_hook(lambda mod, inp, out: calls.append(1))
    with SyncingOps() as ops:
        augmax_attack(model, x, chains, y, AttackOptions(steps=6, early_stop=early_stop, generator=gen(11)))
    assert len(calls) == 6
    assert ops.seen == (["aten.nonzero.default"] * 6 if early_stop else [])


def test_misclassified_at_the_start_never_moves():
    model = make_model()
    x, chains, _ = make_batch(model)
    m0, p0, _ = initial_point(5)
    x0 = torch.from_numpy(np_mix(x, chains, m0, np_softmax(p0.numpy())))
    y = (predict(model, x0) + 1) % CLASSES  # labels the initial mix gets wrong: FAT stops every sample at once
    r = augmax_attack(model, x, chains, y, AttackOptions(generator=gen(5)))
    np.testing.assert_array_equal(r.m.numpy(), m0.numpy())
    assert r.steps_taken.tolist() == [0] * N


def test_targeted_lowers_the_loss_of_the_target_class():
    model = make_model()
    x, chains, y = make_batch(model)
    target = (y + 2) % CLASSES
    m0, p0, _ = initial_point(9)
    x0 = torch.from_numpy(np_mix(x, chains, m0, np_softmax(p0.numpy())))
    r = augmax_attack(model, x, chains, y, AttackOptions(targeted=True, early_stop=False, generator=gen(9)), target=target)
    before, after = loss_A(model, x0, target), loss_A(model, r.x_adv, target)
    assert np.all(after <= before + 1e-12) and after.mean() < before.mean()
    assert torch.equal(r.target, target)


def test_targeted_draws_a_random_other_class_after_the_mixing():
    model = make_model()
    x, chains, y = make_batch(model)
    _, _, g = initial_point(4)
    want = (y + torch.randint(1, CLASSES, (N,), generator=g)) % CLASSES
    r = augmax_attack(model, x, chains, y, AttackOptions(steps=2, targeted=True, generator=gen(4)))
    assert torch.equal(r.target, want) and bool((r.target != y).all())


def test_same_seed_same_result():
    model = make_model()
    x, chains, y = make_batch(model)
    a = augmax_attack(model, x, chains, y, AttackOptions(generator=gen(1)))
    b = augmax_attack(model, x, chains, y, AttackOptions(generator=gen(1)))
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.steps_taken, b.steps_taken)


class Probe:
    """Records the model's mode, parameter gradients and DuBN route seen inside each forward call."""

    def __init__(self, model, fail_on_call=None):
        self.seen, self.calls, self.fail_on_call, self.model = [], 0, fail_on_call, model
        model[0].register_forward_pre_hook(self)

    def __call__(self, module, inputs):
        self.calls += 1
        m = self.model
        self.seen.append((m.training, any(p.requires_grad for p in m.parameters()), m[1].route))
        if self.calls == self.fail_on_call:
            raise RuntimeError("model failed")


def _state(model):
    return ([mod.training for mod in model.modules()], [p.requires_grad for p in model.parameters()], model[1].route)


def test_model_mode_gradients_and_route_are_set_during_and_restored_after():
    model = make_model().train()
    model[4].eval()                     # a submodule in its own mode
    model[5].bias.requires_grad_(False)  # a frozen parameter
    x, chains, y = make_batch(model)
    before = _state(model)
    probe = Probe(model)
    with torch.no_grad():  # the attack needs autograd even when the caller turned it off
        augmax_attack(model, x, chains, y, AttackOptions(steps=3, early_stop=False, generator=gen(0)))
    assert probe.seen == [(False, False, "A")] * 3
    assert _state(model) == before
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("attack", ["augmax", "advmix", "advmax"])
def test_state_restored_when_the_model_raises(attack):
    model = make_model().train()
    model[5].bias.requires_grad_(False)
    x, chains, y = make_batch(model)
    before = _state(model)
    Probe(model, fail_on_call=2)
    with pytest.raises(RuntimeError, match="model failed"):
        if attack == "augmax":
            augmax_attack(model, x, chains, y, AttackOptions(early_stop=False, generator=gen(0)))
        else:
            params = sample_chain_params(N, HW, generator=gen(0))
            fn = advmix_attack if attack == "advmix" else advmax_attack
            fn(model, x, params, y, AttackOptions(early_stop=False, generator=gen(0)))
    assert _state(model) == before


def test_uint8_images_are_taken_as_float():
    model = make_model()
    x, chains, y = make_batch(model)
    model.float()
    x8 = (x * 255).round().to(torch.uint8)
    chains = chains.float()
    a = augmax_attack(model, x8, chains, y, AttackOptions(steps=3, generator=gen(2)))
    b = augmax_attack(model, x8.float() / 255, chains, y, AttackOptions(steps=3, generator=gen(2)))
    assert a.x_adv.dtype == torch.float32
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.m, b.m)


def test_bad_arguments_name_the_argument():
    model = make_model()
    x, chains, y = make_batch(model)
    with pytest.raises(ValueError, match="chains"):
        augmax_attack(model, x, chains[:, :3], y)
    with pytest.raises(ValueError, match="y: expected int64"):
        augmax_attack(model, x, chains, y.float())
    with pytest.raises(ValueError, match="steps"):
        augmax_attack(model, x, chains, y, AttackOptions(steps=-1))
    with pytest.raises(ValueError, match="step_size"):
        augmax_attack(model, x, chains, y, AttackOptions(step_size=0))
    with pytest.raises(ValueError, match="tau"):
        augmax_attack(model, x, chains, y, AttackOptions(tau=0))
    with pytest.raises(ValueError, match="target: only used with targeted=True"):
        augmax_attack(model, x, chains, y, target=y)
    with pytest.raises(ValueError, match="target: expected int64"):
        augmax_attack(model, x, chains, y, AttackOptions(targeted=True), target=y[:2])
    with pytest.raises(TypeError, match="generator"):
        augmax_attack(model, x, chains, y, AttackOptions(generator=0))
    with pytest.raises(ValueError, match="x: expected 4 dimensions"):
        augmax_attack(model, x[0], chains, y)


# ---------------------------------------------------------------- AdvMix and AdvMax
HW_ADV = 32  # CIFAR size, so the translate range is the familiar one


def test_magnitude_ranges_follow_the_augmix_levels():
    # REFERENCE.md section 1 at severity 3, 32x32: rotate int(3*30/10) = 9 degrees, shear 3*0.3/10,
    # translate int(3 * (32/3) / 10) = 3 px, enhance factors l*1.8/10 + 0.1 for l in [0.1, 3].
    r = magnitude_ranges(OPS_ALL, 3, 32, 32)
    assert r["rotate"] == (-9.0, 9.0)
    assert r["shear_x"] == pytest.approx((-0.09, 0.09)) and r["shear_y"] == pytest.approx((-0.09, 0.09))
    assert r["translate_x"] == (-3.0, 3.0) and r["translate_y"] == (-3.0, 3.0)
    for name in ("color", "contrast", "brightness", "sharpness"):
        assert r[name] == pytest.approx((0.118, 0.64))
    for name in ("autocontrast", "equalize", "posterize", "solarize"):
        assert r[name] is None
    assert magnitude_ranges(("translate_x", "translate_y"), 10, 30, 60) == {"translate_x": (-20.0, 20.0),
                                                                         "translate_y": (-10.0, 10.0)}
    with pytest.raises(ValueError, match="severity"):
        magnitude_ranges(OPS_ALL, 0, 32, 32)


def _adv_batch(model, seed=2, n=16):
    x, _, y = make_batch(model, seed=seed, n=n, hw=HW_ADV)
    params = sample_chain_params(n, HW_ADV, ops=OPS_ALL, generator=gen(seed + 50))
    return x, params, y


BOUNDS = {"rotate": (-9, 9), "shear_x": (-0.09, 0.09), "shear_y": (-0.09, 0.09), "translate_x": (-3, 3),
          "translate_y": (-3, 3), "color": (0.118, 0.64), "contrast": (0.118, 0.64),
          "brightness": (0.118, 0.64), "sharpness": (0.118, 0.64)}


def _check_magnitudes(params, attacked):
    assert torch.equal(attacked.op_index, params.op_index) and torch.equal(attacked.active, params.active)
    changed = attacked.values != params.values
    for k, name in enumerate(params.ops):
        at = params.op_index == k
        if name in BOUNDS:
            lo, hi = BOUNDS[name]
            v = attacked.values[at & params.active]
            assert float(v.min()) >= lo - 1e-6 and float(v.max()) <= hi + 1e-6, name
        else:  # tone ops keep their drawn parameter
            assert not bool((changed & at).any()), name
    assert not bool((changed & ~params.active).any())  # slots past a chain's depth stay
    attackable = params.active & torch.tensor([n in BOUNDS for n in params.ops])[params.op_index]
    assert bool(changed[attackable].float().mean() > 0.5)


def test_advmix_raises_the_loss_on_average_and_keeps_magnitudes_in_range():
    from augmax_lib.augmix import sample_mixing
    model = make_model()
    x, params, y = _adv_batch(model)
    m, w = sample_mixing(len(y), WIDTH, generator=gen(8))
    x0 = torch.from_numpy(np_mix(x, apply_chains(x, params).double(), m, w))
    r = advmix_attack(model, x, params, y, AttackOptions(early_stop=False, generator=gen(8)))
    before, after = loss_A(model, x0, y), loss_A(model, r.x_adv, y)
    assert after.mean() > before.mean() and (after > before).mean() >= 0.75
    assert torch.equal(r.m, m.double()) and torch.equal(r.w, w.double())  # random mixing, not attacked
    _check_magnitudes(params, r.params)
    np.testing.assert_allclose(r.x_adv.numpy(), np_mix(x, apply_chains(x, r.params).double(), m, w), atol=1e-6)


def test_advmax_raises_the_loss_on_average_and_keeps_everything_in_range():
    model = make_model()
    x, params, y = _adv_batch(model, seed=3)
    m0, p0, _ = initial_point(6, n=len(y))
    x0 = torch.from_numpy(np_mix(x, apply_chains(x, params).double(), m0, np_softmax(p0.numpy())))
    r = advmax_attack(model, x, params, y, AttackOptions(early_stop=False, generator=gen(6)))
    before, after = loss_A(model, x0, y), loss_A(model, r.x_adv, y)
    assert after.mean() > before.mean() and (after > before).mean() >= 0.75
    assert float(r.m.min()) >= 0 and float(r.m.max()) <= 1
    np.testing.assert_allclose(r.w.sum(1).numpy(), 1.0, rtol=1e-12)
    _check_magnitudes(params, r.params)


def test_adv_baselines_with_zero_steps_and_early_stop():
    model = make_model()
    x, params, y = _adv_batch(model, seed=4, n=8)
    r = advmax_attack(model, x, params, y, AttackOptions(steps=0, generator=gen(1)))
    m0, p0, _ = initial_point(1, n=8)
    assert torch.equal(r.params.values, params.values) and torch.equal(r.m, m0)
    np.testing.assert_allclose(r.x_adv.numpy(), np_mix(x, apply_chains(x, params).double(), m0,
                                                       np_softmax(p0.numpy())), atol=1e-6)
    wrong = (predict(model, r.x_adv) + 1) % CLASSES  # the initial AdvMax images are all misclassified
    r = advmax_attack(model, x, params, wrong, AttackOptions(generator=gen(1)))
    assert r.steps_taken.tolist() == [0] * 8 and torch.equal(r.params.values, params.values)
    assert torch.equal(r.m, m0)


def test_adv_baselines_check_their_params():
    model = make_model()
    x, params, y = _adv_batch(model, n=8)
    with pytest.raises(ValueError, match="severity"):
        advmix_attack(model, x, params, y, severity=1)  # drawn at severity 3: magnitudes out of range
    with pytest.raises(ValueError, match="params.op_index"):
        advmax_attack(model, x[:4], params, y[:4])
    with pytest.raises(TypeError, match="params"):
        advmix_attack(model, x, "chains", y)
