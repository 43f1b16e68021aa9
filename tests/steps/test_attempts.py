"""Retries that mean something (issue 21): a walltime pause resumes on the next attempt, any other failure
is recorded and the later attempts stop at once (diffmem.steps.attempts); the retries of the chained rules
are bounded (diffmem.plan.resources.chain_retries); what each attempt asks for: a retry more, a link of a chain
what attempt 1 would, an attempt that a failure stops the least."""

from __future__ import annotations

import copy
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from diffmem.io import record_path, write_json
from diffmem.plan import config as dmc
from diffmem.plan import layout
from diffmem.plan import resources as dmr
from diffmem.plan.plan import Plan
from diffmem.steps.attempts import FAILURE_FILE, failure_record, stop_if_failed
from diffmem.steps.sample import SamplingPaused
from diffmem.steps.train import TrainingPaused

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
LOG = logging.getLogger("test_attempts")


def attempt(folder: Path, k: int, work) -> str:
    """Run ``work`` as attempt ``k`` of a job in ``folder`` the way the workflow scripts do; what ended it."""
    try:
        stop_if_failed(folder, k, LOG)
        with failure_record(folder, k, (TrainingPaused, SamplingPaused), LOG):
            work()
    except SystemExit as e:
        return f"stopped {e.code}"
    except (TrainingPaused, SamplingPaused):
        return "paused"
    except RuntimeError:
        return "failed"
    return "done"


def pause():
    raise TrainingPaused("walltime")


def bug():
    raise RuntimeError("a bug in train")


def test_a_failure_stops_the_later_attempts_a_pause_never_does(tmp_path, caplog):
    record = tmp_path / FAILURE_FILE
    assert [attempt(tmp_path, k, pause) for k in (1, 2, 3)] == ["paused"] * 3
    assert not record.exists()  # a pause is no failure
    assert attempt(tmp_path, 4, bug) == "failed"
    failed = json.loads(record.read_text())
    assert failed["attempt"] == 4 and failed["error"] == "RuntimeError: a bug in train" and failed["time"]
    assert any("a bug in train" in line for line in failed["traceback"])
    ran = []
    assert attempt(tmp_path, 5, lambda: ran.append(5)) == "stopped 1"  # not retried: the work never starts
    assert attempt(tmp_path, 6, lambda: ran.append(6)) == "stopped 1"
    assert ran == []
    assert (
        f"failed at attempt 4 ({failed['time']}): RuntimeError: a bug in train; not retrying (only a walltime "
        f"pause is resumed). Fix the cause and run the workflow again, or delete {record} to retry"
    ) in caplog.text
    # a new run of the workflow counts from 1 again: it tries once more, and a success leaves no record
    assert attempt(tmp_path, 1, lambda: ran.append(1)) == "done"
    assert ran == [1] and not record.exists()


def test_the_record_lies_in_the_manifest_while_it_exists(tmp_path):
    """In a results folder the record is a recorded file (diffmem verify checks it); clearing it removes its
    manifest entry too, so verify never reports it missing."""
    job = tmp_path / "runs" / "abc" / "n4" / "train"
    job.mkdir(parents=True)
    assert attempt(job, 1, bug) == "failed"
    assert record_path(job / FAILURE_FILE).is_file()
    assert attempt(job, 1, pause) == "paused"  # a new run of the workflow
    assert sorted(p.name for p in job.iterdir()) == []


def test_a_damaged_or_foreign_record_does_not_stop_a_job(tmp_path):
    (tmp_path / FAILURE_FILE).write_text("{not json")
    assert attempt(tmp_path, 2, lambda: None) == "done"
    write_json(tmp_path / FAILURE_FILE, {"error": "no attempt"})
    assert attempt(tmp_path, 2, lambda: None) == "done"
    assert not (tmp_path / FAILURE_FILE).exists()


