"""Figures of the workflow, drawn from a figure's table (``pipeline.figure_table``) and its spec.

One entry point, :func:`draw_figure`, dispatches on ``spec["kind"]``:

- ``"sweep"``: per experiment one row: memorization ratio vs training-set size |D| (one line per
  value, Wilson CI band, the EMM threshold, each value's EMM bracket in a strip above), and the
  EMM per value (bracket as an error bar on a log axis, open markers where the search did not
  close a bracket).
- ``"epochs"``: memorization ratio vs training images seen, one line per (value, size).
- ``"optimum"``: sample grids beside their nearest training images, one row per (value, size),
  with a bar chart of the ratios.

All figures share :data:`STYLE` (applied with ``matplotlib.rc_context``) and are drawn on the Agg
canvas without pyplot, so nothing global changes. PDF and PNG are written atomically.
"""

from __future__ import annotations

import math
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from cycler import cycler
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter, PercentFormatter

from diffmem.science import emm
from diffmem.plan.config import threshold_text
from diffmem.io import atomic_path

#: Okabe & Ito's colour-blind-safe palette (yellow last: it reads poorly on white).
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000", "#F0E442"]
MARKERS = ["o", "s", "D", "^", "v", "P", "X", "<", ">", "h", "*"]

#: One style for every figure.
STYLE: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "legend.title_fontsize": 8.5,
    "legend.frameon": True,
    "legend.framealpha": 0.85,
    "legend.edgecolor": "0.85",
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
    "figure.facecolor": "white",
    "axes.prop_cycle": cycler(color=PALETTE),
    "axes.grid": True,
    "axes.axisbelow": True,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": "0.88",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.6,
    "lines.markersize": 5,
    "errorbar.capsize": 3,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.15,
    "pdf.fonttype": 42,  # TrueType in PDFs: editable text
}

SIZE_LABEL = "training-set size |D| (images)"
RATIO_LABEL = "memorization ratio\n(share of samples, d1/d2 < {ratio_threshold})"
IMAGES_LABEL = "training images seen"
EMM_LABEL = "EMM (largest |D| with ratio ≥ {emm_threshold}, images)"

KINDS = ("sweep", "epochs", "optimum")
_NUMERIC = (
    "size",
    "snapshot",
    "step",
    "images_seen",
    "epochs",
    "ratio",
    "ci_low",
    "ci_high",
    "n",
    "ratio_threshold",
    "emm_threshold",
    "emm_lower",
    "emm_upper",
    "search_lo",
    "search_hi",
    "seed",
    "nn_distance",
    "pair_distance",
    "nn_pair_ratio",
)
#: Drawn where a run's ratio had not levelled off (diffmem.science.convergence): an open ring around the point.
NOT_LEVELLED_NOTE = (
    "○ ring: the ratio had not levelled off over the run's last two snapshots (outside each "
    "other's 95% interval): a budget-bound result, more training would change it."
)
REPLICATE_NOTE = "Replicates (subset seeds, data.seed) of a value share its colour: their spread shows the seed noise."
GEOMETRY_LABEL = "median nearest-neighbour distance\n(per pixel, 0-255)"


# ------------------------------------------------------------------------------------------ entry point
def draw_figure(spec: dict, table: pd.DataFrame, pdf_path: str | os.PathLike, png_path: str | os.PathLike) -> Figure:
    """Draw the figure ``spec`` (a config figure entry plus its values, see ``get_figure_spec``) from
    ``table`` (``pipeline.TABLE_COLUMNS``), write it to ``pdf_path`` and ``png_path``, return it."""
    fig = build_figure(spec, table)
    with matplotlib.rc_context(STYLE), atomic_path(pdf_path) as tmp_pdf, atomic_path(png_path) as tmp_png:
        # no date (PDF) and no version stamp (PNG): the same run gives the same bytes
        fig.savefig(tmp_pdf, format="pdf", metadata={"CreationDate": None})
        fig.savefig(tmp_png, format="png", metadata={"Software": None})
    return fig


