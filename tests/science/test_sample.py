"""EDM Heun sampler, seeded generation, the optimal denoiser and image grids."""

import numpy as np
import pytest
import torch
from PIL import Image

from diffmem.science.memorization import score
from diffmem.science.sampler import (
    OptimalDenoiser,
    edm_sampler,
    edm_time_steps,
    generate,
    nn_grid,
    sample_inputs,
    save_grid,
    to_float,
    to_uint8,
)

torch.set_num_threads(1)


def random_u8(n, shape=(1, 8, 8), seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def test_uint8_round_trip():
    u8 = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    x = to_float(u8)
    assert float(x.min()) == -1 and float(x.max()) == 1
    np.testing.assert_array_equal(to_uint8(x), u8)
    np.testing.assert_array_equal(to_uint8(torch.tensor([-3.0, 0.0, 5.0])), [0, 128, 255])


def test_time_steps_eq5():
    t = edm_time_steps(18, 0.002, 80, 7).numpy()
    assert len(t) == 19 and t[-1] == 0
    assert t[0] == pytest.approx(80) and t[17] == pytest.approx(0.002)
    i = np.arange(18)
    want = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(t[:18], want, rtol=1e-12)
    assert np.all(np.diff(t) < 0)


def test_heun_counts_and_exact_on_linear_denoiser():
    """35 denoiser calls for 18 steps (no correction at the last one); D(x) = 0.3 x checked
    against a direct re-implementation of Algorithm 1."""
    calls = []

    def D(x, sigma, labels=None):
        calls.append(float(sigma))
        return 0.3 * x

    latents = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    out = edm_sampler(D, latents)
    assert len(calls) == 35 and calls[-1] == pytest.approx(0.002)
    # Scalar re-implementation of Algorithm 1 (no stochasticity) for D(x) = 0.3 x.
    t = edm_time_steps(18).tolist()
    x = latents.double() * t[0]
    for i in range(18):
        d = (x - 0.3 * x) / t[i]
        xn = x + (t[i + 1] - t[i]) * d
        if t[i + 1] != 0:
            d2 = (xn - 0.3 * xn) / t[i + 1]
            xn = x + (t[i + 1] - t[i]) * (d + d2) / 2
        x = xn
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)
    assert out.dtype == torch.float64


def test_sampler_respects_denoiser_sigma_range():
    """Like EDM, the sampler narrows [sigma_min, sigma_max] to what the denoiser supports (VE: >= 0.02)."""
    from diffmem.science.diffusion import Precond

    calls = []

    class Net(torch.nn.Module):
        def __init__(self, sigma_of):
            super().__init__()
            self.sigma_of = sigma_of

        def forward(self, x, c_noise, labels=None):
            calls.append(float(self.sigma_of(c_noise[0].double())))
            return x * 0

    edm_sampler(Precond(Net(lambda c: 2 * c.exp()), "ve"), torch.zeros(1, 1, 2, 2), num_steps=4, sigma_max=500)
    assert calls[0] == pytest.approx(100, rel=1e-5) and calls[-1] == pytest.approx(0.02, rel=1e-5)
    calls.clear()
    edm_sampler(Precond(Net(lambda c: (4 * c).exp()), "edm"), torch.zeros(1, 1, 2, 2), num_steps=4)
    assert calls[0] == pytest.approx(80, rel=1e-5) and calls[-1] == pytest.approx(0.002, rel=1e-5)


def test_generate_is_batch_size_independent():
    train = random_u8(10)
    D = OptimalDenoiser(train, chunk=4)
    kw = dict(n=20, shape=(1, 8, 8), seed=11, num_steps=6)
    a, la = generate(D, batch_size=7, label_dim=4, **kw)
    b, lb = generate(D, batch_size=50, label_dim=4, **kw)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(la, lb)
    assert a.dtype == np.uint8 and a.shape == (20, 1, 8, 8)
    assert la.dtype == np.int64 and set(la.tolist()) <= {0, 1, 2, 3} and len(set(la.tolist())) > 1
    c, lc = generate(D, batch_size=20, **{**kw, "seed": 12})
    assert not np.array_equal(a, c)
    assert np.all(lc == -1)
    # Sample i depends on (seed, i) only: a later start gives the same sample.
    lat_all, _ = sample_inputs(20, (1, 8, 8), 11)
    lat_tail, _ = sample_inputs(5, (1, 8, 8), 11, start=15)
    torch.testing.assert_close(lat_all[15:], lat_tail, rtol=0, atol=0)


def test_generate_passes_one_hot_labels():
    got = []

    def D(x, sigma, labels=None):
        got.append(labels)
        return x * 0

    _, cond = generate(D, 6, (1, 2, 2), seed=0, batch_size=6, label_dim=5, num_steps=2)
    lab = got[0]
    assert lab.shape == (6, 5) and lab.dtype == torch.float32
    np.testing.assert_array_equal(lab.argmax(1).numpy(), cond)
    assert torch.all(lab.sum(1) == 1)


