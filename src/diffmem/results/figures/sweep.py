"""Kind ``sweep``: per experiment one row: memorization ratio vs training-set size |D| (one line per
value, 95% interval band, the EMM threshold, each value's EMM bracket in a strip above), the EMM per
value (bracket as an error bar on a log axis, open markers where the search did not close a bracket)
and, for a factor that changes the data, the data's geometry against |D|."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diffmem.results.figures.axes import (
    EMM_LABEL,
    GEOMETRY_LABEL,
    NOT_LEVELLED_NOTE,
    REPLICATE_NOTE,
    SIZE_LABEL,
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
from diffmem.results.figures.style import PALETTE
from diffmem.results.figures.tables import (
    Exp,
    Thresholds,
    Val,
    exp_rows,
    experiments,
    finite,
    key,
    names,
    size_rows,
    thresholds,
    truthy,
)
from diffmem.science import emm

REF_SHIFT = 0.25  # a published EMM stands this far right of its value's own


@dataclass
class Emm:
    """What a figure knows about one value's EMM."""

    lower: float | None  # EMM >= lower
    upper: float | None  # EMM < upper
    status: str
    non_monotone: bool


def emm_of(v: Val, thr: Thresholds) -> Emm:
    """What is known about a value's EMM: the bounds its search wrote to the table
    (:func:`diffmem.science.emm.bounds`), or, for a value evaluated at listed sizes only, what those sizes
    say (:func:`diffmem.science.emm.from_ratios`)."""
    er = v.rows[v.rows["kind"] == "emm"]
    if len(er):
        r = er.iloc[-1]
        return Emm(
            lower=float(r["emm_lower"]) if finite(r["emm_lower"]) else None,
            upper=float(r["emm_upper"]) if finite(r["emm_upper"]) else None,
            status=str(r["emm_status"]) if isinstance(r["emm_status"], str) else "unknown",
            non_monotone=truthy(r["non_monotone"]),
        )
    sizes = size_rows(v.rows)
    sizes = sizes[np.isfinite(sizes["ratio"].to_numpy(float))]
    if not len(sizes) or thr.emm is None:
        return Emm(lower=None, upper=None, status="unknown", non_monotone=False)
    res = emm.from_ratios(dict(zip(sizes["size"].astype(int), sizes["ratio"], strict=True)), thr.emm)
    lower, upper = emm.bounds(res)
    return Emm(lower=lower, upper=upper, status="unknown", non_monotone=bool(res["non_monotone"]))


FLAG_NOTES = {
    "below_lo": "▽ open, arrow down: the smallest searched size already fails, EMM < that size (below emm.lo).",
    "above_hi": "△ open, arrow up: the largest searched size still passes, EMM ≥ that size (above emm.hi).",
    "max_rounds": "◇ open: the search stopped at max_rounds before the bracket reached the tolerance.",
    "non_monotone": "* the ratio is not monotone in |D| for this value (a larger size passes after a "
    "smaller one fails); the bracket uses the smallest failing size.",
    "unknown": "n/a: no EMM result for this value.",
    "not_levelled": NOT_LEVELLED_NOTE,
    "replicates": REPLICATE_NOTE,
    "reference": "Open markers (legend: paper): published values in the colour of their value, at their |D| "
    "(left) and beside our EMM (right), with a bar where the paper gives a range.",
    "geometry": "Data geometry: median distance of a training image to its nearest other one (RMS pixel "
    "difference); the number is its ratio to the median distance between two images (low = crowded "
    "set, a copy must be more exact to count as memorized).",
}


