"""Pausing a training before its job's walltime: a time budget, and SIGTERM/SIGUSR1 (what Slurm sends ahead
of a walltime). A paused training has written state.pt; the next call (the next link of a chain) resumes."""

from __future__ import annotations

import signal
import threading

import torch

__all__ = ["Pause"]

PAUSE_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
SAVE_MARGIN_S = 5.0  # time kept free for the last save, besides two steps


class Pause:
    """Decides when a training must stop before its job's walltime: when the time budget would not hold
    one more step plus a save, or once SIGTERM/SIGUSR1 arrived. Every rank takes the same decision.

    A context manager: the signal handlers are installed on entry (in the main thread only) and the
    previous ones restored on exit.
    """

    def __init__(self, budget_s: float | None, ctx):
        self.budget_s, self.ctx, self.signal, self.reason = budget_s, ctx, None, ""
        self._saved = {}
        if threading.current_thread() is threading.main_thread():
            for sig in PAUSE_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signal = signal.Signals(signum).name

    def due(self, elapsed_s: float, loop_s: float, steps_done: int) -> bool:
        """``elapsed_s`` since the call began, ``loop_s`` of them in ``steps_done`` steps."""
        if self.budget_s is None and not self._saved:
            return False
        per_step = loop_s / max(steps_done, 1)
        over = self.budget_s is not None and elapsed_s + 2 * per_step + SAVE_MARGIN_S > self.budget_s
        flag = 1.0 if (over or self.signal) else 0.0
        if self.ctx.distributed:
            flag = float(self.ctx.all_mean(torch.tensor(flag, device=self.ctx.device)))
        if flag > 0:
            self.reason = f"received {self.signal}" if self.signal else f"time budget {self.budget_s:.0f} s"
        return flag > 0

    def __enter__(self) -> Pause:
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}
