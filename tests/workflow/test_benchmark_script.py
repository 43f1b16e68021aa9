"""scripts/benchmark.py --quick on the CPU: it runs every bench through diffmem, writes its JSON, and never
imports snakemake or jsonschema (the GPU machines it is meant for have neither)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "benchmark.py"

# Run the script as __main__ in a fresh interpreter, then check which packages it loaded.
RUNNER = """
import runpy, sys
sys.argv = [{script!r}, *{args!r}]
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
bad = sorted({{m.split(".")[0] for m in sys.modules}} & {{"snakemake", "jsonschema"}})
print("FORBIDDEN", bad)
sys.exit(code or (3 if bad else 0))
"""


def test_quick_cpu_run_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    args = ["--quick", "--device", "cpu", "--threads", "1", "--out", str(out), "--markdown", str(tmp_path / "b.md")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER.format(script=str(SCRIPT), args=args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FORBIDDEN []" in proc.stdout
    assert "| bench | case |" in proc.stdout  # the Markdown table on stdout
    assert (tmp_path / "b.md").read_text().startswith("diffmem benchmark on")

    report = json.loads(out.read_text())
    env_ = report["environment"]
    assert "--quick" in env_["command"] and str(out) in env_["command"]
    assert env_["torch"] and env_["device"]["type"] == "cpu" and env_["device"]["name"]
    assert env_["threads"] == 1
    assert report["mode"] == "quick"
    assert report["host_peak_mib"] > 0

    results = report["results"]
    assert {r["bench"] for r in results} == {"train", "sample", "optimum", "score"}
    for r in results:
        assert r["status"] == "ok", r
        assert r["per_s"] > 0 and r["seconds"] > 0, r
        assert r["host_peak_mib"] > 0, r
        assert "cuda_peak_allocated_mib" not in r
    train = next(r for r in results if r["bench"] == "train")
    assert train["case"] == "tiny" and train["steps"] == 10 and train["unit"] == "img/s"
    assert train["method"].startswith("progress-hook")  # timed from train()'s per-step lines
    assert train["n_params"] == report["presets"]["tiny"]["n_params"]
    sample = next(r for r in results if r["bench"] == "sample")
    assert sample["num_steps"] == 18 and sample["network_evals"] == 35
    assert sorted(r["size"] for r in results if r["bench"] == "optimum") == [256, 1024]
    score = next(r for r in results if r["bench"] == "score")
    assert (score["n"], score["size"]) == (1000, 1024)


def test_bad_options_exit_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--large", "--out", str(tmp_path / "x.json")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "exclude each other" in proc.stderr
    assert not (tmp_path / "x.json").exists()
