"""Data-parallel context for training: one process, or several launched by ``torchrun``.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in each process's environment. With a world
size above one, :func:`setup` joins the process group (NCCL on CUDA, Gloo on CPU) and pins each process to
its own GPU. Training splits every global batch into ``world_size`` equal slices, one per rank; only rank 0
writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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
