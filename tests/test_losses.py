"""augmax_lib.losses against direct numpy computations of the formulas in REFERENCE.md section 2."""
import numpy as np
import pytest
import torch
from torch import nn

from augmax_lib.losses import augmax_loss, augmix_loss, jsd
from augmax_lib.norm import DuBN

EPS_BN = 1e-5


# ---------------------------------------------------------------- numpy references
def np_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def np_jsd(*logits):
    """mean_i KL(p_i || M), M = clip(mean p, 1e-7, 1), each KL summed over classes and averaged over the batch."""
    ps = [np_softmax(z) for z in logits]
    log_m = np.log(np.clip(np.mean(ps, axis=0), 1e-7, 1.0))
    kls = []
    for p in ps:
        with np.errstate(divide="ignore", invalid="ignore"):
            term = np.where(p > 0, p * (np.log(p) - log_m), 0.0)
        kls.append(term.sum() / p.shape[0])
    return float(np.mean(kls))


def np_ce(z, y):
    p = np_softmax(z)
    return float(-np.log(p[np.arange(len(y)), y]).mean())


# ---------------------------------------------------------------- jsd and augmix_loss
@pytest.mark.parametrize("k", [2, 3, 5])
def test_jsd_matches_numpy(k):
    g = torch.Generator().manual_seed(k)
    logits = [torch.randn(7, 10, generator=g) * 3 for _ in range(k)]
    got = jsd(*logits).item()
    want = np_jsd(*[z.double().numpy() for z in logits])
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_jsd_clamped_mixture_matches_numpy():
    # Classes whose mixture probability falls below 1e-7 hit the reference's clamp.
    a = torch.tensor([[0.0, -40.0, -60.0], [10.0, 0.0, -30.0]])
    b = torch.tensor([[-40.0, 0.0, -60.0], [0.0, 10.0, -35.0]])
    want = np_jsd(a.double().numpy(), b.double().numpy())
    assert np.clip(np.mean([np_softmax(a.numpy()), np_softmax(b.numpy())], axis=0), 0, 1).min() < 1e-7
    assert jsd(a, b).item() == pytest.approx(want, rel=1e-5)


def test_jsd_of_equal_predictions_is_zero_and_symmetric():
    z = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    assert jsd(z, z, z).item() == pytest.approx(0.0, abs=1e-6)
    w = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    assert jsd(z, w).item() == pytest.approx(jsd(w, z).item(), rel=1e-6)


def test_jsd_bad_input():
    z = torch.zeros(3, 4)
    with pytest.raises(ValueError, match="at least two"):
        jsd(z)
    with pytest.raises(ValueError, match="equal shapes"):
        jsd(z, torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"logits\[1\]"):
        jsd(z, torch.zeros(12))


def test_augmix_loss_matches_numpy():
    g = torch.Generator().manual_seed(3)
    zc, z1, z2 = (torch.randn(6, 5, generator=g) * 2 for _ in range(3))
    y = torch.randint(0, 5, (6,), generator=g)
    want = np_ce(zc.numpy(), y.numpy()) + 12 * np_jsd(zc.numpy(), z1.numpy(), z2.numpy())
    assert augmix_loss(zc, z1, z2, y).item() == pytest.approx(want, rel=1e-5)
    want3 = np_ce(zc.numpy(), y.numpy()) + 3 * np_jsd(zc.numpy(), z1.numpy(), z2.numpy())
    assert augmix_loss(zc, z1, z2, y, lam=3).item() == pytest.approx(want3, rel=1e-5)
    with pytest.raises(ValueError, match="y: expected int64"):
        augmix_loss(zc, z1, z2, y.float())


# ---------------------------------------------------------------- augmax_loss on a model we can compute by hand
class DuBNLinear(nn.Module):
    """DuBN over the input channels, then one linear layer: small enough to recompute in numpy."""

    def __init__(self, c=3, hw=2, k=4):
        super().__init__()
        self.norm = DuBN(c)
        self.fc = nn.Linear(c * hw * hw, k)

    def forward(self, x):
        return self.fc(self.norm(x).flatten(1))


def make_model(seed=0):
    torch.manual_seed(seed)
    model = DuBNLinear()
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for bn in model.norm.bn:  # distinct statistics and affine parameters per route
            bn.running_mean.copy_(torch.rand(3, generator=g) * 0.5)
            bn.running_var.copy_(torch.rand(3, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(3, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(3, generator=g) * 0.3)
    return model


def np_forward(model, x, route, batch_stats):
    """The model's logits in float64; ``batch_stats`` normalises with the batch mean and biased variance."""
    bn = model.norm.bn[0 if route == "M" else 1]
    x = x.double().numpy()
    if batch_stats:
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    else:
        mean, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
    w, b = bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy()
    h = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + EPS_BN)
    h = h * w[None, :, None, None] + b[None, :, None, None]
    W, c = model.fc.weight.detach().double().numpy(), model.fc.bias.detach().double().numpy()
    return h.reshape(len(x), -1) @ W.T + c


def batch(seed=1, n=5):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(n, 3, 2, 2, generator=g) for _ in range(3)]
    y = torch.randint(0, 4, (n,), generator=g)
    return xs, y


