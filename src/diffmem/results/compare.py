"""Hold a finished (or partly finished) run against the paper: ``python -m diffmem compare results/<name>``.

What it reads: the run's tables (``tables/*.csv``; ``index.csv`` for experiments no figure draws) and the
config that made the run (a results folder does not record which key each experiment varies): the one
given with ``--configfile``, else the file under ``config/`` whose ``name`` is the folder's name (looked
for beside the results folder's parent, in the working directory, then in the checkout).

What it prints:

- **at the paper's settings** (the config's ``base``, resolved, equals ``config/paper.yaml``'s on every
  setting that changes a number: data, net, preconditioning, training, sampling, scoring; the data's path
  and other operational keys aside): per published point (:func:`diffmem.results.paper.load_points`) the
  paper's value, ours with its 95% interval and a verdict, ``agrees`` when
  ``|ours - paper| <= half the width of our interval + 2`` percentage points (the read-off accuracy; for a
  read-off range, the distance to the range), for an EMM read-off when our bracket meets the paper's; a
  point is ours only when one of the config's experiment values is exactly the paper's setup for that point
  (paper.yaml's base with the panel's factor and settings), and ``not run`` otherwise;
- **always**: each of the paper's directions (:mod:`diffmem.results.claims`) judged on the run's own tables.

Output: aligned text, or Markdown (``--markdown``); ``--write-into FILE`` replaces the text between
``<!-- compare:begin -->`` and ``<!-- compare:end -->`` in FILE with the Markdown (a docs page's direction
table is regenerated so). Never changes a result file.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from diffmem import CHECKOUT, PAPER_CONFIG
from diffmem.errors import ConfigError
from diffmem.io import write_text
from diffmem.plan import config as dmc
from diffmem.plan import identity
from diffmem.results.claims import Evidence, Experiment, Ratio, judge_claim
from diffmem.results.index import flat_settings
from diffmem.results.paper import PaperPoint, load_claims, load_points
from diffmem.science import emm

BEGIN, END = "<!-- compare:begin -->", "<!-- compare:end -->"
READ_OFF = 2.0  # percentage points: how exactly the paper's figures were read
AGREES, DIFFERS, NOT_RUN = "agrees", "differs", "not run"
SECTIONS = ("data", "model", "diffusion", "train", "sample", "score")


@dataclass
class Report:
    """What :func:`compare` found: whether the run is at the paper's settings (``differences`` from
    paper.yaml's base otherwise), per published point a row (paper scale only), per claim and experiment
    a row, and notes for the reader."""

    results: str
    config: list[str]
    paper_scale: bool
    differences: list[str]
    points: list[dict[str, str]] = field(default_factory=list)
    claims: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------- config
def find_config(results: str | Path) -> Path:
    """The config file under ``config/`` whose ``name`` is the results folder's name (``<name>.yaml`` before
    other files of that name)."""
    results = Path(results)
    places = [results.resolve().parent.parent / "config", Path.cwd() / "config", CHECKOUT / "config"]
    for folder in dict.fromkeys(p.resolve() for p in places):
        for path in sorted(folder.glob("*.yaml"), key=lambda p: (p.stem != results.name, p.name)):
            try:
                data = yaml.safe_load(path.read_text())
            except (OSError, yaml.YAMLError):
                continue
            if isinstance(data, dict) and data.get("name") == results.name:
                return path
    raise FileNotFoundError(f"no config named {results.name!r} under {', '.join(map(str, dict.fromkeys(places)))}; "
                            "pass --configfile")  # fmt: skip


def comparable(settings: dict) -> dict[str, Any]:
    """A value's settings as flat ``section.key`` entries, without |D| and the keys that change no number
    (:data:`diffmem.plan.identity.OPERATIONAL`, also inside a blend block)."""
    flat = flat_settings({k: settings[k] for k in SECTIONS if k in settings})
    drop = {f"{sec}.{k}" for sec, keys in identity.OPERATIONAL.items() for k in keys}
    data_ops = identity.OPERATIONAL["data"]
    return {
        k: v
        for k, v in flat.items()
        if k not in drop and k != "data.size" and not (k.startswith("data.blend.") and k.rsplit(".", 1)[1] in data_ops)
    }


def settings_with(cfg: dict, changes: dict | None = None) -> dict:
    """The resolved settings of ``cfg``'s base with ``changes`` (dotted keys, as an experiment's ``set:``)."""
    mini = {**cfg, "experiments": {"point": {"set": changes} if changes else {}}, "figures": {}}
    return dmc.expand(mini)["point"][0].settings


def differences(ours: dict, paper: dict) -> list[str]:
    """``key: ours (paper: theirs)`` for every comparable setting that differs."""
    a, b = comparable(ours), comparable(paper)
    return [f"{k}: {a.get(k)!r} (paper: {b.get(k)!r})" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# ---------------------------------------------------------------------------------------------- results
def _float(text: str | None) -> float | None:
    return None if text in (None, "") else float(text)


def _int(text: str | None) -> int | None:
    return None if text in (None, "") else int(float(text))


def _ratio(row: dict, levelled: str = "unknown") -> Ratio:
    r = float(row["ratio"])
    lo, hi = _float(row.get("ci_low")), _float(row.get("ci_high"))
    return Ratio(r, r if lo is None else lo, r if hi is None else hi, levelled or "unknown")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_tables(results: str | Path) -> dict[tuple[str, str], dict]:
    """Per (experiment, value label): ``emm`` (lower, upper, status) or None, ``sizes`` {size: Ratio},
    ``snapshots`` {size: [(epochs, Ratio)] in training order}, ``threshold`` (emm.threshold); from the
    tables, and from ``index.csv`` for the experiments no table holds."""
    results = Path(results)
    out: dict[tuple[str, str], dict] = {}
    snaps: dict[tuple[str, str], dict[int, dict[int, tuple]]] = {}
    for path in sorted(results.glob("tables/*.csv")):
        for row in _read_csv(path):
            key = (row["experiment"], row["value"])
            ev = out.setdefault(key, {"emm": None, "sizes": {}, "snapshots": {}, "threshold": None})
            ev["threshold"] = _float(row.get("emm_threshold")) or ev["threshold"]
            if row["kind"] == "size" and row.get("ratio"):
                ev["sizes"][_int(row["size"])] = _ratio(row, row.get("levelled_off", ""))
            elif row["kind"] == "emm":
                ev["emm"] = (_int(row["emm_lower"]), _int(row["emm_upper"]), row["emm_status"])
            elif row["kind"] == "snapshot" and row.get("ratio"):
                by_k = snaps.setdefault(key, {}).setdefault(_int(row["size"]), {})
                by_k[_int(row["snapshot"])] = (_float(row.get("epochs")), _ratio(row))
    for key, sizes in snaps.items():
        out[key]["snapshots"] = {s: [by_k[k] for k in sorted(by_k)] for s, by_k in sizes.items()}
    tabled = {exp for exp, _ in out}
    index = results / "index.csv"
    for row in _read_csv(index) if index.is_file() else []:
        if row["experiment"] in tabled:
            continue
        ev = out.setdefault((row["experiment"], row["value"]), {"emm": None, "sizes": {}, "snapshots": {}})
        if row.get("ratio"):
            ev["sizes"][_int(row["size"])] = _ratio(row)
        if row.get("emm_status"):
            ev["emm"] = (_int(row["emm_lower"]), _int(row["emm_upper"]), row["emm_status"])
    for ev in out.values():  # sizes mode: what the listed sizes alone say about the EMM, as index.csv does
        if ev["emm"] is None and ev["sizes"] and ev.get("threshold") is not None:
            res = emm.from_ratios({s: r.ratio for s, r in ev["sizes"].items()}, ev["threshold"])
            ev["emm"] = (*emm.bounds(res), res["status"])
    return out


def experiments(cfg: dict, plan: dict, tables: dict[tuple[str, str], dict]) -> list[Experiment]:
    """The config's experiments with their factor keys and, per value, what the tables say."""
    out = []
    for name, values in plan.items():
        factor = cfg["experiments"][name].get("factor")
        keys = () if factor is None else (factor,) if isinstance(factor, str) else tuple(factor)
        evs = []
        for v in values:
            t = tables.get((name, v.label), {})
            evs.append(Evidence(name, v.label, v.display, v.settings, t.get("emm"), dict(t.get("sizes", {})),
                                dict(t.get("snapshots", {}))))  # fmt: skip
        out.append(Experiment(name, keys, evs))
    return out


