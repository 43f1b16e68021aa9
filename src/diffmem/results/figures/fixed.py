"""Kind ``fixed``: memorization ratio against a factor's value at fixed training-set sizes |D|, one
series per (experiment, |D|), each point with its 95% interval as an error bar (the paper's panels over
the number of random classes C and over skip masks).

The value axis (``x_scale``) is numeric (``linear`` or ``log``: a value stands at its number, from
``x`` or its label read as a number; values without one are left out and listed) or ``category`` (one
labelled position per value, in config order; experiments that share value labels share positions,
series side by side). On a category axis ``group_by`` (value label -> group name) gathers values into
named groups, in order of first appearance; values it does not name stand alone. ``reference`` points
(the paper's) are drawn as open markers in the colour of their series.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from diffmem.results.figures.axes import (
    NOT_LEVELLED_NOTE,
    log_ticks,
    no_data,
    ratio_axis,
    reference_marks,
    reference_span,
    rings,
    threshold_line,
)
from diffmem.results.figures.style import MARKERS, colors
from diffmem.results.figures.tables import Exp, Val, experiments, key, names, size_rows, thresholds

SCALES = ("linear", "log", "category")
GROUP_GAP = 0.6  # extra room between two groups on a category axis (one position = 1)


@dataclass
class Series:
    """The points of one experiment at one |D|."""

    exp: Exp
    size: int
    color: str
    marker: str
    label: str
    offset: float = 0.0  # beside the other series at a category position


@dataclass
class Positions:
    """Where each value stands on the value axis, by :func:`value_key`."""

    x: dict[str, float]
    ticks: list[tuple[float, str]] = field(default_factory=list)  # category axis: (position, label)
    groups: list[tuple[str, float, float]] = field(default_factory=list)  # (name or "", first, last position)
    left_out: list[str] = field(default_factory=list)  # values with no number on a numeric axis


def value_key(v: Val) -> str:
    """One value's identity across experiments (replicates share it): its label without replicates."""
    return key(v.group)


def lookup(mapping: dict | None, v: Val):
    """``mapping``'s entry for value ``v`` (by label, display text or group), or None."""
    by_key = {key(k): x for k, x in (mapping or {}).items()}
    return next((by_key[n] for n in names(v) if n in by_key), None)


def number_of(spec: dict, v: Val) -> float | None:
    """Where value ``v`` stands on a numeric axis: ``spec["x"]``'s entry, else its label as a number."""
    x = lookup(spec.get("x"), v)
    for candidate in (x, v.group, v.label, v.display):
        try:
            number = float(candidate)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            return number
    return None


def x_scale(spec: dict, exps: list[Exp]) -> str:
    """The value axis: ``spec["x_scale"]``, else linear where ``spec`` gives ``x`` or every value has a
    number, else category."""
    if spec.get("x_scale"):
        if spec["x_scale"] not in SCALES:
            raise ValueError(f"figure {spec.get('name', '?')!r}: x_scale {spec['x_scale']!r}; known: {SCALES}")
        return spec["x_scale"]
    numeric = all(number_of(spec, v) is not None for e in exps for v in e.values)
    return "linear" if spec.get("x") or (numeric and any(e.values for e in exps)) else "category"


def category_positions(spec: dict, exps: list[Exp]) -> Positions:
    """One position per value (shared by experiments), gathered by ``spec["group_by"]``."""
    order: dict[str, tuple[Val, str]] = {}  # value key -> (first value seen, group name)
    for v in (v for e in exps for v in e.values):
        if value_key(v) not in order:
            group = lookup(spec.get("group_by"), v)
            order[value_key(v)] = (v, "" if group is None else str(group))
    groups: list[tuple[str, list[str]]] = []  # (group name, value keys); "": a value on its own
    for k, (_, g) in order.items():
        named = [members for name, members in groups if g and name == g]
        if named:
            named[0].append(k)
        else:
            groups.append((g, [k]))
    pos = Positions(x={})
    at = 0.0
    for i, (g, members) in enumerate(groups):
        if i and (g or groups[i - 1][0]):  # room beside a named group; lone values stand side by side
            at += GROUP_GAP
        first = at
        for k in members:
            pos.x[k] = at
            pos.ticks.append((at, order[k][0].display))
            at += 1
        pos.groups.append((g, first, at - 1))
    return pos


