"""profiles/slurm on a real Slurm: a 3-rule toy workflow, then the smoke workflow.

The Slurm tests need a running cluster and the plugin (pip install -e '.[slurm]'):

    scripts/slurm-local.sh up            # one node on localhost (root; installs Debian packages)
    DIFFMEM_SLURM=1 .venv/bin/python -m pytest tests/workflow/test_slurm.py -q -m slurm
    scripts/slurm-local.sh down

Without DIFFMEM_SLURM=1 only the static checks of the profile and the script run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
PROFILE = ROOT / "profiles" / "slurm"
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
ENABLED = os.environ.get("DIFFMEM_SLURM") == "1"
TOY_TIMEOUT = int(os.environ.get("DIFFMEM_SLURM_TOY_TIMEOUT", "240"))
SMOKE_TIMEOUT = int(os.environ.get("DIFFMEM_SLURM_SMOKE_TIMEOUT", "1500"))

needs_slurm = pytest.mark.skipif(
    not ENABLED, reason="set DIFFMEM_SLURM=1 with a running Slurm (scripts/slurm-local.sh up)"
)


# ---------------------------------------------------------------- static checks (no Slurm needed)
def load_profile(name: str) -> dict:
    return yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())


def test_slurm_profile_settings():
    prof = load_profile("slurm")
    assert prof["executor"] == "slurm"
    # without accounting, sacct fails and plugin 2.8.0 then waits for ever: squeue it is
    assert prof["slurm-status-command"] == "squeue"
    assert 1 <= prof["slurm-init-seconds-before-status-checks"] <= 200  # MinJobAge 600 >= 3x this
    defaults = prof["default-resources"]
    assert {"mem_mb", "runtime"} <= set(defaults)
    # a cpus_per_task default would override every rule's threads (plugin: resource beats threads)
    assert "cpus_per_task" not in defaults
    for rule, res in prof.get("set-resources", {}).items():
        assert isinstance(res, dict), f"set-resources.{rule} must be a mapping"
        assert "gpus" not in res, "the plugin ignores `gpus` on sbatch; use gpu / gpu_model / gres"
        assert not re.search(r"--(gres|gpus)\b", str(res.get("slurm_extra", ""))), "GPU flags in slurm_extra"


def test_slurm_profile_routes_every_gpu_rule_and_starts_one_task():
    """Every rule that asks for a GPU has its block (partition / GPU model lines) in the profile, and a GPU job
    starts one task however many GPUs it asks for (plugin 2.8.0: tasks_per_gpu <= 0 omits --ntasks-per-gpu)."""
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    gpu_rules = set()
    for block in re.split(r"^(?=rule |checkpoint )", rules, flags=re.M):
        name = re.match(r"(?:rule|checkpoint)\s+(\w+)", block)
        if name and re.search(r"^\s+gpu=", block, re.M):
            gpu_rules.add(name.group(1))
    assert gpu_rules == {"train", "sample", "score"}
    prof = load_profile("slurm")
    assert gpu_rules <= set(prof["set-resources"]), sorted(gpu_rules - set(prof["set-resources"]))
    assert prof["default-resources"]["tasks_per_gpu"] == 0
    assert "tasks" not in prof["default-resources"]  # plugin 2.8.0 would read it as tasks per GPU


def test_slurm_profile_overrides_existing_rules():
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    if not rules:
        pytest.skip("workflow/rules/*.smk not written yet")
    names = set(re.findall(r"^\s*(?:rule|checkpoint)\s+(\w+)\s*:", rules, re.M))
    for rule in load_profile("slurm").get("set-resources", {}):
        assert rule in names, f"profiles/slurm set-resources names a rule that does not exist: {rule}"


def test_slurm_local_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True, check=True)
    assert "up" in out.stdout and "down" in out.stdout and "status" in out.stdout
    assert os.access(SCRIPT, os.X_OK), "scripts/slurm-local.sh must be executable"


# ---------------------------------------------------------------- helpers for the Slurm runs
def run(cmd: list[str], timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def show_job(jobid: str) -> dict[str, str]:
    """`scontrol show job` as key -> value (MinJobAge keeps finished jobs there for 600 s)."""
    out = run(["scontrol", "show", "job", "-o", jobid]).stdout
    return dict(re.findall(r"(\w[\w/:]*)=(\S*)", out))


def snakemake_slurm(workdir: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    """The real CLI through profiles/slurm, killed hard at `timeout` (the plugin can ignore SIGTERM)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [
        "timeout", "-s", "KILL", str(timeout),
        str(SNAKEMAKE), "--profile", str(PROFILE), "--directory", str(workdir),
        "--slurm-init-seconds-before-status-checks", "2",
        *args,
    ]  # fmt: skip
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout + 30)


