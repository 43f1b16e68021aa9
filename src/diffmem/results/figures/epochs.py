"""Kind ``epochs``: memorization ratio vs training images seen, one line per (value, size), one panel
per experiment; every snapshot of a run is a point (a log axis when they span more than 30x), with an
epochs axis on top where every line has the same images per epoch."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter

from diffmem.results.figures.axes import (
    IMAGES_LABEL,
    NOT_LEVELLED_NOTE,
    ci_band,
    eng,
    legend,
    log_ticks,
    no_data,
    ratio_axis,
    reference_marks,
    reference_span,
    rings,
    threshold_line,
)
from diffmem.results.figures.style import MARKERS, colors
from diffmem.results.figures.tables import Exp, Thresholds, experiments, key, names, size_rows, thresholds

DENSE = 40  # more snapshots than this on a line: a marker on every (len // 20)-th only

REPLICATE_LINES_NOTE = (
    "Replicates (subset seeds, data.seed) of a value share its line style and marker, one "
    "legend entry: their spread shows the seed noise."
)


def draw_epochs(fig: Figure, spec: dict, table: pd.DataFrame) -> list[str]:
    """Draw kind ``epochs`` on ``fig``; returns the footnotes."""
    exps = experiments(spec, table)
    thr = thresholds(table)
    ncols = 1 if len(exps) == 1 else 2
    nrows = math.ceil(len(exps) / ncols)
    fig.set_size_inches(7.5 if ncols == 1 else 12, 4.6 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(exps) :]:
        ax.set_visible(False)
    ringed = False
    for ax, exp in zip(axes, exps, strict=False):  # axes: a full grid, maybe one more
        ringed |= epochs_panel(ax, exp, thr, spec)
    notes = ["Shaded: 95% Wilson interval of the ratio at each snapshot."] + ([NOT_LEVELLED_NOTE] if ringed else [])
    if spec.get("reference"):
        notes.append("Open markers: published values, in the colour of the line they belong to.")
    if any(e.replicated for e in exps):
        notes.append(REPLICATE_LINES_NOTE)
    return notes


def _lines(exp: Exp) -> list[tuple]:
    """(value, size, snapshot rows by images seen) per line of an experiment."""
    lines = []
    for v in exp.values:
        snaps = v.rows[(v.rows["kind"] == "snapshot") & v.rows["size"].notna()]
        for size in sorted(snaps["size"].unique()):
            r = snaps[snaps["size"] == size].sort_values("images_seen")
            lines.append((v, int(size), r))
    return lines


def epochs_panel(ax, exp: Exp, thr: Thresholds, spec: dict | None = None) -> bool:
    """Ratio over training per (value, size); True when a ring marks a run that had not levelled off.
    ``spec``'s ``x_scale`` (linear | log) overrides the automatic axis (log when the snapshots span more
    than 30x); its ``reference`` points are drawn on the line of their value and size."""
    spec = spec or {}
    ringed = False
    drawn = {}  # (value key, size) -> (colour, marker) of its line
    lines = _lines(exp)
    multi_value = len(exp.values) > 1
    sizes = sorted({s for _, s, _ in lines})
    size_colors = dict(zip(sizes, colors(len(sizes)), strict=True))
    styles = ["-", "--", ":", "-."]
    xs = np.concatenate([r["images_seen"].to_numpy(float) for *_, r in lines]) if lines else np.array([])
    pos = xs[np.isfinite(xs) & (xs > 0)]
    log_x = len(pos) > 0 and (spec["x_scale"] == "log" if spec.get("x_scale") else pos.max() / pos.min() > 30)
    for j, (v, size, r) in enumerate(lines):
        if log_x:
            r = r[r["images_seen"] > 0]
        x = r["images_seen"].to_numpy(float)
        color = size_colors[size] if not multi_value or len(sizes) > 1 else v.color
        vi = exp.groups.index(v.group)  # replicates of a value share its line style and marker
        ls = styles[vi % len(styles)] if multi_value else "-"
        ci_band(ax, x, r, color)
        ep = r["epochs"].dropna()
        ep_txt = f" ({eng(ep.max())} epochs)" if len(ep) else ""
        label = f"{v.display}, |D| = {size}" if multi_value else f"|D| = {size}{ep_txt}"
        if not v.first:
            label = "_replicate"  # one legend entry per value and size
        ax.plot(
            x,
            r["ratio"].to_numpy(float),
            ls=ls,
            marker=v.marker if multi_value else MARKERS[j % 11],
            color=color,
            label=label,
            zorder=3,
            markersize=4.5,
            markevery=None if len(x) <= DENSE else len(x) // (DENSE // 2),  # dense snapshots: fewer markers
        )
        if v.first:
            drawn[(key(v.group), size)] = (color, v.marker if multi_value else MARKERS[j % 11])
        size_row = size_rows(v.rows)
        size_row = size_row[size_row["size"] == size]
        if len(size_row) and bool(size_row["_open"].iloc[0]) and len(r):
            ringed |= rings(ax, x[-1:], r.iloc[-1:].assign(_open=True))
    threshold_line(ax, thr)
    if log_x:
        ax.set_xscale("log")
        log_ticks(ax.xaxis, pos.min(), pos.max())
    else:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(IMAGES_LABEL)
    ratio_axis(ax, thr)
    ax.set_title(exp.title)
    if not lines:
        no_data(ax, "no snapshots")
    reference_marks(ax, reference_images(spec, exp, drawn))
    epoch_axis(ax, [r for *_, r in lines])
    legend(ax, sum(v.first for v, *_ in lines) + 1)
    return ringed


def reference_images(spec: dict, exp: Exp, drawn: dict) -> list[tuple]:
    """``spec["reference"]`` points ``{value, size, epochs, ratio, label}`` of this panel's lines, at
    epochs x |D| images seen (marks for :func:`~diffmem.results.figures.axes.reference_marks`)."""
    marks = []
    for p in spec.get("reference") or []:
        match = next((v for v in exp.values if key(p["value"]) in names(v)), None)
        if match is None or p.get("epochs") is None or p.get("experiment") not in (None, exp.name) or "ratio" not in p:
            continue
        for (k, size), (color, marker) in drawn.items():
            if k == key(match.group) and p.get("size") in (None, size):
                label = p.get("label") or "paper"
                marks.append((float(p["epochs"]) * size, float(p["ratio"]), color, marker, label, *reference_span(p)))
    return marks


def epoch_axis(ax, frames: list[pd.DataFrame]) -> None:
    """A secondary x axis in epochs when every line has the same images per epoch (one |D|)."""
    per_epoch = []
    for r in frames:
        ok = r[(r["epochs"] > 0) & (r["images_seen"] > 0)]
        per_epoch += list(ok["images_seen"] / ok["epochs"])
    if not per_epoch or max(per_epoch) / min(per_epoch) > 1.001:
        return
    k = float(np.median(per_epoch))
    sec = ax.secondary_xaxis("top", functions=(lambda x: np.asarray(x) / k, lambda e: np.asarray(e) * k))
    sec.set_xlabel("epochs", fontsize=9)
    sec.xaxis.set_major_formatter(EngFormatter(sep=""))
