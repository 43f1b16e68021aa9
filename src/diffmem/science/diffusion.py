"""Denoiser preconditioning and training losses of the EDM formulation.

Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative
Models" (NeurIPS 2022), Table 1. A raw network F is wrapped into a denoiser

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))

and trained with  E_{sigma, y, n} [ lambda(sigma) |D(y + n; sigma) - y|^2 ],  n ~ N(0, sigma^2 I).
Three parameterisations are provided (``kind``):

- ``"vp"``: variance preserving (DDPM++). sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1),
  c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1), c_noise = (M - 1) sigma^-1(sigma);
  training draws t ~ U(epsilon_t, 1), lambda = 1 / sigma^2.
- ``"ve"``: variance exploding (NCSN++). c_skip = 1, c_out = sigma, c_in = 1,
  c_noise = ln(sigma / 2); training draws sigma log-uniformly in [sigma_min, sigma_max],
  lambda = 1 / sigma^2.
- ``"edm"``: c_skip = sigma_data^2 / (sigma^2 + sigma_data^2),
  c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2), c_in = 1 / sqrt(sigma^2 + sigma_data^2),
  c_noise = ln(sigma) / 4; training draws ln sigma ~ N(P_mean, P_std^2),
  lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2.

A diffusion config is a dict ``{"precond": kind, **params}``; the params of each kind and their
defaults (the EDM paper's) are in :data:`PARAM_DEFAULTS`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# Every parameter a kind accepts (used by the preconditioner and/or the loss), with the paper's default.
PARAM_DEFAULTS: dict[str, dict[str, float]] = {
    "vp": {
        "beta_d": 19.9,  # extent of the noise level schedule (linear beta slope)
        "beta_min": 0.1,  # initial slope of the noise level schedule
        "M": 1000,  # original number of timesteps of the DDPM formulation
        "epsilon_t": 1e-5,  # minimum t-value used during training
    },
    "ve": {
        "sigma_min": 0.02,  # minimum noise level drawn during training
        "sigma_max": 100.0,  # maximum noise level drawn during training
    },
    "edm": {
        "sigma_data": 0.5,  # expected standard deviation of the training data
        "P_mean": -1.2,  # mean of ln(sigma) drawn during training
        "P_std": 1.2,  # standard deviation of ln(sigma) drawn during training
    },
}

KINDS = tuple(PARAM_DEFAULTS)


def _check_kind(kind: str) -> str:
    if kind not in PARAM_DEFAULTS:
        raise ValueError(f"diffusion.precond: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    return kind


def resolve_params(kind: str, params: Mapping[str, Any] | None = None) -> dict[str, float]:
    """Defaults of ``kind`` updated with ``params``; an unknown key is a ValueError naming it."""
    _check_kind(kind)
    params = dict(params or {})
    unknown = sorted(set(params) - set(PARAM_DEFAULTS[kind]))
    if unknown:
        raise ValueError(
            f"diffusion.{unknown[0]}: not a parameter of precond {kind!r}; allowed: {', '.join(PARAM_DEFAULTS[kind])}"
        )
    out = dict(PARAM_DEFAULTS[kind])
    for key, value in params.items():
        if value is None:
            continue
        out[key] = float(value) if key != "M" else int(value)
    return out


def _split_cfg(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if "precond" not in cfg:
        raise ValueError(f"diffusion.precond: missing; expected one of {', '.join(KINDS)}")
    kind = _check_kind(cfg["precond"])
    return kind, {k: v for k, v in cfg.items() if k != "precond"}


# ----------------------------------------------------------------------------------------------
# VP noise schedule: sigma(t) and its inverse.


def vp_sigma(t, beta_d: float, beta_min: float):
    """sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1) (VP schedule, EDM Table 1)."""
    t = torch.as_tensor(t)
    return torch.expm1(0.5 * beta_d * t**2 + beta_min * t).sqrt()


def vp_sigma_inv(sigma, beta_d: float, beta_min: float):
    """t(sigma): the inverse of :func:`vp_sigma` (positive root of the quadratic in t)."""
    sigma = torch.as_tensor(sigma)
    return ((beta_min**2 + 2 * beta_d * torch.log1p(sigma**2)).sqrt() - beta_min) / beta_d


# ----------------------------------------------------------------------------------------------
# Preconditioning.


def precond_coefficients(kind: str, sigma, **params) -> dict[str, torch.Tensor]:
    """c_skip, c_out, c_in, c_noise of EDM Table 1 for ``kind`` at noise level(s) ``sigma``.

    ``sigma`` is a number or a tensor (any shape); the coefficients have its shape and dtype
    (float32 when a number is passed).
    """
    p = resolve_params(kind, params)
    sigma = torch.as_tensor(sigma)
    if not sigma.is_floating_point():
        sigma = sigma.to(torch.float32)
    if kind == "vp":
        c_skip = torch.ones_like(sigma)
        c_out = -sigma
        c_in = 1 / (sigma**2 + 1).sqrt()
        c_noise = (p["M"] - 1) * vp_sigma_inv(sigma, p["beta_d"], p["beta_min"])
    elif kind == "ve":
        c_skip = torch.ones_like(sigma)
        c_out = sigma.clone()
        c_in = torch.ones_like(sigma)
        c_noise = (0.5 * sigma).log()
    else:  # edm
        sd = p["sigma_data"]
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / (sigma**2 + sd**2).sqrt()
        c_in = 1 / (sigma**2 + sd**2).sqrt()
        c_noise = sigma.log() / 4
    return {"c_skip": c_skip, "c_out": c_out, "c_in": c_in, "c_noise": c_noise}


class Precond(nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise) around a raw network F (EDM Table 1).

    ``net`` is called as ``net(x, noise_labels, class_labels)`` with ``noise_labels`` of shape
    (N,). The output is float32 whatever the input dtype (the sampler may pass float64).
    """

    def __init__(self, net: nn.Module, kind: str = "vp", **params):
        super().__init__()
        self.net = net  # raw network F(x, c_noise, class_labels)
        self.kind = _check_kind(kind)  # "vp" | "ve" | "edm"
        self.params = resolve_params(kind, params)  # schedule parameters (see PARAM_DEFAULTS)
        self.label_dim = int(getattr(net, "label_dim", 0) or 0)  # one-hot width of class labels (0: none)
        # Noise levels the parameterisation covers (informative; the sampler uses its own range).
        if kind == "vp":
            p = self.params
            self.sigma_min = float(vp_sigma(p["epsilon_t"], p["beta_d"], p["beta_min"]))
            self.sigma_max = float(vp_sigma(1.0, p["beta_d"], p["beta_min"]))
        elif kind == "ve":
            self.sigma_min, self.sigma_max = self.params["sigma_min"], self.params["sigma_max"]
        else:
            self.sigma_min, self.sigma_max = 0.0, math.inf

    def forward(
        self,
        x: torch.Tensor,
        sigma,
        class_labels: torch.Tensor | None = None,
        augment_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x.to(torch.float32)
        n = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(n)
        if sigma.shape != (n,):
            raise ValueError(f"sigma must be a scalar or have shape ({n},), got {tuple(sigma.shape)}")
        if class_labels is not None:
            class_labels = class_labels.to(device=x.device, dtype=torch.float32)
        c = precond_coefficients(self.kind, sigma, **self.params)
        shape = (n,) + (1,) * (x.ndim - 1)
        c_skip, c_out, c_in = (c[k].reshape(shape) for k in ("c_skip", "c_out", "c_in"))
        if augment_labels is None:  # no augmentation (sampling): the net sees zero augmentation labels
            F_x = self.net(c_in * x, c["c_noise"], class_labels)
        else:
            F_x = self.net(c_in * x, c["c_noise"], class_labels, augment_labels=augment_labels)
        return c_skip * x + c_out * F_x.to(torch.float32)


def make_precond(net: nn.Module, cfg: Mapping[str, Any]) -> Precond:
    """Wrap ``net`` with the preconditioning of ``cfg = {"precond": kind, **params}``."""
    kind, params = _split_cfg(cfg)
    return Precond(net, kind, **params)


# ----------------------------------------------------------------------------------------------
# Losses. Each draws all its randomness from the passed torch.Generator (seeded training).


def _rand(shape, generator: torch.Generator | None, device, normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) float32 draws from ``generator``, moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=gen_device, dtype=torch.float32).to(device)


