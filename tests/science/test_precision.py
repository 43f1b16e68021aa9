"""Precision of the net (diffmem.science.precision): bf16 sampling keeps the net's own noise range."""

from __future__ import annotations

import pytest
import torch

from diffmem.science import diffusion, precision
from diffmem.science.sampler import edm_sampler


class _Spy(torch.nn.Module):
    """A raw net that records the noise levels it is called at and whether it ran under autocast."""

    def __init__(self):
        super().__init__()
        self.sigmas: list[float] = []
        self.autocast: list[bool] = []
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, noise_labels, class_labels=None, **kw):
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        return x * 0 + self.w


def _sigmas_seen(precond, wrap: bool) -> tuple[list[float], torch.Tensor]:
    seen = []

    def record(x, sigma, class_labels=None):
        seen.append(float(torch.as_tensor(sigma).reshape(-1)[0]))
        return precond(x, sigma, class_labels)

    record.sigma_min, record.sigma_max = precond.sigma_min, precond.sigma_max
    denoise = precision.AutocastDenoiser(record, "cpu") if wrap else record
    latents = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = edm_sampler(denoise, latents, num_steps=6, sigma_min=0.002, sigma_max=80.0)
    return seen, out


def test_bf16_sampling_sees_the_nets_sigma_range():
    """A VE net supports sigma in [0.02, 100]: the sampler must stop at 0.02 under bf16 as under fp32 (a plain
    closure around the denoiser hid sigma_min, and a VE net sampled down to 0.002)."""
    net = _Spy()
    ve = diffusion.make_precond(net, {"precond": "ve"})
    fp32, _ = _sigmas_seen(ve, wrap=False)
    bf16, _ = _sigmas_seen(ve, wrap=True)
    assert min(fp32) == min(bf16) == pytest.approx(ve.sigma_min) == pytest.approx(0.02)
    assert max(bf16) == max(fp32) == 80.0
    assert fp32 == bf16  # the same schedule
    assert any(net.autocast) and not all(net.autocast)  # the bf16 calls ran under autocast, the fp32 ones not


def test_wrapper_reads_attributes_through_and_casts_back():
    ve = diffusion.make_precond(_Spy(), {"precond": "ve"})
    wrapped = precision.AutocastDenoiser(ve, "cpu")
    assert (wrapped.sigma_min, wrapped.sigma_max) == (ve.sigma_min, ve.sigma_max)
    y = wrapped(torch.ones(1, 1, 4, 4), torch.tensor([1.0]))
    assert y.dtype == torch.float32
