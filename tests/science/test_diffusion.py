"""Preconditioning coefficients, the denoiser wrapper and the losses (EDM Table 1)."""

import math

import numpy as np
import pytest
import torch

from diffmem.science.diffusion import (
    EDMLoss,
    Precond,
    VELoss,
    VPLoss,
    make_loss,
    make_precond,
    precond_coefficients,
    vp_sigma,
    vp_sigma_inv,
)
from diffmem.science.sampler import OptimalDenoiser

torch.set_num_threads(1)

SIGMAS = np.array([0.002, 0.05, 0.5, 1.0, 3.7, 80.0])


def reference(kind, sigma, **p):
    """Table 1 of the EDM paper, written independently in numpy float64."""
    s = np.asarray(sigma, dtype=np.float64)
    if kind == "vp":
        bd, bm, M = p.get("beta_d", 19.9), p.get("beta_min", 0.1), p.get("M", 1000)
        t = (np.sqrt(bm**2 + 2 * bd * np.log(1 + s**2)) - bm) / bd
        return dict(c_skip=np.ones_like(s), c_out=-s, c_in=1 / np.sqrt(s**2 + 1), c_noise=(M - 1) * t)
    if kind == "ve":
        return dict(c_skip=np.ones_like(s), c_out=s, c_in=np.ones_like(s), c_noise=np.log(0.5 * s))
    sd = p.get("sigma_data", 0.5)
    return dict(
        c_skip=sd**2 / (s**2 + sd**2),
        c_out=s * sd / np.sqrt(s**2 + sd**2),
        c_in=1 / np.sqrt(s**2 + sd**2),
        c_noise=np.log(s) / 4,
    )


@pytest.mark.parametrize(
    "kind,params",
    [
        ("vp", {}),
        ("vp", {"beta_d": 10.0, "beta_min": 0.3, "M": 500}),
        ("ve", {}),
        ("edm", {}),
        ("edm", {"sigma_data": 0.25}),
    ],
)
def test_coefficients_match_table1(kind, params):
    got = precond_coefficients(kind, torch.tensor(SIGMAS, dtype=torch.float64), **params)
    want = reference(kind, SIGMAS, **params)
    for key in ("c_skip", "c_out", "c_in", "c_noise"):
        np.testing.assert_allclose(got[key].numpy(), want[key], rtol=1e-10, atol=1e-12, err_msg=key)


def test_vp_schedule_inverse_and_known_values():
    t = torch.tensor([1e-5, 0.01, 0.3, 1.0], dtype=torch.float64)
    s = vp_sigma(t, 19.9, 0.1)
    np.testing.assert_allclose(vp_sigma_inv(s, 19.9, 0.1).numpy(), t.numpy(), rtol=1e-8)
    # sigma(1) = sqrt(exp(19.9 / 2 + 0.1) - 1) ~ 152
    assert float(s[-1]) == pytest.approx(math.sqrt(math.exp(10.05) - 1), rel=1e-12)


class StubF(torch.nn.Module):
    """A non-linear stand-in for F that uses its inputs and the class labels."""

    label_dim = 3

    def forward(self, x, noise_labels, class_labels=None):
        assert noise_labels.shape == (x.shape[0],)
        out = torch.sin(3 * x) + noise_labels.reshape(-1, 1, 1, 1) * 0.1
        if class_labels is not None:
            out = out + class_labels.argmax(1).reshape(-1, 1, 1, 1).to(x.dtype)
        return out


@pytest.mark.parametrize("kind", ["vp", "ve", "edm"])
def test_precond_wraps_net(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 3, 3, generator=g) * 2
    sigma = torch.tensor([0.01, 0.5, 2.0, 40.0])
    labels = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 2]), 3).float()
    D = Precond(StubF(), kind)
    got = D(x, sigma, labels).numpy().astype(np.float64)
    c = reference(kind, sigma.numpy().astype(np.float64))
    xs = x.numpy().astype(np.float64)
    r = lambda v: v.reshape(-1, 1, 1, 1)  # noqa: E731
    F = np.sin(3 * r(c["c_in"]) * xs) + r(c["c_noise"]) * 0.1 + r(np.array([0, 2, 1, 2.0]))
    want = r(c["c_skip"]) * xs + r(c["c_out"]) * F
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    assert D(x, sigma, labels).dtype == torch.float32


def test_precond_scalar_sigma_broadcasts():
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    D = Precond(StubF(), "edm")
    a = D(x, 0.7)
    b = D(x, torch.full((5,), 0.7, dtype=torch.float64))
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="sigma"):
        D(x, torch.ones(3))