def slurm_jobs_of(workdir: Path) -> dict[str, list[str]]:
    """rule -> Slurm job ids, from the plugin's log files .snakemake/slurm_logs/rule_<rule>/<id>.log."""
    out: dict[str, list[str]] = {}
    for log in (workdir / ".snakemake" / "slurm_logs").glob("rule_*/**/*.log"):
        rule = log.relative_to(workdir / ".snakemake" / "slurm_logs").parts[0].removeprefix("rule_")
        out.setdefault(rule, []).append(log.stem)
    return out


def fail_with(proc: subprocess.CompletedProcess, workdir: Path, what: str):
    logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))[-4:]
    logs += sorted((workdir / "results").rglob("*.log"))[-4:] if (workdir / "results").exists() else []
    text = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in logs)
    killed = " (killed by timeout)" if proc.returncode in (-9, 137) else ""
    pytest.fail(f"{what}: snakemake exited {proc.returncode}{killed}\n{proc.stderr[-6000:]}\n{text}")


@pytest.fixture(scope="module")
def cluster():
    """The node's gres string; fails (not skips) when DIFFMEM_SLURM=1 but nothing is usable."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.fail("DIFFMEM_SLURM=1 but snakemake-executor-plugin-slurm is missing: pip install -e '.[slurm]'")
    if shutil.which("sinfo") is None:
        pytest.fail("DIFFMEM_SLURM=1 but no Slurm client: scripts/slurm-local.sh up")
    state = ""
    for _ in range(30):
        proc = run(["sinfo", "-h", "-o", "%T %G"])
        state = proc.stdout.strip()
        if proc.returncode == 0 and re.search(r"^(idle|mixed|allocated)", state, re.M):
            break
        time.sleep(1)
    else:
        pytest.fail(f"no usable Slurm node (sinfo: {state!r}): scripts/slurm-local.sh up")
    return state


# ---------------------------------------------------------------- the toy: profile + cluster alone
TOY = """
rule all:
    input: "c.txt"{gpu_input}

rule a:
    output: "a.txt"
    resources: mem_mb=300, runtime=2
    shell: "echo $SLURM_JOB_ID > {{output}}"

rule b:
    input: "a.txt"
    output: "b.txt"
    resources: mem_mb=300, runtime=2
    shell: "cat {{input}} > {{output}}; echo $SLURM_JOB_ID >> {{output}}"

rule c:
    input: "b.txt"
    output: "c.txt"
    threads: 2
    shell: "cat {{input}} > {{output}}; echo $SLURM_JOB_ID >> {{output}}"
"""
TOY_GPU = """
rule gpu:
    output: "gpu.txt"
    resources: mem_mb=300, runtime=2, gpu=1
    shell: "echo $SLURM_JOB_ID > {output}; echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES >> {output}"
