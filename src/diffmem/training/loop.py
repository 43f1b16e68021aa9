"""The training loop: one diffusion model on one subset, resumable, seeded, optionally data parallel.

``train(settings, subset, out_dir)`` trains the network of ``settings["model"]`` with the preconditioning
and loss of ``settings["diffusion"]`` on the images of ``subset`` (the dict of :func:`diffmem.data.
load_subset`), following ``settings["train"]``, and writes snapshots, ``state.pt`` and ``train.json`` into
``out_dir``. A call:

1. refuses a subset that does not fit the net, and a folder holding another run's output; returns the
   summary of a finished training of these settings at once (:mod:`~diffmem.training.state`);
2. builds the run (:class:`~diffmem.training.run.Run`): the net, its EMA, the optimizer, the data order and
   the random streams, resumed from ``state.pt`` when an earlier call left one;
3. steps until the end, saving snapshots and states as they fall due, or pauses (resumably) before the
   job's walltime (:mod:`~diffmem.training.walltime`), reporting as it goes (:mod:`~diffmem.training.progress`);
4. writes ``train.json`` and removes ``state.pt`` once the training is complete.

Where each part is explained:

- the files of ``out_dir`` and the checks on them: :mod:`~diffmem.training.state`;
- randomness (a function of ``settings["train"]["seed"]``, so a run resumed from ``state.pt`` ends with
  bit-identical weights on the CPU) and the data order: :mod:`~diffmem.training.streams`;
- the length (``duration = {unit: steps|epochs|images, value}`` -> ``ceil(images / batch)`` optimizer steps)
  and snapshot steps: :func:`diffmem.science.schedule.training_plan`; learning rate, EMA of the weights,
  optimizer kernels, gradient clipping: :mod:`~diffmem.training.optim`;
- data parallel under ``torchrun`` (``WORLD_SIZE > 1``; only rank 0 writes), and micro-batches with gradient
  accumulation (``micro_batch``: a GPU too small for its share of the batch): :mod:`~diffmem.training.data_parallel`;
- precision, deterministic kernels, ``channels_last`` and ``compile``: :mod:`~diffmem.training.numerics`.

Command line (also for ``torchrun --nproc_per_node=N -m diffmem.training.loop ...``)::

    python -m diffmem.training.loop --settings run.json --subset subset.npz --out DIR [--device cuda] [--threads 1]
        [--micro-batch M]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from diffmem import data
from diffmem.io import read_json, record_path, write_json
from diffmem.plan import identity
from diffmem.science.schedule import rate_plan, training_plan
from diffmem.training import data_parallel as distributed
from diffmem.training import metrics
from diffmem.training.numerics import backend_flags, train_precision
from diffmem.training.progress import Progress, done_line, micro_line, pause_line, start_line
from diffmem.training.run import Run, check_subset
from diffmem.training.state import (
    HISTORY_FILE,
    PROGRESS_FILE,
    STATE_FILE,
    SUMMARY_FILE,
    SettingsMismatchError,
    finished_summary,
    load_state,
    subset_fingerprint,
)
from diffmem.training.streams import IndexStream, forked_global_rng
from diffmem.training.walltime import Pause

# train and main, and names other modules have always imported from here
__all__ = [
    "HISTORY_FILE", "PROGRESS_FILE", "STATE_FILE", "SUMMARY_FILE", "IndexStream", "SettingsMismatchError", "main",
    "subset_fingerprint", "train",
]  # fmt: skip

logger = logging.getLogger(__name__)

_Run = Run  # the name tests/steps/test_net_resolution.py patches


def _log_function(log: Any) -> Callable[[str], None]:
    """Where lines go: ``log`` None is this module's logger, else a logger or a callable taking a line."""
    if log is None:
        return logger.info
    if hasattr(log, "info"):
        return log.info
    if callable(log):
        return log
    raise TypeError(f"log: expected a logging.Logger or a callable taking a string, got {type(log).__name__}")