def draw_sweep(fig: Figure, spec: dict, table: pd.DataFrame) -> list[str]:
    """Draw kind ``sweep`` on ``fig``; returns the footnotes."""
    exps = experiments(spec, table)
    thr = thresholds(table)
    nmax = max((len(e.values) for e in exps), default=1)
    strip_h = 0.25 + 0.11 * nmax
    fig.set_size_inches(11.5, len(exps) * (3.9 + strip_h) + 0.6)
    subfigs = fig.subfigures(len(exps), 1, squeeze=False)[:, 0] if len(exps) > 1 else [fig]
    flags: set[str] = set()
    for sf, exp in zip(subfigs, exps, strict=True):
        if len(exps) > 1:
            sf.suptitle(exp.title, fontsize=11.5, fontweight="bold")
        geometry = exp.data_factor and bool(np.isfinite(size_rows(exp_rows(exp))["nn_distance"]).any())
        gs = sf.add_gridspec(
            2,
            3 if geometry else 2,
            height_ratios=[strip_h, 3.6],
            width_ratios=[1.35, 1, 0.9] if geometry else [1.35, 1],
        )
        ax = sf.add_subplot(gs[1, 0])
        strip = sf.add_subplot(gs[0, 0], sharex=ax)
        ax_emm = sf.add_subplot(gs[:, 1])
        if geometry:
            geometry_panel(sf.add_subplot(gs[1, 2], sharex=ax), exp)
            flags.add("geometry")
        emms = [emm_of(v, thr) for v in exp.values]
        refs, emm_refs = sweep_references(spec, exp, "ratio"), sweep_references(spec, exp, "emm")
        if ratio_panel(ax, exp, thr, refs):
            flags.add("not_levelled")
        if exp.replicated:
            flags.add("replicates")
        if refs or emm_refs:
            flags.add("reference")
        emm_strip(strip, exp, emms)
        flags |= emm_panel(ax_emm, exp, emms, thr, emm_refs)
        prefix = f"{exp.title}: " if len(exps) == 1 else ""
        strip.set_title(textwrap.fill(f"{prefix}memorization ratio vs |D|", 52))  # long titles: two lines
        ax_emm.set_title(textwrap.fill(f"{prefix}EMM per value", 40))
    notes = [
        f"Shaded: 95% Wilson interval of the ratio. Strip and right panel: EMM bracket [a, b) "
        f"(a passes ratio ≥ {thr.emm_text}, b fails); marker at the geometric mean."
    ]
    order = ("below_lo", "above_hi", "max_rounds", "non_monotone", "unknown", "not_levelled", "replicates", "reference",
             "geometry")  # fmt: skip
    return notes + [FLAG_NOTES[f] for f in order if f in flags]


def sweep_references(spec: dict, exp: Exp, metric: str) -> list[tuple[Val, dict]]:
    """``spec["reference"]`` points of this experiment's values that give ``metric`` (``ratio``, at a
    size; ``emm``), each with the value it belongs to (the first of its replicates)."""
    out = []
    for p in spec.get("reference") or []:
        if metric not in p or p.get("experiment") not in (None, exp.name) or (metric == "ratio" and not p.get("size")):
            continue
        v = next((v for v in exp.values if v.first and key(p["value"]) in names(v)), None)
        if v is not None:
            out.append((v, p))
    return out


def geometry_panel(ax, exp: Exp) -> None:
    """Data geometry of each value's subsets against |D|: the median distance of an image to its nearest
    other training image (line) and, at the last size, its ratio to the median pair distance (text)."""
    for v in exp.values:
        r = size_rows(v.rows)
        r = r[np.isfinite(r["nn_distance"].to_numpy(float))]
        if not len(r):
            continue
        x, y = r["size"].to_numpy(float), r["nn_distance"].to_numpy(float)
        ax.plot(
            x,
            y,
            marker=v.marker,
            color=v.color,
            markersize=3.5,
            lw=1.2 if v.first else 0.8,
            alpha=1.0 if v.first else 0.6,
        )
        q = r["nn_pair_ratio"].to_numpy(float)[-1]
        if v.first and np.isfinite(q):
            ax.annotate(
                f"{q:.2f}",
                (x[-1], y[-1]),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize=7.5,
                color=v.color,
                va="center",
            )
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(SIZE_LABEL)
    ax.set_ylabel(GEOMETRY_LABEL, fontsize=8.5)
    ax.set_title("data geometry", fontsize=9.5)