class PerfectF(torch.nn.Module):
    """Makes D(y + n; sigma) = y exactly: recovers sigma from c_noise and x from c_in x."""

    def __init__(self, kind, y):
        super().__init__()
        self.kind, self.y = kind, y.double()

    def forward(self, x_in, c_noise, class_labels=None):
        c_noise = c_noise.double()
        if self.kind == "vp":
            sigma = vp_sigma(c_noise / 999, 19.9, 0.1)
        elif self.kind == "ve":
            sigma = 2 * c_noise.exp()
        else:
            sigma = (4 * c_noise).exp()
        c = precond_coefficients(self.kind, sigma)
        r = lambda v: v.reshape(-1, 1, 1, 1)  # noqa: E731
        x = x_in.double() / r(c["c_in"])
        return (self.y - r(c["c_skip"]) * x) / r(c["c_out"])


@pytest.mark.parametrize("kind", ["vp", "ve", "edm"])
def test_loss_of_perfect_denoiser_is_zero(kind):
    g = torch.Generator().manual_seed(2)
    y = torch.rand(64, 1, 4, 4, generator=g) * 2 - 1
    # (a) a single training image: the optimal denoiser returns it exactly, whatever x and sigma.
    one = y[:1]
    D_star = OptimalDenoiser(((one + 1) * 127.5).round().to(torch.uint8).numpy())
    images = torch.as_tensor(D_star.y.reshape(1, 1, 4, 4)).repeat(64, 1, 1, 1)
    loss_fn = make_loss({"precond": kind})
    loss = loss_fn(D_star, images, generator=torch.Generator().manual_seed(3))
    assert loss.shape == (64,)
    assert float(loss.max()) < 1e-9
    # (b) the preconditioned network of a perfect F (exercises the Precond wiring at all sigma).
    D = Precond(PerfectF(kind, y), kind)
    loss = loss_fn(D, y, generator=torch.Generator().manual_seed(4))
    assert float(loss.max()) < 1e-6
    # (c) an imperfect denoiser has a clearly positive loss.
    loss = loss_fn(lambda x, sigma, labels=None: x * 0, y, generator=torch.Generator().manual_seed(4))
    assert float(loss.mean()) > 1e-3


@pytest.mark.parametrize("cls", [VPLoss, VELoss, EDMLoss])
def test_identity_denoiser_loss_is_weighted_noise(cls):
    """D(x) = x gives weight * sigma^2 * sum(eps^2) = C*H*W per sample for VP/VE, times (sigma^2 + sd^2)/sd^2
    for EDM (the loss sums over pixels, as the paper's code does)."""
    loss_fn = cls()
    seen = []

    def D(x, sigma, labels=None):
        seen.append(sigma.clone())
        return x

    y = torch.zeros(4000, 1, 2, 2)
    loss = loss_fn(D, y, generator=torch.Generator().manual_seed(5))
    sigma = seen[0]
    if cls is EDMLoss:
        ratio = loss / 4 / ((sigma**2 + 0.25) / 0.25)
        ln = sigma.log()
        assert float(ln.mean()) == pytest.approx(-1.2, abs=0.1)
        assert float(ln.std()) == pytest.approx(1.2, abs=0.1)
    else:
        ratio = loss / 4  # C*H*W = 1*2*2
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.05)
    if cls is VELoss:
        assert float(sigma.min()) >= 0.02 and float(sigma.max()) <= 100
        assert float(sigma.log().mean()) == pytest.approx((math.log(0.02) + math.log(100)) / 2, abs=0.2)
    if cls is VPLoss:
        assert float(sigma.min()) >= float(vp_sigma(1e-5, 19.9, 0.1)) * 0.999
        assert float(sigma.max()) <= float(vp_sigma(1.0, 19.9, 0.1)) * 1.001


def test_loss_is_seeded_by_generator():
    y = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(6)) * 2 - 1
    D = Precond(StubF(), "edm")
    loss_fn = make_loss({"precond": "edm"})
    a = loss_fn(D, y, generator=torch.Generator().manual_seed(7))
    b = loss_fn(D, y, generator=torch.Generator().manual_seed(7))
    c = loss_fn(D, y, generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_make_from_config_and_errors():
    D = make_precond(StubF(), {"precond": "ve", "sigma_min": 0.01})
    assert D.kind == "ve" and D.params["sigma_min"] == 0.01 and D.label_dim == 3
    loss = make_loss({"precond": "vp", "epsilon_t": 1e-3})
    assert isinstance(loss, VPLoss) and loss.params["epsilon_t"] == 1e-3
    assert make_loss({"precond": "edm", "P_mean": -1.0}).params["P_mean"] == -1.0
    for bad in ({"precond": "ddpm"}, {}):
        with pytest.raises(ValueError, match="diffusion.precond"):
            make_precond(StubF(), bad)
        with pytest.raises(ValueError, match="diffusion.precond"):
            make_loss(bad)
    with pytest.raises(ValueError, match="diffusion.sigma_data"):
        make_loss({"precond": "vp", "sigma_data": 0.5})