def stale_runs(results: str | Path, plan: dict) -> list[str]:
    """Experiments whose runs in ``index.csv`` are not the runs this config plans (another config, another
    version of the code, or other data content)."""
    index = Path(results) / "index.csv"
    if not index.is_file():
        return []
    planned = {(v.experiment, v.label): v.run_id for vals in plan.values() for v in vals}
    return sorted({row["experiment"] for row in _read_csv(index)
                   if planned.get((row["experiment"], row["value"]), row["run_id"]) != row["run_id"]})  # fmt: skip


# ------------------------------------------------------------------------------------ published points
def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _measure(point: PaperPoint, ev: Evidence) -> tuple[str, bool] | None:
    """(ours in words, agrees) for one point on one experiment value, or None when it has no such result."""
    if point.metric == "emm":
        if ev.emm is None or ev.emm[:2] == (None, None):
            return None
        lower, upper, _ = ev.emm
        low, high = point.low if point.low is not None else point.number, point.high or point.number
        text = f"< {upper}" if lower is None else f">= {lower}" if upper is None else f"[{lower}, {upper})"
        return text, (lower is None or lower < high) and (upper is None or upper > low)
    at = ""
    if point.epochs is None:
        r = ev.sizes.get(point.size)
    else:  # the snapshot nearest the point's epoch, within 5% of it
        snaps = [(abs(ep - point.epochs), ep, r) for ep, r in ev.snapshots.get(point.size, []) if ep is not None]
        near = min(snaps, key=lambda s: s[0]) if snaps else None
        r = near[2] if near and near[0] <= 0.05 * point.epochs else None
        at = f" at {near[1]:g} epochs" if r is not None else ""
    if r is None:
        return None
    ours, half = 100 * r.ratio, 50 * (r.high - r.low)
    low = point.low if point.low is not None else point.number
    high = point.high if point.high is not None else point.number
    return f"{ours:.1f} [{_pct(r.low)}, {_pct(r.high)}]{at}", max(low - ours, ours - high, 0.0) <= half + READ_OFF


