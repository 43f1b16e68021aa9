"""Training metrics besides the log: TensorBoard event files, and the loss curve of a run.

``train/stats.jsonl`` (one JSON record per progress line: step, images, loss, loss_avg, grad_norm, lr,
ema_beta, images_per_s, elapsed_s, time) is written by :func:`diffmem.pipeline.train_run` through the
``progress`` hook of :func:`diffmem.train.train`. The same hook feeds :func:`tensorboard`, which writes
``train/tensorboard/`` event files when TensorBoard is installed (``pip install -e '.[tensorboard]'``) and
does nothing otherwise. :func:`plot_loss` draws stats.jsonl (``python -m diffmem plot-loss RUN``).
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
    import json

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


def plot_loss(stats: str | Path, out: str | Path) -> Path:
    """Loss (and its running average) and the learning rate against training images seen, as PNG or PDF
    (by ``out``'s suffix), in the project's figure style."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from diffmem.io import atomic_path
    from diffmem.plotting import PALETTE, STYLE

    out = Path(out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("png", "pdf"):
        raise ValueError(f"{out}: write .png or .pdf")
    recs = read_stats(stats)
    x = [r.get("images", r.get("step")) for r in recs]

    def col(key):
        return [r.get(key) for r in recs]

    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(6.5, 4.6), layout="constrained")
        FigureCanvasAgg(fig)
        ax, ax_lr = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        ax.plot(x, col("loss"), color=PALETTE[0], alpha=0.45, lw=1, label="loss")
        if any(v is not None for v in col("loss_avg")):
            ax.plot(x, col("loss_avg"), color=PALETTE[0], lw=1.8, label="loss (running average)")
        if all(v is not None and v > 0 for v in col("loss")):
            ax.set_yscale("log")
        ax.set_ylabel("training loss")
        ax.legend(loc="upper right")
        ax.set_title(f"{Path(stats)}: {len(recs)} records, step {recs[-1].get('step')}", fontsize=9)
        ax_lr.plot(x, col("lr"), color=PALETTE[1], lw=1.5)
        ax_lr.set_ylabel("learning rate")
        ax_lr.set_xlabel("training images seen")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
        with atomic_path(out) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150)
    return out
