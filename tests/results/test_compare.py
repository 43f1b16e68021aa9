"""The paper's numbers in the package (points and claims) and ``python -m diffmem compare``: each verdict on
hand-written tables, the paper-scale path on a fake results folder at config/paper.yaml's settings."""

from __future__ import annotations

import copy
import csv
from collections import Counter
from pathlib import Path

import pytest
import yaml

from diffmem.__main__ import main
from diffmem.plan import config as dmc
from diffmem.results import claims as cl
from diffmem.results import compare as cmp
from diffmem.results.paper import load_claims, load_points

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "config" / "paper.yaml"
TABLE = ["figure", "experiment", "value", "kind", "size", "snapshot", "epochs", "ratio", "ci_low", "ci_high",
         "emm_threshold", "emm_lower", "emm_upper", "emm_status", "levelled_off"]  # fmt: skip


# ------------------------------------------------------------------------------------------ the data files
def test_points_per_panel_and_spot_values():
    points = load_points()
    assert Counter(p.panel for p in points) == {
        "data_dimension": 17,
        "conditioning_labels": 15,
        "conditioning_classes": 20,
        "skip_location": 9,
        "skip_resolution": 19,
        "unique_labels": 12,
    }
    assert Counter(p.metric for p in points) == {"ratio": 89, "emm": 3}

    def one(panel, values, size=None, epochs=None, metric="ratio"):
        (p,) = [
            p
            for p in points
            if (p.panel, p.values, p.size, p.epochs, p.metric) == (panel, values, size, epochs, metric)
        ]
        return p

    assert one("data_dimension", (16, [8]), 8000).number == 60
    assert one("data_dimension", (32, [16]), 500).number == 99
    emm32 = one("data_dimension", (32, [16]), metric="emm")
    assert (emm32.low, emm32.high) == (1000, 2000)
    assert one("conditioning_labels", ("true", None), 3000).number == 55.5
    assert one("conditioning_classes", ("random", 500), 5000).number == 88
    assert one("skip_location", ([0, 0, 0, 0, 0, 0, 0, 1, 0],), 1000).number == 2.5
    assert "inferred" in one("skip_location", ([0, 0, 0, 0, 0, 0, 0, 1, 0],), 1000).note
    two_at_8 = one("skip_resolution", ([0, 0, 0, 0, 0, 0, 1, 1, 0],), 1000)
    assert (two_at_8.low, two_at_8.high) == (5, 12)
    (either,) = [p for p in points if len(p.choices) > 1]
    assert either.number == 88 and len(either.choices) == 3
    unique = one("unique_labels", ("unique",), 50000, 10000)
    assert unique.number == 61 and unique.setting["model.num_blocks"] == 4


def test_every_point_is_a_setup_of_the_paper_config():
    """Each point's factor, value and settings applied to config/paper.yaml's base make a valid run."""
    paper = dmc.load_config([str(PAPER)])
    for p in load_points():
        for choice in p.choices:
            s = cmp.settings_with(paper, {**p.setting, **dict(zip(p.keys, choice, strict=True))})
            for key, value in zip(p.keys, choice, strict=True):
                assert cl._same(cl.setting(s, key), value), (p, key)


def test_claims_load_and_name_real_keys():
    claims = load_claims()
    assert {c.id for c in claims} >= {"size", "training", "optimum", "resolution", "width", "weight_decay",
                                      "random_labels", "random_classes", "unique_labels", "skip"}  # fmt: skip
    base = cmp.settings_with(dmc.load_config([str(PAPER)]))
    for c in claims:
        for key in [c.factor, *c.where, *c.unless] if c.factor else [*c.where, *c.unless]:
            head, _, last = key.rpartition(".")
            parent = cl.setting(base, head) if head else base
            assert parent is None or last in parent, (c.id, key)


# ------------------------------------------------------------------------------------- verdicts, unit
def _item(name, key, emm=None, group=None, **points):
    return cl.Item(name, key, emm, {int(s[1:]): cl.Ratio(*v) for s, v in points.items()}, group)


