"""The arithmetic of a training: ``train.precision``, and torch's backend flags while it runs.

``settings["train"]["precision"]`` (:mod:`diffmem.science.precision`): ``fp32`` (the paper's; TF32 off on
CUDA), ``tf32`` (TF32 matmuls and convolutions on CUDA), or ``bf16`` (bfloat16 autocast around the loss's
forward pass; weights, gradients, optimizer state, EMA and the loss's mean stay float32). On CUDA cuDNN
autotunes its kernels, so CUDA reruns differ at the ~1e-5 level; ``deterministic=True`` (``--deterministic``)
selects deterministic kernels, which made CUDA reruns and resumes bit-identical in a check on an H200.

``train.channels_last`` stores the net's weights and activations channels-last (NHWC; a CUDA speed-up for
convolutions, slower on the CPU), ``train.compile`` runs the net through ``torch.compile`` (minutes of
compilation, then faster steps on a GPU; not worth it for the CPU default's short runs). Both change the
rounding only (outputs equal the eager net within float tolerance, tests/science/test_nets.py) and are part of
the run's identity like every train key. Snapshots hold plain contiguous float32 state dicts either way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from diffmem.science import precision as dmprec

__all__ = ["backend_flags", "train_precision"]


def train_precision(t_cfg: Mapping[str, Any]) -> str:
    """``train.precision`` checked (None: fp32); the replaced ``train.tf32`` key is refused with its successor."""
    if "tf32" in t_cfg:
        raise ValueError(
            "train.tf32 was replaced by train.precision: write precision: tf32 for tf32: true, fp32 for tf32: false"
        )
    return dmprec.check(t_cfg.get("precision"), "train.precision")


@contextlib.contextmanager
def backend_flags(device: torch.device, precision: str, deterministic: bool) -> Iterator[None]:
    """Numerics of the run, restored afterwards.

    CUDA: TF32 matmuls and convolutions exactly when ``precision`` is ``tf32`` (~2.75x faster for the
    paper's DDPM++ on an H200, at reduced mantissa precision; :mod:`diffmem.science.precision`); cuDNN autotuning
    unless ``deterministic``. ``deterministic`` also asks torch for deterministic kernels (bit-identical
    reruns on CUDA, slower).
    """
    saved_det = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    saved_cuda = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic
    try:
        with dmprec.backend_flags(device, precision):
            yield
    finally:
        torch.use_deterministic_algorithms(saved_det[0], warn_only=saved_det[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_cuda