def numeric_positions(spec: dict, exps: list[Exp]) -> Positions:
    """Each value at its number (:func:`number_of`); values without one are left out (and listed)."""
    pos = Positions(x={})
    for v in (v for e in exps for v in e.values):
        x = number_of(spec, v)
        if x is None or (spec.get("x_scale") == "log" and x <= 0):
            if v.display not in pos.left_out:
                pos.left_out.append(v.display)
        else:
            pos.x[value_key(v)] = x
    return pos


def make_series(spec: dict, exps: list[Exp], category: bool) -> list[Series]:
    """One series per experiment and |D| (``spec["sizes"]``, else every evaluated size) with points."""
    wanted = spec.get("sizes")
    out = []
    for exp in exps:
        have = {int(s) for v in exp.values for s in size_rows(v.rows)["size"]}
        for size in sorted(have if wanted is None else {int(s) for s in wanted} & have):
            out.append((exp, size))
    sizes = sorted({s for _, s in out})
    palette = colors(len(out))
    series = []
    for j, (exp, size) in enumerate(out):
        if len(exps) == 1:
            label = f"|D| = {size}"
        else:
            label = exp.title if len(sizes) == 1 else f"{exp.title}, |D| = {size}"
        offset = 0.5 * (j / (len(out) - 1) - 0.5) if category and len(out) > 1 else 0.0
        series.append(Series(exp, size, palette[j], MARKERS[j % len(MARKERS)], label, offset))
    return series


def draw_series(ax, s: Series, pos: Positions, line: bool) -> bool:
    """The points of one series with their 95% intervals; True when a ring marks a run that had not
    levelled off."""
    pts = []  # (x, row, first replicate)
    for v in s.exp.values:
        r = size_rows(v.rows)
        r = r[(r["size"] == s.size) & np.isfinite(r["ratio"].to_numpy(float))]
        if value_key(v) in pos.x and len(r):
            pts.append((pos.x[value_key(v)] + s.offset, r.iloc[0], v.first))
    pts.sort(key=lambda p: p[0])
    main = [(x, row) for x, row, first in pts if first]
    if main:
        x = np.array([p[0] for p in main])
        rows = pd.DataFrame([p[1] for p in main])
        y = rows["ratio"].to_numpy(float)
        lo = np.nan_to_num(y - rows["ci_low"].to_numpy(float), nan=0.0)
        hi = np.nan_to_num(rows["ci_high"].to_numpy(float) - y, nan=0.0)
        ax.errorbar(x, y, yerr=[lo, hi], ls="-" if line else "none", marker=s.marker, color=s.color, ms=5.5,
                    elinewidth=1.0, capsize=3, zorder=3, label=s.label)  # fmt: skip
    extra = [(x, row) for x, row, first in pts if not first]  # replicates: the seed spread, no line
    if extra:
        ax.plot([p[0] for p in extra], [p[1]["ratio"] for p in extra], ls="none", marker=s.marker, ms=4.5,
                color=s.color, alpha=0.6, zorder=3, label="_replicate")  # fmt: skip
    ringed = bool(pts) and rings(ax, [p[0] for p in pts], pd.DataFrame([p[1] for p in pts]))
    return ringed


def reference_points(spec: dict, series: list[Series], pos: Positions, category: bool) -> tuple[list, list]:
    """``spec["reference"]`` as marks for :func:`~diffmem.results.figures.axes.reference_marks`, each in
    the colour of its series (same |D|, and experiment where the point names one; the first series where
    it names neither); and the points left out: no series of theirs was drawn (a size ``spec["sizes"]``
    does not list is left out silently), or their value has no place on this axis."""
    marks, left_out = [], []
    for p in (p for p in spec.get("reference") or [] if "ratio" in p):  # an EMM point: kind sweep's
        cands = [s for s in series if p.get("size") is None or s.size == int(p["size"])]
        cands = [s for s in cands if p.get("experiment") in (None, s.exp.name)]
        if not cands:
            if not spec.get("sizes") or p.get("size") is None or int(p["size"]) in map(int, spec["sizes"]):
                left_out.append(f"{p['value']} at |D| = {p.get('size', '?')}")
            continue
        s = cands[0]
        x = _reference_x(spec, p, s.exp.values, pos, category)
        if x is None:
            left_out.append(f"{p['value']} at |D| = {s.size}")
            continue
        marks.append(
            (x + s.offset, float(p["ratio"]), s.color, s.marker, p.get("label") or "paper", *reference_span(p))
        )
    return marks, left_out


