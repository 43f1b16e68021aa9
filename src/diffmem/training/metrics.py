"""Training metrics besides the log: stats.jsonl and TensorBoard event files.

``train/stats.jsonl`` (one JSON record per progress line: step, images, loss, loss_avg, grad_norm, lr,
ema_beta, images_per_s, elapsed_s, time) is written by :func:`diffmem.steps.train.train_run` through the
``progress`` hook of :func:`diffmem.training.loop.train`. The same hook feeds :func:`tensorboard`, which writes
``train/tensorboard/`` event files when TensorBoard is installed (``pip install -e '.[tensorboard]'``) and
does nothing otherwise. :func:`diffmem.results.loss_curve.plot_loss` draws stats.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_log = logging.getLogger(__name__)

TENSORBOARD_DIR = "tensorboard"  # under the run's train/ folder
STATS_FILE = "stats.jsonl"  # train/stats.jsonl: one JSON record per progress line of a training
# stats.jsonl fields written as TensorBoard scalars (x axis: training images seen, as EDM's kimg)
SCALARS = ("loss", "loss_avg", "grad_norm", "lr", "ema_beta", "images_per_s")


def _summary_writer() -> type | None:
    """TensorBoard's SummaryWriter (torch's, which needs the ``tensorboard`` package), or None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch.utils.tensorboard raises ImportError without the tensorboard package
        return None
    return SummaryWriter


@contextlib.contextmanager
def tensorboard(train_dir: str | Path, log: logging.Logger = _log) -> Iterator[Callable[[dict], None]]:
    """A progress hook writing each record's :data:`SCALARS` to ``<train_dir>/tensorboard/`` (one event file
    per chain link; TensorBoard merges them), against images seen. A no-op hook without TensorBoard."""
    writer_cls = _summary_writer()
    if writer_cls is None:
        yield lambda rec: None
        return
    writer = writer_cls(log_dir=str(Path(train_dir) / TENSORBOARD_DIR))
    log.info("TensorBoard events in %s", Path(train_dir) / TENSORBOARD_DIR)

    def add(rec: dict) -> None:
        x = int(rec.get("images", rec.get("step", 0)))
        for key in SCALARS:
            if rec.get(key) is not None:
                writer.add_scalar(f"train/{key}", float(rec[key]), global_step=x)
        writer.flush()

    try:
        yield add
    finally:
        writer.close()


@contextlib.contextmanager
def recorder(train_dir: str | Path, log: logging.Logger = _log) -> Iterator[Callable[[dict], None]]:
    """The progress hook of a training (``train.train(progress=...)``): each record as one line of
    ``<train_dir>/stats.jsonl`` (appended, so every link of a chain adds to it) and as TensorBoard scalars."""
    Path(train_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(train_dir) / STATS_FILE, "a") as stats, tensorboard(train_dir, log) as board:

        def record(rec: dict) -> None:
            stats.write(json.dumps(rec) + "\n")
            stats.flush()
            board(rec)

        yield record


def read_stats(path: str | Path) -> list[dict[str, Any]]:
    """The records of a stats.jsonl; ``path`` may be the file, the run's train/ folder or its run folder.
    A torn last line (a job killed mid-write) is skipped; records are sorted by images seen."""
    p = Path(path)
    for cand in (p, p / STATS_FILE, p / "train" / STATS_FILE):
        if cand.is_file():
            p = cand
            break
    else:
        raise FileNotFoundError(f"no {STATS_FILE} at {path} (give a run folder, its train/ or the file)")
    recs = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:
            _log.warning("%s:%d: not JSON, skipped", p, n)
    if not recs:
        raise ValueError(f"{p} holds no records")
    return sorted(recs, key=lambda r: (r.get("images", 0), r.get("step", 0)))
