"""The loss curve of one run, drawn from its ``train/stats.jsonl`` (``python -m diffmem plot-loss RUN``)."""

from __future__ import annotations

from pathlib import Path

from diffmem.io import atomic_path
from diffmem.results.figures import PALETTE, STYLE
from diffmem.training.metrics import read_stats


def plot_loss(stats: str | Path, out: str | Path) -> Path:
    """Loss (and its running average) and the learning rate against training images seen, as PNG or PDF
    (by ``out``'s suffix), in the project's figure style."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

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
