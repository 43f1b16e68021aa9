"""Arithmetic precision of the network: ``train.precision`` and ``sample.precision``.

- ``fp32``: IEEE float32 everywhere (the paper's). On CUDA, TF32 is switched *off* for matmuls and
  convolutions (torch's default allows it for cuDNN convolutions).
- ``tf32``: on CUDA, matmuls and convolutions read their float32 inputs rounded to TF32 (10-bit mantissa,
  relative rounding ~5e-4) and accumulate in float32; everything else is float32. On the CPU the same as
  fp32 (the CPU has no TF32).
- ``bf16``: ``torch.autocast`` with bfloat16 (8-bit mantissa, relative rounding ~4e-3) around the network:
  convolutions, linear layers and attention matmuls run in bfloat16 (float32 accumulation), the ops torch
  keeps in float32 under autocast (normalisations, softmax, exp, ...) stay float32. Weights, gradients,
  optimizer state, the EMA, the preconditioning, the loss and its mean, and the sampler's state stay float32
  (the denoiser's output is cast back to float32). Runs on CUDA and on the CPU.

No value (a settings dict written before the key existed) reads as ``fp32``. The schema
(``workflow/schemas/config.schema.yaml``) holds the default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["PRECISIONS", "AutocastDenoiser", "autocast", "backend_flags", "check"]

PRECISIONS = ("fp32", "tf32", "bf16")


def check(precision: str | None, where: str = "precision") -> str:
    """The precision named by a setting (None: fp32); a ValueError naming ``where`` for anything else."""
    if precision is None:
        return "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"{where}: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast(device: torch.device | str, precision: str | None) -> contextlib.AbstractContextManager:
    """The context to run the network's forward pass in: bfloat16 autocast for ``bf16``, else nothing."""
    if check(precision) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


@contextlib.contextmanager
def backend_flags(device: torch.device | str, precision: str | None) -> Iterator[None]:
    """TF32 on CUDA exactly when ``precision`` is ``tf32``; torch's flags are restored afterwards."""
    tf32 = check(precision) == "tf32"
    if torch.device(device).type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class AutocastDenoiser:
    """A denoiser whose calls run under bfloat16 autocast (``sample.precision: bf16``), its output cast back to
    float32, that still tells the sampler the noise levels it supports: ``sigma_min`` / ``sigma_max`` (and any
    other attribute) are the wrapped denoiser's, so a VE net samples down to its own sigma_min under every
    precision (:func:`diffmem.science.sampler.edm_sampler` reads them)."""

    def __init__(self, denoise, device: torch.device | str):
        self.denoise = denoise  # the float32 denoiser (a Precond, or any callable)
        self.device = device  # where it runs: the autocast's device type

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        with autocast(self.device, "bf16"):
            out = self.denoise(*args, **kwargs)
        return out.float()

    def __getattr__(self, name: str):
        if name in ("denoise", "device"):  # not set yet (e.g. while unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.denoise, name)