def _paper_text(point: PaperPoint) -> str:
    if point.low is not None and point.high is not None:
        span = f"{point.low:g}-{point.high:g}"
        return span if point.metric == "emm" else f"{span} (~{point.number:g})"
    return f"{point.number:g}"


def judge_points(points: list[PaperPoint], exps: list[Experiment], paper_cfg: dict) -> list[dict[str, str]]:
    """Per published point: the paper's value, ours (from the experiment value whose settings are the paper's
    setup for the point, preferring experiments that vary the point's keys), the verdict and where."""
    comps = [(exp, ev, comparable(ev.settings)) for exp in exps for ev in exp.values if ev.has_data]
    cache: dict[str, Any] = {}
    rows = []
    for point in points:
        found = []
        for choice in point.choices:
            changes = {**point.setting, **dict(zip(point.keys, choice, strict=True))}
            key = yaml.safe_dump(changes, sort_keys=True)
            if key not in cache:
                try:
                    cache[key] = comparable(settings_with(paper_cfg, changes))
                except ConfigError as err:
                    cache[key] = str(err)
            hits = [(exp, ev) for exp, ev, comp in comps if comp == cache[key]]
            hits.sort(key=lambda h: not set(point.keys) <= set(h[0].keys))
            found += [(ev, m) for _, ev in hits if (m := _measure(point, ev)) is not None][:1]
        best = next((f for f in found if f[1][1]), found[0] if found else None)
        rows.append({
            "panel": point.panel, "value": point.label, "size": "" if point.size is None else str(point.size),
            "epochs": "" if point.epochs is None else str(point.epochs), "metric": point.metric,
            "paper": _paper_text(point), "ours": best[1][0] if best else "",
            "verdict": NOT_RUN if best is None else AGREES if best[1][1] else DIFFERS,
            "experiment": f"{best[0].experiment} / {best[0].display}" if best else "",
        })  # fmt: skip
    return rows