# ------------------------------------------------------------------------------------- retry counts
def smoke() -> dict:
    return dmc.load_config([str(ROOT / "config" / "smoke.yaml")])


@pytest.mark.parametrize(
    ("stage", "change"),
    [  # issue 21's cases on config/smoke.yaml: 71,095, 1,043 and 3.3e13 retries before
        ("sample", lambda t, s: s.update(n=10**12)),
        ("train", lambda t, s: t.update(batch=10**9)),
        ("train", lambda t, s: t.update(duration={"unit": "steps", "value": 1e20})),
    ],
)
def test_absurd_settings_give_a_bounded_number_of_retries(stage, change):
    cfg = copy.deepcopy(smoke())
    change(cfg["base"]["train"], cfg["base"]["sample"])
    plan = dmc.expand(cfg)  # without the plan's bounds, which refuse these before any job
    assert dmr.chain_retries(plan, cfg, stage) == cfg["compute"]["max_chain"] == 100
    cfg["compute"]["max_chain"] = 7
    assert dmr.chain_retries(plan, cfg, stage) == 7


def test_a_paper_run_gets_the_links_of_its_longest_chain_and_a_margin():
    cfg = dmc.load_config([str(ROOT / "config" / "paper.yaml")])
    plan = dmc.expand(cfg)
    links = max(
        dmr.chain_links(dmr.train_estimate_s(dmc.run_settings(v.settings, max(v.sizes or [v.emm["hi"]])), cfg), cfg)
        for vals in plan.values()
        for v in vals
    )
    assert links > 10  # the widest net at |D| = 50k: weeks of an H200 in jobs of 3 days
    assert dmr.chain_retries(plan, cfg, "train") == min(dmr.MARGIN * links, cfg["compute"]["max_chain"]) >= links
    assert dmr.chain_retries(dmc.expand(smoke()), smoke(), "train") == 1  # every run fits one job


def test_memory_grows_per_attempt_up_to_the_site_maximum():
    cfg = {"compute": {"max_mem_gb": 8}}
    assert [dmr.grown_mb(3000, cfg, k) for k in (1, 2, 3, 60)] == [3000, 6000, 8000, 8000]
    assert dmr.grown_mb(9000, cfg, 5) == 9000  # above the site maximum already: bounds refuse it before


# ------------------------------------------------------------------------------------- what an attempt asks for
def slow_smoke_plan(results: Path) -> Plan:
    cfg = smoke()
    cfg["results"] = str(results)
    cfg["compute"]["speed"] = 0.01  # a device 100x slower than measured: run times above the start-up minutes
    return Plan.build(cfg, check_files=False)


def test_a_retry_grows_a_chain_link_asks_what_attempt_one_would_a_stopped_attempt_the_least(tmp_path):
    plan = slow_smoke_plan(tmp_path)
    v = plan.value("width", "12")

    def train(k):
        return plan.train_runtime(v.run_id, 4, k), plan.train_mem_mb(v.run_id, 4, k)

    # before any saved state, attempt k retries a failure killed from outside: time and memory grow
    assert [train(k) for k in (1, 2, 3)] == [(11, 1308), (18, 2617), (32, 5234)]
    # a link of a chain (a state saved): the time left by the measured speed (5000 s x 1.5 + 3 min), attempt
    # 1's memory, whatever its attempt
    progress = plan.path(layout.train_progress(v.run_id, 4))
    progress.parent.mkdir(parents=True)
    progress.write_text(json.dumps({"step": 50, "total_steps": 100, "steps_per_s": 0.01}))
    assert [train(k) for k in (1, 2, 3)] == [(128, 1308)] * 3
    # attempt 2 failed: attempt 3 stops within a second, so it asks for a minute and the least memory;
    # attempt 2 and earlier go on (a record of a later or equal attempt is an earlier workflow run's)
    write_json(plan.path(layout.train_dir(v.run_id, 4)) / layout.FAILURE_FILE, {"attempt": 2, "error": "E"})
    assert [train(k) for k in (1, 2, 3, 9)] == [(128, 1308)] * 2 + [(dmr.STOP_MIN, dmr.STOP_MB)] * 2
    assert (dmr.STOP_MIN, dmr.STOP_MB) == (1, 400)


