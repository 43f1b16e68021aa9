"""Sampling: the EDM Heun sampler, seeded generation, the closed-form optimal denoiser, image grids.

- :func:`edm_sampler`: deterministic 2nd-order Heun solver of the probability-flow ODE
  (Karras et al. 2022, Algorithm 1) on the time steps of their Eq. 5.
- :func:`generate`: n samples in batches, sample i's latent and label drawn from a generator
  seeded by (seed, i) alone, so the output does not depend on the batch size or device.
- :class:`OptimalDenoiser`: D*(x; sigma) = sum_i softmax_i(-|x - y_i|^2 / (2 sigma^2)) y_i, the
  minimiser of the denoising loss on a finite training set {y_i}; computed in chunks over the
  training set with a streaming log-sum-exp.
- :func:`save_grid`, :func:`nn_grid`: PNG grids of uint8 images.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch

from diffmem.io import atomic_path

Denoiser = Callable[..., torch.Tensor]  # denoise(x, sigma, class_labels=None) -> D(x; sigma)


# ----------------------------------------------------------------------------------------------
# Image space conversions.


def to_float(images_u8, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """uint8 NCHW -> network space: x = u8 / 127.5 - 1, in [-1, 1]."""
    return torch.as_tensor(np.asarray(images_u8)).to(device=device, dtype=dtype) / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Network space -> uint8: clip(round((x + 1) * 127.5), 0, 255), as numpy."""
    return ((x.detach().to(torch.float64) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


# ----------------------------------------------------------------------------------------------
# Sampler.


def edm_time_steps(
    num_steps: int = 18, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0, device="cpu"
) -> torch.Tensor:
    """t_0 > ... > t_{N-1} of EDM Eq. 5, with t_N = 0 appended (float64, length num_steps + 1)."""
    if num_steps < 1:
        raise ValueError(f"sample.num_steps: must be >= 1, got {num_steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"sample.sigma_min/sigma_max: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    i = torch.arange(num_steps, dtype=torch.float64, device=device)
    frac = i / (num_steps - 1) if num_steps > 1 else torch.zeros_like(i)
    t = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([t, torch.zeros_like(t[:1])])


@torch.no_grad()
def edm_sampler(
    denoise: Denoiser,
    latents: torch.Tensor,
    class_labels=None,
    num_steps: int = 18,
    sigma_min: float = 0.002,
    sigma_max: float = 80.0,
    rho: float = 7.0,
) -> torch.Tensor:
    """Deterministic Heun sampler (EDM Algorithm 1): returns x_N (float64) from latents ~ N(0, I).

    As in EDM, [sigma_min, sigma_max] is narrowed to the noise levels the denoiser supports when it
    says so (attributes ``sigma_min``/``sigma_max`` of :class:`diffmem.science.diffusion.Precond`; this
    matters for VE, trained on sigma >= 0.02).
    """
    sigma_min = max(sigma_min, float(getattr(denoise, "sigma_min", 0.0)))
    sigma_max = min(sigma_max, float(getattr(denoise, "sigma_max", math.inf)))
    t_steps = edm_time_steps(num_steps, sigma_min, sigma_max, rho, device=latents.device)
    # The state stays float64 and each step is the same IEEE operations as the plain transcription of
    # Algorithm 1 (tests/science/test_sample.py pins the bits), done in place: float64 minus the denoiser's float32
    # output promotes exactly, so no float64 copy of D(x) is made, and a step allocates two buffers, not six.
    x_next = latents.to(torch.float64) * t_steps[0]
    for i in range(num_steps):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        h = t_next - t_cur
        x_cur = x_next
        d_cur = torch.sub(x_cur, denoise(x_cur, t_cur, class_labels)).div_(t_cur)  # Euler step
        x_next = torch.mul(d_cur, h).add_(x_cur)
        if i < num_steps - 1:  # 2nd-order correction (not at the last step, where t_N = 0)
            d_prime = torch.sub(x_next, denoise(x_next, t_next, class_labels)).div_(t_next)
            # x_cur + h * (0.5 d_cur + 0.5 d_prime), reusing the buffers of d_cur and x_next
            x_next = d_cur.mul_(0.5).add_(d_prime.mul_(0.5)).mul_(h).add_(x_cur)
    return x_next


def sample_generator(seed: int, i: int) -> torch.Generator:
    """A CPU torch.Generator determined by (seed, i) alone (numpy SeedSequence mixing)."""
    state = np.random.SeedSequence([int(seed), int(i)]).generate_state(1, dtype=np.uint64)
    g = torch.Generator(device="cpu")
    g.manual_seed(int(state[0]))
    return g


def sample_inputs(n: int, shape: Sequence[int], seed: int, label_dim: int = 0, start: int = 0):
    """Latents (n, *shape) float32 and labels int64 (-1 when label_dim == 0) of samples start..start+n-1."""
    latents = torch.empty((n, *shape), dtype=torch.float32)
    labels = torch.full((n,), -1, dtype=torch.int64)
    for j in range(n):
        g = sample_generator(seed, start + j)
        latents[j] = torch.randn(tuple(shape), generator=g, dtype=torch.float32)
        if label_dim > 0:
            labels[j] = torch.randint(int(label_dim), (1,), generator=g)[0]
    return latents, labels


@contextlib.contextmanager
def cudnn_autotune(device):
    """cuDNN autotuning (``torch.backends.cudnn.benchmark``) while inside, on CUDA, as training has it:
    without it, sampling ran the paper's DDPM++ with cuDNN's heuristic convolution algorithms. Off when
    torch is asked for deterministic algorithms; restored on exit; nothing on other devices (the CPU's
    output bits do not depend on it)."""
    if torch.device(device).type != "cuda" or torch.are_deterministic_algorithms_enabled():
        yield
        return
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = saved


def generate(
    denoise: Denoiser,
    n: int,
    shape: Sequence[int],
    seed: int,
    batch_size: int,
    label_dim: int = 0,
    device="cpu",
    **sampler_kw,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples as uint8 NCHW numpy plus their conditioning labels (int64; -1 when unconditional).

    Sample i's latent (and label, uniform in [0, label_dim) when label_dim > 0) come from a
    generator seeded by (seed, i) only, drawn on the CPU, so results do not depend on
    ``batch_size`` or ``device``. Labels reach ``denoise`` as float one-hot (N, label_dim).
    ``sampler_kw``: num_steps, sigma_min, sigma_max, rho of :func:`edm_sampler`.

    Per batch: the inputs are drawn once, the one-hot labels built once (not per network call), and the
    batch goes to the device in one copy; on CUDA cuDNN autotunes the convolutions (:func:`cudnn_autotune`).
    """
    if n < 0 or batch_size < 1:
        raise ValueError(f"sample: need n >= 0 and batch >= 1, got n={n}, batch={batch_size}")
    shape = tuple(int(s) for s in shape)
    device = torch.device(device)
    images = np.empty((n, *shape), dtype=np.uint8)
    cond = np.full((n,), -1, dtype=np.int64)
    with cudnn_autotune(device):
        for start in range(0, n, batch_size):
            m = min(batch_size, n - start)
            latents, labels = sample_inputs(m, shape, seed, label_dim, start)
            class_labels = None
            if label_dim > 0:
                class_labels = torch.nn.functional.one_hot(labels, int(label_dim)).to(
                    device=device, dtype=torch.float32
                )
            x = edm_sampler(denoise, latents.to(device), class_labels, **sampler_kw)
            images[start : start + m] = to_uint8(x)
            cond[start : start + m] = labels.numpy()
    return images, cond


# ----------------------------------------------------------------------------------------------
# Closed-form optimal denoiser.


class OptimalDenoiser:
    """D*(x; sigma) = sum_i softmax_i(-|x - y_i|^2 / (2 sigma^2)) y_i over the training set.

    The exact minimiser of the denoising loss on the empirical training distribution. Computed in
    chunks of ``chunk`` training images with a streaming log-sum-exp, so memory is
    O(batch x chunk) beyond the training set itself (stored once on ``device`` as ``dtype``).
    Unconditional: ``class_labels`` are accepted (the sampler's denoiser signature) and ignored.
    """

    def __init__(self, train_u8, chunk: int = 4096, device="cpu", dtype=torch.float32):
        train_u8 = np.asarray(train_u8)
        if train_u8.ndim < 2 or len(train_u8) < 1:
            raise ValueError("OptimalDenoiser: need a non-empty training set (N, C, H, W)")
        self.shape = train_u8.shape[1:]  # per-image shape
        self.chunk = int(chunk)  # training images per chunk
        self.device = torch.device(device)
        self.dtype = dtype  # compute dtype
        y = to_float(train_u8.reshape(len(train_u8), -1), self.device, dtype)
        self.y = y  # (M, D) training set in [-1, 1]
        self.y_sq = (y * y).sum(dim=1)  # (M,) |y_i|^2

    def __call__(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None) -> torch.Tensor:
        out_dtype = x.dtype if x.is_floating_point() else torch.float32
        n = x.shape[0]
        xf = x.reshape(n, -1).to(device=self.device, dtype=self.dtype)
        sigma = torch.as_tensor(sigma, device=self.device, dtype=torch.float64).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(n)
        inv_two_var = (1 / (2 * sigma**2)).to(self.dtype)[:, None]  # (n, 1)
        x_sq = (xf * xf).sum(dim=1, keepdim=True)
        m = torch.full((n, 1), -math.inf, device=self.device, dtype=self.dtype)  # running max logit
        s = torch.zeros((n, 1), device=self.device, dtype=self.dtype)  # running sum of exp(logit - m)
        acc = torch.zeros_like(xf)  # running sum of exp(logit - m) y_i
        for lo in range(0, len(self.y), self.chunk):
            y = self.y[lo : lo + self.chunk]
            d2 = (x_sq - 2 * xf @ y.T + self.y_sq[lo : lo + self.chunk][None, :]).clamp_min_(0)
            logits = -d2 * inv_two_var  # (n, c)
            m_new = torch.maximum(m, logits.max(dim=1, keepdim=True).values)
            m_safe = torch.where(torch.isfinite(m_new), m_new, torch.zeros_like(m_new))
            scale = (m - m_safe).exp()
            w = (logits - m_safe).exp()
            s = s * scale + w.sum(dim=1, keepdim=True)
            acc = acc * scale + w @ y
            m = m_new
        if bool((s == 0).any()):
            raise ValueError("OptimalDenoiser: a query's class has no training image")
        return (acc / s).reshape(x.shape).to(device=x.device, dtype=out_dtype)


# ----------------------------------------------------------------------------------------------
# Grids.


def _as_hwc(img: np.ndarray) -> np.ndarray:
    return np.transpose(img, (1, 2, 0))


def _layout(
    rows: list[list[np.ndarray | None]], gap: int = 1, gap_value: int = 255, min_width: int = 256
) -> np.ndarray:
    """Tile a table of CHW uint8 images (None = blank cell) with ``gap`` px between cells."""
    first = next(im for row in rows for im in row if im is not None)
    c, h, w = first.shape
    nrows, ncols = len(rows), max(len(r) for r in rows)
    canvas = np.full((nrows * (h + gap) - gap, ncols * (w + gap) - gap, c), gap_value, dtype=np.uint8)
    for r, row in enumerate(rows):
        for k, im in enumerate(row):
            if im is not None:
                canvas[r * (h + gap) : r * (h + gap) + h, k * (w + gap) : k * (w + gap) + w] = _as_hwc(im)
    scale = max(1, math.ceil(min_width / canvas.shape[1]))
    if scale > 1:
        canvas = canvas.repeat(scale, axis=0).repeat(scale, axis=1)
    return canvas


def _write_png(canvas: np.ndarray, path: str | os.PathLike) -> None:
    from PIL import Image

    c = canvas.shape[2]
    if c == 1:
        img = Image.fromarray(canvas[:, :, 0], mode="L")
    elif c == 3:
        img = Image.fromarray(canvas, mode="RGB")
    else:
        raise ValueError(f"save_grid: images need 1 or 3 channels, got {c}")
    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")


def _check_u8(images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"expected non-empty uint8 NCHW images, got {images.dtype} {images.shape}")
    return images


def save_grid(
    images_u8, path: str | os.PathLike, nrow: int | None = None, gap_value: int = 255, min_width: int = 256
) -> None:
    """Save uint8 NCHW images as one PNG grid (``nrow`` images per row, default ~sqrt(N)).

    1 px gaps of ``gap_value``; tiny grids are upscaled (nearest) to at least ``min_width`` px.
    """
    images = _check_u8(images_u8)
    n = len(images)
    ncols = int(nrow) if nrow else math.ceil(math.sqrt(n))
    rows = [list(images[i : i + ncols]) for i in range(0, n, ncols)]
    _write_png(_layout(rows, gap_value=gap_value, min_width=min_width), path)


def nn_grid(
    samples_u8,
    train_u8,
    nn_idx,
    path: str | os.PathLike,
    n: int = 16,
    ncols: int | None = None,
    gap_value: int = 255,
    min_width: int = 256,
) -> None:
    """Samples beside their nearest training images: row pairs (samples above, their NN1 below).

    ``nn_idx``: (N,) or (N, k) indices into ``train_u8`` (column 0 is used). The first ``n``
    samples are shown, ``ncols`` per row pair (default min(n, 16)), with a blank row between pairs.
    """
    samples, train = _check_u8(samples_u8), _check_u8(train_u8)
    idx = np.asarray(nn_idx)
    idx = idx[:, 0] if idx.ndim == 2 else idx
    n = min(int(n), len(samples))
    ncols = int(ncols) if ncols else min(n, 16)
    rows: list[list[np.ndarray | None]] = []
    for lo in range(0, n, ncols):
        if rows:
            rows.append([None])
        rows.append(list(samples[lo : min(lo + ncols, n)]))
        rows.append([train[int(j)] for j in idx[lo : min(lo + ncols, n)]])
    _write_png(_layout(rows, gap_value=gap_value, min_width=min_width), path)