def test_reference_loss_eval_mode_matches_numpy():
    model = make_model().eval()
    (xc, xa, xm), y = batch()
    zc, za, zm = (np_forward(model, x, r, False) for x, r in ((xc, "M"), (xa, "A"), (xm, "M")))
    want = np_ce(zc, y.numpy()) + 10 * np_jsd(zc, za, zm)
    loss, info = augmax_loss(model, xc, xa, xm, y)
    assert loss.item() == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(info["logits_clean"].numpy(), zc, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(info["logits_augmax"].numpy(), za, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(info["logits_augmix"].numpy(), zm, rtol=1e-5, atol=1e-5)
    assert info["ce"].item() == pytest.approx(np_ce(zc, y.numpy()), rel=1e-5)
    assert info["consistency"].item() == pytest.approx(np_jsd(zc, za, zm), rel=1e-5)
    assert model.norm.route == "M"


def test_reference_loss_train_mode_separate_forwards_like_the_reference():
    model = make_model().train()
    (xc, xa, xm), y = batch(seed=2)
    rm0 = [bn.running_mean.clone().double().numpy() for bn in model.norm.bn]
    zc, za, zm = (np_forward(model, x, r, True) for x, r in ((xc, "M"), (xa, "A"), (xm, "M")))
    want = np_ce(zc, y.numpy()) + 7 * np_jsd(zc, za, zm)
    loss, _ = augmax_loss(model, xc, xa, xm, y, lam=7)  # fuse=None: BatchNorm in train mode -> separate passes
    assert loss.item() == pytest.approx(want, rel=1e-5)
    # Running means: route A saw the AugMax batch once; route M saw AugMix, then clean (momentum 0.1).
    mean = lambda x: x.double().numpy().mean((0, 2, 3))  # noqa: E731
    np.testing.assert_allclose(model.norm.bn[1].running_mean.numpy(), 0.9 * rm0[1] + 0.1 * mean(xa), rtol=1e-5)
    want_m = 0.9 * (0.9 * rm0[0] + 0.1 * mean(xm)) + 0.1 * mean(xc)
    np.testing.assert_allclose(model.norm.bn[0].running_mean.numpy(), want_m, rtol=1e-5)
    loss.backward()
    assert model.norm.bn[0].weight.grad is not None and model.norm.bn[1].weight.grad is not None


def test_reference_loss_fused_train_mode_uses_joint_statistics():
    model = make_model().train()
    (xc, xa, xm), y = batch(seed=4)
    n = len(y)
    z_joint = np_forward(model, torch.cat([xm, xc]), "M", True)
    zm, zc = z_joint[:n], z_joint[n:]
    za = np_forward(model, xa, "A", True)
    want = np_ce(zc, y.numpy()) + 10 * np_jsd(zc, za, zm)
    loss, _ = augmax_loss(model, xc, xa, xm, y, fuse=True)
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_paper_loss_matches_numpy():
    model = make_model(seed=5).eval()
    (xc, xa, _), y = batch(seed=6)
    zc, za = np_forward(model, xc, "M", False), np_forward(model, xa, "A", False)
    want = 0.5 * (np_ce(za, y.numpy()) + np_ce(zc, y.numpy())) + 10 * np_jsd(zc, za)
    loss, info = augmax_loss(model, xc, xa, None, y, loss="paper")
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert info["logits_augmix"] is None
    model.train()
    zc, za = np_forward(model, xc, "M", True), np_forward(model, xa, "A", True)
    want = 0.5 * (np_ce(za, y.numpy()) + np_ce(zc, y.numpy())) + 2 * np_jsd(zc, za)
    loss, _ = augmax_loss(model, xc, xa, None, y, loss="paper", lam=2)
    assert loss.item() == pytest.approx(want, rel=1e-5)


def test_augmax_loss_uint8_input_and_model_without_dual_layers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4)).double()
    (xc, xa, xm), y = batch(seed=8)
    u = [(x * 255).round().to(torch.uint8) for x in (xc, xa, xm)]
    loss, _ = augmax_loss(model, *[v.double() / 255 for v in u], y)
    W, c = model[1].weight.detach().numpy(), model[1].bias.detach().numpy()
    zc, za, zm = ((v.double().numpy() / 255).reshape(len(y), -1) @ W.T + c for v in u)
    assert loss.item() == pytest.approx(np_ce(zc, y.numpy()) + 10 * np_jsd(zc, za, zm), rel=1e-6)
    model = model.float()
    loss_u8, _ = augmax_loss(model, *u, y)
    assert loss_u8.item() == pytest.approx(loss.item(), rel=1e-4)


def test_augmax_loss_bad_input_and_route_restored_on_error():
    model = make_model()
    (xc, xa, xm), y = batch()
    with pytest.raises(ValueError, match="loss: expected one of"):
        augmax_loss(model, xc, xa, xm, y, loss="pgd")
    with pytest.raises(ValueError, match="x_augmix"):
        augmax_loss(model, xc, xa, None, y)
    with pytest.raises(ValueError, match="x_augmax: expected the shape"):
        augmax_loss(model, xc, xa[:2], xm, y)
    with pytest.raises(ValueError, match="y: expected int64"):
        augmax_loss(model, xc, xa, xm, y[:2])

    class Boom(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = DuBN(3)

        def forward(self, x):
            self.norm(x)
            if self.norm.route == "A":
                raise RuntimeError("boom")
            return x.flatten(1)

    boom = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        augmax_loss(boom, xc, xa, xm, y)
    assert boom.norm.route == "M"
