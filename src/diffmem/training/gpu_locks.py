"""Which GPU a job runs on, on a workstation with several: a lock file per device.

Snakemake counts GPUs (``--resources gpu=N``) but assigns no device ids, so without this every GPU job
lands on GPU 0. A job calls :func:`claim_for_job` before it touches CUDA: it takes the first free device
among the visible ones (``CUDA_VISIBLE_DEVICES`` when set, else every GPU ``nvidia-smi`` lists), by an
exclusive ``flock`` on ``<results>/<name>/.gpu-locks/gpu-<id>.lock``, and narrows
``CUDA_VISIBLE_DEVICES`` to the devices it took (torchrun's workers inherit it). The lock lives as long as
the open file: it is released when the job's process ends, however it ends, so a crashed job leaves no
stale lock; the lock file itself stays and is reused.

Under Slurm the scheduler sets ``CUDA_VISIBLE_DEVICES`` to the allocation's GPUs. A job submitted on its own
gets exactly the GPUs it asked for; several jobs run by one Snakemake inside one allocation (``salloc
--gpus=4``, then ``snakemake --cores ...``) share its GPUs and must still pick different ones. So the locks
are kept per allocation (:func:`scoped_lock_dir`: a sub-folder named by the job id and host), never shared
between allocations or nodes; a Slurm job that sees no more GPUs than it needs takes no lock at all.
Nothing happens for jobs that asked for no GPU, or where no GPU is visible.

A job of a config with ``gpu: true`` then checks that CUDA can run its GPUs (:func:`require_cuda`) and stops,
naming what it found, where it cannot (no CUDA, a driver too old, a GPU this torch has no kernels for); the
config's ``compute.device: cpu`` opts into running such jobs on the CPU.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from diffmem.plan.resources import device_kind

_log = logging.getLogger(__name__)

LOCK_DIR = ".gpu-locks"  # under results/<name>/
LOCK_ENV = "DIFFMEM_GPU_LOCKS"  # a lock folder shared by every workflow on the machine, when set
_HELD: list[Lease] = []  # the leases of this process, kept open until it exits


@dataclass
class Lease:
    """Devices held by this process; ``ids`` as ``CUDA_VISIBLE_DEVICES`` names them."""

    ids: list[str]
    files: list[IO[Any]] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for f in self.files:
            f.close()  # closing the file releases its flock
        self.files = []
        if self in _HELD:
            _HELD.remove(self)


def under_scheduler(env: Mapping[str, str] | None = None) -> bool:
    """True inside a Slurm job (or allocation): its visible GPUs are the ones the scheduler assigned."""
    env = os.environ if env is None else env
    return "SLURM_JOB_ID" in env


def scoped_lock_dir(lock_dir: str | Path, env: Mapping[str, str] | None = None) -> Path:
    """Where the locks of this job's devices lie: ``lock_dir`` on a workstation; under Slurm a sub-folder per
    allocation and node (``slurm-<job id>-<host>``), so the jobs inside one allocation share locks and jobs
    of other allocations (other nodes, or the same device ids on the same node) never wait for them."""
    env = os.environ if env is None else env
    if not under_scheduler(env):
        return Path(lock_dir)
    host = env.get("SLURMD_NODENAME") or os.uname().nodename
    return Path(lock_dir) / re.sub(r"[^A-Za-z0-9_.-]", "_", f"slurm-{env['SLURM_JOB_ID']}-{host}")


def visible_ids(env: Mapping[str, str] | None = None) -> list[str]:
    """The device ids a job may take: ``CUDA_VISIBLE_DEVICES`` (comma separated; empty = none) when set,
    else the indices ``nvidia-smi`` lists (none without it)."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()] if out.returncode == 0 else []


def _lock_file(lock_dir: Path, device: str) -> Path:
    return lock_dir / f"gpu-{re.sub(r'[^A-Za-z0-9_.-]', '_', device)}.lock"


def _try_lock(path: Path) -> IO[Any] | None:
    import fcntl

    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")  # who holds it, for people
    f.flush()
    return f


