"""The whole workflow end to end on config/smoke.yaml, in a temp copy of the project."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffmem.plan import identity

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def snakemake(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [str(SNAKEMAKE), "--configfile", "config/smoke.yaml", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("smoke")
    for name in ("Snakefile", "workflow", "config", "envs", "src", "benchmarks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    proc = snakemake(work, "--cores", "2")
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((work / "results").rglob("*.log"))[-5:])
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n{logs}")
    return work, proc


@pytest.mark.slow
def test_smoke_outputs(smoke_run):
    work, _ = smoke_run
    res = work / "results" / "smoke"
    figures = list(yaml.safe_load((ROOT / "config" / "smoke.yaml").read_text())["figures"])
    assert {"basic", "conditioning", "optimum", "random_labels"} <= set(figures)
    for fig in figures:
        for ext in ("pdf", "png"):
            path = res / "figures" / f"{fig}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
        assert (res / "tables" / f"{fig}.csv").read_text().count("\n") >= 2
    # a fixed-size panel (kind fixed), each value at its own sizes: C = 1 at |D| = 4, C = 5 at 4 and 8
    rows = [r for r in csv.DictReader(open(res / "tables" / "random_labels.csv")) if r["kind"] == "size"]
    assert sorted((r["value"], int(float(r["size"]))) for r in rows) == [("1", 4), ("5", 4), ("5", 8)]
    emm = json.loads((res / "emm" / "basic" / "base" / "emm.json").read_text())
    assert emm["done"] and emm["status"] in {"found", "below_lo", "above_hi", "max_rounds"}
    assert emm["evaluated"], "the search evaluated no size"
    if emm["status"] in {"found", "max_rounds"}:
        lo, hi = emm["bracket"]
        assert lo < hi
    runs = [p for p in (res / "runs").glob("*/n*") if p.is_dir()]
    assert runs
    for run in runs:
        settings = json.loads((run / "run.json").read_text())
        assert settings["data"]["size"] == int(run.name[1:])
        assert identity.train_id(settings) == run.parent.name  # the folder is the run's training identity
        (scores_path,) = run.glob("samples/*/scores/*/memorization.json")
        scores = json.loads(scores_path.read_text())
        assert 0.0 <= scores["ratio"] <= 1.0 and scores["snapshots"]
        assert scores["run_id"] == run.parent.name and scores["size"] == settings["data"]["size"]
        sample = json.loads((scores_path.parents[2] / "sample.json").read_text())
        assert identity.short_id({k: v for k, v in sample.items() if k != "about"}) == scores_path.parents[2].name
    # no temp file left behind by the atomic writers
    assert not list(res.rglob(".tmp-*"))


@pytest.mark.slow
def test_smoke_second_invocation_has_nothing_to_do(smoke_run):
    work, _ = smoke_run
    proc = snakemake(work, "-n", "--cores", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Nothing to be done" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_smoke_report(smoke_run):
    work, _ = smoke_run
    proc = snakemake(work, "--report", "report.html")
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (work / "report.html").read_text(errors="replace")
    for fig in ("basic", "conditioning", "optimum"):
        assert f"{fig}.png" in html
    assert "the dashed line is the EMM threshold" in html  # the generated caption
    # the tables (rendered as HTML), and per EMM search the grids of its bracket's ends with the run's settings
    for fig in ("basic", "conditioning", "optimum"):
        assert f"{fig}.html" in html
    assert "Tables" in html and "EMM runs" in html
    emm_dir = work / "results" / "smoke" / "report" / "emm"
    grids = sorted(p.relative_to(emm_dir) for p in emm_dir.rglob("*.png"))
    assert grids and Path("basic/base.png") in grids
    assert html.count("The runs that decided the EMM of") >= len(grids)
    assert "Settings of the run" in html and "model.model_channels" in html and "train.lr" in html


@pytest.mark.slow
def test_smoke_index(smoke_run):
    """index.csv lists every run folder that the workflow made, and every link lands in its run folder."""

    work, _ = smoke_run
    res = work / "results" / "smoke"
    with open(res / "index.csv") as f:
        rows = list(csv.DictReader(f))
    runs = {str(p.relative_to(res)) for p in (res / "runs").glob("*/n*") if p.is_dir()}
    assert {r["run_folder"] for r in rows} == runs
    assert {r["status"] for r in rows} == {"scored"}
    for r in rows:
        link = res / r["link"]
        assert link.is_symlink() and link.resolve() == (res / r["run_folder"]).resolve(), r
        assert (link / "run.json").is_file()
    base = [r for r in rows if (r["experiment"], r["value"]) == ("basic", "base")]
    # a fixed-size panel (kind fixed), each value at its own sizes: C = 1 at |D| = 4, C = 5 at 4 and 8
    rows = [r for r in csv.DictReader(open(res / "tables" / "random_labels.csv")) if r["kind"] == "size"]
    assert sorted((r["value"], int(float(r["size"]))) for r in rows) == [("1", 4), ("5", 4), ("5", 8)]
    emm = json.loads((res / "emm" / "basic" / "base" / "emm.json").read_text())
    assert sorted(int(r["size"]) for r in base) == sorted(e["size"] for e in emm["evaluated"])


@pytest.mark.slow
def test_smoke_compare(smoke_run):
    """``python -m diffmem compare`` on the smoke run: every claim of the paper judged, or marked not run."""
    from diffmem.results.claims import BUDGET, MIXED, NO_EFFECT, NOT_RUN, REPRODUCES, REVERSED
    from diffmem.results.paper import load_claims

    work, _ = smoke_run
    proc = subprocess.run([sys.executable, "-m", "diffmem", "compare", "results/smoke", "--markdown"], cwd=work,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| paper's direction |")
    rows = [line.split(" | ") for line in lines[1:]]
    assert {r[0].lstrip("| ").replace("\\|", "|") for r in rows} == {c.claim for c in load_claims()}
    assert {r[4] for r in rows} <= {REPRODUCES, REVERSED, MIXED, NO_EFFECT, BUDGET, NOT_RUN}
    assert any(r[2] == "basic" and r[4] != NOT_RUN for r in rows), proc.stdout  # the size claim on the basic setup
    assert "Not the paper's settings" in proc.stdout


def _jobs_after_change(work: Path, name: str, change) -> dict[str, int]:
    """Job counts of a dry run of the smoke config after ``change(config)`` (written as a new file)."""
    cfg = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    change(cfg["base"])
    path = work / "config" / f"smoke-{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))  # sorted keys: key order must not matter either
    proc = subprocess.run([str(SNAKEMAKE), "-n", "--cores", "2", "--configfile", str(path)], cwd=work,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    stats = out.split("Job stats:")[1].split("total")[0]
    return {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()[3:] if line.strip()}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "change", "forbidden"),
    [
        ("operational", lambda b: (b["train"].update(checkpoint_every=7), b["sample"].update(batch=16)), "all"),
        ("samples", lambda b: b["sample"].update(n=80), {"train", "subset", "run_settings"}),
        ("threshold", lambda b: b.setdefault("score", {}).update(threshold=0.25), {"train", "subset", "sample"}),
    ],
)
def test_a_changed_sampling_or_scoring_setting_retrains_nothing(smoke_run, name, change, forbidden):
    work, _ = smoke_run
    jobs = _jobs_after_change(work, name, change)
    if forbidden == "all":
        assert jobs == {}, jobs  # keys that change no number rerun nothing at all
    else:
        assert jobs and not forbidden & set(jobs), jobs
        assert ("score" in jobs) and (name != "samples" or "sample" in jobs)