"""


@pytest.mark.slurm
@needs_slurm
def test_toy_workflow_runs_as_slurm_jobs(tmp_path, cluster):
    fake_gpu = "gpu" in cluster
    text = TOY.format(gpu_input=', "gpu.txt"' if fake_gpu else "") + (TOY_GPU if fake_gpu else "")
    (tmp_path / "Snakefile").write_text(text)
    t0 = time.monotonic()
    proc = snakemake_slurm(tmp_path, "--snakefile", str(tmp_path / "Snakefile"), timeout=TOY_TIMEOUT)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        fail_with(proc, tmp_path, "toy workflow")
    print(f"toy workflow through Slurm: {elapsed:.1f} s")

    ids = (tmp_path / "c.txt").read_text().split()
    assert len(ids) == 3 and all(i.isdigit() for i in ids) and len(set(ids)) == 3, ids
    jobs = slurm_jobs_of(tmp_path)
    assert {r: sorted(v) for r, v in jobs.items() if r in "abc"} == {
        "a": [ids[0]], "b": [ids[1]], "c": [ids[2]]
    }  # fmt: skip
    info = {i: show_job(i) for i in ids}
    for i, job in info.items():
        assert job.get("JobState") == "COMPLETED", (i, job)
        assert job.get("Partition"), job
    assert len({job["JobName"] for job in info.values()}) == 1, "one run, one Slurm job name (the run id)"
    # resources: the rule's own values, the profile's defaults, threads -> --cpus-per-task
    a, c = info[ids[0]], info[ids[2]]
    assert a.get("MinMemoryNode") == "300M" and a.get("TimeLimit") == "00:02:00", a
    default_mem = load_profile("slurm")["default-resources"]["mem_mb"]
    assert c.get("MinMemoryNode") in {f"{default_mem}M", f"{default_mem / 1000:g}G"}, c
    assert c.get("CPUs/Task") == "2", c
    if fake_gpu:
        gid = (tmp_path / "gpu.txt").read_text().split()[0]
        g = show_job(gid)
        assert g.get("JobState") == "COMPLETED", g
        assert "gpu:1" in g.get("TresPerJob", ""), g  # sbatch --gpus=1


# ---------------------------------------------------------------- the smoke workflow via Slurm
# The whole smoke workflow is ~110 steps, ~57 of them Slurm jobs, and each job pays two Snakemake
# start-ups: about 12 min on 2 cores, so it runs only with DIFFMEM_SLURM_FULL=1.


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
@pytest.mark.skipif(
    os.environ.get("DIFFMEM_SLURM_FULL") != "1",
    reason="the rehearsal covers the workflow through Slurm; DIFFMEM_SLURM_FULL=1 adds the smoke workflow",
)
def test_smoke_workflow_through_slurm(tmp_path, cluster):
    for name in ("Snakefile", "workflow", "config"):
        if not (ROOT / name).exists():
            pytest.skip(f"{name} not written yet")
    # envs/ too: snakemake records each job's conda env file (even without --use-conda)
    for name in ("Snakefile", "workflow", "config", "envs", "src", "benchmarks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    args = ["--configfile", "config/smoke.yaml"]
    t0 = time.monotonic()
    proc = snakemake_slurm(tmp_path, *args, timeout=SMOKE_TIMEOUT)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        fail_with(proc, tmp_path, "smoke workflow")
    print(f"smoke workflow through Slurm: {elapsed:.1f} s")

    res = tmp_path / "results" / "smoke"
    figures = sorted((res / "figures").glob("*.png"))
    assert figures, "no figure"
    for fig in figures:
        assert fig.stat().st_size > 1000 and fig.with_suffix(".pdf").is_file(), fig
    assert (res / "emm" / "basic" / "base" / "emm.json").is_file()

    jobs = slurm_jobs_of(tmp_path)
    for rule in ("train", "sample", "score"):
        assert jobs.get(rule), f"rule {rule} did not run as a Slurm job: {sorted(jobs)}"
    for rule in ("emm_round", "emm_result", "table", "run_settings"):
        assert rule not in jobs, f"localrule {rule} went to Slurm"
    n_train = len(list(res.glob("runs/*/n*/train/train.json")))
    assert len(jobs["train"]) == n_train, "one Slurm job per training run"
    # Slurm forgets a finished job after MinJobAge (600 s with slurm-local.sh): check those it knows
    known = {i: job for ids in jobs.values() for i in ids if (job := show_job(i))}
    assert known, "scontrol knows none of the run's jobs"
    for i, job in known.items():
        assert job.get("JobState") == "COMPLETED", (i, job)
    assert len({job["JobName"] for job in known.values()}) == 1, "one run, one Slurm job name"

    again = snakemake_slurm(tmp_path, *args, "-n", timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr


# ---------------------------------------------------------------- the paper preset's shape, rehearsed
REHEARSAL_TIMEOUT = int(os.environ.get("DIFFMEM_SLURM_REHEARSAL_TIMEOUT", "1500"))
PROJECT = ("Snakefile", "workflow", "config", "envs", "src", "benchmarks")


def copy_project(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for name in PROJECT:
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    return dest


def scores_of(workdir: Path) -> dict[str, dict]:
    res = workdir / "results" / "rehearsal"
    return {str(p.relative_to(res)): json.loads(p.read_text()) for p in res.glob("runs/**/memorization.json")}


@pytest.mark.slurm
@pytest.mark.slow
@needs_slurm
def test_rehearsal_chains_training_across_walltimes(tmp_path, cluster):
    """config/rehearsal.yaml through profiles/slurm: every heavy job is a Slurm job with the resources the
    throughput model gave it (a GPU each, never above the 1-minute site maximum); the largest training
    does not fit one job and runs as a chain; the scores equal those of an uninterrupted local run."""
    from diffmem.plan import resources as dmr

    local = copy_project(tmp_path / "local")
    (local / "site.yaml").write_text("compute: {max_runtime: 600}\n")  # room for every job: no chain
    ref = subprocess.run(
        [str(SNAKEMAKE), "--cores", "2", "--configfile", "config/rehearsal.yaml", "site.yaml"],
        cwd=local, capture_output=True, text=True, timeout=REHEARSAL_TIMEOUT,
    )  # fmt: skip
    assert ref.returncode == 0, ref.stderr[-4000:]
    assert not any("pausing" in p.read_text() for p in (local / "results").rglob("train/history.log"))

    work = copy_project(tmp_path / "slurm")
    t0 = time.monotonic()
    proc = snakemake_slurm(work, "--configfile", "config/rehearsal.yaml", timeout=REHEARSAL_TIMEOUT)
    if proc.returncode != 0:
        fail_with(proc, work, "rehearsal")
    print(f"rehearsal through Slurm: {time.monotonic() - t0:.1f} s")

    # the chain: a training paused before its walltime in one job and resumed in the next
    res = work / "results" / "rehearsal"
    chained = [p for p in res.glob("runs/*/n*/train/history.log") if "pausing at step" in p.read_text()]
    assert chained, "no training was cut by its walltime; make config/rehearsal.yaml's training longer"
    for log in chained:
        assert "resuming at step" in log.read_text(), log
        assert json.loads((log.parent / "train.json").read_text())["resumed_from"], log
    jobs = slurm_jobs_of(work)
    assert len(jobs["train"]) > len(list(res.glob("runs/*/n*/train/train.json"))), "no chain of Slurm jobs"
    for rule in ("emm_round", "emm_result", "table", "run_settings"):
        assert rule not in jobs, f"localrule {rule} went to Slurm"

    # every heavy job: a Slurm job with the model's budget (capped at the site maximum) and one GPU
    config = {"compute": {"max_runtime": 1, "device": "cpu", "speed": 1.0, "cpus_per_gpu": 1}, "gpu": True}
    for rule in ("train", "sample", "score"):
        assert jobs.get(rule), f"rule {rule} did not run as a Slurm job: {sorted(jobs)}"
        for jobid in jobs[rule]:
            job = show_job(jobid)
            if not job:  # forgotten after MinJobAge
                continue
            assert job.get("TimeLimit") == "00:01:00", (rule, job)
            assert "gpu:1" in job.get("TresPerJob", ""), (rule, job)
    for run in res.glob("runs/*/n*/run.json"):
        want = dmr.train_mem_mb(json.loads(run.read_text()), config)
        tag = f"{run.parent.parent.name}-{run.parent.name}"
        ids = [p.stem for p in (work / ".snakemake" / "slurm_logs" / "rule_train").rglob("*.log") if tag in str(p)]
        for job in filter(None, map(show_job, ids)):
            assert job.get("MinMemoryNode") in {f"{want}M", f"{want / 1000:g}G", f"{want / 1024:g}G"}, job

    # the chained result is the uninterrupted one, bit for bit
    got, want = scores_of(work), scores_of(local)
    assert got and got.keys() == want.keys()
    assert got == want