def train(
    settings: Mapping[str, Any],
    subset: Mapping[str, Any],
    out_dir: str | os.PathLike,
    device: str | torch.device | None = None,
    log: Any = None,
    *,
    max_steps: int | None = None,
    time_budget_s: float | None = None,
    checkpoint_every: int | None = None,
    keep_state: bool = False,
    log_every: int | None = None,
    deterministic: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
    micro_batch: int | None = None,
) -> dict[str, Any]:
    """Train one run (see the module docstring); return the summary written to ``out_dir/train.json``.

    ``device`` None picks CUDA when available. ``log`` is a logger or a callable taking a line (default:
    this module's logger). ``max_steps`` stops early, resumably, once that many steps are done (state.pt is
    written, no train.json; the returned dict has ``"complete": False``). ``time_budget_s`` stops the same
    way once the next step and a save would end later than that many seconds after the start, or on SIGTERM
    or SIGUSR1 (what Slurm sends ahead of a walltime): a job's walltime ends one link of a chain, and the
    next call resumes from state.pt. ``checkpoint_every`` (steps between resumable states) overrides
    ``settings["train"]["checkpoint_every"]`` (it changes no number, so it need not be in the settings).
    ``keep_state`` keeps state.pt after training is complete. ``log_every`` is the number of steps between
    progress lines (default: about 20 lines per run, and at least one every 10 s); ``progress`` is called
    with the numbers of every progress line as a dict (step, images, loss, loss_avg, grad_norm, lr,
    ema_beta, images_per_s, elapsed_s, time). ``deterministic`` selects deterministic kernels (CUDA reruns
    and resumes then match bit for bit; on the CPU they do anyway). ``settings["train"]["precision"]`` (fp32,
    tf32 or bf16; see :mod:`diffmem.science.precision`) sets the arithmetic of the network. ``micro_batch``
    (a divisor of the per-process batch; None: all of it) runs each step in rounds of that many images per
    process, accumulating gradients: the same step up to float rounding (it changes no number beyond
    rounding, so it is not in the settings; :func:`diffmem.plan.records.micro_batch` picks it for a GPU).
    """
    t_call = time.perf_counter()  # the time budget counts from here (set-up included)
    say = _log_function(log)
    out_dir = Path(out_dir)
    ctx = distributed.setup(device)
    t_cfg = settings["train"]
    images_np, cond_np, label_dim = check_subset(settings, subset)
    hashes = identity.train_digest(settings), subset_fingerprint(subset)
    summary = finished_summary(out_dir, *hashes)
    if summary is not None:
        if ctx.is_main:
            say(f"{out_dir / SUMMARY_FILE} exists for these settings: training is done, nothing to do")
        return summary
    plan, rates = training_plan(t_cfg, images_np.shape[0]), rate_plan(t_cfg, images_np.shape[0])
    state = load_state(out_dir, *hashes)
    prec = train_precision(t_cfg)
    with (
        forked_global_rng(ctx.device),
        backend_flags(ctx.device, prec, deterministic),
        Pause(time_budget_s, ctx) as pause,
    ):
        run = Run(settings, images_np, cond_np, label_dim, ctx, plan, rates, out_dir, hashes, micro_batch)
        run.ckpt_every = int(checkpoint_every if checkpoint_every is not None else t_cfg.get("checkpoint_every") or 0)
        if state is not None:
            run.resume(state, say)
            del state
        stop = run.total if max_steps is None else max(0, min(run.total, int(max_steps)))
        if ctx.is_main:
            say(start_line(run))
            say(micro_line(run))
        run.start_clock()
        _steps(run, stop, pause, t_call, Progress(run, say, log_every, progress), say)
        result = run.summary(deterministic)
    return _finish(run, result, out_dir, keep_state, say)


def _steps(run: Run, stop: int, pause: Pause, t_call: float, report: Progress, say: Callable[[str], None]) -> None:
    """Train until step ``stop`` or a pause, saving snapshots and states as they fall due; ``t_call``: when
    the call began (its time budget counts from there)."""
    while run.step < stop:
        loss_v, gnorm_v, lr_now = run.train_step()
        now = time.perf_counter()
        paused = run.step < stop and pause.due(now - t_call, now - run.t0, run.step - run.start_step)
        if paused:
            stop = run.step
        if run.step in run.snap_index:
            run.save_snapshot(loss_v)
            run.save_state()
        elif run.step == stop or (run.ckpt_every and run.step % run.ckpt_every == 0):
            run.save_state()
        if paused and run.ctx.is_main:
            say(pause_line(run, pause.reason))
        report(loss_v, gnorm_v, lr_now, stop)


def _finish(run: Run, result: dict[str, Any], out_dir: Path, keep_state: bool, say: Callable[[str], None]) -> dict:
    """A complete training's train.json (state.pt removed unless ``keep_state``); ``result`` either way."""
    ctx = run.ctx
    if run.step < run.total:
        ctx.barrier()
        return result
    if ctx.is_main:
        summary_path, state_path = out_dir / SUMMARY_FILE, out_dir / STATE_FILE
        write_json(summary_path, result)
        if not keep_state:
            state_path.unlink(missing_ok=True)
            record_path(state_path).unlink(missing_ok=True)
        say(done_line(run, result, summary_path))
    ctx.barrier()
    return result


# ----------------------------------------------------------------------------------------------------
# Command line.


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m diffmem.training.loop", description="Train one run (also under torchrun for data parallel)."
    )
    parser.add_argument("--settings", required=True, help="run.json: the resolved run settings")
    parser.add_argument("--subset", required=True, help="subset.npz written by diffmem.data.save_subset")
    parser.add_argument("--out", required=True, help="output folder (snapshots, state.pt, train.json)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    parser.add_argument("--max-steps", type=int, default=None, help="stop (resumably) after this many steps")
    parser.add_argument("--time-budget", type=float, default=None, help="stop (resumably) after this many seconds")
    parser.add_argument("--checkpoint-every", type=int, default=None, help="steps between resumable states")
    parser.add_argument("--keep-state", action="store_true", help="keep state.pt after training")
    parser.add_argument("--log-every", type=int, default=None, help="steps between progress lines")
    parser.add_argument("--deterministic", action="store_true", help="deterministic kernels (CUDA: slower)")
    parser.add_argument("--micro-batch", type=int, default=None, help="images per pass of each process")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Train the run of ``--settings`` on ``--subset`` into ``--out`` (the main process also writes
    train/stats.jsonl and TensorBoard events); leave the process group at the end."""
    args = _parser().parse_args(argv)

    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(
        level=logging.INFO if rank == 0 else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.threads:
        torch.set_num_threads(args.threads)

    settings = read_json(args.settings)
    subset = data.load_subset(args.subset)
    # train/stats.jsonl (+ TensorBoard) from the main process, as a one-process training writes them
    records = metrics.recorder(args.out) if rank == 0 else contextlib.nullcontext(None)
    try:
        with records as record:
            train(
                settings,
                subset,
                args.out,
                device=args.device,
                max_steps=args.max_steps,
                time_budget_s=args.time_budget,
                checkpoint_every=args.checkpoint_every,
                keep_state=args.keep_state,
                log_every=args.log_every,
                deterministic=args.deterministic,
                progress=record,
                micro_batch=args.micro_batch,
            )
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