def _reference_x(spec: dict, p: dict, values: list[Val], pos: Positions, category: bool) -> float | None:
    """Where a reference point's value stands: where the value it names stands, else (numeric axis)
    ``spec["x"]``'s entry for it or the value itself read as a number."""
    match = next((v for v in values if key(p["value"]) in names(v)), None)
    if match is not None and value_key(match) in pos.x:
        return pos.x[value_key(match)]
    if category:
        return None
    by_key = {key(k): x for k, x in (spec.get("x") or {}).items()}
    try:
        return float(by_key.get(key(p["value"]), p["value"]))
    except (TypeError, ValueError):
        return None


def value_axis(ax, spec: dict, exps: list[Exp], scale: str, pos: Positions) -> None:
    """The value axis: labelled positions (group names on top) or the values' numbers."""
    ax.set_xlabel(spec.get("x_label") or ", ".join(dict.fromkeys(e.factor for e in exps)))
    if scale == "category":
        ticks = [x for x, _ in pos.ticks]
        labels = [t for _, t in pos.ticks]
        rotate = len(labels) > 6 or max((len(t) for t in labels), default=0) * len(labels) > 56
        ax.set_xticks(ticks)
        ax.set_xticklabels(labels, rotation=30 if rotate else 0, ha="right" if rotate else "center")
        if ticks:
            ax.set_xlim(min(ticks) - 0.6, max(ticks) + 0.6)
        ax.grid(axis="x", visible=False)
        named = [(g, a, b) for g, a, b in pos.groups if g]
        if named:  # a thin line between two groups, their names on top
            for (_, _, last), (_, nxt, _) in zip(pos.groups, pos.groups[1:], strict=False):
                ax.axvline((last + nxt) / 2, color="0.8", lw=0.8, zorder=0)
            top = ax.secondary_xaxis("top")
            top.set_xticks([(a + b) / 2 for _, a, b in named], [g for g, _, _ in named])
            top.tick_params(length=0)
            top.spines["top"].set_visible(False)
        return
    xs = sorted(pos.x.values())
    if scale == "log" and xs:
        ax.set_xscale("log")
        ax.set_xlim(xs[0] / 1.4, xs[-1] * 1.4)
        log_ticks(ax.xaxis, xs[0] / 1.4, xs[-1] * 1.4)


def series_legend(ax, first: list[str], title: str | None) -> None:
    """The legend beside the panel (points fill it): the series in order, then threshold and references."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: (labels[i] not in first, i))
    if handles:
        ax.legend([handles[i] for i in order], [labels[i] for i in order], title=title, loc="upper left",
                  bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # fmt: skip


def draw_fixed(fig: Figure, spec: dict, table: pd.DataFrame) -> list[str]:
    """Draw kind ``fixed`` on ``fig``: one panel; returns the footnotes."""
    exps = experiments(spec, table)
    thr = thresholds(table)
    scale = x_scale(spec, exps)
    category = scale == "category"
    pos = category_positions(spec, exps) if category else numeric_positions(spec, exps)
    series = make_series(spec, exps, category)
    panel = max(5.0, 0.5 * len(pos.ticks) + 2.5) if category else 6.0
    legend_w = 1.0 + 0.07 * max([len(s.label) for s in series] + [18])  # the legend stands beside the panel
    fig.set_size_inches(min(panel + legend_w, 18.0), 5.0)
    ax = fig.subplots()
    ringed = False
    for s in series:
        ringed |= draw_series(ax, s, pos, line=not category)
    threshold_line(ax, thr)
    marks, refs_out = reference_points(spec, series, pos, category)
    reference_marks(ax, marks)
    value_axis(ax, spec, exps, scale, pos)
    ratio_axis(ax, thr)
    sizes = list(dict.fromkeys(s.size for s in series))
    title = exps[0].title if len(exps) == 1 else f"memorization ratio at |D| = {', '.join(map(str, sizes))}"
    ax.set_title(title if title != spec.get("title") else "")
    if not series:
        no_data(ax, "no evaluated sizes")
    series_legend(ax, [s.label for s in series], f"|D| = {sizes[0]}" if len(sizes) == 1 and len(exps) > 1 else None)
    notes = ["Error bars: 95% Wilson interval of the ratio (one run per point)."]
    if marks:
        notes.append("Open markers: published values, in the colour of their series (|D| and experiment).")
    if pos.left_out:
        notes.append(f"Not drawn (no number on the value axis): {', '.join(pos.left_out)}.")
    if refs_out:
        notes.append(f"Published points not drawn (no such series or value here): {', '.join(refs_out)}.")
    return notes + ([NOT_LEVELLED_NOTE] if ringed else [])
