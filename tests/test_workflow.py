"""The whole workflow end to end on config/smoke.yaml, in a temp copy of the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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
    for name in ("Snakefile", "workflow", "config", "envs"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    proc = snakemake(work, "--cores", "2")
    if proc.returncode != 0:
        logs = "\n".join(
            f"--- {p}\n{p.read_text()[-3000:]}" for p in sorted((work / "results").rglob("*.log"))[-5:]
        )
        pytest.fail(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-6000:]}\n{logs}")
    return work, proc


@pytest.mark.slow
def test_smoke_outputs(smoke_run):
    work, _ = smoke_run
    res = work / "results" / "smoke"
    figures = ["basic", "data", "model", "training", "conditioning", "epochs", "optimum"]
    for fig in figures:
        for ext in ("pdf", "png"):
            path = res / "figures" / f"{fig}.{ext}"
            assert path.is_file() and path.stat().st_size > 1000, path
        assert (res / "tables" / f"{fig}.csv").read_text().count("\n") >= 2
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
        scores = json.loads((run / "memorization.json").read_text())
        assert 0.0 <= scores["ratio"] <= 1.0 and scores["snapshots"]
        assert scores["run_id"] == run.parent.name and scores["size"] == settings["data"]["size"]
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
