"""The train step: one run (or one link of a chain of jobs) in this process, or data parallel through torchrun."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import diffmem
from diffmem import data
from diffmem.io import read_json
from diffmem.training import metrics

_log = logging.getLogger("diffmem")


class TrainingPaused(RuntimeError):
    """A training stopped before its job's walltime with its state saved; the next attempt resumes."""


def train_run(
    settings_path: str | Path,
    subset_path: str | Path,
    out_dir: str | Path,
    processes: int = 1,
    threads: int = 1,
    log_path: str | Path | None = None,
    time_budget_s: float | None = None,
    checkpoint_every: int | None = None,
    log: logging.Logger = _log,
    micro_batch: int | None = None,
) -> dict:
    """Train one run: in this process, or data parallel over ``processes`` GPUs (or CPU processes with
    gloo) through ``torchrun -m diffmem.training.loop``; the result is the same training up to rounding.
    ``micro_batch``: images per pass of each process (gradients accumulate over the rounds; None: all at once).

    With ``time_budget_s`` the training stops (resumably) before that many seconds have passed; then
    :class:`TrainingPaused` is raised, so that the workflow's next attempt of the job resumes it."""
    from diffmem.training import loop as train

    settings = read_json(settings_path)
    # The job's log is replaced on every attempt; the run's own history.log keeps every link of a chain.
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    history = logging.FileHandler(Path(out_dir) / train.HISTORY_FILE)
    history.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(history)
    try:
        if processes <= 1:
            with metrics.recorder(out_dir, log) as record:  # train/stats.jsonl (+ TensorBoard), every link
                result = train.train(
                    settings, data.load_subset(subset_path), out_dir, log=log,
                    time_budget_s=time_budget_s, checkpoint_every=checkpoint_every, progress=record,
                    micro_batch=micro_batch,
                )  # fmt: skip
        else:
            result = _torchrun(settings_path, subset_path, out_dir, processes, threads, log_path,
                               time_budget_s, checkpoint_every, log, micro_batch)  # fmt: skip
    finally:
        log.removeHandler(history)
        history.close()
    if not result.get("complete", True):
        raise TrainingPaused(
            f"training paused at step {result['steps']}/{result['total_steps']} to end before the job's "
            f"walltime; {Path(out_dir) / train.STATE_FILE} keeps it and the next attempt resumes from there"
        )
    return result


def _torchrun(
    settings_path, subset_path, out_dir, processes, threads, log_path, time_budget_s, ckpt, log, micro
) -> dict:
    """``train_run`` over ``processes`` workers of ``torchrun -m diffmem.training.loop``; its summary, or
    where it paused."""
    from diffmem.training import loop as train

    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1", f"--master_port={port}",
        "-m", "diffmem.training.loop", "--settings", str(settings_path), "--subset", str(subset_path),
        "--out", str(out_dir), "--threads", str(max(1, threads // processes)),
    ]  # fmt: skip
    if time_budget_s is not None:
        cmd += ["--time-budget", str(time_budget_s)]
    if ckpt is not None:
        cmd += ["--checkpoint-every", str(ckpt)]
    if micro is not None:
        cmd += ["--micro-batch", str(micro)]
    log.info("data parallel over %d processes: %s", processes, " ".join(cmd))
    # the workers import the diffmem this process runs (a conda job strips PYTHONPATH; see the Snakefile)
    src = str(Path(diffmem.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    with open(log_path, "a") if log_path else contextlib.nullcontext() as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT if fh else None, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with {proc.returncode}; see {log_path or 'stderr'}")
    summary = Path(out_dir) / train.SUMMARY_FILE
    if summary.exists():
        return read_json(summary)
    progress = read_json(Path(out_dir) / train.PROGRESS_FILE)
    return {"complete": False, "steps": progress["step"], "total_steps": progress["total_steps"]}
