"""The throughput model (diffmem.plan.resources) and what the paper preset asks a cluster for."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from diffmem.plan import config as dmc
from diffmem.plan import resources as dmr

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PAPER_NET = {"arch": "ddpmpp", "resolution": 32, "img_channels": 3, "model_channels": 128, "channel_mult": [2, 2, 2],
             "num_blocks": 2}  # fmt: skip


def paper() -> dict:
    return dmc.load_config([str(ROOT / "config" / "paper.yaml")])


def test_model_reproduces_the_benchmarks_it_was_fitted_to():
    # one GPU measurement of the paper net: the model returns exactly its speed
    assert 1 / dmr.seconds_per_image(PAPER_NET, "h200") == pytest.approx(596.43, rel=1e-3)
    assert 1 / dmr.seconds_per_image(PAPER_NET, "h200", tf32=True) == pytest.approx(1643.0, rel=1e-3)
    # two CPU nets, a two-parameter fit: both within 5%
    cpu = dmr.measurements()["cpu"]["train"]
    assert len(cpu) >= 2
    for rec in cpu:
        net = {**PAPER_NET, "resolution": 8, "img_channels": 1, "channel_mult": [1, 2], "num_blocks": 1,
               "model_channels": rec["work"] and next(p for p in (16, 32) if dmr.net_work(
                   {**PAPER_NET, "resolution": 8, "channel_mult": [1, 2], "num_blocks": 1, "model_channels": p}
               ) == rec["work"])}  # fmt: skip
        assert 1 / dmr.seconds_per_image(net, "cpu") == pytest.approx(rec["per_s"], rel=0.05)
    # paper sampling: 21 samples/s with 18 Heun steps (35 evaluations)
    assert 1 / dmr.seconds_per_sample(PAPER_NET, "h200", 18, 1000) == pytest.approx(20.98, rel=1e-3)
    with pytest.raises(dmr.UnknownDevice, match="measured kinds"):
        dmr.seconds_per_image(PAPER_NET, "tpu")


def test_paper_basic_run_time_is_the_readme_figure():
    cfg = paper()
    base = dmc.expand(cfg)["basic"][0]
    s = dmc.run_settings(base.settings, 1000)  # 40k epochs of 1,000 images = 40M images
    assert dmr.train_estimate_s(s, cfg) / 3600 == pytest.approx(40_000 * 1000 / 596.43 / 3600, rel=1e-3)  # 18.6 h
    assert dmr.snapshot_count(s) == 16


def test_budgets_double_per_retry_and_never_pass_the_site_maximum():
    cfg = {"compute": {"max_runtime": 600}}
    assert dmr.budget_min(60 * 60, cfg) == 3 + 90  # start-up + 1.5 x estimate
    assert dmr.budget_min(60 * 60, cfg, attempt=2) == 3 + 180
    assert dmr.budget_min(60 * 60, cfg, attempt=5) == 600
    assert 0 < dmr.time_budget_s(1) <= 30
    assert 2880 * 60 - dmr.time_budget_s(2880) == pytest.approx(120 + 0.02 * 2880 * 60)
    assert dmr.chain_links(100, cfg) == 1
    assert dmr.chain_links(10 * 3600, cfg) == 2  # 15 h of work (x1.5) in jobs of 10 h less 2 min + 2%


def test_sample_and_score_budgets_grow_with_samples_times_snapshots():
    cfg = paper()
    s = dmc.run_settings(dmc.expand(cfg)["basic"][0].settings, 1000)
    one = dmr.sample_estimate_s(s, cfg, 16)
    assert dmr.sample_estimate_s(s, cfg, 32) == pytest.approx(2 * one)
    s2 = {**s, "sample": {**s["sample"], "n": 2 * s["sample"]["n"]}}
    assert dmr.sample_estimate_s(s2, cfg, 16) == pytest.approx(2 * one)
    assert dmr.score_estimate_s(s2, cfg, 16) == pytest.approx(2 * dmr.score_estimate_s(s, cfg, 16))


def _jobs(dry_run: str) -> list[dict]:
    jobs = []
    for block in re.split(r"\n(?=\[[^\]]+\]\n)", dry_run):
        rule = re.search(r"^(?:local)?(?:rule|checkpoint) (\w+):", block, re.M)
        res = re.search(r"resources: (.*)", block)
        if not rule or not res:
            continue
        wc = dict(re.findall(r"(\w+)=([^,\s]+)", (re.search(r"wildcards: (.*)", block) or [None, ""])[1]))
        r = dict(re.findall(r"(\w+)=([^,\s]+)", res.group(1)))
        threads = re.search(r"threads: (\d+)", block)
        jobs.append({"rule": rule.group(1), "wildcards": wc, "resources": r,
                     "threads": int(threads.group(1)) if threads else 1})  # fmt: skip
    return jobs


def test_paper_dry_run_asks_for_what_the_model_says_within_the_site_maximum():
    proc = subprocess.run([str(SNAKEMAKE), "-n", "--cores", "64", "--configfile", "config/paper.yaml"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg = paper()
    runs = {v.run_id: v.settings for vals in dmc.expand(cfg).values() for v in vals}
    samples = {v.sample_id: v.settings["sample"] for vals in dmc.expand(cfg).values() for v in vals}
    heavy = [j for j in _jobs(proc.stdout + proc.stderr) if j["rule"] in ("train", "sample", "score")]
    assert {j["rule"] for j in heavy} == {"train", "sample", "score"}
    for job in heavy:
        runtime = int(job["resources"]["runtime"])
        assert runtime <= cfg["compute"]["max_runtime"], job
        assert job["resources"].get("gpu") == "1", job  # gpu: true in the paper preset
        assert job["threads"] == cfg["compute"]["cpus_per_gpu"], job
        s = dmc.run_settings(runs[job["wildcards"]["run_id"]], int(job["wildcards"]["size"]))
        if job["rule"] == "train":
            est = dmr.train_estimate_s(s, cfg)
        else:
            s["sample"] = {**s["sample"], **samples[job["wildcards"]["sample_id"]]}
            fn = dmr.sample_estimate_s if job["rule"] == "sample" else dmr.score_estimate_s
            est = fn(s, cfg, dmr.snapshot_count(s))
        if runtime < cfg["compute"]["max_runtime"]:  # not capped: between the estimate and twice it
            assert est / 60 <= runtime <= 2 * est / 60 + dmr.STARTUP_MIN + 1, (job, est)
        else:  # capped: the work does not fit one job, which the chain handles
            assert est / 60 > dmr.time_budget_s(runtime) / 60 / dmr.SAFETY, (job, est)


def test_a_failure_record_stops_only_the_later_attempts_of_its_workflow_run(tmp_path):
    record = tmp_path / "failed.json"
    assert dmr.earlier_failure(record, 2) is None  # none
    record.write_text('{"attempt": 1, "error": "E"}')
    assert dmr.earlier_failure(record, 1) is None  # a record of an earlier run of the workflow
    assert dmr.earlier_failure(record, 2) == {"attempt": 1, "error": "E"}
    record.write_text("{not json")
    assert dmr.earlier_failure(record, 2) is None  # not one of ours