def direct_optimal(train_u8, x, sigma):
    """Unchunked D*(x; sigma) in float64: softmax over the whole training set at once."""
    y = torch.as_tensor(train_u8.reshape(len(train_u8), -1)).double() / 127.5 - 1
    xf = x.reshape(len(x), -1).double()
    d2 = ((xf[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    sigma = torch.as_tensor(sigma, dtype=torch.float64).reshape(-1, 1)
    w = torch.softmax(-d2 / (2 * sigma**2), dim=1)
    return (w @ y).reshape(x.shape)


@pytest.mark.parametrize("chunk", [1, 7, 30, 4096])
def test_optimal_denoiser_chunked_equals_direct(chunk):
    train = random_u8(30, seed=1)
    g = torch.Generator().manual_seed(2)
    y0 = to_float(train[:6]).double()
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 3.0, 50.0], dtype=torch.float64)
    x = y0 + torch.randn(y0.shape, generator=g, dtype=torch.float64) * sigma.reshape(-1, 1, 1, 1)
    want = direct_optimal(train, x, sigma)
    got64 = OptimalDenoiser(train, chunk=chunk, dtype=torch.float64)(x, sigma)
    torch.testing.assert_close(got64, want, rtol=1e-9, atol=1e-9)
    got32 = OptimalDenoiser(train, chunk=chunk)(x.float(), sigma.float())
    torch.testing.assert_close(got32.double(), want, rtol=1e-4, atol=1e-4)
    # Scalar sigma broadcasts.
    torch.testing.assert_close(
        OptimalDenoiser(train, chunk=chunk, dtype=torch.float64)(x, 0.3),
        direct_optimal(train, x, 0.3),
        rtol=1e-9,
        atol=1e-9,
    )


def test_optimal_denoiser_ignores_class_labels():
    train = random_u8(12, seed=3)
    x = torch.zeros(3, 1, 8, 8, dtype=torch.float64)
    got = OptimalDenoiser(train, dtype=torch.float64)(x, 1e5, torch.eye(3))  # huge sigma: the plain mean
    torch.testing.assert_close(got[0], to_float(train).double().mean(0))


def test_heun_with_optimal_denoiser_memorizes():
    """Sampling with D* replicates training images: memorization ratio >= 0.99."""
    train = random_u8(32, seed=4)
    D = OptimalDenoiser(train, chunk=4096)
    samples, _ = generate(D, 200, (1, 8, 8), seed=5, batch_size=100)
    res = score(samples, train)
    assert res["ratio"] >= 0.99
    assert np.median(res["d1"]) <= 2.0  # essentially pixel-exact copies
    assert len(set(res["nn1"].tolist())) > 16  # and not a few images over and over


def test_save_grid_and_nn_grid(tmp_path):
    gray = random_u8(10, (1, 8, 8), seed=6)
    save_grid(gray, tmp_path / "g.png", nrow=4)
    im = Image.open(tmp_path / "g.png")
    assert im.mode == "L"
    # 4 columns of 8 px + 3 gaps = 35 px, upscaled by ceil(256 / 35) = 8; 3 rows: 26 px.
    assert im.size == (35 * 8, 26 * 8)
    arr = np.asarray(im)[::8, ::8]
    np.testing.assert_array_equal(arr[:8, :8], gray[0, 0])
    np.testing.assert_array_equal(arr[9:17, 9:17], gray[5, 0])
    assert np.all(arr[8, :] == 255)
    rgb = random_u8(4, (3, 150, 150), seed=7)
    save_grid(rgb, tmp_path / "c.png")
    im = Image.open(tmp_path / "c.png")
    assert im.mode == "RGB" and im.size == (301, 301)
    np.testing.assert_array_equal(np.asarray(im)[151:, 151:], rgb[3].transpose(1, 2, 0))
    assert not list(tmp_path.glob(".tmp-*"))

    train = random_u8(5, (1, 8, 8), seed=8)
    nn = np.array([[4, 0], [2, 1], [0, 3]])
    nn_grid(gray[:3], train, nn, tmp_path / "nn.png", n=3, min_width=1)
    arr = np.asarray(Image.open(tmp_path / "nn.png"))
    assert arr.shape == (17, 26)
    for k, j in enumerate([4, 2, 0]):
        np.testing.assert_array_equal(arr[:8, 9 * k : 9 * k + 8], gray[k, 0])
        np.testing.assert_array_equal(arr[9:, 9 * k : 9 * k + 8], train[j, 0])
    with pytest.raises(ValueError):
        save_grid(np.zeros((2, 2, 4, 4), dtype=np.uint8), tmp_path / "bad.png")


# ----------------------------------------------------------------------------------------------
# The sampler's output bits are pinned: generate() must equal this literal transcription of the
# straightforward sampler (float64 state, the float32 denoiser called on it, one-hot labels, per-sample
# generators) bit for bit, whatever it does to go faster.


def _reference_generate(
    denoise, n, shape, seed, batch_size, label_dim=0, num_steps=18, sigma_min=0.002, sigma_max=80.0, rho=7.0
):
    import math

    from diffmem.science.sampler import sample_generator

    sigma_min = max(sigma_min, float(getattr(denoise, "sigma_min", 0.0)))
    sigma_max = min(sigma_max, float(getattr(denoise, "sigma_max", math.inf)))
    t = edm_time_steps(num_steps, sigma_min, sigma_max, rho)
    images = np.empty((n, *shape), dtype=np.uint8)
    states = np.empty((n, *shape), dtype=np.float64)
    cond = np.full((n,), -1, dtype=np.int64)
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        latents = torch.empty((m, *shape), dtype=torch.float32)
        labels = torch.full((m,), -1, dtype=torch.int64)
        for j in range(m):
            g = sample_generator(seed, start + j)
            latents[j] = torch.randn(tuple(shape), generator=g, dtype=torch.float32)
            if label_dim > 0:
                labels[j] = torch.randint(int(label_dim), (1,), generator=g)[0]
        onehot = None if label_dim == 0 else torch.nn.functional.one_hot(labels, label_dim).to(torch.float32)
        with torch.no_grad():
            x_next = latents.to(torch.float64) * t[0]
            for i in range(num_steps):
                x_cur = x_next
                d_cur = (x_cur - denoise(x_cur, t[i], onehot).to(torch.float64)) / t[i]
                x_next = x_cur + (t[i + 1] - t[i]) * d_cur
                if i < num_steps - 1:
                    d_prime = (x_next - denoise(x_next, t[i + 1], onehot).to(torch.float64)) / t[i + 1]
                    x_next = x_cur + (t[i + 1] - t[i]) * (0.5 * d_cur + 0.5 * d_prime)
        states[start : start + m] = x_next.numpy()
        images[start : start + m] = ((x_next + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
        cond[start : start + m] = labels.numpy()
    return images, cond, states


def _small_denoiser(kind, label_dim):
    from diffmem.science.diffusion import make_precond
    from diffmem.science.nets import build_net

    torch.manual_seed(3)
    net = build_net(
        {
            "resolution": 8,
            "img_channels": 1,
            "channel_mult": [1, 2],
            "num_blocks": 1,
            "attn_resolutions": [],
            "dropout": 0.0,
            "model_channels": 16,
            "label_dim": label_dim,
        }
    )
    return make_precond(net, {"precond": kind}).eval().requires_grad_(False)


@pytest.mark.parametrize("kind,label_dim,batch", [("vp", 0, 5), ("edm", 3, 4), ("ve", 0, 16)])
def test_generate_output_bits_pinned(kind, label_dim, batch):
    """Same uint8 images, labels and float64 final states as the reference, bit for bit (num_steps=5)."""
    from diffmem.science.sampler import edm_sampler as sampler

    net = _small_denoiser(kind, label_dim)
    seen = []  # every state the denoiser is called on (float64), in call order

    def D(x, sigma, labels=None):
        seen.append(x.detach().clone())
        return net(x, sigma, labels)

    D.sigma_min, D.sigma_max = net.sigma_min, net.sigma_max
    want_img, want_cond, want_states = _reference_generate(D, 11, (1, 8, 8), 7, batch, label_dim, num_steps=5)
    want_seen, seen[:] = list(seen), []
    img, cond = generate(D, 11, (1, 8, 8), seed=7, batch_size=batch, label_dim=label_dim, num_steps=5)
    np.testing.assert_array_equal(img, want_img)
    np.testing.assert_array_equal(cond, want_cond)
    assert len(seen) == len(want_seen) == 9 * -(-11 // batch)
    for got, want in zip(seen, want_seen, strict=True):  # the intermediate states, bit for bit
        assert got.dtype == want.dtype == torch.float64
        np.testing.assert_array_equal(got.numpy(), want.numpy())
    # The float64 state the sampler returns, too (a stronger check than the rounded uint8 images).
    lat, lab = sample_inputs(min(batch, 11), (1, 8, 8), 7, label_dim)
    onehot = None if label_dim == 0 else torch.nn.functional.one_hot(lab, label_dim).float()
    x = sampler(net, lat, onehot, num_steps=5)
    assert x.dtype == torch.float64
    np.testing.assert_array_equal(x.numpy(), want_states[: len(x)])


def test_cudnn_autotune_touches_only_cuda_and_restores():
    from diffmem.science.sampler import cudnn_autotune

    saved = torch.backends.cudnn.benchmark
    with cudnn_autotune("cpu"):
        assert torch.backends.cudnn.benchmark == saved
    with cudnn_autotune(torch.device("cuda", 0)):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark == saved
    torch.use_deterministic_algorithms(True)
    try:
        with cudnn_autotune("cuda"):
            assert torch.backends.cudnn.benchmark == saved
    finally:
        torch.use_deterministic_algorithms(False)