def acquire(
    lock_dir: str | Path,
    count: int = 1,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    poll_s: float = 2.0,
    log: logging.Logger = _log,
) -> Lease:
    """Take ``count`` free devices among :func:`visible_ids` (waiting for them, at most ``timeout_s``
    seconds; None = as long as it takes). Returns an empty lease when there is nothing to pick from.
    Raises TimeoutError when the devices stay busy, ValueError when fewer than ``count`` are visible."""
    ids = visible_ids(env)
    if count <= 0 or not ids:
        return Lease([])
    if count > len(ids):
        raise ValueError(f"the job needs {count} GPUs, only {len(ids)} are visible ({','.join(ids)})")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    start, said = time.monotonic(), 0.0
    while True:
        files, taken = [], []
        for device in ids:
            f = _try_lock(_lock_file(lock_dir, device))
            if f is not None:
                files.append(f)
                taken.append(device)
                if len(taken) == count:
                    lease = Lease(taken, files)
                    _HELD.append(lease)
                    return lease
        for f in files:  # not enough free: give back what was taken, so that two jobs cannot deadlock
            f.close()
        waited = time.monotonic() - start
        if timeout_s is not None and waited >= timeout_s:
            raise TimeoutError(f"no {count} free GPU(s) among {','.join(ids)} after {waited:.0f} s ({lock_dir})")
        if waited - said >= 60 or said == 0:
            log.info("waiting for %d free GPU(s) among %s (locks in %s)", count, ",".join(ids), lock_dir)
            said = max(waited, 1e-9)
        time.sleep(poll_s)


def claim(
    lock_dir: str | Path, count: int, env: dict[str, str] | None = None, log: logging.Logger = _log, **kw: Any
) -> Lease:
    """:func:`acquire` and narrow ``CUDA_VISIBLE_DEVICES`` in ``env`` (default: this process's
    environment) to the devices taken; under Slurm among the allocation's GPUs (:func:`scoped_lock_dir`)."""
    env = os.environ if env is None else env
    if count <= 0 or (under_scheduler(env) and len(visible_ids(env)) <= count):
        return Lease([])  # nothing to choose: the scheduler gave this job exactly its GPUs
    lease = acquire(scoped_lock_dir(lock_dir, env), count, env=env, log=log, **kw)
    if lease.ids:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(lease.ids)
        log.info("took GPU %s (CUDA_VISIBLE_DEVICES=%s)", ",".join(lease.ids), env["CUDA_VISIBLE_DEVICES"])
    return lease


def claim_for_job(smk: Any, log: logging.Logger = _log) -> Lease:
    """What a workflow script calls first: take the job's ``resources.gpu`` devices, with the locks under
    ``<results>/<name>/.gpu-locks/`` (shared by the jobs of one results folder), or under
    ``$DIFFMEM_GPU_LOCKS`` when set (one folder for every workflow run on the machine); then check that CUDA
    can run them when the config asks for GPUs (:func:`require_cuda`)."""
    count = int(getattr(smk.resources, "gpu", 0) or 0)
    lock_dir = os.environ.get(LOCK_ENV) or Path(smk.config["results"]) / smk.config["name"] / LOCK_DIR
    lease = claim(lock_dir, count, log=log)
    try:
        require_cuda(smk.config, count)
    except BaseException:
        lease.release()  # the job stops: its GPUs go back at once
        raise
    return lease


def require_cuda(config: Mapping[str, Any], count: int) -> None:
    """A job of ``count`` GPUs of a config with ``gpu: true`` stops at once when CUDA cannot run them
    (:func:`diffmem.training.data_parallel.check_cuda` names what it found), instead of training on the CPU
    unnoticed, unless the config's device kind is the CPU (``compute.device: cpu``: the rehearsal's fake GPUs)."""
    if count <= 0 or not config.get("gpu") or device_kind(config) == "cpu":
        return
    from diffmem.training.data_parallel import check_cuda  # torch: only for jobs that need CUDA

    check_cuda(count, f"{count} GPU(s) (gpu: true, compute.device: {config['compute'].get('device') or 'null'})")
