"""A map of ``results/<name>/``: ``index.csv`` and readable links to the run folders.

Run folders are named by hashes (:mod:`diffmem.plan.identity`); the index says which experiment, value and
training-set size each one is, how far it got, its memorization ratio and what it says about the EMM::

    index.csv                                         one row per experiment value and size
    by-experiment/<experiment>/<value>/n<size>        -> ../../../runs/<run_id>/n<size> (relative link)

A run shared by several experiments (the base value appears in every sweep) has one row and one link per
experiment. :func:`update_links` replaces every link atomically and removes links (and emptied folders)
that the plan no longer has. The workflow's ``index`` rule writes both after the tables.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from diffmem.io import atomic_path, read_json
from diffmem.plan import layout
from diffmem.plan.records import flat_settings  # noqa: F401  (re-exported: index.flat_settings)
from diffmem.science import emm

LINKS = "by-experiment"
COLUMNS = [
    "experiment", "value", "display", "size", "status", "ratio", "ci_low", "ci_high", "verdict",
    "emm_status", "emm_lower", "emm_upper", "decides", "link", "run_folder", "sample_folder", "score_folder",
    "run_id", "sample_id", "score_id",
]  # fmt: skip


def link_path(experiment: str, value: str, size: int | str) -> Path:
    """A run's readable link, relative to ``results/<name>/``."""
    return Path(LINKS) / str(experiment) / str(value) / f"n{size}"


def run_status(results: Path, run_id: str, size: int, sample_id: str, score_id: str) -> str:
    """How far a run got: scored, sampled, trained, training (a resumable state), or planned."""
    if (results / layout.memorization(run_id, size, sample_id, score_id)).is_file():
        return "scored"
    if (results / layout.sample_files(run_id, size, sample_id)["samples"]).is_file():
        return "sampled"
    if (results / layout.train_summary(run_id, size)).is_file():
        return "trained"
    if (results / layout.train_progress(run_id, size)).is_file():
        return "training"
    return "planned"


def _sizes(value: dict, emm_result: dict | None) -> list[int]:
    """The sizes of a value: those its EMM search evaluated (emm mode), else the listed ones."""
    if emm_result is not None:
        return sorted(int(e["size"]) for e in emm_result["evaluated"])
    return sorted(int(s) for s in value.get("sizes", []))


def index_rows(values: list[dict], results: str | Path) -> list[dict[str, Any]]:
    """One row per experiment value and size. ``values``: per experiment value its ``experiment``,
    ``value`` (label), ``display``, ``run_id``, ``sample_id``, ``score_id``, ``emm_threshold``, and
    ``emm`` (its emm.json, emm mode) or ``sizes`` (sizes mode). A missing emm.json lists no size."""
    results = Path(results)
    rows = []
    for v in values:
        res = None
        if v.get("emm"):
            path = Path(v["emm"])
            res = read_json(path) if path.is_file() else {"evaluated": [], "status": "searching"}
        sizes = _sizes(v, res)
        scores = {}
        for size in sizes:
            p = results / layout.memorization(v["run_id"], size, v["sample_id"], v["score_id"])
            if p.is_file():
                scores[size] = read_json(p)
        if res is not None:
            lower, upper = emm.bounds(res) if res.get("evaluated") else (None, None)
            emm_status = res.get("status")
        elif scores:  # sizes mode: what the listed sizes alone say
            verdict = emm.from_ratios({s: sc["ratio"] for s, sc in scores.items()}, float(v["emm_threshold"]))
            lower, upper = emm.bounds(verdict)
            emm_status = verdict.get("status")
        else:
            lower, upper, emm_status = None, None, None
        for size in sizes:
            sc = scores.get(size)
            run = layout.run_dir(v["run_id"], size)
            rows.append(
                {
                    "experiment": v["experiment"],
                    "value": v["value"],
                    "display": v.get("display", v["value"]),
                    "size": size,
                    "status": run_status(results, v["run_id"], size, v["sample_id"], v["score_id"]),
                    "ratio": None if sc is None else sc["ratio"],
                    "ci_low": None if sc is None else sc.get("ci_low"),
                    "ci_high": None if sc is None else sc.get("ci_high"),
                    "verdict": None if sc is None else
                    ("memorized" if emm.passes(sc["ratio"], float(v["emm_threshold"])) else "not memorized"),
                    "emm_status": emm_status,
                    "emm_lower": lower,
                    "emm_upper": upper,
                    "decides": "lower" if size == lower else "upper" if size == upper else "",
                    "link": str(link_path(v["experiment"], v["value"], size)),
                    "run_folder": str(run),
                    "sample_folder": str(layout.sample_dir(v["run_id"], size, v["sample_id"])),
                    "score_folder": str(layout.score_dir(v["run_id"], size, v["sample_id"], v["score_id"])),
                    "run_id": v["run_id"],
                    "sample_id": v["sample_id"],
                    "score_id": v["score_id"],
                }
            )  # fmt: skip
    return rows


def write_index(rows: list[dict], path: str | Path) -> None:
    """index.csv (written atomically: a reader never sees half a file)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: "" if row.get(k) is None else row[k] for k in COLUMNS})


def _replace_link(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` atomically (a new link renamed over the old one)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} is not a link; move it away (by-experiment/ holds only links)")
    tmp = link.with_name(f".tmp-{link.name}-{os.getpid()}")
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)


def update_links(rows: list[dict], results: str | Path) -> list[Path]:
    """Make ``by-experiment/<experiment>/<value>/n<size>`` point at each row's run folder (relative links,
    so the results folder can move), and remove the links and folders under ``by-experiment/`` that no
    row has. Returns the links."""
    results = Path(results)
    wanted = {}
    for row in rows:
        link = results / row["link"]
        wanted[link] = os.path.relpath(results / row["run_folder"], link.parent)
    for link, target in wanted.items():
        _replace_link(link, target)
    root = results / LINKS
    if root.is_dir():
        for dirpath, dirnames, filenames in os.walk(root, topdown=False):
            d = Path(dirpath)
            for name in filenames + dirnames:
                p = d / name
                if p.is_symlink() and p not in wanted:
                    p.unlink()
            if d != root and not any(d.iterdir()):
                d.rmdir()
    return list(wanted)
