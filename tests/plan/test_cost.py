"""python -m diffmem cost: runs, images and device-hours of a config before anyone spends them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from diffmem.plan import config as dmc
from diffmem.plan import cost
from diffmem.science import emm

ROOT = Path(__file__).resolve().parents[2]


def smoke() -> dict:
    return dmc.load_config([str(ROOT / "config" / "smoke.yaml")])


def test_replayed_search_trains_what_the_policy_asks_for():
    cfg = smoke()
    value = dmc.expand(cfg)["basic"][0]
    allowed = cost.allowed_sizes(value)
    for true_emm in cost.outcomes(allowed):
        sizes = cost.search_sizes(value, allowed, true_emm)
        assert value.emm["lo"] in sizes or min(sizes) >= value.emm["lo"]
        # the policy, fed the same step-shaped verdicts, is done or out of rounds after these sizes
        step = emm.emm_step({s: 1.0 if s <= true_emm else 0.0 for s in sizes}, allowed, value.emm["lo"],
                            value.emm["hi"], threshold=0.9, tolerance=value.emm["tolerance"],
                            per_round=value.emm["per_round"])  # fmt: skip
        assert step["done"] or len(sizes) >= value.emm["per_round"] * value.emm["max_rounds"]
    # EMM below lo: one round (lo fails); somewhere inside: more
    assert len(cost.search_sizes(value, allowed, 0)) == value.emm["per_round"]
    assert max(len(cost.search_sizes(value, allowed, t)) for t in cost.outcomes(allowed)) > value.emm["per_round"]


def test_estimate_counts_shared_runs_once_and_fewest_le_most():
    res = cost.estimate(smoke())
    tot = res["total"]
    assert 0 < tot["fewest"]["runs"] <= tot["most"]["runs"]
    assert tot["fewest"]["train_h"] <= tot["most"]["train_h"]
    per_exp = sum(e["most"]["runs"] for e in res["experiments"].values())
    assert tot["most"]["runs"] < per_exp  # the base value of every sweep trains once
    assert res["experiments"]["optimum"]["most"]["images"] == 0  # the closed-form optimum trains nothing


def test_cli_prints_the_table_and_refuses_unknown_devices():
    cmd = [sys.executable, "-m", "diffmem", "cost", "--configfile", str(ROOT / "config" / "smoke.yaml")]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "total (runs shared)" in out and "basic" in out
    bad = subprocess.run([*cmd, "--device", "tpu9"], capture_output=True, text=True)
    assert bad.returncode == 2 and "measured kinds" in bad.stderr