@pytest.mark.parametrize(
    "a, b, verdict",
    [
        (_item("8", 8, (10, 20, "found")), _item("16", 16, (20, 30, "found")), cl.REPRODUCES),
        (_item("8", 8, (20, 30, "found")), _item("16", 16, (10, 20, "found")), cl.REVERSED),
        (_item("8", 8, s4=(0.3, 0.2, 0.4)), _item("16", 16, s4=(0.35, 0.25, 0.45)), cl.NO_EFFECT),
        (
            _item("8", 8, (None, 2, "below_lo"), s2=(0.5, 0.4, 0.6)),
            _item("16", 16, (None, 2, "below_lo"), s2=(0.55, 0.4, 0.7)),
            cl.BUDGET,
        ),  # fmt: skip
        (_item("8", 8, s4=(0.0, 0.0, 0.05)), _item("16", 16, s4=(0.0, 0.0, 0.05)), cl.BUDGET),
        (_item("8", 8, s4=(0.3, 0.2, 0.4, "no")), _item("16", 16, s4=(0.35, 0.25, 0.45)), cl.BUDGET),
        # the EMM says 16 memorizes more, the ratio at |D| = 4 says 8 does
        (
            _item("8", 8, (10, 20, "found"), s4=(0.9, 0.85, 0.95)),
            _item("16", 16, (20, 30, "found"), s4=(0.5, 0.4, 0.6)),
            cl.MIXED,
        ),  # fmt: skip
    ],
)
def test_judge_items_each_verdict(a, b, verdict):
    assert cl.judge_items([a, b], "up")[0] == verdict


def test_pairs_only_within_a_group_and_skip_levels():
    assert cl.skip_level([1, 1, 0, 0], 1) == (2, 0.0) and cl.skip_level([0, 0, 1, 1], 1) == (2, 1.0)
    assert cl.skip_level([0, 0, 0, 1, 0, 0, 0, 0, 0], 2) == (1, 1.0)
    items = [_item("a", 0, (10, 20, "found"), group=1), _item("b", 1, (30, 40, "found"), group=2)]
    assert cl.judge_items(items, "up")[0] == cl.NO_EFFECT  # different groups: no pair


