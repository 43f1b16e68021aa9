"""Data-parallel context for training: one process, or several launched by ``torchrun``; the rows a pass
over the net takes; the device, and the check that a GPU config has usable GPUs.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in each process's environment. With a world
size above one, :func:`setup` joins the process group (NCCL on CUDA, Gloo on CPU) and pins each process to
its own GPU. Only rank 0 writes files.

Each process trains on one slice of every global batch (:func:`batch_slice`), in rounds of a micro-batch
when the slice does not fit its GPU at once (:func:`micro_rounds`; gradients accumulate over the rounds), and
DistributedDataParallel averages the gradients (:func:`wrap_denoiser`). Every rank and every round draws the
whole global batch's indices, augmentations, noise levels, noise and dropout masks from the same seeded
streams and evaluates the network on its rows only (:class:`SliceDenoiser`, with dropout cut to the rows by
:class:`~diffmem.training.streams.RowDraws`), so every image gets the same draws whatever the number of
processes and the micro-batch, and the run equals the single-process whole-batch run up to floating-point
rounding.

A config with ``gpu: true`` on a GPU device kind needs usable CUDA devices; :func:`check_cuda` names what it
found instead of letting a job fall back to the CPU.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from diffmem.training.streams import RowDraws


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
# Whether CUDA can run a GPU job (a config with gpu: true must not fall back to the CPU unnoticed).


class CudaUnusable(RuntimeError):
    """A job that needs GPUs finds none it can use; the message says what it found and what was asked."""


def cuda_problem(devices: int = 1) -> str | None:
    """What keeps CUDA from running a job on ``devices`` GPUs, in words (None: nothing): CUDA not available (a
    CPU-only torch, no driver, or a driver too old for this torch's CUDA: torch's own warning is quoted), fewer
    visible devices, or a device whose compute capability this torch has no kernels for."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = "CUDA_VISIBLE_DEVICES unset" if visible is None else f"CUDA_VISIBLE_DEVICES={visible!r}"
    if not available:
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        said = " ".join(" ".join(str(w.message).split()) for w in caught)
        return f"torch.cuda.is_available() is False (torch {torch.__version__}, {build}; {where})" + (
            f"; torch says: {said}" if said else ""
        )
    count = torch.cuda.device_count()
    if count < devices:
        return f"{count} CUDA device(s) visible ({where}), the job needs {devices}"
    arch = torch.cuda.get_arch_list()
    for i in range(devices):
        major, minor = torch.cuda.get_device_capability(i)
        if not has_kernels(major, minor, arch):
            return (
                f"CUDA device {i} ({torch.cuda.get_device_name(i)}) has compute capability {major}.{minor}, which "
                f"torch {torch.__version__} has no kernels for (torch.cuda.get_arch_list(): {' '.join(arch)})"
            )
    return None


def has_kernels(major: int, minor: int, arch: list[str]) -> bool:
    """Whether a torch built for ``arch`` (``torch.cuda.get_arch_list()``) runs on a device of compute capability
    ``major.minor``: machine code ``sm_XY`` runs on X.Y and later minors of X; ``compute_XY`` (PTX) is compiled
    for any device from X.Y on."""
    for a in arch:
        kind, _, code = a.partition("_")
        digits = code.rstrip("af")
        if not digits.isdigit():
            continue
        c_major, c_minor = divmod(int(digits), 10)
        if kind == "sm" and c_major == major and c_minor <= minor:
            return True
        if kind == "compute" and (c_major, c_minor) <= (major, minor):
            return True
    return False


def check_cuda(devices: int, asked: str) -> None:
    """Raise :class:`CudaUnusable` when CUDA cannot run ``devices`` GPUs (:func:`cuda_problem`), naming what
    was found and ``asked`` (what the config asks for, in its keys)."""
    problem = cuda_problem(devices)
    if problem:
        raise CudaUnusable(
            f"{problem}; the config asks for {asked}, so this job stops here rather than run on the CPU. Fix the "
            "CUDA installation or the job's GPUs, or set compute.device: cpu to run on the CPU on purpose"
        )


# ----------------------------------------------------------------------------------------------------
# One slice of every global batch per rank, in rounds of a micro-batch.


def batch_slice(ctx: Context, batch: int) -> tuple[int, int]:
    """The rows ``lo:hi`` of a global batch of ``batch`` that this rank trains on."""
    if batch % ctx.world_size:
        raise ValueError(
            f"train.batch {batch} cannot be split evenly over {ctx.world_size} processes; "
            f"use a batch that is a multiple of {ctx.world_size} or another number of processes"
        )
    local = batch // ctx.world_size
    return ctx.rank * local, (ctx.rank + 1) * local


def micro_rounds(lo: int, hi: int, micro: int | None) -> list[tuple[int, int]]:
    """The rows of each round when the slice ``lo:hi`` runs ``micro`` images at a time (None: all at once)."""
    local = hi - lo
    micro = local if micro is None else int(micro)
    if not 1 <= micro <= local or local % micro:
        raise ValueError(f"micro-batch {micro} must divide the per-GPU batch {local} (train.batch / processes)")
    return [(a, a + micro) for a in range(lo, hi, micro)]


class SliceDenoiser:
    """Call the (DDP-wrapped) denoiser on rows ``lo:hi`` of a batch of ``total`` only (set by :meth:`rows`);
    other rows pass through as detached inputs.

    The loss draws noise levels and noise for the whole global batch, so every rank and round consumes its
    generator exactly as a single process would; the net's dropout is cut to the rows (``RowDraws``); only
    these rows enter the loss's gradient.
    """

    def __init__(self, module: nn.Module, total: int):
        self.module, self.total = module, int(total)
        self.lo, self.hi = 0, self.total

    def rows(self, lo: int, hi: int) -> None:
        """The rows the next calls evaluate."""
        self.lo, self.hi = int(lo), int(hi)

    def no_sync(self) -> Any:
        """DDP's no_sync (gradients stay local until the last round), or nothing in one process."""
        return self.module.no_sync() if isinstance(self.module, DistributedDataParallel) else contextlib.nullcontext()

    def __call__(self, x: torch.Tensor, sigma, class_labels=None, *args, **kwargs):
        lo, hi = self.lo, self.hi
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        s = sigma[lo:hi] if sigma.ndim > 0 and sigma.shape[0] == x.shape[0] else sigma
        labels = None if class_labels is None else class_labels[lo:hi]
        if kwargs.get("augment_labels") is not None:
            kwargs["augment_labels"] = kwargs["augment_labels"][lo:hi]
        with RowDraws(lo, hi, self.total):
            out = self.module(x[lo:hi], s, labels, *args, **kwargs)
        return torch.cat([x[:lo].detach(), out, x[hi:].detach()])


def wrap_denoiser(denoiser: nn.Module, ctx: Context, batch: int, whole: bool) -> Any:
    """The denoiser the loss calls: ``denoiser`` itself when one process takes the ``batch`` in one pass
    (``whole``); else a :class:`SliceDenoiser` over it, under torchrun over it wrapped in
    DistributedDataParallel (which averages the gradients)."""
    if whole and not ctx.distributed:
        return denoiser
    if ctx.distributed:
        dev = ctx.device
        denoiser = DistributedDataParallel(
            denoiser, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False
        )
    return SliceDenoiser(denoiser, batch)
