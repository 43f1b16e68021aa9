"""Config model: validation with defaults, experiment expansion, shared runs, errors that name the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate
from snakemake_interface_common.exceptions import WorkflowError

from diffmem.plan import config as dmc
from diffmem.plan import identity
from diffmem.science import schedule

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")


def load(name: str) -> dict:
    cfg = yaml.safe_load((ROOT / "config" / name).read_text())
    validate(cfg, schema=SCHEMA)
    return cfg


@pytest.mark.parametrize("name", ["config.yaml", "smoke.yaml", "extended.yaml"])
def test_configs_validate_and_expand(name):
    cfg = load(name)
    plan = dmc.expand(cfg)
    dmc.check_plan(cfg, plan)
    assert plan and all(vals for vals in plan.values())


def test_schema_fills_defaults():
    cfg = {"name": "x", "experiments": {"basic": {}}}
    validate(cfg, schema=SCHEMA)
    assert cfg["base"]["train"]["optimizer"] == "adam"
    assert cfg["emm"]["threshold"] == 0.9
    assert cfg["base"]["score"]["threshold"] == pytest.approx(1 / 3)


def test_schema_rejects_unknown_key_and_range():
    cfg = {"name": "x", "experiments": {"basic": {}}, "base": {"train": {"lrr": 1.0}}}
    with pytest.raises(WorkflowError, match=r"'lrr' was unexpected(?s:.*)\['properties'\]\['train'\]"):
        validate(cfg, schema=SCHEMA)
    cfg = {"name": "x", "experiments": {"basic": {}}, "emm": {"threshold": 2}}
    with pytest.raises(
        WorkflowError, match=r"2 is greater than the maximum of 1(?s:.*)instance\['emm'\]\['threshold'\]"
    ):
        validate(cfg, schema=SCHEMA)


def test_base_value_is_shared_between_sweeps():
    cfg = load("smoke.yaml")
    plan = dmc.expand(cfg)
    base = plan["basic"][0].run_id
    assert plan["width"][0].run_id == base  # the base width is the width sweep's first value
    assert plan["weight_decay"][0].run_id == base
    assert plan["width"][1].run_id != base
    # a different data setting gets a different data id; same data, different model shares it
    assert plan["resolution"][1].data_id != plan["basic"][0].data_id
    assert plan["width"][1].data_id == plan["basic"][0].data_id


def test_tied_factor_and_labels():
    cfg = load("smoke.yaml")
    vals = dmc.expand(cfg)["conditioning"]
    random = vals[1].settings
    assert random["data"]["labels"] == "random" and random["model"]["label_dim"] == 5
    unique = dmc.run_settings(vals[2].settings, 30)
    assert unique["model"]["label_dim"] == 30 and unique["data"]["size"] == 30
    assert [v.label for v in vals] == ["unconditional", "random_C_5", "unique"]


def test_unknown_factor_key_is_named():
    cfg = load("smoke.yaml")
    cfg = copy.deepcopy(cfg)
    cfg["experiments"]["width"]["factor"] = "model.widht"
    with pytest.raises(dmc.ConfigError, match="model.widht"):
        dmc.expand(cfg)


def test_tied_values_must_match_keys():
    cfg = load("smoke.yaml")
    cfg["experiments"]["conditioning"]["values"] = [["random"]]
    cfg["experiments"]["conditioning"].pop("labels")
    with pytest.raises(dmc.ConfigError, match="experiments.conditioning.values"):
        dmc.expand(cfg)


def test_impossible_sizes_are_refused_before_running():
    cfg = load("smoke.yaml")
    cfg["experiments"]["epochs"]["sizes"] = [15]  # not a multiple of classes=2
    with pytest.raises(dmc.ConfigError, match="15"):
        dmc.check_plan(cfg, dmc.expand(cfg))


def test_snapshots_every_images_become_steps():
    cfg = load("smoke.yaml")
    cfg["base"]["train"]["snapshots"] = {"every": {"unit": "images", "value": 960}}
    value = dmc.expand(cfg)["basic"][0]
    s = dmc.run_settings(value.settings, 20)  # 100 steps of 32 images: every 30 steps, plus the last
    assert schedule.training_plan(s["train"], 20)["snapshot_steps"] == [30, 60, 90, 100]
    assert identity.train_id(s) == value.run_id  # the spec stays a spec: run.json hashes to its folder


def test_two_spellings_of_one_net_share_a_run():
    cfg = load("smoke.yaml")
    cfg["experiments"]["emb"] = {"factor": "model.embedding", "values": [None, "positional", "fourier"]}
    vals = dmc.expand(cfg)["emb"]
    assert vals[0].run_id == vals[1].run_id == dmc.expand(cfg)["basic"][0].run_id
    assert vals[2].run_id != vals[0].run_id
    assert vals[0].settings["model"]["skip"] == [1, 1, 1, 1]


def test_figure_spec_points_at_the_layouts_files():
    cfg = load("smoke.yaml")
    plan = dmc.expand(cfg)
    basic = dmc.figure_spec(cfg, plan, "basic", Path("results/smoke"))
    (v,) = basic["values"]
    assert v["emm"] == "results/smoke/emm/basic/base/emm.json" and v["scores"] == {}
    opt = dmc.figure_spec(cfg, plan, "optimum", Path("results/smoke"))
    trained = next(x for x in opt["values"] if x["experiment"] == "trained")
    value = plan["trained"][0]
    assert trained["scores"]["4"] == (
        f"results/smoke/runs/{value.run_id}/n4/samples/{value.sample_id}/scores/{value.score_id}/memorization.json"
    )
    assert [Path(p).name for p in trained["grids"]["4"]] == ["samples.png", "nearest.png"]
    assert "1/3" in opt["caption"] and trained["emm_threshold"] == 0.9
