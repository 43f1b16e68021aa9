"""Figures: every kind draws a PDF and a PNG from a synthetic table (after a CSV round trip, as the
workflow's figure script reads it), and draws what the table says: curves, labels, EMM markers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffmem.results import figures as plotting
from diffmem.steps.table import TABLE_COLUMNS


def _value(exp, title, label, display, factor=None, sizes=None, grids=None):
    return {
        "experiment": exp,
        "title": title,
        "factor": factor,
        "label": label,
        "display": display,
        "mode": "sizes" if sizes or grids else "emm",
        "run_id": "0123456789",
        "emm": None,
        "scores": {str(s): f"{s}.json" for s in sizes or []},
        "grids": grids or {},
        "ratio_threshold": 1 / 3,
        "emm_threshold": 0.9,
    }


def _ci(ratio, n=64):
    z = 1.96
    p = ratio
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _size_row(v, size, ratio, **extra):
    lo, hi = _ci(ratio)
    return {
        "figure": "f",
        "experiment": v["experiment"],
        "title": v["title"],
        "value": v["label"],
        "display": v["display"],
        "kind": "size",
        "size": size,
        "ratio": ratio,
        "ci_low": lo,
        "ci_high": hi,
        "n": 64,
        "memorized": ratio >= 0.9,
        "ratio_threshold": 1 / 3,
        "emm_threshold": 0.9,
        "run_id": v["run_id"],
        **extra,
    }


def _emm_row(v, lo, hi, status, non_monotone=False):
    return {
        "figure": "f",
        "experiment": v["experiment"],
        "title": v["title"],
        "value": v["label"],
        "display": v["display"],
        "kind": "emm",
        "emm_lower": lo,
        "emm_upper": hi,
        "emm_status": status,
        "non_monotone": non_monotone,
        "ratio_threshold": 1 / 3,
        "emm_threshold": 0.9,
        "search_lo": 10,
        "search_hi": 160,
        "run_id": v["run_id"],
    }


def _roundtrip(rows, tmp_path) -> pd.DataFrame:
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table.to_csv(tmp_path / "table.csv", index=False)
    return pd.read_csv(tmp_path / "table.csv")


def _check_outputs(tmp_path, name="fig", min_px=300):
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    assert pdf.stat().st_size > 1000 and png.stat().st_size > 1000
    assert pdf.read_bytes()[:4] == b"%PDF"
    with Image.open(png) as im:
        im.verify()
    with Image.open(png) as im:
        w, h = im.size
    assert min_px <= w <= 5000 and min_px <= h <= 8000
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # atomic: no leftovers


def _draw(spec, table, tmp_path, name="fig"):
    fig = plotting.draw_figure(spec, table, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png")
    _check_outputs(tmp_path, name)
    return fig


def _axes(fig, ylabel_start):
    return [ax for ax in fig.get_axes() if ax.get_ylabel().startswith(ylabel_start)]


def _curves(ax):
    """Labelled data lines of an axes (not the threshold line)."""
    return [ln for ln in ax.get_lines() if not ln.get_label().startswith(("_", "EMM threshold"))]


def _threshold_lines(ax):
    return [ln for ln in ax.get_lines() if ln.get_label().startswith("EMM threshold")]


def _curve(size, emm):
    """A falling memorization ratio that crosses 0.9 near ``emm``."""
    return float(1 / (1 + (size / (emm * 1.25)) ** 3))


def test_sweep(tmp_path):
    title = "Weight decay"
    vals = [
        _value("wd", title, lab, disp, factor="train.weight_decay")
        for lab, disp in [("0", "0"), ("1e-05", "1e-05"), ("0.1", "0.1"), ("0.5", "0.5"), ("1", "1")]
    ]
    vals.append(_value("basic", "Basic setup", "base", "base"))
    rows = []
    # "0": found, non-monotone (a larger size passes again)
    for s in (10, 20, 40, 80, 160):
        rows.append(_size_row(vals[0], s, _curve(s, 40) if s != 160 else 0.95))
    rows.append(_emm_row(vals[0], 40, 80, "found", non_monotone=True))
    # "1e-05": found, narrow bracket
    for s in (10, 20, 30, 40):
        rows.append(_size_row(vals[1], s, _curve(s, 30)))
    rows.append(_emm_row(vals[1], 30, 40, "found"))
    # "0.1": below_lo (no bracket)
    for s in (10, 40):
        rows.append(_size_row(vals[2], s, _curve(s, 5)))
    rows.append(_emm_row(vals[2], None, 10, "below_lo"))
    # "0.5": above_hi
    for s in (10, 40):
        rows.append(_size_row(vals[3], s, 0.99))
    rows.append(_emm_row(vals[3], 40, None, "above_hi"))
    # "1": stopped at max_rounds with a bracket; and the basic setup with no emm row at all but sizes
    for s in (10, 40):
        rows.append(_size_row(vals[4], s, _curve(s, 15)))
    rows.append(_emm_row(vals[4], 10, 40, "max_rounds"))
    for s in (10, 20, 40):
        rows.append(_size_row(vals[5], s, _curve(s, 20)))
    rows.append(_emm_row(vals[5], 20, 40, "found"))
    table = _roundtrip(rows, tmp_path)
    assert table["value"].dtype != object  # the round trip really turned the labels into numbers

    spec = {
        "name": "training",
        "kind": "sweep",
        "experiments": ["wd", "basic"],
        "title": "Training procedure",
        "paper": "Fig. 5",
        "values": vals,
    }
    fig = _draw(spec, table, tmp_path)

    ratio_axes = _axes(fig, "memorization ratio")
    assert len(ratio_axes) == 2  # one per experiment
    wd_ax = ratio_axes[0]
    assert wd_ax.get_xlabel() == plotting.SIZE_LABEL and wd_ax.get_xscale() == "log"
    assert "d1/d2 < 1/3" in wd_ax.get_ylabel()  # built from the table's ratio_threshold
    assert [ln.get_label() for ln in _curves(wd_ax)] == ["0", "1e-05", "0.1", "0.5", "1"]
    assert [ln.get_xdata().tolist() for ln in _curves(wd_ax)][1] == [10, 20, 30, 40]
    (thr,) = _threshold_lines(wd_ax)
    assert thr.get_label() == "EMM threshold 90%" and list(thr.get_ydata()) == [0.9, 0.9]
    emm_ax = _axes(fig, "EMM (")[0]
    assert "≥ 90%" in emm_ax.get_ylabel()
    marks = {
        int(round(ln.get_xdata()[0])): (ln.get_marker(), float(ln.get_ydata()[0]))
        for ln in emm_ax.get_lines()
        if len(ln.get_xdata()) == 1 and ln.get_marker() not in ("None", "", "_")
    }
    assert marks[1][0] == "o" and marks[1][1] == pytest.approx(math.sqrt(30 * 40))  # found [30, 40)
    assert marks[2] == ("v", 10.0)  # below_lo: EMM < 10
    assert marks[3] == ("^", 40.0)  # above_hi: EMM >= 40
    assert marks[4][0] == "D" and marks[4][1] == pytest.approx(20.0)  # max_rounds [10, 40): open diamond

    # other thresholds are drawn as set, not as the paper's
    other = table.assign(ratio_threshold=0.25, emm_threshold=0.8)
    fig = _draw({**spec, "experiments": ["wd"], "values": vals[:5]}, other, tmp_path, name="other")
    (ax,) = _axes(fig, "memorization ratio")
    assert "d1/d2 < 0.25" in ax.get_ylabel() and list(_threshold_lines(ax)[0].get_ydata()) == [0.8, 0.8]
    assert "≥ 80%" in _axes(fig, "EMM (")[0].get_ylabel()

    # one experiment with a single value, NaN brackets everywhere, and one value with no rows
    one = {"name": "basic", "kind": "sweep", "experiments": ["basic"], "title": "Basic", "values": [vals[5]]}
    single = table[table["experiment"] == "basic"].copy()
    single.loc[single["kind"] == "emm", ["emm_lower", "emm_upper"]] = np.nan
    _draw(one, single, tmp_path, name="single")
    empty = {**spec, "experiments": ["wd"], "values": vals[:5]}
    _draw(empty, table.iloc[:0], tmp_path, name="empty")


def _snapshot_rows(v, size, emm, steps=(10, 20, 30, 40), batch=8):
    rows = []
    for k, step in enumerate(steps):
        images = step * batch
        ratio = min(1.0, _curve(size, emm) * (k + 1) / len(steps))
        lo, hi = _ci(ratio)
        rows.append(
            {
                "figure": "f",
                "experiment": v["experiment"],
                "title": v["title"],
                "value": v["label"],
                "display": v["display"],
                "kind": "snapshot",
                "size": size,
                "snapshot": k,
                "step": step,
                "images_seen": images,
                "epochs": images / size,
                "ratio": ratio,
                "ci_low": lo,
                "ci_high": hi,
                "n": 64,
                "ratio_threshold": 1 / 3,
                "emm_threshold": 0.9,
                "run_id": v["run_id"],
            }
        )
    return rows


def test_epochs(tmp_path):
    v = _value("epochs", "Training length", "base", "base", sizes=(10, 20, 40))
    rows = []
    for size in (10, 20, 40):
        rows += _snapshot_rows(v, size, emm=20)
        rows.append(_size_row(v, size, _curve(size, 20)))
    table = _roundtrip(rows, tmp_path)
    spec = {
        "name": "epochs",
        "kind": "epochs",
        "experiments": ["epochs"],
        "title": "Memorization over training",
        "paper": "paper Fig. 6",
        "values": [v],
    }
    fig = _draw(spec, table, tmp_path)
    (ax,) = _axes(fig, "memorization ratio")
    assert ax.get_xlabel() == plotting.IMAGES_LABEL and ax.get_title() == "Training length"
    curves = _curves(ax)
    assert [ln.get_label().split(" (")[0] for ln in curves] == ["|D| = 10", "|D| = 20", "|D| = 40"]
    assert all(ln.get_xdata().tolist() == [80, 160, 240, 320] for ln in curves)  # images seen per snapshot
    assert len(_threshold_lines(ax)) == 1
    # two experiments, one of them with one size only (epochs secondary axis) and two values
    w = [_value("ema", "EMA", lab, lab, factor="train.ema.decay", sizes=(16,)) for lab in ("0.99", "0")]
    rows2 = rows + _snapshot_rows(w[0], 16, emm=30) + _snapshot_rows(w[1], 16, emm=10)
    spec2 = {**spec, "experiments": ["epochs", "ema"], "values": [v, *w]}
    fig = _draw(spec2, _roundtrip(rows2, tmp_path), tmp_path, name="two")
    ax_ema = _axes(fig, "memorization ratio")[1]
    assert [ln.get_label() for ln in _curves(ax_ema)] == ["0.99, |D| = 16", "0, |D| = 16"]


def _fake_png(path, w, h, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def test_optimum(tmp_path):
    grids = {}
    for name, size in [("opt", 20), ("opt", 40), ("trained", 20)]:
        folder = tmp_path / "anywhere" / f"{name}{size}"  # no file name is assumed: the spec gives the paths
        folder.mkdir(parents=True)
        samples, nearest = folder / f"s{size}.png", folder / f"nn{size}.png"
        _fake_png(samples, 256, 256, size)
        if (name, size) != ("opt", 40):  # one run without its nearest grid: drawn as missing
            _fake_png(nearest, 512, 66, size + 1)
        grids.setdefault(name, {})[str(size)] = [str(samples), str(nearest)]
    vals = [
        _value("optimum", "Theoretical optimum", "base", "base", grids=grids["opt"]),
        _value("trained", "Trained model", "base", "base", grids=grids["trained"]),
    ]
    rows = [_size_row(vals[0], 20, 1.0), _size_row(vals[0], 40, 0.97), _size_row(vals[1], 20, 0.3)]
    spec = {
        "name": "optimum",
        "kind": "optimum",
        "experiments": ["optimum", "trained"],
        "title": "Theoretical optimum vs trained model",
        "values": vals,
    }
    fig = _draw(spec, _roundtrip(rows, tmp_path), tmp_path)
    shown = [ax for ax in fig.get_axes() if ax.get_images()]
    assert len(shown) == 5  # 3 runs x (samples, nearest), one nearest missing
    missing = [t.get_text() for ax in fig.get_axes() for t in ax.texts if t.get_text().startswith("missing")]
    assert missing == ["missing: nn40.png"]
    titles = [ax.get_title() for ax in shown]
    assert titles[0] == "Theoretical optimum / |D| = 20: memorization 100%"
    bars = next(ax for ax in fig.get_axes() if ax.get_title() == "memorization ratio per run")
    assert [round(p.get_width(), 2) for p in bars.patches] == [1.0, 0.97, 0.3]
    assert list(_threshold_lines(bars)[0].get_xdata()) == [0.9, 0.9]
    assert any("d1/d2 < 1/3" in t.get_text() for t in fig.texts)


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown kind"):
        plotting.draw_figure(
            {"kind": "pie", "experiments": []},
            pd.DataFrame(columns=TABLE_COLUMNS),
            tmp_path / "a.pdf",
            tmp_path / "a.png",
        )
    assert not list(tmp_path.iterdir())


def test_labels_survive_csv_roundtrip():
    assert plotting._key("1e-05") == plotting._key(1e-05)
    assert plotting._key("8") == plotting._key(8) == plotting._key(8.0)
    assert plotting._key("random-5") == "random-5"
    assert plotting._truthy("True") and plotting._truthy(True) and not plotting._truthy(float("nan"))


def test_caption_names_the_thresholds_it_was_given():
    from diffmem.plan.config import figure_caption

    fig = {"kind": "sweep", "experiments": ["basic"], "title": "Basic"}
    text = figure_caption("basic", fig, {"basic": {}}, ratio_threshold=1 / 3, emm_threshold=0.9)
    assert "d1/d2 < 1/3" in text and "(90%)" in text
    text = figure_caption("basic", fig, {"basic": {}}, ratio_threshold=0.25, emm_threshold=None)
    assert "d1/d2 < 0.25" in text and "1/3" not in text and "emm.threshold" in text
