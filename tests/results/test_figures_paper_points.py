"""The paper's published points drawn in the paper preset's figures (``paper_points``): on a fake table whose
values have config/paper.yaml's settings each point lands on its value's series at its |D| (read off the
matplotlib axes); a run at other settings (the default and smoke configs) draws none; the schema takes
only the points file's panel names."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import yaml
from test_figures_fixed import _errorbars, _references
from test_plotting import _roundtrip, _size_row

from diffmem.errors import ConfigError
from diffmem.plan import config as dmc
from diffmem.plan import schema
from diffmem.plan.identity import canonical
from diffmem.results import figures as plotting
from diffmem.results.paper import load_points
from diffmem.steps import figure as step

ROOT = Path(__file__).resolve().parents[2]
PAPER, DEFAULT, SMOKE = (ROOT / "config" / f"{n}.yaml" for n in ("paper", "config", "smoke"))
PANELS = {"fig_data": "data_dimension", "fig_conditioning": "conditioning_labels",
          "fig_random_labels": "conditioning_classes", "fig_model_skip_location": "skip_location",
          "fig_model_skip_ddpmpp": "skip_resolution", "fig_full_unique": "unique_labels"}  # fmt: skip


@pytest.fixture(scope="module")
def paper():
    cfg = dmc.load_config([str(PAPER)])
    return cfg, dmc.expand(cfg)


def _spec(cfg, plan, name, tmp_path):
    return canonical(dmc.figure_spec(cfg, plan, name, tmp_path))  # as the rule's params: a JSON round trip


def _table(spec, tmp_path, ratio=0.5):
    """A size row per value and listed size (every value at ``ratio``); snapshots for kind epochs."""
    rows = []
    for v in spec["values"]:
        for size in map(int, v["scores"]):
            if spec["kind"] == "epochs":
                for k, ep in enumerate((1500, 4000, 12000)):
                    rows.append(_size_row(v, size, ratio, kind="snapshot", snapshot=k, epochs=ep,
                                          images_seen=ep * size))  # fmt: skip
            rows.append(_size_row(v, size, ratio))
    return _roundtrip(rows, tmp_path)


def _ratio_axes(fig):
    return [a for a in fig.get_axes() if a.get_ylabel().startswith("memorization ratio")]


def _marks(ax):
    return [(float(r.get_xdata()[0]), float(r.get_ydata()[0]), r.get_markeredgecolor()) for r in _references(ax)]


def _text(fig):
    return "\n".join(t.get_text() for t in fig.texts)


def _ranges(ax):
    return [tuple(ln.get_ydata()) for ln in ax.get_lines() if ln.get_label() == "_reference_range"]


def test_the_paper_figures_name_their_panels_and_every_point_finds_its_value(paper, tmp_path):
    cfg, plan = paper
    assert {n: f.get("paper_points") for n, f in cfg["figures"].items() if f.get("paper_points")} == PANELS
    per_panel = Counter(p.panel for p in load_points())
    for name, panel in PANELS.items():
        refs, notes = step.paper_references(_spec(cfg, plan, name, tmp_path), cfg)
        unsure = sum(len(p.choices) > 1 for p in load_points() if p.panel == panel)
        assert len(refs) == per_panel[panel] - unsure, name
        assert notes[0] == step.PAPER_NOTE and len(notes) == 1 + bool(unsure)
        assert not unsure or "16x16: 2 kept (one of three masks) at |D| = 1000" in notes[1]


def test_random_labels_points_on_the_series_of_their_size(paper, tmp_path):
    cfg, plan = paper
    spec = step.with_paper_points(_spec(cfg, plan, "fig_random_labels", tmp_path))
    assert {"value": "500", "experiment": "random_labels", "size": 5000, "ratio": 0.88} in spec["reference"]
    fig = plotting.build_figure(spec, _table(spec, tmp_path))
    (ax,) = _ratio_axes(fig)
    colour = {b[0]: c.lines[0].get_color() for b, c in zip(_errorbars(ax), ax.containers, strict=True)}
    marks = _marks(ax)
    assert len(marks) == 20
    assert (10.0, 0.96, colour["|D| = 1000"]) in marks and (10.0, 0.8, colour["|D| = 2000"]) in marks
    assert (1000.0, 0.925, colour["|D| = 5000"]) in marks and (1.0, 0.085, colour["|D| = 5000"]) in marks
    assert step.PAPER_NOTE in _text(fig)


def test_skip_masks_by_label_with_ranges_and_the_open_mask_left_out(paper, tmp_path):
    cfg, plan = paper
    spec = step.with_paper_points(_spec(cfg, plan, "fig_model_skip_ddpmpp", tmp_path))
    fig = plotting.build_figure(spec, _table(spec, tmp_path))
    (ax,) = _ratio_axes(fig)
    bars = {b[0]: (b[1], c.lines[0].get_color()) for b, c in zip(_errorbars(ax), ax.containers, strict=True)}
    ticks = {t.get_text(): x for x, t in zip(ax.get_xticks(), ax.get_xticklabels(), strict=True)}
    x32, c32 = bars["Skip connections kept at 32x32 only (DDPM++, VP)"]
    x8, c8 = bars["Skip connections kept at 8x8 only (DDPM++, VP)"]
    marks = _marks(ax)
    off32, off8 = x32[0] - ticks["all 9"], x8[0] - ticks["all 9"]  # each series' place beside the others
    assert (pytest.approx(ticks["#1 #2 #3"] + off32), pytest.approx(0.87), c32) in marks
    assert (pytest.approx(ticks["#3"] + off8), pytest.approx(0.0), c8) in marks
    # 8x8, two kept: the paper gives 5-12% for each of the three masks: a bar, the marker at its middle
    assert (pytest.approx(ticks["#1 #2"] + off8), pytest.approx(0.085), c8) in marks
    assert _ranges(ax) == [(0.05, 0.12)] * 3
    assert len(marks) == 18
    text = _text(fig)
    assert "not drawn (the paper's figure does not say which value they belong to): 16x16: 2 kept" in text


def test_data_dimension_ratios_and_emm_on_the_sweep(paper, tmp_path):
    cfg, plan = paper
    spec = step.with_paper_points(_spec(cfg, plan, "fig_data", tmp_path))
    fig = plotting.build_figure(spec, _table(spec, tmp_path))
    ratio_axes = _ratio_axes(fig)
    res = ratio_axes[0]  # the resolution row; classes and blend: no point is theirs
    colour = {ln.get_label(): ln.get_color() for ln in res.get_lines() if not ln.get_label().startswith("_")}
    marks = _marks(res)
    assert len(marks) == 14 and not any(_marks(a) for a in ratio_axes[1:])
    assert (8000.0, 0.6, colour["16x16"]) in marks and (500.0, 0.99, colour["32x32"]) in marks
    (emm_ax,) = [a for a in fig.get_axes() if a.get_ylabel().startswith("EMM") and _references(a)]
    emm_marks = _marks(emm_ax)
    assert (1.25, 4400.0, colour["16x16"]) in emm_marks and (0.25, 1000.0, colour["32x32"]) in emm_marks
    assert sorted(_ranges(emm_ax)) == [(1000.0, 2000.0), (4000.0, 8000.0), (4000.0, 8000.0)]
    assert emm_ax.get_ylim()[1] >= 8000
    assert "published values in the colour of their value" in _text(fig)


def test_conditioning_sweep_and_unique_labels_over_training(paper, tmp_path):
    cfg, plan = paper
    spec = step.with_paper_points(_spec(cfg, plan, "fig_conditioning", tmp_path))
    (ax,) = _ratio_axes(plotting.build_figure(spec, _table(spec, tmp_path)))
    colour = {ln.get_label(): ln.get_color() for ln in ax.get_lines() if not ln.get_label().startswith("_")}
    marks = _marks(ax)
    assert len(marks) == 15 and (3000.0, 0.555, colour["true labels"]) in marks
    assert not any(c == colour["unique labels"] for *_, c in marks)  # the paper has no unique-label curve here
    spec = step.with_paper_points(_spec(cfg, plan, "fig_full_unique", tmp_path))
    (ax,) = _ratio_axes(plotting.build_figure(spec, _table(spec, tmp_path)))
    lines = {ln.get_label(): ln.get_color() for ln in ax.get_lines() if ln.get_label().endswith("|D| = 50000")}
    marks = _marks(ax)
    assert len(marks) == 12
    assert (4000.0 * 50000, 0.3, lines["unique labels, |D| = 50000"]) in marks
    assert (12000.0 * 50000, 0.0, lines["unconditional, |D| = 50000"]) in marks


@pytest.mark.parametrize("configfile", [DEFAULT, SMOKE])
def test_a_run_at_other_settings_draws_none(configfile, tmp_path):
    """The default and smoke configs' figures, made to name the paper's panels: their values' settings are
    not the paper's, so no point is drawn and the spec is returned as it was."""
    base = dmc.load_config([str(configfile)])
    figs = {n: {**f, "paper_points": list(PANELS.values())} for n, f in base["figures"].items()}
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({"figures": figs}))
    cfg, paper_cfg = dmc.load_config([str(configfile), str(overlay)]), dmc.load_config([str(PAPER)])
    plan, base_plan = dmc.expand(cfg), dmc.expand(base)
    for name in cfg["figures"]:
        spec = _spec(cfg, plan, name, tmp_path)
        assert all("settings" in v for v in spec["values"])
        assert step.paper_references(spec, paper_cfg) == ([], [])
        assert not any("settings" in v for v in _spec(base, base_plan, name, tmp_path)["values"])  # params as before
    assert step.with_paper_points(spec) is spec