def test_sampling_attempts_ask_alike(tmp_path):
    plan = slow_smoke_plan(tmp_path)
    v = plan.value("epochs", "base")
    samples = plan.samples_input(v.run_id, 8, v.sample_id)

    def sample(k):
        return plan.sample_runtime(v.run_id, 8, v.sample_id, k), plan.sample_mem_mb(v.run_id, 8, v.sample_id, k)

    assert [sample(k) for k in (1, 2, 3)] == [(4, 1302), (5, 2604), (7, 5208)]  # retries grow
    parts = Path(layout.sample_parts(samples))
    parts.mkdir(parents=True)
    (parts / "snapshot-000.npz").write_bytes(b"")
    assert [sample(k) for k in (1, 2, 3)] == [sample(1)] * 3 and sample(1)[1] == 1302  # a link: attempt 1's
    write_json(samples.parent / FAILURE_FILE, {"attempt": 1, "error": "E"})
    assert sample(1)[1] == 1302 and sample(2) == (1, 400)  # attempt 1 failed: attempt 2 stops
    assert FAILURE_FILE == layout.FAILURE_FILE == "failed.json"  # one name, in plan.layout


# ------------------------------------------------------------------------------------- the workflow
FAILING_TRAIN = textwrap.dedent("""
    # Test hook: diffmem.training.loop.train raises (and counts the attempts that reach it).
    import importlib.util, os, sys

    class _Hook:
        def find_spec(self, name, path=None, target=None):
            if name != "diffmem.training.loop":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            exec_module = spec.loader.exec_module

            def patched(module):
                exec_module(module)

                def train(*args, **kwargs):
                    with open(os.environ["DIFFMEM_TEST_STARTED"], "a") as f:
                        f.write("started\\n")
                    raise RuntimeError("a bug in train (test hook)")

                module.train = train

            spec.loader.exec_module = patched
            return spec

    if os.environ.get("DIFFMEM_TEST_STARTED"):
        sys.meta_path.insert(0, _Hook())
""")


def test_a_training_that_raises_is_tried_once_not_once_per_link(tmp_path):
    cfg = yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())
    cfg["experiments"] = {"basic": {"title": "Basic", "mode": "sizes", "sizes": [4]}}
    cfg["figures"] = {"basic": {"kind": "sweep", "experiments": ["basic"], "title": "Basic"}}
    # jobs of 1 min and a device 20x slower than measured: the run needs 3 links, so the rule has 6 retries
    cfg["compute"] = {"max_runtime": 1, "speed": 0.05}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(FAILING_TRAIN)
    started = tmp_path / "started.txt"
    env = {**os.environ, "PYTHONPATH": str(hook), "DIFFMEM_TEST_STARTED": str(started)}
    cmd = [str(SNAKEMAKE), "--snakefile", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "--configfile",
           str(tmp_path / "config.yaml"), "--cores", "1", "--until", "train"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert out.count("Trying to restart job") == 6, out[-3000:]  # the rule's retries, all used
    assert started.read_text().count("started") == 1, out[-3000:]  # only the first attempt trained
    (log,) = (tmp_path / "results" / "smoke" / "logs" / "train").glob("*.log")
    (record,) = (tmp_path / "results" / "smoke" / "runs").glob(f"*/n4/train/{FAILURE_FILE}")
    assert json.loads(record.read_text())["attempt"] == 1
    text = log.read_text()  # the last attempt's: it says why it stopped
    assert "failed at attempt 1 (" in text and "RuntimeError: a bug in train (test hook); not retrying" in text, text
    assert "Traceback" not in text, text  # a stop, not a crash
