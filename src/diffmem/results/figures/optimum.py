"""Kind ``optimum``: sample grids beside their nearest training images, one row per (value, size), with
a bar chart of the runs' memorization ratios."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from diffmem.results.figures.axes import no_data, threshold_line
from diffmem.results.figures.style import PALETTE
from diffmem.results.figures.tables import Exp, Thresholds, Val, experiments, finite, size_rows, thresholds


def draw_optimum(fig: Figure, spec: dict, table: pd.DataFrame) -> list[str]:
    """Draw kind ``optimum`` on ``fig``; returns the footnotes."""
    exps = experiments(spec, table)
    entries = []  # (exp, value, size, row or None, (samples grid, nearest grid) or None)
    for exp in exps:
        for v in exp.values:
            sizes = size_rows(v.rows)
            for size in sorted(set(v.grids) | {int(s) for s in sizes["size"]}):
                row = sizes[sizes["size"] == size]
                entries.append((exp, v, size, row.iloc[0] if len(row) else None, v.grids.get(size)))
    thr = thresholds(table)
    n = max(len(entries), 1)
    fig.set_size_inches(14, 2.6 * n + 0.8)
    gs = fig.add_gridspec(n, 3, width_ratios=[1, 2.6, 1.25])
    missing = False
    for i, (exp, v, size, row, grids) in enumerate(entries):
        name = entry_name(exp, v, size)
        scored = row is not None and finite(row["ratio"])
        ratio = f"memorization {row['ratio']:.0%}" if scored else "no score"
        for j, what in enumerate(("samples", "samples (upper row) above their nearest training images")):
            ax = fig.add_subplot(gs[i, j])
            ok = show_image(ax, Path(grids[j]) if grids else None)
            missing |= not ok
            ax.set_title(f"{name}: {ratio}" if j == 0 else what, fontsize=9.5)
    bar = fig.add_subplot(gs[:, 2])
    ratio_bars(bar, entries, thr)
    if not entries:
        no_data(bar)
    notes = [
        f"Memorized: d1/d2 < {thr.ratio_text} (d1, d2: L2 distance to the nearest and second-nearest "
        "training image). Bars: 95% Wilson interval."
    ]
    if missing:
        notes.append("'missing': no such image for this run.")
    return notes


def entry_name(exp: Exp, v: Val, size: int) -> str:
    """``<experiment title> / <value> / |D| = <size>`` (the value left out for a lone base value)."""
    parts = [exp.title]
    if len(exp.values) > 1 or v.display != "base":
        parts.append(v.display)
    return " / ".join(parts) + f" / |D| = {size}"


def show_image(ax, path: Path | None) -> bool:
    """Show the image at ``path`` without axes; False (and a note) when it is missing."""
    ax.set_axis_off()
    if path is None or not path.is_file():
        no_data(ax, f"missing: {path.name if path else 'image'}")
        return False
    from PIL import Image

    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    ax.imshow(img, interpolation="nearest", aspect="equal")
    return True


def ratio_bars(ax, entries: list, thr: Thresholds) -> None:
    """One horizontal bar per run: its memorization ratio with its 95% interval and the EMM threshold."""
    n = len(entries)
    y = np.arange(n)[::-1]
    for yi, (exp, v, _size, row, _) in zip(y, entries, strict=True):
        if row is None or not finite(row["ratio"]):
            ax.text(0.02, yi, "no score", va="center", fontsize=8, color="0.4")
            continue
        r = float(row["ratio"])
        color = v.color if len(exp.values) > 1 else _exp_color(entries, exp)
        ax.barh(yi, r, color=color, height=0.45, zorder=2)
        if finite(row["ci_low"]) and finite(row["ci_high"]):
            ax.errorbar(
                r,
                yi,
                xerr=[[r - row["ci_low"]], [row["ci_high"] - r]],
                fmt="none",
                ecolor="0.2",
                elinewidth=1,
                capsize=3,
                zorder=3,
            )
        ax.text(
            min(r, 1.0) + 0.02 if r < 0.8 else r - 0.02,
            yi + 0.25,
            f"{r:.0%}",
            va="bottom",
            ha="left" if r < 0.8 else "right",
            fontsize=8.5,
        )
    threshold_line(ax, thr, vertical=True)
    ax.set_yticks(y)
    names = [entry_name(e, v, s).replace(" / |D|", "\n|D|") for e, v, s, *_ in entries]
    ax.set_yticklabels(names, fontsize=8.5)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, 1.05)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("memorization ratio (share of samples)")
    ax.set_title("memorization ratio per run")
    ax.grid(axis="y", visible=False)
    if thr.emm is not None:
        ax.legend(loc="lower right")


def _exp_color(entries: list, exp: Exp) -> str:
    order = list(dict.fromkeys(e.name for e, *_ in entries))
    return PALETTE[order.index(exp.name) % (len(PALETTE) - 1)]