# -------------------------------------------------------------------------------------------- the report
def compare(results: str | Path, configfile: list[str] | None = None, paper_config: str | Path | None = None) -> Report:
    """Everything ``python -m diffmem compare`` prints, for the results folder ``results/<name>``."""
    results = Path(results)
    if not (results / "tables").is_dir() and not (results / "index.csv").is_file():
        raise FileNotFoundError(f"no tables/ or index.csv under {results}: has the workflow run?")
    paths = [str(p) for p in configfile] if configfile else [str(find_config(results))]
    cfg = dmc.load_config(paths)
    plan = dmc.expand(cfg)
    exps = experiments(cfg, plan, read_tables(results))
    report = Report(str(results), paths, False, [])
    paper_path = Path(paper_config) if paper_config else PAPER_CONFIG
    if paper_path.is_file():
        paper_cfg = dmc.load_config([str(paper_path)])
        report.differences = differences(settings_with(cfg), settings_with(paper_cfg))
        report.paper_scale = not report.differences
        if report.paper_scale:
            report.points = judge_points(load_points(), exps, paper_cfg)
    else:
        report.notes.append(f"{paper_path} not found: the paper's points are not compared")
    report.claims = [row for claim in load_claims() for row in judge_claim(claim, exps)]
    stale = stale_runs(results, plan)
    if stale:
        report.notes.append(f"index.csv's runs of {', '.join(stale)} are not those this config plans (another "
                            "config, code version or data content): their values may be matched wrongly")  # fmt: skip
    return report


POINT_COLUMNS = [("panel", "panel"), ("value", "value"), ("size", "|D|"), ("epochs", "epochs"), ("metric", "metric"),
                 ("paper", "paper"), ("ours", "ours [95% interval]"), ("verdict", "verdict"),
                 ("experiment", "experiment / value")]  # fmt: skip
CLAIM_COLUMNS = [("claim", "paper's direction"), ("paper", "figure"), ("experiment", "experiment"),
                 ("values", "values"), ("verdict", "verdict"), ("evidence", "evidence")]  # fmt: skip


def _table(rows: list[dict[str, str]], columns: list[tuple[str, str]], markdown: bool) -> list[str]:
    cells = [[h for _, h in columns]] + [[str(r.get(k, "")) for k, _ in columns] for r in rows]
    if markdown:
        esc = [[c.replace("|", "\\|") for c in row] for row in cells]
        lines = ["| " + " | ".join(row) + " |" for row in esc]
        return [lines[0], "|" + "---|" * len(columns), *lines[1:]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def render(report: Report, markdown: bool = False) -> str:
    """The report as aligned text or Markdown."""
    lines = [f"Results: {report.results} (config: {', '.join(report.config)})", ""]
    if report.paper_scale:
        counts = {v: sum(r["verdict"] == v for r in report.points) for v in (AGREES, DIFFERS, NOT_RUN)}
        lines += ["The run has the paper's settings (config/paper.yaml's base). The paper's published points "
                  f"(read off its figures to about +-{READ_OFF:g} points): {counts[AGREES]} agree, "
                  f"{counts[DIFFERS]} differ, {counts[NOT_RUN]} not run.", ""]  # fmt: skip
        lines += [*_table(report.points, POINT_COLUMNS, markdown), ""]
    elif report.differences:
        shown = "; ".join(report.differences[:6]) + (f"; {len(report.differences) - 6} more"
                                                     if len(report.differences) > 6 else "")  # fmt: skip
        lines += [f"Not the paper's settings ({len(report.differences)} differ from config/paper.yaml's base: "
                  f"{shown}): the paper's directions only, judged on the run's own tables.", ""]  # fmt: skip
    lines += [*_table(report.claims, CLAIM_COLUMNS, markdown), ""]
    lines += ["A > B: A memorizes more (EMM brackets apart, or 95% intervals apart at a |D| both evaluated)."]
    if report.notes:
        lines += ["", *(f"Note: {n}" for n in report.notes)]
    return "\n".join(lines) + "\n"


def write_into(path: str | Path, text: str) -> None:
    """Replace what lies between ``<!-- compare:begin -->`` and ``<!-- compare:end -->`` in ``path``."""
    path = Path(path)
    old = path.read_text()
    i, j = old.find(BEGIN), old.find(END)
    if i < 0 or j < i:
        raise ValueError(f"{path} has no {BEGIN} ... {END} block to replace")
    write_text(path, old[: i + len(BEGIN)] + "\n" + text.rstrip("\n") + "\n" + old[j:])


def compare_text(
    results: str | Path,
    configfile: list[str] | None = None,
    markdown: bool = False,
    into: str | Path | None = None,
    paper_config: str | Path | None = None,
) -> str:
    """What ``python -m diffmem compare`` prints: the report (Markdown with ``markdown``), or, with ``into``,
    a line saying which file's compare block it replaced with the Markdown."""
    text = render(compare(results, configfile, paper_config), markdown=markdown or into is not None)
    if into is None:
        return text
    write_into(into, text)
    return f"replaced the compare block of {into}\n"
