"""The figure step: one figure (PDF + PNG) drawn from its table and its spec.

A figure whose config entry names the paper's panels (``paper_points``) also draws their published points
(:func:`diffmem.results.paper.load_points`) as ``reference`` entries, each on the figure's value whose
settings are the paper's setup for the point: ``config/paper.yaml``'s base with the panel's settings and the
point's factor value, compared as :func:`diffmem.results.compare.comparable` does (the spec carries each
value's settings for this). A run at other settings (a CPU default or smoke run) draws none. Percent become
shares; a range the paper gives (low/high) is drawn as a bar with the marker at its middle (an EMM range:
the marker at the paper's interpolated crossing); a point the paper leaves open between several values
(``one of``) is not drawn, and a footnote names it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from diffmem.errors import ConfigError
from diffmem.plan import config as dmc
from diffmem.plan.identity import canonical, canonical_json
from diffmem.results import compare, figures
from diffmem.results.paper import PaperPoint, load_points

_log = logging.getLogger("diffmem")

PAPER_NOTE = (
    "Published points: read off the paper's figures by eye (about ±2 percentage points; "
    "diffmem/results/paper_points.csv), drawn on the value whose settings are the paper's; "
    "a bar is a range the paper gives."
)


def paper_panels(spec: dict) -> list[str]:
    """The paper's panels a figure spec names (``paper_points``: one name or a list)."""
    panels = spec.get("paper_points") or []
    return [panels] if isinstance(panels, str) else list(panels)


def _setup(point: PaperPoint, choice: tuple, paper_cfg: dict, cache: dict[str, Any]) -> Any:
    """The comparable settings of the paper's setup for ``point`` at factor value ``choice`` (None where
    the setup is no valid config)."""
    changes = {**point.setting, **dict(zip(point.keys, choice, strict=True))}
    key = canonical_json(changes)
    if key not in cache:
        try:
            cache[key] = canonical(compare.comparable(compare.settings_with(paper_cfg, changes)))
        except ConfigError:
            cache[key] = None
    return cache[key]


def _reference(point: PaperPoint, value: dict) -> dict:
    """``point`` as a figure's reference entry on ``value`` (percent as a share; a ratio range's marker at
    its middle)."""
    scale = 100.0 if point.metric == "ratio" else 1.0
    ref: dict[str, Any] = {"value": value["label"], "experiment": value["experiment"]}
    if point.size is not None:
        ref["size"] = point.size
    if point.epochs is not None:
        ref["epochs"] = point.epochs
    ref[point.metric] = point.number / scale
    if point.low is not None and point.high is not None:
        ref["low"], ref["high"] = point.low / scale, point.high / scale
        if point.metric == "ratio":
            ref["ratio"] = (point.low + point.high) / 2 / scale
    return ref


def _factor_keys(value: dict) -> set[str]:
    factor = value.get("factor")
    return set() if factor is None else {factor} if isinstance(factor, str) else set(factor)


def paper_references(
    spec: dict, paper_cfg: dict, points: list[PaperPoint] | None = None
) -> tuple[list[dict], list[str]]:
    """(reference entries, footnotes) for the panels ``spec`` names: each published point on the spec's
    value whose settings (``values[i]["settings"]``) are the paper's setup for it, preferring a value of
    an experiment that varies the point's keys; none where no value is. ``points``: default the package's."""
    panels = paper_panels(spec)
    values = [(v, canonical(compare.comparable(v["settings"]))) for v in spec.get("values") or [] if v.get("settings")]
    cache: dict[str, Any] = {}
    refs, open_points = [], []
    for point in points if points is not None else load_points():
        if point.panel not in panels:
            continue
        hits = []
        for choice in point.choices:
            setup = _setup(point, choice, paper_cfg, cache)
            hits.append([v for v, comp in values if setup is not None and comp == setup])
        if len(point.choices) > 1:  # "one of": which value it belongs to is not known
            if any(hits):
                open_points.append(f"{point.label} at |D| = {point.size}")
            continue
        found = sorted(hits[0], key=lambda v: not set(point.keys) <= _factor_keys(v))
        if found:
            refs.append(_reference(point, found[0]))
    notes = [PAPER_NOTE] if refs else []
    if open_points:
        notes.append("Published points not drawn (the paper's figure does not say which value they belong to): "
                     f"{'; '.join(open_points)}.")  # fmt: skip
    return refs, notes


def with_paper_points(spec: dict, paper_config: str | Path | None = None, log: logging.Logger = _log) -> dict:
    """``spec`` with the published points of the panels it names added to its ``reference`` entries and
    their footnotes (``spec["footnotes"]``); ``spec`` itself where it names none. ``paper_config``: the
    paper's settings (default ``config/paper.yaml`` of the checkout)."""
    panels = paper_panels(spec)
    if not panels:
        return spec
    path = Path(paper_config) if paper_config else compare.PAPER_CONFIG
    if not path.is_file():
        log.warning("figure %s: %s not found, the paper's points are not drawn", spec.get("name"), path)
        return spec
    refs, notes = paper_references(spec, dmc.load_config([str(path)]))
    log.info("figure %s: %d of the paper's points (%s) drawn", spec.get("name"), len(refs), ", ".join(panels))
    if not refs and not notes:
        return spec
    return {
        **spec,
        "reference": [*(spec.get("reference") or []), *refs],
        "footnotes": [*(spec.get("footnotes") or []), *notes],
    }


def draw_figure_file(
    spec: dict,
    table_path: str | Path,
    pdf_path: str | Path,
    png_path: str | Path,
    log: logging.Logger = _log,
    paper_config: str | Path | None = None,
) -> None:
    """Read the figure's table (CSV of :data:`diffmem.steps.table.TABLE_COLUMNS`; value labels stay text)
    and draw ``spec`` from it to ``pdf_path`` and ``png_path``, with the paper's points where it names their
    panels (:func:`with_paper_points`)."""
    import pandas as pd

    table = pd.read_csv(table_path, dtype={"value": str, "display": str})
    figures.draw_figure(with_paper_points(spec, paper_config, log), table, pdf_path, png_path)
    log.info("figure %s drawn from %d rows", spec["name"], len(table))