def test_one_setting_off_the_paper_draws_none(paper, tmp_path):
    cfg, plan = paper
    off = tmp_path / "off.yaml"
    off.write_text(yaml.safe_dump({"base": {"train": {"precision": "tf32"}}}))
    cfg_off = dmc.load_config([str(PAPER), str(off)])
    spec = _spec(cfg_off, dmc.expand(cfg_off), "fig_random_labels", tmp_path)
    assert step.paper_references(spec, cfg) == ([], [])


def test_the_step_draws_the_file_and_says_how_many(paper, tmp_path, caplog):
    cfg, plan = paper
    spec = _spec(cfg, plan, "fig_full_unique", tmp_path)
    _table(spec, tmp_path)  # writes table.csv
    with caplog.at_level(logging.INFO, logger="diffmem"):
        step.draw_figure_file(spec, tmp_path / "table.csv", tmp_path / "f.pdf", tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000
    assert "12 of the paper's points (unique_labels) drawn" in caplog.text
    missing = step.with_paper_points(spec, tmp_path / "no.yaml")
    assert missing is spec and "not found" in caplog.text


def test_the_schema_takes_the_points_files_panels_only(tmp_path):
    enum = schema.load_schema()["$defs"]["paper_panel"]["enum"]
    assert sorted(enum) == sorted({p.panel for p in load_points()})
    overlay = tmp_path / "overlay.yaml"
    ok = {"kind": "sweep", "experiments": ["basic"], "paper_points": ["data_dimension", "unique_labels"]}
    overlay.write_text(yaml.safe_dump({"figures": {"f": ok}}))
    assert dmc.load_config([str(SMOKE), str(overlay)])["figures"]["f"]["paper_points"] == ok["paper_points"]
    for bad in ("data_dim", ["skip_location", "skips"], []):
        overlay.write_text(yaml.safe_dump({"figures": {"f": {**ok, "paper_points": bad}}}))
        with pytest.raises(ConfigError, match="paper_points"):
            dmc.load_config([str(SMOKE), str(overlay)])
