"""Kind ``fixed`` (ratio vs a factor's value at fixed |D|) and the ``epochs`` kind with dense snapshots:
known answers read off the matplotlib axes: where each point is drawn, its error bar, the axis scale,
group names, the paper's reference points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from test_plotting import _ci, _draw, _roundtrip, _size_row, _value

from diffmem.results import figures as plotting

SMOKE = Path(__file__).resolve().parents[2] / "config" / "smoke.yaml"

# the paper's random-label panel (PAPER_FIGURES.md), as shares: |D| -> {C: ratio}
RANDOM_C = {
    1000: {1: 0.91, 2: 0.93, 5: 0.95, 10: 0.96, 20: 0.975, 50: 0.985, 100: 0.99},
    2000: {1: 0.61, 2: 0.645, 5: 0.73, 10: 0.80, 20: 0.85, 50: 0.90, 100: 0.94},
    5000: {1: 0.085, 10: 0.235, 50: 0.495, 100: 0.625, 500: 0.88, 1000: 0.925},
}


def _errorbars(ax):
    """Per errorbar container: (label, x, y, lower extent, upper extent)."""
    out = []
    for c in ax.containers:
        line, _, (bars,) = c.lines
        segs = bars.get_segments()
        lo = [s[0][1] for s in segs]
        hi = [s[1][1] for s in segs]
        out.append((c.get_label(), line.get_xdata().tolist(), line.get_ydata().tolist(), lo, hi))
    return out


def _references(ax):
    return [ln for ln in ax.get_lines() if ln.get_label() == "_reference"]


def _random_classes(tmp_path):
    labels = sorted({c for by_c in RANDOM_C.values() for c in by_c})
    vals = [_value("random_classes", "Random labels", str(c), str(c), factor="data.label_classes") for c in labels]
    rows = [_size_row(vals[labels.index(c)], size, r) for size, by_c in RANDOM_C.items() for c, r in by_c.items()]
    return vals, _roundtrip(rows, tmp_path)


def test_numeric_values_on_a_log_axis_one_series_per_size(tmp_path):
    vals, table = _random_classes(tmp_path)
    spec = {
        "name": "random_c",
        "kind": "fixed",
        "experiments": ["random_classes"],
        "title": "Random labels",
        "sizes": [1000, 5000],  # 2000 is in the table but not asked for
        "x_scale": "log",
        "x_label": "number of random classes C",
        "values": vals,
        "reference": [
            {"value": 10, "size": 1000, "ratio": 0.96},
            {"value": "500", "size": 5000, "ratio": 0.88, "label": "paper (read off)"},
            {"value": 3, "size": 1000, "ratio": 0.94},  # no such value: drawn at its number
            {"value": 10, "size": 2000, "ratio": 0.80},  # a size not asked for: left out silently
        ],
    }
    fig = _draw(spec, table, tmp_path)
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "number of random classes C"
    bars = _errorbars(ax)
    assert [b[0] for b in bars] == ["|D| = 1000", "|D| = 5000"]
    label, x, y, lo, hi = bars[1]
    assert x == [1, 10, 50, 100, 500, 1000] and y == pytest.approx([0.085, 0.235, 0.495, 0.625, 0.88, 0.925])
    assert lo == pytest.approx([_ci(r)[0] for r in y]) and hi == pytest.approx([_ci(r)[1] for r in y])
    assert bars[0][1] == [1, 2, 5, 10, 20, 50, 100]
    assert [c.lines[0].get_linestyle() for c in ax.containers] == ["-", "-"]  # numbers: joined by a line
    assert ax.get_xlim() == pytest.approx((1 / 1.4, 1000 * 1.4))
    refs = _references(ax)
    assert [(r.get_xdata()[0], r.get_ydata()[0]) for r in refs] == [(10, 0.96), (500, 0.88), (3, 0.94)]
    assert all(r.get_markerfacecolor() == "none" for r in refs)  # open markers
    series_colors = [c.lines[0].get_color() for c in ax.containers]
    assert [r.get_markeredgecolor() for r in refs] == [series_colors[0], series_colors[1], series_colors[0]]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["|D| = 1000", "|D| = 5000", "EMM threshold 90%", "paper", "paper (read off)"]
    assert any("published values" in t.get_text() for t in fig.texts)
    assert not any("not drawn" in t.get_text() for t in fig.texts)


def test_numbers_default_to_a_linear_axis_and_values_without_one_are_listed(tmp_path):
    vals = [
        _value("cond", "Conditioning", lab, disp, factor="data.labels")
        for lab, disp in [
            ("unconditional", "unconditional"),
            ("random_C_2", "random C=2"),
            ("random_C_5", "random C=5"),
        ]
    ]
    rows = [_size_row(v, 1000, r) for v, r in zip(vals, (0.9, 0.93, 0.95), strict=True)]
    spec = {"name": "c", "kind": "fixed", "experiments": ["cond"], "values": vals,
            "x": {"random C=2": 2, "random_C_5": 5}}  # fmt: skip
    fig = _draw(spec, _roundtrip(rows, tmp_path), tmp_path)
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    assert ax.get_xscale() == "linear" and ax.get_xlabel() == "data.labels"  # the factor, without x_label
    ((label, x, y, _, _),) = _errorbars(ax)
    assert label == "|D| = 1000" and x == [2, 5] and y == pytest.approx([0.93, 0.95])
    assert any("Not drawn (no number on the value axis): unconditional." in t.get_text() for t in fig.texts)


SKIP_LABELS = ["all 9", "#1 #2 #3", "#1 #2", "#1 #3", "#2 #3", "#1", "#2", "#3"]
KEPT = {"#1 #2 #3": "3 kept", "#1 #2": "2 kept", "#1 #3": "2 kept", "#2 #3": "2 kept", "#1": "1 kept",
        "#2": "1 kept", "#3": "1 kept"}  # fmt: skip


def test_categories_grouped_with_one_series_per_experiment(tmp_path):
    rows, vals = [], []
    for res, base in (("32x32", 0.9), ("16x16", 0.6), ("8x8", 0.1)):
        for i, disp in enumerate(SKIP_LABELS):
            v = _value(f"skip_{res}", f"{res} kept", disp.replace("#", "").replace(" ", "_"), disp, factor="model.skip")
            vals.append(v)
            if disp != "#2 #3" or res != "8x8":  # one mask not run: no point there
                rows.append(_size_row(v, 1000, base - 0.01 * i))
    spec = {
        "name": "skip",
        "kind": "fixed",
        "experiments": ["skip_32x32", "skip_16x16", "skip_8x8"],
        "x_label": "skip connections kept",
        "group_by": KEPT,
        "values": vals,
        "reference": [
            {"value": "#1", "size": 1000, "ratio": 0.61, "experiment": "skip_16x16"},
            {"value": "all 10", "size": 1000, "ratio": 0.5},
            {"value": "#1", "size": 5000, "ratio": 0.5},
        ],
    }
    fig = _draw(spec, _roundtrip(rows, tmp_path), tmp_path)
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    assert ax.get_xscale() == "linear"
    # all 9 alone, then 3 kept, 2 kept (three masks), 1 kept (three masks), a gap of 0.6 between groups
    at = [0.0, 1.6, 3.2, 4.2, 5.2, 6.8, 7.8, 8.8]
    assert ax.get_xticks().tolist() == pytest.approx(at)
    assert [t.get_text() for t in ax.get_xticklabels()] == SKIP_LABELS
    (top,) = [c for c in ax.child_axes]
    assert top.get_xticks().tolist() == pytest.approx([1.6, 4.2, 7.8])
    assert [t.get_text() for t in top.get_xticklabels()] == ["3 kept", "2 kept", "1 kept"]
    bars = _errorbars(ax)
    assert [b[0] for b in bars] == ["32x32 kept", "16x16 kept", "8x8 kept"]  # one |D|: the experiment names it
    for (_, x, y, _, _), offset, base in zip(bars, (-0.25, 0.0, 0.25), (0.9, 0.6, 0.1), strict=True):
        if base == 0.1:  # 8x8 has no "#2 #3"
            assert x == pytest.approx([a + offset for j, a in enumerate(at) if j != 4])
            assert y == pytest.approx([base - 0.01 * j for j in range(8) if j != 4])
        else:
            assert x == pytest.approx([a + offset for a in at])
    assert all(ln.get_linestyle() == "None" for c in ax.containers for ln in c.lines[:1])  # points, no line
    (ref,) = _references(ax)  # "all 10" has no place, 5000 no series: both listed
    assert ref.get_xdata()[0] == pytest.approx(6.8) and ref.get_ydata()[0] == 0.61
    assert ref.get_markeredgecolor() == ax.containers[1].lines[0].get_color()
    note = "Published points not drawn (no such series or value here): all 10 at |D| = 1000, #1 at |D| = 5000."
    assert note in [t.get_text() for t in fig.texts][-1].split("\n")


def test_categories_without_groups_stand_side_by_side(tmp_path):
    vals, table = _random_classes(tmp_path)
    spec = {"name": "f", "kind": "fixed", "experiments": ["random_classes"], "values": vals, "sizes": [2000],
            "x_scale": "category", "group_by": {"100": "many"}}  # fmt: skip
    fig = plotting.build_figure(spec, table)
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    assert ax.get_xticks().tolist() == pytest.approx([0, 1, 2, 3, 4, 5, 6.6, 8.2, 9.2])  # C = 1 ... 50 | 100 | ...
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "5", "10", "20", "50", "100", "500", "1000"]
    ((label, x, y, _, _),) = _errorbars(ax)
    assert x == pytest.approx([0, 1, 2, 3, 4, 5, 6.6]) and y == pytest.approx(list(RANDOM_C[2000].values()))
    assert [t.get_text() for t in ax.child_axes[0].get_xticklabels()] == ["many"]
    assert ax.get_legend().get_title().get_text() == ""  # one experiment: the series name the size


def test_unknown_scale_and_empty_table(tmp_path):
    vals, table = _random_classes(tmp_path)
    spec = {"name": "f", "kind": "fixed", "experiments": ["random_classes"], "values": vals}
    with pytest.raises(ValueError, match="x_scale"):
        plotting.build_figure({**spec, "x_scale": "polar"}, table)
    fig = plotting.build_figure({**spec, "sizes": [123]}, table)  # no such size: an empty panel, a note
    (ax,) = fig.get_axes()
    assert not ax.containers and any(t.get_text() == "no evaluated sizes" for t in ax.texts)


def _dense_rows(v, size, n, final):
    """``n`` snapshots every 50 epochs, the ratio rising linearly to ``final``."""
    rows = []
    for k in range(n):
        epochs = 50.0 * (k + 1)
        ratio = final * (k + 1) / n
        lo, hi = _ci(ratio)
        rows.append({"figure": "f", "experiment": v["experiment"], "title": v["title"], "value": v["label"],
                     "display": v["display"], "kind": "snapshot", "size": size, "snapshot": k, "step": k,
                     "images_seen": epochs * size, "epochs": epochs, "ratio": ratio, "ci_low": lo, "ci_high": hi,
                     "n": 64, "ratio_threshold": 1 / 3, "emm_threshold": 0.9, "run_id": v["run_id"]})  # fmt: skip
    return rows


def test_epochs_kind_draws_dense_snapshots_of_several_values(tmp_path):
    """The unique-label panel: 240 snapshots per value at |D| = 50k, every one drawn, a marker on every
    12th; a linear axis when the spec asks (the automatic one is log: 240x span); the paper's points."""
    vals = [_value("full_unique", "Full set", lab, disp, factor="data.labels", sizes=(50000,))
            for lab, disp in (("unconditional", "unconditional"), ("unique_labels", "unique labels"))]  # fmt: skip
    rows = _dense_rows(vals[0], 50000, 240, 0.0) + _dense_rows(vals[1], 50000, 240, 0.65)
    spec = {"name": "u", "kind": "epochs", "experiments": ["full_unique"], "values": vals, "x_scale": "linear",
            "reference": [{"value": "unique labels", "size": 50000, "epochs": 4000, "ratio": 0.30},
                          {"value": "unique_labels", "epochs": 12000, "ratio": 0.65}]}  # fmt: skip
    table = _roundtrip(rows, tmp_path)
    fig = _draw(spec, table, tmp_path)
    (ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    lines = [ln for ln in ax.get_lines() if ln.get_label().endswith("|D| = 50000")]
    assert [ln.get_label() for ln in lines] == ["unconditional, |D| = 50000", "unique labels, |D| = 50000"]
    assert all(len(ln.get_xdata()) == 240 for ln in lines)
    assert lines[1].get_xdata()[-1] == 12000 * 50000 and lines[1].get_ydata()[-1] == pytest.approx(0.65)
    assert lines[1].get_markevery() == 12
    assert ax.get_xscale() == "linear"
    refs = _references(ax)
    assert [(r.get_xdata()[0], r.get_ydata()[0]) for r in refs] == [(4000 * 50000, 0.30), (12000 * 50000, 0.65)]
    assert all(r.get_markeredgecolor() == lines[1].get_color() for r in refs)
    assert "paper" in [t.get_text() for t in ax.get_legend().get_texts()]
    sec = [c for c in ax.child_axes]
    assert sec and sec[0].get_xlabel() == "epochs"  # one |D|: an epochs axis on top
    auto = plotting.build_figure({**spec, "x_scale": None, "reference": []}, table)
    (ax,) = [a for a in auto.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    assert ax.get_xscale() == "log"
    few = plotting.build_figure({**spec, "reference": []}, _roundtrip(_dense_rows(vals[1], 50000, 40, 0.5), tmp_path))
    (ax,) = [a for a in few.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    assert all(ln.get_markevery() is None for ln in ax.get_lines())  # up to 40 snapshots: every marker
    assert not np.isnan(ax.get_xlim()).any()


def test_a_config_declares_a_fixed_figure(tmp_path):
    """The schema takes the new keys (and refuses a ratio in percent); the spec a rule gets (keys sorted,
    as Snakemake params) draws; the caption says how to read it."""
    from diffmem.errors import ConfigError
    from diffmem.plan import config as dmc
    from diffmem.plan.identity import canonical

    fig = {"kind": "fixed", "experiments": ["conditioning"], "title": "Random labels", "sizes": [2, 4],
           "x_scale": "log", "x_label": "number of random classes C", "x": {"random C=5": 5, "unconditional": 1},
           "group_by": {"unique": "other"},
           "reference": [{"value": "random C=5", "size": 4, "ratio": 0.5}]}  # fmt: skip
    overlay = tmp_path / "fig.yaml"
    overlay.write_text(yaml.safe_dump({"figures": {"fig_c": fig}}))
    cfg = dmc.load_config([str(SMOKE), str(overlay)])
    spec = canonical(dmc.figure_spec(cfg, dmc.expand(cfg), "fig_c", tmp_path))
    assert "one series per |D|" in spec["caption"] and "d1/d2 < 1/3" in spec["caption"]
    rows = [_size_row(v, size, 0.9 - 0.1 * i) for i, v in enumerate(spec["values"]) for size in (2, 4)]
    built = plotting.build_figure(spec, _roundtrip(rows, tmp_path))
    (ax,) = [a for a in built.get_axes() if a.get_ylabel().startswith("memorization ratio")]
    bars = _errorbars(ax)
    assert [b[0] for b in bars] == ["|D| = 2", "|D| = 4"] and all(b[1] == [1, 5] for b in bars)  # unique: no number
    assert ax.get_xscale() == "log" and [r.get_xdata()[0] for r in _references(ax)] == [5]
    bad = {**fig, "reference": [{"value": "random C=5", "size": 4, "ratio": 92}]}
    overlay.write_text(yaml.safe_dump({"figures": {"fig_c": bad}}))
    with pytest.raises(ConfigError, match="ratio"):
        dmc.load_config([str(SMOKE), str(overlay)])