# ------------------------------------------------------------------------------- compare on a fake run
def _write_tables(folder: Path, rows: list[dict]) -> None:
    (folder / "tables").mkdir(parents=True, exist_ok=True)
    with open(folder / "tables" / "all.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TABLE)
        w.writeheader()
        for r in rows:
            w.writerow({"figure": "all", "emm_threshold": 0.9, **r})


def _size(exp, value, size, ratio, lo, hi, levelled="unknown"):
    return {"experiment": exp, "value": value, "kind": "size", "size": size, "ratio": ratio, "ci_low": lo,
            "ci_high": hi, "levelled_off": levelled}  # fmt: skip


def _emm(exp, value, lower, upper, status="found"):
    return {"experiment": exp, "value": value, "kind": "emm", "emm_lower": lower, "emm_upper": upper,
            "emm_status": status}  # fmt: skip


def _snap(exp, value, size, k, epochs, ratio, lo, hi):
    return {"experiment": exp, "value": value, "kind": "snapshot", "size": size, "snapshot": k, "epochs": epochs,
            "ratio": ratio, "ci_low": lo, "ci_high": hi}  # fmt: skip


CPU_CONFIG = {
    "name": "toy",
    "base": yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["base"],
    "emm": {"lo": 2, "hi": 16, "tolerance": 0.5, "per_round": 2, "threshold": 0.9, "max_rounds": 3},
    "experiments": {
        "basic": {},
        "width": {"factor": "model.model_channels", "values": [8, 12]},  # reproduces
        "resolution": {"factor": "data.resolution", "values": [8, 4]},  # reversed (8 memorizes more)
        "weight_decay": {"factor": "train.weight_decay", "values": [0.0, 0.1]},  # no effect
        "classes": {"factor": "data.classes", "values": [2, 10]},  # budget-bound: both below lo
        "conditioning": {
            "factor": ["data.labels", "data.label_classes"],  # random vs none: mixed
            "values": [["none", None], ["random", 5]],
            "labels": ["unconditional", "random"],
        },
        "epochs": {"set": {"train.snapshots": 2}, "mode": "sizes", "sizes": [4]},
        "optimum": {"set": {"model.arch": "optimum"}, "mode": "sizes", "sizes": [4]},
    },  # fmt: skip
}


@pytest.fixture
def toy_run(tmp_path):
    """results/toy with hand-written tables whose verdicts are known, and config/toy.yaml beside it."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "toy.yaml").write_text(yaml.safe_dump(CPU_CONFIG))
    res = tmp_path / "results" / "toy"
    rows = [
        _size("basic", "base", 2, 0.95, 0.9, 0.98), _size("basic", "base", 8, 0.1, 0.05, 0.2),
        _emm("basic", "base", 2, 8),
        _emm("width", "8", 2, 4), _emm("width", "12", 2, 4),
        _size("width", "8", 4, 0.05, 0.02, 0.13), _size("width", "12", 4, 0.25, 0.16, 0.37),
        _emm("resolution", "8", 2, 4), _emm("resolution", "4", None, 2, "below_lo"),
        _emm("weight_decay", "0", 2, 4), _emm("weight_decay", "0.1", 2, 4),
        _size("weight_decay", "0", 4, 0.05, 0.02, 0.13), _size("weight_decay", "0.1", 4, 0.1, 0.05, 0.2),
        _emm("classes", "2", None, 2, "below_lo"), _emm("classes", "10", None, 2, "below_lo"),
        _emm("conditioning", "unconditional", 2, 4), _emm("conditioning", "random", None, 2, "below_lo"),
        _size("conditioning", "unconditional", 8, 0.1, 0.05, 0.2), _size("conditioning", "random", 8, 0.6, 0.5, 0.7),
        _size("epochs", "base", 4, 0.9, 0.8, 0.95, "no"),
        _snap("epochs", "base", 4, 0, 400, 0.2, 0.1, 0.3), _snap("epochs", "base", 4, 1, 800, 0.9, 0.8, 0.95),
        _size("optimum", "base", 4, 1.0, 0.94, 1.0),
    ]  # fmt: skip
    _write_tables(res, rows)
    return tmp_path, res


def test_compare_verdicts_on_hand_written_tables(toy_run, monkeypatch):
    root, res = toy_run
    monkeypatch.chdir(root)
    report = cmp.compare(res)  # finds config/toy.yaml by the folder's name
    assert not report.paper_scale and any(d.startswith("data.source") for d in report.differences)
    got = {(r["claim"], r["experiment"]): r["verdict"] for r in report.claims}
    by_id = {c.id: c.claim for c in load_claims()}
    assert got[(by_id["size"], "basic")] == cl.REPRODUCES
    assert got[(by_id["training"], "epochs")] == cl.REPRODUCES
    assert got[(by_id["optimum"], "optimum")] == cl.REPRODUCES
    assert got[(by_id["width"], "width")] == cl.REPRODUCES
    assert got[(by_id["resolution"], "resolution")] == cl.REVERSED
    assert got[(by_id["weight_decay"], "weight_decay")] == cl.NO_EFFECT
    assert got[(by_id["classes"], "classes")] == cl.BUDGET
    assert got[(by_id["random_labels"], "conditioning")] == cl.MIXED
    for claim in ("skip", "blend", "true_labels", "random_classes", "unique_labels"):
        assert got[(by_id[claim], "-")] == cl.NOT_RUN, claim
    text = cmp.render(report)
    assert "Not the paper's settings" in text and "12 > 8 (at |D| = 4: 25.0% vs 5.0%)" in text


def test_not_run_names_the_experiment_the_claims_setting_excludes():
    """The default's blend mixes typeset digits (source fonts), not the ImageNet-dog share the claim is about:
    'not run' says which experiment varies the factor and which setting it lacks, not that none varies it."""
    (blend,) = [c for c in load_claims() if c.id == "blend"]
    fonts = [
        cl.Evidence("blend", str(a), str(a), {"data": {"blend": {"source": "fonts", "alpha": a}}},
                    sizes={10: cl.Ratio(0.9, 0.8, 0.95)})
        for a in (0.0, 1.0)
    ]  # fmt: skip
    (row,) = cl.judge_claim(blend, [cl.Experiment("blend", ("data.blend",), fonts)])
    assert row["verdict"] == cl.NOT_RUN and row["experiment"] == "-"
    assert row["evidence"] == (
        "blend varies data.blend, but no value has data.blend.source = folder (what the claim is about)"
    )
    (row,) = cl.judge_claim(blend, [])
    assert row["evidence"] == "no experiment varies data.blend over two values the claim compares"


def test_a_users_experiment_is_judged_by_its_factor_not_its_name(toy_run, monkeypatch):
    root, res = toy_run
    cfg = copy.deepcopy(CPU_CONFIG)
    cfg["experiments"]["channels"] = cfg["experiments"].pop("width")
    (root / "config" / "toy.yaml").write_text(yaml.safe_dump(cfg))
    table = (res / "tables" / "all.csv").read_text().replace(",width,", ",channels,")
    (res / "tables" / "all.csv").write_text(table)
    monkeypatch.chdir(root)
    rows = [r for r in cmp.compare(res).claims if r["experiment"] == "channels"]
    assert [r["verdict"] for r in rows] == [cl.REPRODUCES]


def test_command_markdown_and_write_into(toy_run, tmp_path, capsys, monkeypatch):
    root, res = toy_run
    monkeypatch.chdir(root)
    assert main(["compare", str(res), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert "| paper's direction | figure |" in out and "\\|D\\|" in out
    page = tmp_path / "page.md"
    page.write_text(f"# Directions\n\nbefore\n{cmp.BEGIN}\nold table\n{cmp.END}\nafter\n")
    assert main(["compare", str(res), "--write-into", str(page), "--configfile", "config/toy.yaml"]) == 0
    text = page.read_text()
    assert "old table" not in text and text.startswith("# Directions\n\nbefore\n")
    assert text.endswith(f"{cmp.END}\nafter\n")
    assert "| paper's direction |" in text
    page.write_text("no markers\n")
    with pytest.raises(SystemExit):
        main(["compare", str(res), "--write-into", str(page)])
    with pytest.raises(SystemExit):  # no config named like the folder
        main(["compare", str(tmp_path / "results" / "nameless")])


# ------------------------------------------------------------------------------------- the paper's scale
def _value(plan, cfg, key, value, extra=None):
    """The first experiment value whose factor includes ``key`` and whose settings have ``value`` there
    (and ``extra``'s settings)."""
    for name, vals in plan.items():
        factor = cfg["experiments"][name].get("factor")
        keys = [factor] if isinstance(factor, str) else list(factor or [])
        for v in vals:
            if key in keys and cl._same(cl.setting(v.settings, key), value):
                if all(cl._same(cl.setting(v.settings, k), x) for k, x in (extra or {}).items()):
                    return v
    raise LookupError((key, value))


def test_paper_scale_points_on_a_fake_run(tmp_path):
    paper = dmc.load_config([str(PAPER)])
    plan = dmc.expand(paper)
    res = tmp_path / "results" / "paper"
    r16 = _value(plan, paper, "data.resolution", 16)
    uniq = _value(plan, paper, "data.labels", "unique", {"diffusion.precond": "edm"})
    skip = _value(plan, paper, "model.skip", [0, 0, 0, 0, 1, 1, 0, 0, 0], {"model.arch": "ddpmpp"})
    rows = [
        _size(r16.experiment, r16.label, 4000, 0.95, 0.945, 0.955),  # paper 94.5: agrees
        _size(r16.experiment, r16.label, 8000, 0.80, 0.79, 0.81),  # paper 60: differs
        _emm(r16.experiment, r16.label, 4096, 8192),  # paper 4k-8k: agrees
        _snap(uniq.experiment, uniq.label, 50000, 79, 4000, 0.34, 0.33, 0.35),  # paper 30 at ~4k epochs: differs
        _snap(uniq.experiment, uniq.label, 50000, 119, 6000, 0.46, 0.45, 0.47),  # paper 45: agrees
        _size(skip.experiment, skip.label, 1000, 0.87, 0.86, 0.88),  # one of three 16x16 masks at 88: agrees
    ]
    _write_tables(res, rows)
    report = cmp.compare(res, [str(PAPER)])
    assert report.paper_scale and not report.differences
    by = {(r["panel"], r["value"], r["size"], r["epochs"], r["metric"]): r for r in report.points}
    assert by[("data_dimension", "16x16", "4000", "", "ratio")]["verdict"] == cmp.AGREES
    assert by[("data_dimension", "16x16", "8000", "", "ratio")]["verdict"] == cmp.DIFFERS
    assert by[("data_dimension", "16x16", "8000", "", "ratio")]["ours"] == "80.0 [79.0, 81.0]"
    assert by[("data_dimension", "16x16", "", "", "emm")]["verdict"] == cmp.AGREES
    assert by[("data_dimension", "32x32", "1000", "", "ratio")]["verdict"] == cmp.NOT_RUN
    assert by[("unique_labels", "unique labels", "50000", "4000", "ratio")]["verdict"] == cmp.DIFFERS
    assert by[("unique_labels", "unique labels", "50000", "6000", "ratio")]["verdict"] == cmp.AGREES
    assert by[("skip_resolution", "16x16: 2 kept (one of three masks)", "1000", "", "ratio")]["verdict"] == cmp.AGREES
    assert sum(r["verdict"] != cmp.NOT_RUN for r in report.points) == 6
    assert "The run has the paper's settings" in cmp.render(report)


def test_a_run_off_the_paper_by_one_setting_is_not_paper_scale(tmp_path):
    over = tmp_path / "tf32.yaml"
    over.write_text("base: {train: {precision: tf32}}\n")
    res = tmp_path / "results" / "paper"
    _write_tables(res, [_emm("basic", "base", 1000, 2000)])
    report = cmp.compare(res, [str(PAPER), str(over)])
    assert not report.paper_scale and report.differences == ["train.precision: 'tf32' (paper: 'fp32')"]
    assert report.points == []
