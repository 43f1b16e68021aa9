"""config/paper.yaml: validates, expands without touching data, and its nets are the paper's."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from diffmem import config as dmc
from diffmem import nets, schedule

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    validate(cfg, schema=str(ROOT / "workflow" / "schemas" / "config.schema.yaml"))
    plan = dmc.expand(cfg)
    dmc.check_plan(cfg, plan)  # must not need the CIFAR-10 tarball
    return cfg, plan


def test_paper_settings(paper):
    cfg, plan = paper
    base = plan["basic"][0].settings
    assert base["data"]["source"] == "cifar10" and base["data"]["resolution"] == 32
    assert base["train"]["duration"] == {"unit": "epochs", "value": 40000}
    assert base["train"]["batch"] == 512 and base["train"]["lr"] == pytest.approx(2e-4)
    assert base["train"]["ema"]["decay"] == pytest.approx(0.99929)
    assert base["train"]["seed"] == 1024 and base["sample"]["n"] == 10000
    s = dmc.run_settings(base, 1000)  # 40M images: a snapshot every 2.5M images -> 16 snapshots
    assert len(schedule.training_plan(s["train"], 1000)["snapshot_steps"]) == 16


def test_paper_preset_runs_the_released_codes_protocol(paper):
    """Each quirk of the paper's code (issue 10) is set to the official behaviour in every experiment."""
    _, plan = paper
    for name, values in plan.items():
        for v in values:
            d, t = v.settings["data"], v.settings["train"]
            assert (d["pick"], d["resize"]) == ("first", "lanczos"), name
            assert t["warmup"] == {"unit": "epochs", "value": 200, "mode": "official"}, name
            assert t["order"] == "fixed" and t["truncate_kimg"] is True, name
            assert t["ema"]["rampup"] == 0.05, name
            assert t["ema"]["mode"] == ("official_final" if name == "ema" else "official"), name
    assert [v.settings["train"]["ema"]["decay"] for v in plan["ema"]] == \
        [0.99929, 0.999, 0.99, 0.9, 0.8, 0.5, 0.2, 0.1, 0.0]


def test_paper_schedule_at_1000_images(paper):
    """The schedule the paper preset trains with, at |D| = 1,000: warm-up over 200 kimg from lr 0, EMA
    half-life 0.05 n x 50 until 200 epochs, then 500k images (diffmem.schedule; tests/test_schedule.py holds
    it against the released code's formulas)."""
    from diffmem import schedule

    _, plan = paper
    s = dmc.run_settings(plan["basic"][0].settings, 1000)
    rows = {r["step"]: r for r in schedule.schedule_rows(s["train"], 1000, [0, 100, 391, 78_124])}
    assert rows[0]["lr"] == 0 and rows[0]["ema_beta"] == 0
    assert rows[100]["lr"] == pytest.approx(2e-4 * 51_200 / 200_000)
    assert rows[100]["ema_halflife_images"] == pytest.approx(0.05 * 51_200 * 50)
    assert rows[391]["ema_halflife_images"] == pytest.approx(500_000) and rows[391]["lr"] == 2e-4
    assert rows[78_124]["ema_halflife_images"] == pytest.approx(500_000)


def n_params(settings):
    return nets.describe_net(settings["model"])["n_params"]


def test_paper_nets_have_the_papers_parameter_counts(paper):
    _, plan = paper
    assert n_params(plan["basic"][0].settings) == 35_125_251
    depth = {v.value: v for v in plan["depth"]}
    assert n_params(depth[4].settings) == 55_732_739
    # a disabled skip connection feeds zeros: the parameter count does not change
    for v in plan["skip_number_ddpmpp"]:
        assert n_params(v.settings) == 35_125_251
    # wider nets grow
    widths = [n_params(v.settings) for v in plan["width"]]
    assert widths == sorted(widths) and widths[0] == 35_125_251


def test_base_value_is_shared_in_the_paper_plan(paper):
    _, plan = paper
    base = plan["basic"][0].run_id
    shared = [name for name, vals in plan.items() if any(v.run_id == base for v in vals)]
    assert {"basic", "width", "depth", "weight_decay", "batch", "classes"} <= set(shared)
    # the EMA sweep trains with the released code's mode4 (--final-ema), so even its 0.99929 is its own run
    assert "ema" not in shared


def test_unique_labels_at_full_size(paper):
    _, plan = paper
    unique = [v for v in plan["full_unique"] if v.value == "unique"][0]
    s = dmc.run_settings(unique.settings, 50000)
    assert s["model"]["label_dim"] == 50000 and s["diffusion"]["precond"] == "edm"
    assert s["model"]["num_blocks"] == 4


def test_missing_cifar_tarball_is_named_before_any_job(paper, tmp_path):
    _, plan = paper
    with pytest.raises(dmc.ConfigError, match=r"data.path 'data/cifar-10-python.tar.gz' does not exist"):
        dmc.check_data(plan)