def build_figure(spec: dict, table: pd.DataFrame) -> Figure:
    """The matplotlib Figure of ``spec`` drawn from ``table``, not saved (see :func:`draw_figure`)."""
    kind = spec.get("kind")
    drawers = {"sweep": _draw_sweep, "epochs": _draw_epochs, "optimum": _draw_optimum}
    if kind not in drawers:
        known = ", ".join(KINDS)
        raise ValueError(f"figure {spec.get('name', '?')!r}: unknown kind {kind!r}; known: {known}")
    table = _clean_table(table)
    with matplotlib.rc_context(STYLE):
        fig = Figure(layout="constrained")
        FigureCanvasAgg(fig)
        notes = drawers[kind](fig, spec, table) or []
        _decorate(fig, spec, notes)
    return fig


def _decorate(fig: Figure, spec: dict, notes: list[str]) -> None:
    """Suptitle, the paper figure it reproduces, and footnotes below the panels."""
    fig.suptitle(spec.get("title") or spec.get("name") or "")
    if spec.get("paper"):
        paper = str(spec["paper"])
        paper = paper if paper.lower().startswith("paper") else f"paper {paper}"
        fig.text(0.995, 1.0, paper, ha="right", va="bottom", fontsize=8.5, color="0.35", style="italic")
    if notes:
        fig.text(0.005, -0.005, "\n".join(notes), ha="left", va="top", fontsize=8, color="0.25")


# --------------------------------------------------------------------------------------- table helpers
def _clean_table(table: pd.DataFrame) -> pd.DataFrame:
    """Numeric columns as floats (a CSV round trip may leave strings), missing columns added."""
    t = table.copy()
    for col in (
        "figure",
        "experiment",
        "title",
        "value",
        "display",
        "kind",
        "emm_status",
        "non_monotone",
        "run_id",
        "memorized",
        "group",
        "levelled_off",
        *_NUMERIC,
    ):
        if col not in t.columns:
            t[col] = np.nan
    for col in _NUMERIC:
        t[col] = pd.to_numeric(t[col], errors="coerce")
    t["_exp"] = t["experiment"].map(_key)
    t["_val"] = t["value"].map(_key)
    t["_open"] = t["levelled_off"].map(lambda x: str(x).strip().lower() == "no")
    return t


