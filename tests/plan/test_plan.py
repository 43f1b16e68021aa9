"""The Plan's answers to the workflow's questions, without Snakemake: final targets, the inputs of each
step (EMM rounds read from JSON files written here), the params and the resources of the heavy jobs, and
that every path lies under results/<name>/ and comes from diffmem.plan.layout."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest

from diffmem.errors import ConfigError
from diffmem.plan import layout
from diffmem.plan.load import load_config
from diffmem.plan.plan import Plan, UnfinishedSearch

ROOT = Path(__file__).resolve().parents[2]


def plan_of(name: str, results: Path, **kw) -> Plan:
    cfg = load_config([str(ROOT / "config" / name)])
    cfg["results"] = str(results)
    return Plan.build(cfg, check_files=False, **kw)


def rel(plan: Plan, paths) -> list[str]:
    return [str(Path(p).relative_to(plan.results)) for p in paths]


def scores(v, size) -> str:
    return f"runs/{v.run_id}/n{size}/samples/{v.sample_id}/scores/{v.score_id}/memorization.json"


def write_rounds(plan: Plan, experiment: str, label: str, rounds: list[dict]) -> None:
    for k, state in enumerate(rounds):
        path = plan.path(layout.emm_round(experiment, label, k))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(state))


# A search that evaluates 2 and 16 in round 0's request and is done in round 1 (EMM in [2, 16)).
SEARCH = [
    {"done": False, "next": [2, 16], "evaluated": []},
    {"done": True, "next": [], "lower": 2, "upper": 16, "evaluated": [{"size": 2}, {"size": 16}]},
]


# ----------------------------------------------------------------------------------------------- targets
def test_smoke_final_targets(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    assert plan.results == tmp_path / "smoke"
    got = rel(plan, plan.final_targets())
    figures = ["basic", "data", "model", "training", "conditioning", "random_labels", "epochs", "optimum"]
    searches = [
        "basic/base",
        "resolution/8",
        "resolution/4",
        "width/8",
        "width/12",
        "weight_decay/0",
        "weight_decay/0.1",
    ]
    searches += ["conditioning/unconditional", "conditioning/random_C_5", "conditioning/unique"]
    epochs, optimum, trained = (plan.value(e, "base") for e in ("epochs", "optimum", "trained"))
    c1, c5 = plan.value("random_labels", "1"), plan.value("random_labels", "5")  # each value at its own sizes
    want = [p for f in figures for p in (f"figures/{f}.pdf", f"figures/{f}.png", f"tables/{f}.csv")]
    want += [f"emm/{s}/emm.json" for s in searches]
    want += [scores(c1, 4), scores(c5, 4), scores(c5, 8)]
    want += [scores(epochs, 4), scores(epochs, 8), scores(optimum, 4), scores(trained, 4)]
    want += ["index.csv"] + [f"report/tables/{f}.html" for f in figures] + [f"report/emm/{s}.png" for s in searches]
    assert got == want


def test_default_final_targets(tmp_path):
    """config/config.yaml: 11 figures (PDF, PNG, table, HTML table), 21 EMM searches (result and report grids),
    37 scores of its fixed-size panels (runs that two panels share counted once), the index."""
    plan = plan_of("config.yaml", tmp_path)
    got = rel(plan, plan.final_targets())
    assert len(got) == len(set(got)) == 124
    assert Counter(p.split("/")[0] for p in got) == {"figures": 22, "tables": 11, "emm": 21, "runs": 37,
                                                      "index.csv": 1, "report": 32}  # fmt: skip
    assert got[:3] == ["figures/fig_optimum.pdf", "figures/fig_optimum.png", "tables/fig_optimum.csv"]
    assert got[-1].startswith("report/emm/") and "index.csv" in got


# ----------------------------------------------------------------------------------------------- inputs
def test_run_inputs(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    trained, optimum = plan.value("trained", "base"), plan.value("optimum", "base")
    assert rel(plan, [plan.subset_input(trained.run_id, "4")]) == [f"subsets/{trained.data_id}/n4.npz"]
    assert rel(plan, [plan.trained_input(trained.run_id, "4")]) == [f"runs/{trained.run_id}/n4/train/train.json"]
    assert plan.trained_input(optimum.run_id, "4") == []  # the closed-form optimum trains nothing
    assert rel(plan, [plan.samples_input(trained.run_id, 8, trained.sample_id)]) == [
        f"runs/{trained.run_id}/n8/samples/{trained.sample_id}/samples.npz"
    ]


def test_table_inputs_emm_mode_read_the_final_round(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    for label in ("8", "4"):
        write_rounds(plan, "resolution", label, SEARCH)
    v8, v4 = plan.value("resolution", "8"), plan.value("resolution", "4")
    assert rel(plan, plan.table_inputs("data")) == [
        "emm/resolution/8/emm.json", scores(v8, 2), scores(v8, 16),
        "emm/resolution/4/emm.json", scores(v4, 2), scores(v4, 16),
    ]  # fmt: skip


def test_table_inputs_sizes_mode(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    epochs, optimum, trained = (plan.value(e, "base") for e in ("epochs", "optimum", "trained"))
    assert rel(plan, plan.table_inputs("epochs")) == [scores(epochs, 4), scores(epochs, 8)]
    assert rel(plan, plan.table_inputs("optimum")) == [scores(optimum, 4), scores(trained, 4)]


def test_figure_inputs(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    assert rel(plan, [plan.figure_inputs("epochs")["table"]]) == ["tables/epochs.csv"]
    assert set(plan.figure_inputs("epochs")) == {"table"}
    optimum = plan.figure_inputs("optimum")  # kind optimum: the grids it draws too
    o, t = plan.value("optimum", "base"), plan.value("trained", "base")
    assert rel(plan, optimum["grids"]) == [
        f"runs/{o.run_id}/n4/samples/{o.sample_id}/samples.png",
        f"runs/{o.run_id}/n4/samples/{o.sample_id}/scores/{o.score_id}/nearest.png",
        f"runs/{t.run_id}/n4/samples/{t.sample_id}/samples.png",
        f"runs/{t.run_id}/n4/samples/{t.sample_id}/scores/{t.score_id}/nearest.png",
    ]


def test_emm_round_inputs_through_the_callable(tmp_path):
    asked = []

    def read_round(experiment, label, k):
        asked.append((experiment, label, k))
        return json.loads(Path(tmp_path / "round.json").read_text())

    (tmp_path / "round.json").write_text(json.dumps({"done": False, "next": [4, 8]}))
    plan = plan_of("smoke.yaml", tmp_path / "results", read_round=read_round)
    assert plan.emm_round_inputs("width", "12", "0") == []  # round 0 needs nothing
    got = plan.emm_round_inputs("width", "12", "2")
    v = plan.value("width", "12")
    assert asked == [("width", "12", 1)]
    assert rel(plan, [got["previous"]]) == ["emm/width/12/round1.json"]
    assert rel(plan, got["scores"]) == [scores(v, 4), scores(v, 8)]


def test_final_round_and_unfinished_search(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    write_rounds(plan, "basic", "base", SEARCH)
    path, state = plan.final_round("basic", "base")
    assert rel(plan, [path]) == ["emm/basic/base/round1.json"] and state["done"]
    # max_rounds 3: rounds 0..3 read, none done
    write_rounds(plan, "width", "12", [{"done": False, "next": [], "evaluated": []}] * 4)
    with pytest.raises(UnfinishedSearch, match="width/12 did not finish"):
        plan.final_round("width", "12")


def test_emm_grid_inputs_are_the_bracket_ends(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    write_rounds(plan, "resolution", "4", SEARCH)
    v = plan.value("resolution", "4")
    got = plan.emm_grid_inputs("resolution", "4")
    assert {k: str(Path(p).relative_to(plan.results)) for k, p in got.items()} == {
        "emm": "emm/resolution/4/emm.json",
        "samples_2": f"runs/{v.run_id}/n2/samples/{v.sample_id}/samples.png",
        "nearest_2": f"runs/{v.run_id}/n2/samples/{v.sample_id}/scores/{v.score_id}/nearest.png",
        "scores_2": scores(v, 2),
        "samples_16": f"runs/{v.run_id}/n16/samples/{v.sample_id}/samples.png",
        "nearest_16": f"runs/{v.run_id}/n16/samples/{v.sample_id}/scores/{v.score_id}/nearest.png",
        "scores_16": scores(v, 16),
    }


def test_index_inputs_follow_the_tables(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    got = rel(plan, plan.index_inputs())
    assert got[:8] == [f"tables/{f}.csv" for f in plan.figures()]
    assert len(got) == 8 + 10 + 3 + 4 and len(set(got)) == len(got)


# ----------------------------------------------------------------------------------------------- params
def test_params(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    v = plan.value("width", "12")
    spec = plan.subset_spec(v.data_id, "8")
    assert spec["size"] == 8 and spec["source"] == "digits" and list(spec) == sorted(spec)
    run = plan.run_json(v.run_id, "8")
    assert run["data"]["size"] == 8 and run["model"]["model_channels"] == 12
    assert run["about"].startswith("ddpmpp (12 channels")
    assert plan.sample_params(v.sample_id)["n"] == 64
    assert plan.score_params(v.score_id) == {"threshold": pytest.approx(1 / 3)}
    search = plan.emm_search("width", "12")
    assert (search["experiment"], search["value"], search["run_id"], search["data_id"]) == (
        "width", "12", v.run_id, v.data_id)  # fmt: skip
    assert (search["lo"], search["hi"], search["threshold"]) == (2, 16, 0.9)
    fig = plan.figure_spec("model")
    assert fig["name"] == "model" and [x["label"] for x in fig["values"]] == ["8", "12"]
    assert fig["values"][1]["emm"] == str(tmp_path / "smoke" / "emm" / "width" / "12" / "emm.json")
    about = plan.emm_grid_about("width", "12")
    assert about["settings"]["model.model_channels"] == 12 and "data.size" not in about["settings"]
    values = plan.index_values()
    assert [(x["experiment"], x["value"]) for x in values] == sorted((x["experiment"], x["value"]) for x in values)
    assert len(values) == 15 and {x["emm"] is None for x in values if x["sizes"]} == {True}


# ----------------------------------------------------------------------------------------------- resources
def test_resources_of_a_train_job(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    v = plan.value("width", "12")
    # the smoke net on the CPU: 1308 MB of host memory (resources.train_mem_mb: torch and the job's Snakemake
    # processes, the net's states), doubled per retry
    assert plan.train_mem_mb(v.run_id, "4", 1) == 1308 and plan.train_mem_mb(v.run_id, "4", 2) == 2617
    assert (plan.train_gpus(), plan.train_threads(), plan.job_gpus(), plan.job_threads()) == (0, 1, 0, 1)
    assert plan.chain_retries("train") == 1 and plan.capped(10) == 10
    # a chain link that has run: what is left by the measured speed (5000 s x 1.5 safety + 3 min start-up),
    # not doubled for the attempt
    progress = plan.path(layout.train_progress(v.run_id, 4))
    progress.parent.mkdir(parents=True)
    progress.write_text(json.dumps({"step": 50, "total_steps": 100, "steps_per_s": 0.01}))
    assert plan.train_runtime(v.run_id, "4", 1) == plan.train_runtime(v.run_id, "4", 3) == 128
    plan.config["compute"]["max_runtime"] = 60  # the site maximum caps every job
    assert plan.train_runtime(v.run_id, "4", 1) == 60 and plan.capped(600) == 60


def test_gpu_resources(tmp_path):
    cfg = load_config([str(ROOT / "config" / "smoke.yaml")])
    cfg.update(results=str(tmp_path), gpu=True, gpus_per_run=2)
    plan = Plan.build(cfg, check_files=False)
    # cpus_per_gpu (4) per GPU; all GPUs of a run go to its training, one to a sampling or scoring job
    assert (plan.train_gpus(), plan.train_threads(), plan.job_gpus(), plan.job_threads()) == (2, 8, 1, 4)


def test_sample_runtime_goes_on_from_the_parts(tmp_path):
    plan = plan_of("smoke.yaml", tmp_path)
    v = plan.value("epochs", "base")
    first = plan.sample_runtime(v.run_id, "8", v.sample_id, 2)
    parts = Path(layout.sample_parts(plan.samples_input(v.run_id, "8", v.sample_id)))
    parts.mkdir(parents=True)
    (parts / "snapshot-000.npz").write_bytes(b"")
    assert plan.sample_runtime(v.run_id, "8", v.sample_id, 2) <= first  # a link: attempt 1, fewer snapshots
    assert plan.sample_mem_mb(v.run_id, "8", v.sample_id, 2) == plan.sample_mem_mb(v.run_id, "8", v.sample_id, 1)


# ----------------------------------------------------------------------------------------------- paths
def test_every_path_is_under_results_and_from_layout(tmp_path, monkeypatch):
    made: set[PurePosixPath] = set()

    def recording(fn):
        def wrapped(*args, **kw):
            out = fn(*args, **kw)
            made.update(out.values() if isinstance(out, dict) else [out])
            return out

        return wrapped

    names = ["subset", "train_summary", "train_progress", "sample_files", "score_files", "memorization"]
    names += ["emm_round", "emm_result", "table", "figure_files", "index", "report_table", "report_emm"]
    for name in names:
        monkeypatch.setattr(layout, name, recording(getattr(layout, name)))
    plan = plan_of("smoke.yaml", tmp_path)
    for exp, label in (("resolution", "8"), ("resolution", "4"), ("conditioning", "unique")):
        write_rounds(plan, exp, label, SEARCH)
    paths = plan.final_targets() + plan.index_inputs()
    for fig in ("data", "epochs", "optimum"):
        paths += plan.table_inputs(fig)
        inputs = plan.figure_inputs(fig)
        paths += [inputs["table"], *inputs.get("grids", [])]
        paths += [x["emm"] for x in plan.figure_spec(fig)["values"] if x["emm"]]
    for v in plan.every_value():
        paths += [plan.subset_input(v.run_id, 4), plan.samples_input(v.run_id, 4, v.sample_id)]
        paths += [plan.trained_input(v.run_id, 4)] if v.settings["model"]["arch"] != "optimum" else []
    paths += plan.emm_round_inputs("resolution", "8", 1)["scores"]
    paths += list(plan.emm_grid_inputs("conditioning", "unique").values())
    paths += [x["emm"] for x in plan.index_values() if x["emm"]]
    assert len(paths) > 100
    for p in paths:
        assert PurePosixPath(Path(p).relative_to(plan.results)) in made, p


# ----------------------------------------------------------------------------------------------- building
def test_build_checks_the_plan_and_the_data_unless_told_not_to(tmp_path):
    cfg = load_config([str(ROOT / "config" / "smoke.yaml")])
    cfg["results"] = str(tmp_path)
    cfg["base"]["data"].update(source="folder", path=str(tmp_path / "missing"))
    assert Plan.build(cfg, check_files=False).values  # a dry run needs no data
    with pytest.raises(ConfigError, match="does not exist"):
        Plan.build(cfg)
    cfg["figures"]["epochs"]["experiments"] = ["basic"]  # an emm experiment in an epochs figure
    with pytest.raises(ConfigError, match="figures.epochs: kind epochs needs experiments with mode: sizes"):
        Plan.build(cfg, check_files=False)


def test_a_figure_with_the_papers_points_reads_their_files(tmp_path):
    """A corrected published point (or paper.yaml's base) redraws the figures that show it, and only those."""
    plan = plan_of("paper.yaml", tmp_path)
    with_points = [f for f in plan.figures() if plan.config["figures"][f].get("paper_points")]
    assert "fig_random_labels" in with_points and "fig_basic" not in with_points
    for fig in plan.figures():
        paper = plan.figure_inputs(fig).get("paper", [])
        assert [p.name for p in paper] == (["paper_points.csv", "paper.yaml"] if fig in with_points else [])
        assert all(p.is_file() for p in paper)
