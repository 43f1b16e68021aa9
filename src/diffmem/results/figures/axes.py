"""Pieces every kind of figure draws with: axis labels, the ratio axis, the EMM threshold line, 95%
intervals, log ticks in plain numbers, rings around runs that had not levelled off, legends."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter, PercentFormatter

from diffmem.results.figures.tables import Thresholds

SIZE_LABEL = "training-set size |D| (images)"
RATIO_LABEL = "memorization ratio\n(share of samples, d1/d2 < {ratio_threshold})"
IMAGES_LABEL = "training images seen"
EMM_LABEL = "EMM (largest |D| with ratio ≥ {emm_threshold}, images)"
GEOMETRY_LABEL = "median nearest-neighbour distance\n(per pixel, 0-255)"

#: Drawn where a run's ratio had not levelled off (diffmem.science.convergence): an open ring around the point.
NOT_LEVELLED_NOTE = (
    "○ ring: the ratio had not levelled off over the run's last two snapshots (outside each "
    "other's 95% interval): a budget-bound result, more training would change it."
)
REPLICATE_NOTE = "Replicates (subset seeds, data.seed) of a value share its colour: their spread shows the seed noise."


def threshold_line(ax, thr: Thresholds, vertical: bool = False) -> None:
    """The EMM threshold as a dashed line (horizontal on a ratio y axis, vertical on a ratio x axis)."""
    if thr.emm is None:
        return
    line = ax.axvline if vertical else ax.axhline
    line(thr.emm, ls="--", lw=1.1, color="0.35", zorder=1, label=f"EMM threshold {thr.emm_text}")


def ratio_axis(ax, thr: Thresholds) -> None:
    """The y axis of a memorization ratio: 0-100% with the score threshold in its label."""
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel(RATIO_LABEL.format(ratio_threshold=thr.ratio_text))


def ci_band(ax, x, rows: pd.DataFrame, color: str) -> None:
    """The 95% interval of ``rows``' ratios at ``x``: a band, or an error bar for a single point."""
    lo, hi = rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.sum() >= 2:
        ax.fill_between(np.asarray(x, float)[ok], lo[ok], hi[ok], color=color, alpha=0.18, lw=0, zorder=2)
    elif ok.sum() == 1:  # a single point: an error bar shows its interval
        y = rows["ratio"].to_numpy(float)[ok]
        ax.errorbar(
            np.asarray(x, float)[ok],
            y,
            yerr=[y - lo[ok], hi[ok] - y],
            fmt="none",
            ecolor=color,
            elinewidth=1.0,
            zorder=2,
        )


def log_ticks(axis, lo: float, hi: float) -> None:
    """Plain-number ticks on a log axis (10, 20, 50, 1k ...), denser when the range is short."""
    span = hi / lo if lo > 0 and hi > lo else 10.0
    subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0) if span < 8 else (1.0, 2.0, 5.0) if span < 2000 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(EngFormatter(sep=""))
    axis.set_minor_locator(LogLocator(base=10, subs="auto"))
    axis.set_minor_formatter(NullFormatter())


def eng(x: float) -> str:
    """1234 -> '1.23k', 40000 -> '40k', 12.5 -> '12.5'."""
    return EngFormatter(sep="", places=None).format_eng(float(x)) if abs(x) >= 1000 else f"{x:.3g}"


def no_data(ax, text: str = "no data") -> None:
    """A grey note in the middle of an empty panel."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def legend(ax, n_entries: int, **kw) -> None:
    """A legend when there is something to list, in two columns past six entries."""
    if n_entries and ax.get_legend_handles_labels()[0]:
        ax.legend(ncol=1 if n_entries <= 6 else 2, loc=kw.pop("loc", "best"), **kw)


def rings(ax, x, rows: pd.DataFrame) -> bool:
    """Open rings around the points whose run had not levelled off (:data:`NOT_LEVELLED_NOTE`)."""
    is_open = rows["_open"].to_numpy(bool) if "_open" in rows else np.zeros(len(rows), bool)
    if not is_open.any():
        return False
    ax.plot(
        np.asarray(x, float)[is_open],
        rows["ratio"].to_numpy(float)[is_open],
        ls="none",
        marker="o",
        ms=10,
        mfc="none",
        mec="0.15",
        mew=1.0,
        zorder=4,
    )
    return True


def reference_span(p: dict) -> tuple:
    """A reference point's range ``(low, high)`` where it gives one, else ``()`` (the tail of a mark)."""
    return (float(p["low"]), float(p["high"])) if p.get("low") is not None and p.get("high") is not None else ()


def reference_marks(ax, marks: list[tuple]) -> None:
    """Published points, each ``(x, y, colour, marker, legend label)`` or with ``low, high`` after them
    (a range the paper gives: a vertical bar from low to high), as open markers in the colour of the line
    they belong to; one legend entry per label (a neutral open marker)."""
    for x, y, color, marker, _, *span in marks:
        if len(span) == 2 and None not in span:
            ax.plot([x, x], span, ls="-", lw=1.4, color=color, alpha=0.8, zorder=5, label="_reference_range")
        ax.plot([x], [y], ls="none", marker=marker, ms=8, mfc="none", mec=color, mew=1.4, zorder=5,
                label="_reference")  # fmt: skip
    for label in dict.fromkeys(m[4] for m in marks):
        ax.plot([], [], ls="none", marker="o", ms=8, mfc="none", mec="0.25", mew=1.4, label=label)