def ratio_panel(ax, exp: Exp, thr: Thresholds, refs: list[tuple[Val, dict]] = ()) -> bool:
    """Ratio vs |D| per value, with the published points ``refs`` (:func:`sweep_references`) as open
    markers; True when a ring marks a ratio that had not levelled off."""
    n_entries, ringed = 0, False
    for v in exp.values:
        r = size_rows(v.rows)
        if not len(r):
            continue
        x = r["size"].to_numpy(float)
        if v.first or not exp.replicated:
            ci_band(ax, x, r, v.color)
        label = v.display if len(exp.groups) > 1 or v.display != "base" else exp.title
        ax.plot(
            x,
            r["ratio"].to_numpy(float),
            marker=v.marker,
            color=v.color,
            zorder=3,
            markersize=4.5,
            label=label if v.first else None,
            lw=1.6 if v.first else 1.0,
            alpha=1.0 if v.first else 0.7,
        )
        ringed |= rings(ax, x, r)
        n_entries += v.first
    threshold_line(ax, thr)
    marks = [(float(p["size"]), float(p["ratio"]), v.color, v.marker, p.get("label") or "paper", *reference_span(p))
             for v, p in refs]  # fmt: skip
    reference_marks(ax, marks)
    ax.set_xscale("log")
    sizes = [s for v in exp.values for s in size_rows(v.rows)["size"] if s > 0] + [m[0] for m in marks]
    if sizes:
        ax.set_xlim(min(sizes) / 1.25, max(sizes) * 1.25)
        log_ticks(ax.xaxis, min(sizes) / 1.25, max(sizes) * 1.25)
    ax.set_xlabel(SIZE_LABEL)
    ratio_axis(ax, thr)
    if n_entries == 0:
        no_data(ax, "no evaluated sizes")
    legend(ax, n_entries + 1, title=exp.factor if len(exp.groups) > 1 else None)
    return ringed


def emm_strip(ax, exp: Exp, emms: list[Emm]) -> None:
    """One row per value: its EMM bracket on the |D| axis of the ratio panel below."""
    n = len(exp.values)
    for i, (v, e) in enumerate(zip(exp.values, emms, strict=True)):
        y = n - 1 - i
        if e.lower is not None and e.upper is not None:
            ax.plot([e.lower, e.upper], [y, y], color=v.color, lw=3, solid_capstyle="butt")
            ax.plot([e.lower, e.upper], [y, y], ls="none", marker="|", color=v.color, markersize=9)
        elif e.upper is not None or e.lower is not None:  # EMM < upper: arrow left; EMM >= lower: right
            bound, dx = (e.upper, -22) if e.upper is not None else (e.lower, 22)
            ax.plot([bound], [y], ls="none", marker="|", color=v.color, markersize=9)
            ax.annotate(
                "",
                xy=(bound, y),
                xytext=(dx, 0),
                textcoords="offset points",
                arrowprops={"arrowstyle": "<|-", "color": v.color, "lw": 1.5},
            )
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks([])
    ax.set_ylabel("EMM", rotation=0, ha="right", va="center", fontsize=8.5)
    ax.grid(axis="y", visible=False)
    ax.tick_params(axis="x", labelbottom=False)
    ax.spines["left"].set_visible(False)


