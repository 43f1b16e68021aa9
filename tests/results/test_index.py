"""results/<name>/index.csv and the by-experiment/ links (diffmem.results.index), and the report's table and EMM
grid items (diffmem.results.report_items), on a small hand-made results tree."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffmem.io import write_json
from diffmem.plan import layout
from diffmem.results import index
from diffmem.results import report_items as report

IDS = {"sample_id": "s000000000", "score_id": "c000000000"}


def _scored(results: Path, run_id: str, size: int, ratio: float) -> Path:
    write_json(results / layout.train_summary(run_id, size), {"complete": True})
    files = layout.sample_files(run_id, size, IDS["sample_id"])
    (results / files["samples"]).parent.mkdir(parents=True)
    (results / files["samples"]).write_bytes(b"npz")
    Image.fromarray(np.full((8, 16, 3), 200, np.uint8)).save(results / files["grid"])
    scores = layout.score_files(run_id, size, IDS["sample_id"], IDS["score_id"])
    write_json(results / scores["scores"], {"size": size, "ratio": ratio, "ci_low": 0.0, "ci_high": 1.0, "n": 10})
    Image.fromarray(np.full((4, 16, 3), 50, np.uint8)).save(results / scores["nearest"])
    return results / scores["scores"]


@pytest.fixture
def tree(tmp_path):
    """A base EMM search over 2, 4, 8 (memorized at 2 and 4, not at 8), a value whose search has not run,
    and a sizes-mode experiment with one unfinished run."""
    res = tmp_path / "results" / "t"
    evaluated = []
    for size, ratio in ((2, 1.0), (4, 0.95), (8, 0.2)):
        path = _scored(res, "a000000000", size, ratio)
        evaluated.append({"size": size, "ratio": ratio, "memorized": ratio >= 0.9, "memorization": str(path)})
    emm_json = res / "emm" / "basic" / "base" / "emm.json"
    write_json(emm_json, {"evaluated": evaluated, "status": "found", "bracket": [4, 8], "lower": 4, "upper": 8,
                          "lo": 2, "hi": 16, "threshold": 0.9})  # fmt: skip
    _scored(res, "b000000000", 4, 0.5)
    write_json(res / layout.train_progress("b000000000", 8), {"step": 3})
    values = [
        {"experiment": "basic", "value": "base", "display": "base", "run_id": "a000000000", **IDS,
         "emm": str(emm_json), "sizes": [], "emm_threshold": 0.9},
        {"experiment": "width", "value": "w8", "display": "8", "run_id": "c000000000", **IDS,
         "emm": str(res / "emm" / "width" / "w8" / "emm.json"), "sizes": [], "emm_threshold": 0.9},
        {"experiment": "epochs", "value": "base", "display": "base", "run_id": "b000000000", **IDS,
         "emm": None, "sizes": [4, 8], "emm_threshold": 0.9},
    ]  # fmt: skip
    return res, values, emm_json


def test_the_index_lists_every_run_and_every_link_resolves(tree):
    res, values, _ = tree
    rows = index.index_rows(values, res)
    links = index.update_links(rows, res)
    index.write_index(rows, res / "index.csv")
    with open(res / "index.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == index.COLUMNS
    got = {(r["experiment"], r["value"], int(r["size"])): r for r in table}
    assert set(got) == {("basic", "base", 2), ("basic", "base", 4), ("basic", "base", 8),
                        ("epochs", "base", 4), ("epochs", "base", 8)}  # fmt: skip
    assert [got["basic", "base", s]["verdict"] for s in (2, 4, 8)] == ["memorized", "memorized", "not memorized"]
    assert [got["basic", "base", s]["decides"] for s in (2, 4, 8)] == ["", "lower", "upper"]
    assert got["basic", "base", 4]["emm_lower"] == "4" and got["basic", "base", 4]["emm_upper"] == "8"
    assert got["epochs", "base", 4]["status"] == "scored" and got["epochs", "base", 8]["status"] == "training"
    assert got["epochs", "base", 8]["ratio"] == ""
    for row in table:  # every link is relative and lands in its run folder
        link = res / row["link"]
        assert link.is_symlink() and not os.path.isabs(os.readlink(link))
        assert link.resolve() == (res / row["run_folder"]).resolve()
        assert row["run_folder"] == str(layout.run_dir(row["run_id"], row["size"]))
    assert all((res / r["link"] / "run.json").parent.is_dir() for r in table if r["status"] != "planned")
    assert len(links) == len(table)


def test_links_follow_the_plan_stale_ones_go(tree):
    res, values, emm_json = tree
    index.update_links(index.index_rows(values, res), res)
    stale = res / index.link_path("basic", "base", 8)
    assert stale.is_symlink()
    # the search is redone with fewer sizes, and the epochs experiment is dropped from the config
    import json

    result = json.loads(emm_json.read_text())
    result["evaluated"] = result["evaluated"][:2]
    write_json(emm_json, result)
    index.update_links(index.index_rows(values[:1], res), res)
    assert not stale.is_symlink() and (res / index.link_path("basic", "base", 4)).is_symlink()
    assert not (res / index.LINKS / "epochs").exists()  # emptied folders go too
    assert not list((res / index.LINKS).rglob(".tmp-*"))
    (res / index.link_path("basic", "base", 2)).unlink()
    (res / index.link_path("basic", "base", 2)).mkdir()  # not a link: left alone, and named
    with pytest.raises(FileExistsError, match="not a link"):
        index.update_links(index.index_rows(values[:1], res), res)


def test_report_items(tree, tmp_path):
    res, values, emm_json = tree
    rows = index.index_rows(values, res)
    index.write_index(rows, res / "index.csv")
    report.table_html(res / "index.csv", tmp_path / "t.html", title="a <table>")
    page = (tmp_path / "t.html").read_text()
    assert "<table" in page and "a &lt;table&gt;" in page and page.count("<tr") == len(rows) + 1
    files = {}
    for size in (4, 8):
        files[f"samples_{size}"] = res / layout.sample_files("a000000000", size, IDS["sample_id"])["grid"]
        sc = layout.score_files("a000000000", size, IDS["sample_id"], IDS["score_id"])
        files[f"nearest_{size}"], files[f"scores_{size}"] = res / sc["nearest"], res / sc["scores"]
    assert report.bracket_ends({"evaluated": [1], "lower": 4, "upper": 8}) == [("lower", 4), ("upper", 8)]
    assert report.bracket_ends({"evaluated": [1], "status": "below_lo", "lo": 2}) == [("upper", 2)]
    out = tmp_path / "g.png"
    report.emm_grids(emm_json, files, out, {"experiment": "basic", "value": "base", "title": "Basic"})
    with Image.open(out) as im:
        assert im.size[0] > 600 and im.size[1] > 600


def test_flat_settings():
    assert index.flat_settings({"train": {"lr": 1, "ema": {"decay": 0.9}}, "x": [1, 2], "e": {}}) == {
        "train.lr": 1, "train.ema.decay": 0.9, "x": [1, 2], "e": {}}  # fmt: skip
