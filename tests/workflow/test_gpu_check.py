"""scripts/gpu_check.py, the one prepared GPU check, runs its whole path on the CPU (--quick): so that the day a GPU
is lent, the command works the first time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_quick_on_the_cpu(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--quick", "--device", "cpu",
                           "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu-check.json").read_text())
    assert report["ok"] and not report["errors"]
    cases = {(r["case"], r["precision"]): r for r in report["train"]}
    assert set(cases) == {("base", "fp32"), ("base", "tf32"), ("base", "bf16"), ("depth12", "fp32")}
    assert cases[("depth12", "fp32")]["micro_batch"] == 8 < cases[("depth12", "fp32")]["batch"]  # trained in rounds
    assert {r["precision"] for r in report["sample"]} == {"fp32", "tf32", "bf16"}
    assert set(report["near_emm"]["ratios"]) == {"fp32", "bf16"}
    assert "| depth12 | fp32 | 16 | 8 |" in (tmp_path / "gpu-check.md").read_text()
