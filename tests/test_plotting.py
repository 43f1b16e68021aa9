"""Figures: every kind draws a PDF and a PNG from a synthetic table (after a CSV round trip, as the
workflow's figure script reads it)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffmem import plotting
from diffmem.pipeline import TABLE_COLUMNS


def _value(exp, title, label, display, factor=None, runs=None):
    return {"experiment": exp, "title": title, "factor": factor, "label": label, "display": display,
            "mode": "sizes" if runs else "emm", "run_id": "0123456789", "emm": None, "runs": runs or {},
            "threshold": 0.9}


def _ci(ratio, n=64):
    z = 1.96
    p = ratio
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _size_row(v, size, ratio, **extra):
    lo, hi = _ci(ratio)
    return {"figure": "f", "experiment": v["experiment"], "title": v["title"], "value": v["label"],
            "display": v["display"], "kind": "size", "size": size, "ratio": ratio, "ci_low": lo,
            "ci_high": hi, "n": 64, "memorized": ratio >= 0.9, "threshold": 0.9, "run_id": v["run_id"],
            **extra}


def _emm_row(v, lo, hi, status, non_monotone=False):
    return {"figure": "f", "experiment": v["experiment"], "title": v["title"], "value": v["label"],
            "display": v["display"], "kind": "emm", "emm_lo": lo, "emm_hi": hi, "emm_status": status,
            "non_monotone": non_monotone, "threshold": 0.9, "run_id": v["run_id"]}


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
    plotting.draw_figure(spec, table, tmp_path / f"{name}.pdf", tmp_path / f"{name}.png")
    _check_outputs(tmp_path, name)


def _curve(size, emm):
    """A falling memorization ratio that crosses 0.9 near ``emm``."""
    return float(1 / (1 + (size / (emm * 1.25)) ** 3))


def test_sweep(tmp_path):
    title = "Weight decay"
    vals = [_value("wd", title, lab, disp, factor="train.weight_decay")
            for lab, disp in [("0", "0"), ("1e-05", "1e-05"), ("0.1", "0.1"), ("0.5", "0.5"), ("1", "1")]]
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

    spec = {"name": "training", "kind": "sweep", "experiments": ["wd", "basic"],
            "title": "Training procedure", "paper": "Fig. 5", "values": vals}
    _draw(spec, table, tmp_path)

    # one experiment with a single value, NaN brackets everywhere, and one value with no rows
    one = {"name": "basic", "kind": "sweep", "experiments": ["basic"], "title": "Basic", "values": [vals[5]]}
    single = table[table["experiment"] == "basic"].copy()
    single.loc[single["kind"] == "emm", ["emm_lo", "emm_hi"]] = np.nan
    _draw(one, single, tmp_path, name="single")
    empty = {**spec, "experiments": ["wd"], "values": vals[:5]}
    _draw(empty, table.iloc[:0], tmp_path, name="empty")


def _snapshot_rows(v, size, emm, steps=(10, 20, 30, 40), batch=8):
    rows = []
    for k, step in enumerate(steps):
        images = step * batch
        ratio = min(1.0, _curve(size, emm) * (k + 1) / len(steps))
        lo, hi = _ci(ratio)
        rows.append({"figure": "f", "experiment": v["experiment"], "title": v["title"], "value": v["label"],
                     "display": v["display"], "kind": "snapshot", "size": size, "snapshot": k, "step": step,
                     "images_seen": images, "epochs": images / size, "ratio": ratio, "ci_low": lo,
                     "ci_high": hi, "n": 64, "threshold": 0.9, "run_id": v["run_id"]})
    return rows


def test_epochs(tmp_path):
    v = _value("epochs", "Training length", "base", "base", runs={"10": "x", "20": "y", "40": "z"})
    rows = []
    for size in (10, 20, 40):
        rows += _snapshot_rows(v, size, emm=20)
        rows.append(_size_row(v, size, _curve(size, 20)))
    table = _roundtrip(rows, tmp_path)
    spec = {"name": "epochs", "kind": "epochs", "experiments": ["epochs"],
            "title": "Memorization over training", "paper": "paper Fig. 6", "values": [v]}
    _draw(spec, table, tmp_path)
    # two experiments, one of them with one size only (epochs secondary axis) and two values
    w = [_value("ema", "EMA", lab, lab, factor="train.ema.decay", runs={"16": "a"}) for lab in ("0.99", "0")]
    rows2 = rows + _snapshot_rows(w[0], 16, emm=30) + _snapshot_rows(w[1], 16, emm=10)
    spec2 = {**spec, "experiments": ["epochs", "ema"], "values": [v, *w]}
    _draw(spec2, _roundtrip(rows2, tmp_path), tmp_path, name="two")


def _fake_png(path, w, h, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def test_optimum(tmp_path):
    runs = {}
    for name, size in [("opt", 20), ("opt", 40), ("trained", 20)]:
        folder = tmp_path / "runs" / f"{name}{size}"
        folder.mkdir(parents=True)
        _fake_png(folder / "samples.png", 256, 256, size)
        if (name, size) != ("opt", 40):  # one run without its nearest grid: drawn as missing
            _fake_png(folder / "nearest.png", 512, 66, size + 1)
        runs.setdefault(name, {})[str(size)] = str(folder)
    vals = [_value("optimum", "Theoretical optimum", "base", "base", runs=runs["opt"]),
            _value("trained", "Trained model", "base", "base", runs=runs["trained"])]
    rows = [_size_row(vals[0], 20, 1.0), _size_row(vals[0], 40, 0.97), _size_row(vals[1], 20, 0.3)]
    spec = {"name": "optimum", "kind": "optimum", "experiments": ["optimum", "trained"],
            "title": "Theoretical optimum vs trained model", "values": vals}
    _draw(spec, _roundtrip(rows, tmp_path), tmp_path)


def test_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown kind"):
        plotting.draw_figure({"kind": "pie", "experiments": []}, pd.DataFrame(columns=TABLE_COLUMNS),
                             tmp_path / "a.pdf", tmp_path / "a.png")
    assert not list(tmp_path.iterdir())


def test_labels_survive_csv_roundtrip():
    assert plotting._key("1e-05") == plotting._key(1e-05)
    assert plotting._key("8") == plotting._key(8) == plotting._key(8.0)
    assert plotting._key("random-5") == "random-5"
    assert plotting._truthy("True") and plotting._truthy(True) and not plotting._truthy(float("nan"))