def _key(x: Any) -> str:
    """A comparable form of a label: a CSV round trip turns "1e-05" into 1e-05 and "8" into 8."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if isinstance(x, (bool, np.bool_)):
        return str(x)
    try:
        return repr(float(x))
    except (TypeError, ValueError):
        return str(x)


def _truthy(x: Any) -> bool:
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, float, np.number)):
        return not math.isnan(float(x)) and float(x) != 0
    return str(x).strip().lower() in ("true", "1", "yes")


def _finite(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass
class _Val:
    label: str
    display: str
    color: str
    marker: str
    rows: pd.DataFrame
    grids: dict = field(default_factory=dict)  # size -> (samples grid, nearest-neighbour grid) paths
    group: str = ""  # the value a replicate repeats (its own label without replicates)
    seed: float | None = None  # data.seed
    first: bool = True  # the first replicate of its group (the one in the legend)


@dataclass
class _Exp:
    name: str
    title: str
    factor: str
    values: list[_Val]

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(v.group for v in self.values))

    @property
    def replicated(self) -> bool:
        return len(self.groups) < len(self.values)

    @property
    def data_factor(self) -> bool:
        """The factor changes the data (classes, resolution, blend...): its geometry is drawn."""
        return any(k.strip().startswith("data.") for k in self.factor.split(","))


def _colors(n: int) -> list[str]:
    if n <= len(PALETTE) - 1:
        return PALETTE[:n]
    cmap = matplotlib.colormaps["viridis"]  # perceptually uniform, colour-blind safe
    return [matplotlib.colors.to_hex(cmap(0.9 * i / max(n - 1, 1))) for i in range(n)]


def _experiments(spec: dict, table: pd.DataFrame) -> list[_Exp]:
    """Experiments in spec order, each with its values in config order and their table rows."""
    names = list(spec.get("experiments") or [])
    if not names:
        names = list(dict.fromkeys(table["experiment"].dropna()))
    spec_values = spec.get("values") or []
    out = []
    for name in names:
        vals = [v for v in spec_values if v.get("experiment") == name]
        sub = table[table["_exp"] == _key(name)]
        if not vals:  # a spec without values: take them from the table in order of appearance
            first = sub.drop_duplicates("_val")
            vals = [{"label": r.value, "display": r.display, "title": r.title} for r in first.itertuples()]
        title = next((v.get("title") for v in vals if v.get("title")), None)
        if title is None:
            title = next(iter(sub["title"].dropna()), name)
        factor = next((v.get("factor") for v in vals if v.get("factor")), None)
        factor = ", ".join(factor) if isinstance(factor, (list, tuple)) else (factor or "value")
        groups = list(dict.fromkeys(str(v.get("group") or v.get("label")) for v in vals))
        colors = _colors(len(groups))
        values = []
        for v in vals:
            rows = sub[sub["_val"] == _key(v.get("label"))]
            display = v.get("display")
            if display is None or (isinstance(display, float) and math.isnan(display)):
                display = v.get("label")
            g = str(v.get("group") or v.get("label"))
            i = groups.index(g)
            values.append(
                _Val(
                    label=str(v.get("label")),
                    display=str(display),
                    color=colors[i],
                    marker=MARKERS[i % len(MARKERS)],
                    rows=rows,
                    grids={int(k): tuple(p) for k, p in (v.get("grids") or {}).items()},
                    group=g,
                    seed=v.get("seed"),
                    first=all(w.group != g for w in values),
                )
            )
        out.append(_Exp(name=name, title=str(title), factor=str(factor), values=values))
    return out


def _size_rows(rows: pd.DataFrame) -> pd.DataFrame:
    r = rows[(rows["kind"] == "size") & rows["size"].notna()]
    return r.sort_values("size").drop_duplicates("size", keep="last")


@dataclass
class _Thresholds:
    ratio: float | None  # score.threshold: a sample is memorized when d1/d2 < ratio
    emm: float | None  # emm.threshold: a size passes when its memorization ratio >= emm

    @property
    def ratio_text(self) -> str:
        return threshold_text(self.ratio) if self.ratio is not None else "score.threshold"

    @property
    def emm_text(self) -> str:
        return f"{self.emm:.0%}" if self.emm is not None else "emm.threshold"


def _thresholds(table: pd.DataFrame) -> _Thresholds:
    """The thresholds the table was made with (the most common one where values differ)."""

    def mode(col: str) -> float | None:
        x = table[col].dropna()
        return float(x.mode().iloc[0]) if len(x) else None

    return _Thresholds(ratio=mode("ratio_threshold"), emm=mode("emm_threshold"))


def _threshold_line(ax, thr: _Thresholds, vertical: bool = False) -> None:
    if thr.emm is None:
        return
    line = ax.axvline if vertical else ax.axhline
    line(thr.emm, ls="--", lw=1.1, color="0.35", zorder=1, label=f"EMM threshold {thr.emm_text}")


def _ratio_axis(ax, thr: _Thresholds) -> None:
    ax.set_ylim(-0.03, 1.03)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel(RATIO_LABEL.format(ratio_threshold=thr.ratio_text))


def _ci_band(ax, x, rows: pd.DataFrame, color: str) -> None:
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


def _log_ticks(axis, lo: float, hi: float) -> None:
    """Plain-number ticks on a log axis (10, 20, 50, 1k ...), denser when the range is short."""
    span = hi / lo if lo > 0 and hi > lo else 10.0
    subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0) if span < 8 else (1.0, 2.0, 5.0) if span < 2000 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(EngFormatter(sep=""))
    axis.set_minor_locator(LogLocator(base=10, subs="auto"))
    axis.set_minor_formatter(NullFormatter())


def _eng(x: float) -> str:
    """1234 -> '1.23k', 40000 -> '40k', 12.5 -> '12.5'."""
    return EngFormatter(sep="", places=None).format_eng(float(x)) if abs(x) >= 1000 else f"{x:.3g}"


def _no_data(ax, text: str = "no data") -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _legend(ax, n_entries: int, **kw) -> None:
    if n_entries and ax.get_legend_handles_labels()[0]:
        ax.legend(ncol=1 if n_entries <= 6 else 2, loc=kw.pop("loc", "best"), **kw)


# ---------------------------------------------------------------------------------------- kind: sweep
@dataclass
class _Emm:
    lower: float | None  # EMM >= lower
    upper: float | None  # EMM < upper
    status: str
    non_monotone: bool


def _emm_of(v: _Val, thr: _Thresholds) -> _Emm:
    """What is known about a value's EMM: the bounds its search wrote to the table
    (:func:`diffmem.science.emm.bounds`), or, for a value evaluated at listed sizes only, what those sizes
    say (:func:`diffmem.science.emm.from_ratios`)."""
    er = v.rows[v.rows["kind"] == "emm"]
    if len(er):
        r = er.iloc[-1]
        return _Emm(
            lower=float(r["emm_lower"]) if _finite(r["emm_lower"]) else None,
            upper=float(r["emm_upper"]) if _finite(r["emm_upper"]) else None,
            status=str(r["emm_status"]) if isinstance(r["emm_status"], str) else "unknown",
            non_monotone=_truthy(r["non_monotone"]),
        )
    sizes = _size_rows(v.rows)
    sizes = sizes[np.isfinite(sizes["ratio"].to_numpy(float))]
    if not len(sizes) or thr.emm is None:
        return _Emm(lower=None, upper=None, status="unknown", non_monotone=False)
    res = emm.from_ratios(dict(zip(sizes["size"].astype(int), sizes["ratio"], strict=True)), thr.emm)
    lower, upper = emm.bounds(res)
    return _Emm(lower=lower, upper=upper, status="unknown", non_monotone=bool(res["non_monotone"]))


def _draw_sweep(fig: Figure, spec: dict, table: pd.DataFrame) -> list[str]:
    exps = _experiments(spec, table)
    thr = _thresholds(table)
    nmax = max((len(e.values) for e in exps), default=1)
    strip_h = 0.25 + 0.11 * nmax
    fig.set_size_inches(11.5, len(exps) * (3.9 + strip_h) + 0.6)
    subfigs = fig.subfigures(len(exps), 1, squeeze=False)[:, 0] if len(exps) > 1 else [fig]
    flags: set[str] = set()
    for sf, exp in zip(subfigs, exps, strict=True):
        if len(exps) > 1:
            sf.suptitle(exp.title, fontsize=11.5, fontweight="bold")
        geometry = exp.data_factor and bool(np.isfinite(_size_rows(exp_rows(exp))["nn_distance"]).any())
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
            _geometry_panel(sf.add_subplot(gs[1, 2], sharex=ax), exp)
            flags.add("geometry")
        emms = [_emm_of(v, thr) for v in exp.values]
        if _sweep_ratio_panel(ax, exp, thr):
            flags.add("not_levelled")
        if exp.replicated:
            flags.add("replicates")
        _sweep_strip(strip, exp, emms)
        flags |= _sweep_emm_panel(ax_emm, exp, emms, thr)
        prefix = f"{exp.title}: " if len(exps) == 1 else ""
        strip.set_title(textwrap.fill(f"{prefix}memorization ratio vs |D|", 52))  # long titles: two lines
        ax_emm.set_title(textwrap.fill(f"{prefix}EMM per value", 40))
    notes = [
        f"Shaded: 95% Wilson interval of the ratio. Strip and right panel: EMM bracket [a, b) "
        f"(a passes ratio ≥ {thr.emm_text}, b fails); marker at the geometric mean."
    ]
    notes += [
        _FLAG_NOTES[f]
        for f in (
            "below_lo",
            "above_hi",
            "max_rounds",
            "non_monotone",
            "unknown",
            "not_levelled",
            "replicates",
            "geometry",
        )
        if f in flags
    ]
    return notes


def exp_rows(exp: _Exp) -> pd.DataFrame:
    """The table rows of every value of an experiment."""
    frames = [v.rows for v in exp.values if len(v.rows)]
    return pd.concat(frames) if frames else pd.DataFrame(columns=["kind", "size", "nn_distance"])


def _geometry_panel(ax, exp: _Exp) -> None:
    """Data geometry of each value's subsets against |D|: the median distance of an image to its nearest
    other training image (line) and, at the last size, its ratio to the median pair distance (text)."""
    for v in exp.values:
        r = _size_rows(v.rows)
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


_FLAG_NOTES = {
    "below_lo": "▽ open, arrow down: the smallest searched size already fails, EMM < that size (below emm.lo).",
    "above_hi": "△ open, arrow up: the largest searched size still passes, EMM ≥ that size (above emm.hi).",
    "max_rounds": "◇ open: the search stopped at max_rounds before the bracket reached the tolerance.",
    "non_monotone": "* the ratio is not monotone in |D| for this value (a larger size passes after a "
    "smaller one fails); the bracket uses the smallest failing size.",
    "unknown": "n/a: no EMM result for this value.",
    "not_levelled": NOT_LEVELLED_NOTE,
    "replicates": REPLICATE_NOTE,
    "geometry": "Data geometry: median distance of a training image to its nearest other one (RMS pixel "
    "difference); the number is its ratio to the median distance between two images (low = crowded "
    "set, a copy must be more exact to count as memorized).",
}


def _sweep_ratio_panel(ax, exp: _Exp, thr: _Thresholds) -> bool:
    """Ratio vs |D| per value; True when a ring marks a ratio that had not levelled off."""
    n_entries, ringed = 0, False
    for v in exp.values:
        r = _size_rows(v.rows)
        if not len(r):
            continue
        x = r["size"].to_numpy(float)
        if v.first or not exp.replicated:
            _ci_band(ax, x, r, v.color)
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
        ringed |= _rings(ax, x, r)
        n_entries += v.first
    _threshold_line(ax, thr)
    ax.set_xscale("log")
    sizes = [s for v in exp.values for s in _size_rows(v.rows)["size"] if s > 0]
    if sizes:
        ax.set_xlim(min(sizes) / 1.25, max(sizes) * 1.25)
        _log_ticks(ax.xaxis, min(sizes) / 1.25, max(sizes) * 1.25)
    ax.set_xlabel(SIZE_LABEL)
    _ratio_axis(ax, thr)
    if n_entries == 0:
        _no_data(ax, "no evaluated sizes")
    _legend(ax, n_entries + 1, title=exp.factor if len(exp.groups) > 1 else None)
    return ringed


def _rings(ax, x, rows: pd.DataFrame) -> bool:
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


def _sweep_strip(ax, exp: _Exp, emms: list[_Emm]) -> None:
    """One row per value: its EMM bracket on the |D| axis of the ratio panel below."""
    n = len(exp.values)
    for i, (v, e) in enumerate(zip(exp.values, emms, strict=True)):
        y = n - 1 - i
        if e.lower is not None and e.upper is not None:
            ax.plot([e.lower, e.upper], [y, y], color=v.color, lw=3, solid_capstyle="butt")
            ax.plot([e.lower, e.upper], [y, y], ls="none", marker="|", color=v.color, markersize=9)
        elif e.upper is not None:  # EMM < upper
            ax.plot([e.upper], [y], ls="none", marker="|", color=v.color, markersize=9)
            ax.annotate(
                "",
                xy=(e.upper, y),
                xytext=(-22, 0),
                textcoords="offset points",
                arrowprops={"arrowstyle": "<|-", "color": v.color, "lw": 1.5},
            )
        elif e.lower is not None:  # EMM >= lower
            ax.plot([e.lower], [y], ls="none", marker="|", color=v.color, markersize=9)
            ax.annotate(
                "",
                xy=(e.lower, y),
                xytext=(22, 0),
                textcoords="offset points",
                arrowprops={"arrowstyle": "<|-", "color": v.color, "lw": 1.5},
            )
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_yticks([])
    ax.set_ylabel("EMM", rotation=0, ha="right", va="center", fontsize=8.5)
    ax.grid(axis="y", visible=False)
    ax.tick_params(axis="x", labelbottom=False)
    ax.spines["left"].set_visible(False)


def _sweep_emm_panel(ax, exp: _Exp, emms: list[_Emm], thr: _Thresholds) -> set[str]:
    flags: set[str] = set()
    bounds = [b for e in emms for b in (e.lower, e.upper) if b is not None and b > 0]
    ymin, ymax = (min(bounds) / 2.5, max(bounds) * 2.5) if bounds else (1.0, 10.0)
    ax.set_yscale("log")
    ax.set_ylim(ymin, ymax)
    groups = exp.groups
    label_bounds = len(exp.values) <= 5  # more values: the bound labels would run into each other
    for v, e in zip(exp.values, emms, strict=True):
        members = [w for w in exp.values if w.group == v.group]
        j = members.index(v)
        i = groups.index(v.group) + (0.3 * (j / max(len(members) - 1, 1) - 0.5) if len(members) > 1 else 0.0)
        c = v.color
        if e.lower is not None and e.upper is not None:
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
            if open_:
                flags.add("max_rounds" if e.status == "max_rounds" else "unknown")
            top = e.upper
        elif e.upper is not None:  # EMM < upper
            ax.plot([i], [e.upper], marker="v", ms=8, color=c, mfc="white", mew=1.5, ls="none", zorder=3)
            ax.annotate(
                "",
                xy=(i, e.upper),
                xytext=(0, -26),
                textcoords="offset points",
                arrowprops={"arrowstyle": "<|-", "color": c, "lw": 1.5},
            )
            if label_bounds:
                ax.annotate(
                    f"< {_eng(e.upper)}",
                    (i, e.upper),
                    xytext=(7, -4),
                    textcoords="offset points",
                    fontsize=8,
                    color=c,
                    ha="left",
                    va="top",
                )
            flags.add("below_lo" if e.status == "below_lo" else e.status)
            top = e.upper
        elif e.lower is not None:  # EMM >= lower
            ax.plot([i], [e.lower], marker="^", ms=8, color=c, mfc="white", mew=1.5, ls="none", zorder=3)
            ax.annotate(
                "",
                xy=(i, e.lower),
                xytext=(0, 26),
                textcoords="offset points",
                arrowprops={"arrowstyle": "<|-", "color": c, "lw": 1.5},
            )
            if label_bounds:
                ax.annotate(
                    f"≥ {_eng(e.lower)}",
                    (i, e.lower),
                    xytext=(7, 4),
                    textcoords="offset points",
                    fontsize=8,
                    color=c,
                    ha="left",
                    va="bottom",
                )
            flags.add("above_hi" if e.status == "above_hi" else e.status)
            top = e.lower
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
                color=c,
                ha="center",
                va="bottom",
            )
            flags.add("non_monotone")
    flags.discard("found")
    flags.discard("searching")
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
    _log_ticks(ax.yaxis, ymin, ymax)
    return flags


# --------------------------------------------------------------------------------------- kind: epochs
def _draw_epochs(fig: Figure, spec: dict, table: pd.DataFrame) -> list[str]:
    exps = _experiments(spec, table)
    thr = _thresholds(table)
    ncols = 1 if len(exps) == 1 else 2
    nrows = math.ceil(len(exps) / ncols)
    fig.set_size_inches(7.5 if ncols == 1 else 12, 4.6 * nrows + 0.5)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(exps) :]:
        ax.set_visible(False)
    ringed = False
    for ax, exp in zip(axes, exps, strict=False):  # axes: a full grid, maybe one more
        ringed |= _epochs_panel(ax, exp, thr)
    notes = ["Shaded: 95% Wilson interval of the ratio at each snapshot."] + ([NOT_LEVELLED_NOTE] if ringed else [])
    if any(e.replicated for e in exps):
        notes.append("Replicates (subset seeds, data.seed) of a value share its line style and marker, one "
                     "legend entry: their spread shows the seed noise.")  # fmt: skip
    return notes


def _epochs_panel(ax, exp: _Exp, thr: _Thresholds) -> bool:
    """Ratio over training per (value, size); True when a ring marks a run that had not levelled off."""
    ringed = False
    lines = []
    for v in exp.values:
        snaps = v.rows[(v.rows["kind"] == "snapshot") & v.rows["size"].notna()]
        for size in sorted(snaps["size"].unique()):
            r = snaps[snaps["size"] == size].sort_values("images_seen")
            lines.append((v, int(size), r))
    multi_value = len(exp.values) > 1
    sizes = sorted({s for _, s, _ in lines})
    size_colors = dict(zip(sizes, _colors(len(sizes)), strict=True))
    styles = ["-", "--", ":", "-."]
    xs = np.concatenate([r["images_seen"].to_numpy(float) for *_, r in lines]) if lines else np.array([])
    pos = xs[np.isfinite(xs) & (xs > 0)]
    log_x = len(pos) > 0 and pos.max() / pos.min() > 30
    for j, (v, size, r) in enumerate(lines):
        if log_x:
            r = r[r["images_seen"] > 0]
        x = r["images_seen"].to_numpy(float)
        color = size_colors[size] if not multi_value or len(sizes) > 1 else v.color
        vi = exp.groups.index(v.group)  # replicates of a value share its line style and marker
        ls = styles[vi % len(styles)] if multi_value else "-"
        _ci_band(ax, x, r, color)
        ep = r["epochs"].dropna()
        ep_txt = f" ({_eng(ep.max())} epochs)" if len(ep) else ""
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
        )
        size_row = _size_rows(v.rows)
        size_row = size_row[size_row["size"] == size]
        if len(size_row) and bool(size_row["_open"].iloc[0]) and len(r):
            ringed |= _rings(ax, x[-1:], r.iloc[-1:].assign(_open=True))
    _threshold_line(ax, thr)
    if log_x:
        ax.set_xscale("log")
        _log_ticks(ax.xaxis, pos.min(), pos.max())
    else:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_xlabel(IMAGES_LABEL)
    _ratio_axis(ax, thr)
    ax.set_title(exp.title)
    if not lines:
        _no_data(ax, "no snapshots")
    _add_epoch_axis(ax, [r for *_, r in lines])
    _legend(ax, sum(v.first for v, *_ in lines) + 1)
    return ringed


def _add_epoch_axis(ax, frames: list[pd.DataFrame]) -> None:
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


# -------------------------------------------------------------------------------------- kind: optimum
def _draw_optimum(fig: Figure, spec: dict, table: pd.DataFrame) -> list[str]:
    exps = _experiments(spec, table)
    entries = []  # (exp, value, size, row or None, (samples grid, nearest grid) or None)
    for exp in exps:
        for v in exp.values:
            sizes = _size_rows(v.rows)
            for size in sorted(set(v.grids) | {int(s) for s in sizes["size"]}):
                row = sizes[sizes["size"] == size]
                entries.append((exp, v, size, row.iloc[0] if len(row) else None, v.grids.get(size)))
    thr = _thresholds(table)
    n = max(len(entries), 1)
    fig.set_size_inches(14, 2.6 * n + 0.8)
    gs = fig.add_gridspec(n, 3, width_ratios=[1, 2.6, 1.25])
    missing = False
    for i, (exp, v, size, row, grids) in enumerate(entries):
        name = _entry_name(exp, v, size)
        scored = row is not None and _finite(row["ratio"])
        ratio = f"memorization {row['ratio']:.0%}" if scored else "no score"
        for j, what in enumerate(("samples", "samples (upper row) above their nearest training images")):
            ax = fig.add_subplot(gs[i, j])
            ok = _show_image(ax, Path(grids[j]) if grids else None)
            missing |= not ok
            ax.set_title(f"{name}: {ratio}" if j == 0 else what, fontsize=9.5)
    bar = fig.add_subplot(gs[:, 2])
    _optimum_bars(bar, entries, thr)
    if not entries:
        _no_data(bar)
    notes = [
        f"Memorized: d1/d2 < {thr.ratio_text} (d1, d2: L2 distance to the nearest and second-nearest "
        "training image). Bars: 95% Wilson interval."
    ]
    if missing:
        notes.append("'missing': no such image for this run.")
    return notes


def _entry_name(exp: _Exp, v: _Val, size: int) -> str:
    parts = [exp.title]
    if len(exp.values) > 1 or v.display != "base":
        parts.append(v.display)
    return " / ".join(parts) + f" / |D| = {size}"


def _show_image(ax, path: Path | None) -> bool:
    ax.set_axis_off()
    if path is None or not path.is_file():
        _no_data(ax, f"missing: {path.name if path else 'image'}")
        return False
    from PIL import Image

    with Image.open(path) as im:
        img = np.asarray(im.convert("RGB"))
    ax.imshow(img, interpolation="nearest", aspect="equal")
    return True


def _optimum_bars(ax, entries: list, thr: _Thresholds) -> None:
    n = len(entries)
    y = np.arange(n)[::-1]
    for yi, (exp, v, _size, row, _) in zip(y, entries, strict=True):
        if row is None or not _finite(row["ratio"]):
            ax.text(0.02, yi, "no score", va="center", fontsize=8, color="0.4")
            continue
        r = float(row["ratio"])
        color = v.color if len(exp.values) > 1 else _exp_color(entries, exp)
        ax.barh(yi, r, color=color, height=0.45, zorder=2)
        if _finite(row["ci_low"]) and _finite(row["ci_high"]):
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
    _threshold_line(ax, thr, vertical=True)
    ax.set_yticks(y)
    names = [_entry_name(e, v, s).replace(" / |D|", "\n|D|") for e, v, s, *_ in entries]
    ax.set_yticklabels(names, fontsize=8.5)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlim(0, 1.05)
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlabel("memorization ratio (share of samples)")
    ax.set_title("memorization ratio per run")
    ax.grid(axis="y", visible=False)
    if thr.emm is not None:
        ax.legend(loc="lower right")


def _exp_color(entries: list, exp: _Exp) -> str:
    order = list(dict.fromkeys(e.name for e, *_ in entries))
    return PALETTE[order.index(exp.name) % (len(PALETTE) - 1)]