class _Loss:
    """Per-sample weighted denoising loss: sum over C,H,W of lambda(sigma) (D(y + n; sigma) - y)^2.

    Summed over pixels (not averaged), as in EDM and the paper's training code, so that weight decay
    and Adam's eps act at the same scale relative to the data gradient as in the paper."""

    kind = ""

    def __init__(self, **params):
        self.params = resolve_params(self.kind, params)

    def sample_sigma(self, n: int, generator, device) -> torch.Tensor:
        raise NotImplementedError

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, D, images: torch.Tensor, class_labels=None, generator=None, augment_labels=None) -> torch.Tensor:
        y = images.to(torch.float32)
        n = y.shape[0]
        sigma = self.sample_sigma(n, generator, y.device)  # (N,)
        noise = _rand(y.shape, generator, y.device, normal=True)
        shape = (n,) + (1,) * (y.ndim - 1)
        s = sigma.reshape(shape)
        if augment_labels is None:
            D_yn = D(y + noise * s, sigma, class_labels)
        else:  # images augmented by diffmem.science.augment: the net is told what was done (EDM's recipe)
            D_yn = D(y + noise * s, sigma, class_labels, augment_labels=augment_labels)
        per_elem = self.weight(s) * (D_yn - y) ** 2
        return per_elem.reshape(n, -1).sum(dim=1)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


class VPLoss(_Loss):
    """t ~ U(epsilon_t, 1), sigma = sigma_VP(t), lambda = 1 / sigma^2 (EDM Table 1, VP column)."""

    kind = "vp"

    def sample_sigma(self, n, generator, device):
        p = self.params
        t = p["epsilon_t"] + (1 - p["epsilon_t"]) * _rand((n,), generator, device)
        return vp_sigma(t, p["beta_d"], p["beta_min"])

    def weight(self, sigma):
        return 1 / sigma**2


class VELoss(_Loss):
    """ln sigma ~ U(ln sigma_min, ln sigma_max), lambda = 1 / sigma^2 (EDM Table 1, VE column)."""

    kind = "ve"

    def sample_sigma(self, n, generator, device):
        p = self.params
        u = _rand((n,), generator, device)
        return p["sigma_min"] * (p["sigma_max"] / p["sigma_min"]) ** u

    def weight(self, sigma):
        return 1 / sigma**2


class EDMLoss(_Loss):
    """ln sigma ~ N(P_mean, P_std^2), lambda = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""

    kind = "edm"

    def sample_sigma(self, n, generator, device):
        p = self.params
        return (p["P_mean"] + p["P_std"] * _rand((n,), generator, device, normal=True)).exp()

    def weight(self, sigma):
        sd = self.params["sigma_data"]
        return (sigma**2 + sd**2) / (sigma * sd) ** 2


LOSSES = {"vp": VPLoss, "ve": VELoss, "edm": EDMLoss}


def make_loss(cfg: Mapping[str, Any]) -> _Loss:
    """The training loss of ``cfg = {"precond": kind, **params}``: ``loss(D, images, labels, generator)``."""
    kind, params = _split_cfg(cfg)
    return LOSSES[kind](**params)
