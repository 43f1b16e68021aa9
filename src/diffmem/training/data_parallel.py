"""Data-parallel context for training: one process, or several launched by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in each process's environment. With a world
size above one, :func:`setup` joins the process group (NCCL on CUDA, Gloo on CPU) and pins each process to
its own GPU. Only rank 0 writes files.

Each process trains on one slice of every global batch (:func:`batch_slice`) and DistributedDataParallel
averages the gradients (:func:`wrap_denoiser`). Every rank draws the whole global batch's indices, noise
levels and noise from the same generators and evaluates the network on its slice only
(:class:`SliceDenoiser`), so the run equals the single-process run up to floating-point rounding (dropout
masks excepted: with dropout > 0 each rank draws masks for its slice, which is the same distribution but
not the same draws).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Context:
    world_size: int  # Number of processes training together (1 = plain single process).
    rank: int  # This process's index in [0, world_size).
    device: torch.device  # Where this process keeps its model and data.

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and logs progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_mean(self, t: torch.Tensor) -> torch.Tensor:
        """Mean of ``t`` over ranks (``t`` itself in a single process)."""
        if not self.distributed:
            return t
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world_size


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str | torch.device | None = None) -> Context:
    """The context of this process: join the process group when launched with ``WORLD_SIZE > 1``.

    ``device`` None picks CUDA when present (GPU ``LOCAL_RANK`` under torchrun), else the CPU.
    """
    world = env_world_size()
    if world <= 1:
        dev = torch.device(device) if device is not None else default_device()
        return Context(1, 0, dev)

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is not None:
        dev = torch.device(device)
    elif torch.cuda.is_available():
        dev = torch.device("cuda", local_rank % torch.cuda.device_count())
    else:
        dev = torch.device("cpu")
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    if dist.get_world_size() != world:
        raise RuntimeError(f"WORLD_SIZE={world} but the process group has {dist.get_world_size()} processes")
    return Context(world, dist.get_rank(), dev)


def teardown() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` when given, else CUDA when present, else the CPU (training and sampling pick alike)."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ----------------------------------------------------------------------------------------------------
# One slice of every global batch per rank.


def batch_slice(ctx: Context, batch: int) -> tuple[int, int]:
    """The rows ``lo:hi`` of a global batch of ``batch`` that this rank trains on."""
    if batch % ctx.world_size:
        raise ValueError(
            f"train.batch {batch} cannot be split evenly over {ctx.world_size} processes; "
            f"use a batch that is a multiple of {ctx.world_size} or another number of processes"
        )
    local = batch // ctx.world_size
    return ctx.rank * local, (ctx.rank + 1) * local


class SliceDenoiser:
    """Call the (DDP-wrapped) denoiser on rows lo:hi only; other rows pass through as detached inputs.

    The loss draws noise levels and noise for the whole global batch, so every rank consumes its
    generator exactly as a single process would; only this rank's slice enters its loss.
    """

    def __init__(self, module: nn.Module, lo: int, hi: int):
        self.module, self.lo, self.hi = module, lo, hi

    def __call__(self, x: torch.Tensor, sigma, class_labels=None, *args, **kwargs):
        lo, hi = self.lo, self.hi
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        s = sigma[lo:hi] if sigma.ndim > 0 and sigma.shape[0] == x.shape[0] else sigma
        labels = None if class_labels is None else class_labels[lo:hi]
        if kwargs.get("augment_labels") is not None:
            kwargs["augment_labels"] = kwargs["augment_labels"][lo:hi]
        out = self.module(x[lo:hi], s, labels, *args, **kwargs)
        return torch.cat([x[:lo].detach(), out, x[hi:].detach()])


def wrap_denoiser(denoiser: nn.Module, ctx: Context, lo: int, hi: int) -> Any:
    """The denoiser the loss calls: ``denoiser`` itself in one process; under torchrun, wrapped in
    DistributedDataParallel (which averages the gradients) and evaluated on rows ``lo:hi`` only."""
    if not ctx.distributed:
        return denoiser
    dev = ctx.device
    ddp = DistributedDataParallel(
        denoiser, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False
    )
    return SliceDenoiser(ddp, lo, hi)