def emm_panel(ax, exp: Exp, emms: list[Emm], thr: Thresholds, refs: list[tuple[Val, dict]] = ()) -> set[str]:
    """The EMM of each value on a log axis, one position per value (replicates side by side), and the
    published EMMs ``refs`` (:func:`sweep_references`) beside; returns the flags (:data:`FLAG_NOTES`) its
    markers need explained."""
    flags: set[str] = set()
    bounds = [b for e in emms for b in (e.lower, e.upper) if b is not None and b > 0]
    marks = [(exp.groups.index(v.group) + REF_SHIFT, float(p["emm"]), v.color, v.marker, p.get("label") or "paper",
              *reference_span(p)) for v, p in refs]  # fmt: skip
    bounds += [b for m in marks for b in (m[1], *m[5:]) if b > 0]
    ymin, ymax = (min(bounds) / 2.5, max(bounds) * 2.5) if bounds else (1.0, 10.0)
    ax.set_yscale("log")
    ax.set_ylim(ymin, ymax)
    groups = exp.groups
    label_bounds = len(exp.values) <= 5  # more values: the bound labels would run into each other
    for v, e in zip(exp.values, emms, strict=True):
        members = [w for w in exp.values if w.group == v.group]
        j = members.index(v)
        i = groups.index(v.group) + (0.3 * (j / max(len(members) - 1, 1) - 0.5) if len(members) > 1 else 0.0)
        if e.lower is not None and e.upper is not None:
            top = _bracket_mark(ax, i, e, v.color)
            if e.status not in ("found", "searching"):
                flags.add("max_rounds" if e.status == "max_rounds" else "unknown")
        elif e.upper is not None or e.lower is not None:
            top = _bound_mark(ax, i, e, v.color, label_bounds)
            flags.add(e.status)
        else:
            ax.text(i, math.sqrt(ymin * ymax), "n/a", ha="center", va="center", color="0.4", fontsize=9)
            flags.add("unknown")
            top = None
        if e.non_monotone:
            y = top if top is not None else math.sqrt(ymin * ymax)
            ax.annotate(
                "*",
                (i, y),
                xytext=(-9, 2),
                textcoords="offset points",
                fontsize=14,
                fontweight="bold",
                color=v.color,
                ha="center",
                va="bottom",
            )
            flags.add("non_monotone")
    flags.discard("found")
    flags.discard("searching")
    reference_marks(ax, marks)
    if marks:
        ax.legend(loc="best")
    _emm_axis(ax, exp, thr, ymin, ymax)
    return flags


def _bracket_mark(ax, i: float, e: Emm, c: str) -> float:
    """A closed bracket [lower, upper) as an error bar around its geometric mean (open diamond where
    the search did not finish); returns its top."""
    mid = math.sqrt(e.lower * e.upper)
    open_ = e.status not in ("found", "searching")
    ax.errorbar(
        [i],
        [mid],
        yerr=[[mid - e.lower], [e.upper - mid]],
        fmt="D" if open_ else "o",
        color=c,
        mfc="white" if open_ else c,
        ms=7,
        elinewidth=2,
        capsize=5,
        capthick=1.5,
        zorder=3,
    )
    return e.upper


def _bound_mark(ax, i: float, e: Emm, c: str, label_bound: bool) -> float:
    """A one-sided EMM: an open triangle with an arrow, down for EMM < upper, up for EMM >= lower;
    returns the bound."""
    below = e.upper is not None
    bound, marker, dy, text = (e.upper, "v", -1, "<") if below else (e.lower, "^", 1, "≥")
    ax.plot([i], [bound], marker=marker, ms=8, color=c, mfc="white", mew=1.5, ls="none", zorder=3)
    ax.annotate(
        "",
        xy=(i, bound),
        xytext=(0, 26 * dy),
        textcoords="offset points",
        arrowprops={"arrowstyle": "<|-", "color": c, "lw": 1.5},
    )
    if label_bound:
        ax.annotate(
            f"{text} {eng(bound)}",
            (i, bound),
            xytext=(7, 4 * dy),
            textcoords="offset points",
            fontsize=8,
            color=c,
            ha="left",
            va="top" if below else "bottom",
        )
    return bound


def _emm_axis(ax, exp: Exp, thr: Thresholds, ymin: float, ymax: float) -> None:
    """Value labels (coloured as their markers) below, the EMM label and log ticks beside."""
    firsts = [v for v in exp.values if v.first]
    n = len(firsts)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_xticks(range(n))
    labels = [v.display for v in firsts]
    rotate = n > 5 or max((len(s) for s in labels), default=0) * n > 48
    ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center")
    for tick, v in zip(ax.get_xticklabels(), firsts, strict=True):
        tick.set_color(v.color if v.color != PALETTE[-1] else "0.2")
    ax.set_xlabel(exp.factor if n > 1 or labels != ["base"] else "")
    ax.set_ylabel(EMM_LABEL.format(emm_threshold=thr.emm_text))
    ax.grid(axis="x", visible=False)
    log_ticks(ax.yaxis, ymin, ymax)
