"""Training steps of every method: the loss goes down on a learnable task, routes are the documented ones,
and the pixel attack of PGDAT/FAT matches a hand-computed step on a linear model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from augmax_lib.data import make_synthetic
from augmax_lib.models import build_model
from augmax_lib.norm import dual_layers
from augmax_lib.pgd_attack import frozen_eval, pgd_linf
from augmax_lib.train.config import METHODS, validate
from augmax_lib.train.methods import StepContext, get_step, training_routes

pytestmark = pytest.mark.filterwarnings("ignore:loading the SYNTHETIC data set")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: faster than two threads on a shared 2-core machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batch():
    data = make_synthetic(32, seed=1, image_size=16)  # ten shape classes: learnable
    return data.images, data.labels


def _options(method: str, **extra) -> dict:
    raw = {"name": method, **extra}
    if method not in ("normal", "augmix"):
        raw.setdefault("steps", 2)  # attack steps: enough to exercise the attack, cheap on a CPU
    return {k: v for k, v in validate({"method": raw})["method"].items() if k != "name"}


@pytest.mark.parametrize("method", METHODS)
def test_loss_goes_down(method, batch):
    x, y = batch
    options = _options(method)
    torch.manual_seed(0)
    net = build_model("resnet18", 10, norm="dubin", width=4)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    step = get_step(method)

    def probe():  # the method's loss with the same draws before and after training
        return step(StepContext(net, net, options, torch.Generator().manual_seed(99)), x, y).loss.item()

    before = probe()
    ctx = StepContext(net, net, options, torch.Generator().manual_seed(0))
    for _ in range(8):
        result = step(ctx, x, y)
        assert result.loss.dim() == 0 and result.logits.shape == (32, 10) and not result.logits.requires_grad
        optimizer.zero_grad()
        result.loss.backward()
        optimizer.step()
    after = probe()
    assert np.isfinite(before) and after < 0.8 * before, (method, before, after)


def _aux_stats(net):
    return torch.cat([layer.bn[1].running_mean.clone() for _, layer in dual_layers(net)])


@pytest.mark.parametrize("method, extra", [("normal", {}), ("augmix", {}), ("augmix", {"aug_route": "A"}),
                                           ("augmix", {"aug_route": "A", "jsd": False}), ("augmax", {}),
                                           ("pgdat", {}), ("advmix", {}), ("augmix+pgdat", {})])
def test_auxiliary_norms_train_only_where_documented(method, extra, batch):
    # Route "A" updates the auxiliary BatchNorm's running statistics; route "M" leaves them alone.
    x, y = batch
    options = _options(method, **extra)
    torch.manual_seed(0)
    net = build_model("resnet18", 10, norm="dubn", width=4)
    before = _aux_stats(net)
    get_step(method)(StepContext(net, net, options, torch.Generator().manual_seed(0)), x[:8], y[:8])
    changed = not torch.equal(before, _aux_stats(net))
    assert changed == ("A" in training_routes({"name": method, **options}))
    assert changed == (method in ("augmax", "advmix") or extra.get("aug_route") == "A")


def test_steps_are_reproducible_with_a_seeded_generator(batch):
    x, y = batch
    options = _options("augmax")
    losses = []
    for _ in range(2):
        torch.manual_seed(0)
        net = build_model("resnet18", 10, norm="dubin", width=4)
        losses.append(get_step("augmax")(StepContext(net, net, options, torch.Generator().manual_seed(5)),
                                         x, y).loss)
    assert torch.equal(losses[0], losses[1])


class _Linear(nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(weight)
            self.fc.bias.copy_(bias)

    def forward(self, x):
        return self.fc(x.flatten(1))


def _linear_case(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(5, 3 * 4 * 4, generator=g, dtype=torch.float64).float()
    b = torch.randn(5, generator=g).float()
    x = 0.2 + 0.6 * torch.rand(6, 3, 4, 4, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    return _Linear(w, b), w.numpy().astype(np.float64), b.numpy().astype(np.float64), x, y


def _numpy_pgd_step(x, y, w, b, eps, step, origin):
    """One signed step of L-inf PGD on a linear model, gradient of the cross-entropy written out by hand."""
    flat = x.reshape(len(x), -1)
    logits = flat @ w.T + b
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    grad = (p @ w).reshape(x.shape)
    moved = x + step * np.sign(grad)
    return np.clip(np.clip(moved, origin - eps, origin + eps), 0.0, 1.0), logits.argmax(1)


def test_pgd_matches_hand_computed_steps():
    model, w, b, x, y = _linear_case()
    eps, step = 0.05, 0.02
    expected = x.double().numpy()
    origin = expected.copy()
    for _ in range(3):
        expected, _ = _numpy_pgd_step(expected, y.numpy(), w, b, eps, step, origin)
    got = pgd_linf(model, x, y, eps=eps, step_size=step, steps=3, random_start=False)
    np.testing.assert_allclose(got.double().numpy(), expected, atol=1e-6)


def test_pgd_stays_in_the_ball_and_the_image_range():
    model, _, _, x, y = _linear_case(1)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0.0, 1.0
    out = pgd_linf(model, x, y, eps=8 / 255, step_size=2 / 255, steps=7, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and not out.requires_grad
    assert float((out - x).abs().max()) <= 8 / 255 + 1e-6
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    uint8 = pgd_linf(model, (x * 255).round().to(torch.uint8), y, steps=1, random_start=False)
    assert uint8.dtype == torch.float32


def test_fat_freezes_an_image_after_tau_misclassifications():
    model, w, b, x, y = _linear_case(2)
    flat = x.reshape(len(x), -1).double().numpy()
    predicted = (flat @ w.T + b).argmax(1)
    y = torch.as_tensor(predicted, dtype=torch.int64)
    wrong = (predicted[0] + 1) % 5
    y[0] = int(wrong)  # image 0 is misclassified from the start, the others are right
    eps, step = 0.1, 0.01
    tau1 = pgd_linf(model, x, y, eps=eps, step_size=step, steps=4, random_start=False, tau=1)
    assert torch.equal(tau1[0], x[0])  # stopped at its first (misclassified) step: never moved
    tau2 = pgd_linf(model, x, y, eps=eps, step_size=step, steps=4, random_start=False, tau=2)
    one_step, _ = _numpy_pgd_step(x[:1].double().numpy(), y[:1].numpy(), w, b, eps, step, x[:1].double().numpy())
    np.testing.assert_allclose(tau2[:1].double().numpy(), one_step, atol=1e-6)  # moved once, then frozen
    plain = pgd_linf(model, x, y, eps=eps, step_size=step, steps=4, random_start=False)
    assert not torch.equal(plain[0], tau2[0])


def test_frozen_eval_restores_the_model():
    net = build_model("resnet18", 10, norm="dubn", width=4).train()
    next(net.parameters()).requires_grad_(False)
    flags = [p.requires_grad for p in net.parameters()]
    with pytest.raises(RuntimeError):
        with frozen_eval(net, "A"):
            assert not net.training and not any(p.requires_grad for p in net.parameters())
            assert all(layer.route == "A" for _, layer in dual_layers(net))
            raise RuntimeError("inside")
    assert net.training and [p.requires_grad for p in net.parameters()] == flags
    assert all(layer.route == "M" for _, layer in dual_layers(net))


def test_pgd_checks_its_arguments():
    model, _, _, x, y = _linear_case()
    with pytest.raises(ValueError, match="eps"):
        pgd_linf(model, x, y, eps=-1)
    with pytest.raises(ValueError, match="tau"):
        pgd_linf(model, x, y, tau=0)
    with pytest.raises(ValueError, match="y"):
        pgd_linf(model, x, y[:2])
    with pytest.raises(ValueError, match="method"):
        get_step("mixup")
