"""What a training reports while it runs: its log lines (start, progress, pause, done) and the records of
the ``progress`` hook (:mod:`diffmem.training.metrics` writes them to ``train/stats.jsonl``).

Progress lines (step, loss, running loss, |grad|, lr, images/s, elapsed, ETA) come about ``LOG_LINES`` times
per run and at least every ``LOG_EVERY_S`` seconds, only from the main process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffmem.science.schedule import ema_beta

if TYPE_CHECKING:
    from diffmem.training.run import Run

__all__ = ["Progress", "done_line", "format_time", "micro_line", "pause_line", "smooth_loss", "start_line"]

LOG_EVERY_S = 10.0  # Progress is logged at least this often (seconds)...
LOG_LINES = 20  # ...and about this many times per run.
LOSS_EMA_BETA = 0.98  # Smoothing of the running loss reported in logs and snapshots.


def smooth_loss(running: float | None, loss: float) -> float:
    """The running loss after a step of ``loss`` (the first step's loss when there is none yet)."""
    return loss if running is None else LOSS_EMA_BETA * running + (1 - LOSS_EMA_BETA) * loss


def format_time(s: float) -> str:
    """Seconds as ``H:MM:SS`` (``M:SS`` under an hour)."""
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Progress lines (step, loss, |grad|, lr, images/s, elapsed, ETA) about ``LOG_LINES`` times per run and
    at least every ``LOG_EVERY_S`` seconds, and the same numbers as a record for a ``progress`` hook."""

    def __init__(self, run: Run, say: Callable[[str], None], log_every: int | None, hook):
        self.run, self.say, self.hook = run, say, hook
        self.every = int(log_every or max(1, run.total // LOG_LINES))
        self.t_last = time.perf_counter()

    def due(self, now: float, stop: int) -> bool:
        """Whether the step just done gets a line (the main process only)."""
        run = self.run
        return run.ctx.is_main and (
            run.step % self.every == 0
            or run.step == stop
            or now - self.t_last >= LOG_EVERY_S
            or run.step == run.start_step + 1
        )

    def __call__(self, loss_v: float, gnorm_v: float, lr_now: float, stop: int) -> None:
        run, now = self.run, time.perf_counter()
        if not self.due(now, stop):
            return
        elapsed = now - run.t0
        ips = (run.step - run.start_step) * run.batch / max(elapsed, 1e-9)
        eta = (run.total - run.step) * run.batch / max(ips, 1e-9)
        self.say(
            f"step {run.step}/{run.total} loss {loss_v:.4f} (avg {run.loss_ema:.4f}) |grad| {gnorm_v:.3g} "
            f"lr {lr_now:.3g} {ips:.0f} img/s elapsed {format_time(elapsed)} eta {format_time(eta)}"
        )
        if self.hook is not None:
            self.hook({
                "step": run.step, "total_steps": run.total, "images": run.step * run.batch, "loss": loss_v,
                "loss_avg": run.loss_ema, "grad_norm": gnorm_v, "lr": lr_now,
                "ema_beta": ema_beta(run.rates, run.step - 1), "images_per_s": ips, "elapsed_s": elapsed,
                "time": time.time(),
            })  # fmt: skip
        self.t_last = now


# ----------------------------------------------------------------------------------------------------
# The lines at the start, at a pause and at the end.


def start_line(run: Run) -> str:
    """What a training is about to do: parameters, images, device, steps, snapshots, where it resumes."""
    plan, ctx = run.plan, run.ctx
    return (
        f"training {run.n_params:,} parameters on {run.n_images} images ({run.dev}, {ctx.world_size} process"
        f"{'es' if ctx.world_size > 1 else ''}): {run.total} steps of batch {run.batch} = {plan['images']:,} "
        f"images ({plan['epochs']:.4g} epochs), snapshots at steps {plan['snapshot_steps']}"
        + (f"; resuming at step {run.step}" if run.step else "")
    )


def micro_line(run: Run) -> str:
    """How a step is computed: the micro-batch of each process's share of the batch, in rounds."""
    local, k = run.hi - run.lo, len(run.rounds)
    return f"micro-batch {run.micro} of per-GPU batch {local} ({k} round{'s' if k > 1 else ''})"


def pause_line(run: Run, reason: str) -> str:
    """Why a training pauses, and where the next attempt resumes."""
    return (
        f"pausing at step {run.step}/{run.total} before the job's time runs out ({reason}); "
        f"state.pt holds step {run.step}: the next attempt resumes from it"
    )


def done_line(run: Run, result: Mapping[str, Any], summary_path: Path) -> str:
    """A finished training's steps, images, time and speed."""
    return (
        f"done: {run.step} steps, {run.step * run.batch:,} images in {format_time(result['wall_s'])}, "
        f"{result['images_per_s']:.0f} img/s; summary in {summary_path}"
    )
