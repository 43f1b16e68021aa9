"""diffmem.plan.search_cost and ``python -m diffmem emm-cost``: the EMM search's runs and images against a grid."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from diffmem.__main__ import main
from diffmem.plan import config as dmc
from diffmem.plan import cost
from diffmem.plan import search_cost as emm_cost

ROOT = Path(__file__).resolve().parents[2]


def default_value():
    cfg = dmc.load_config([str(ROOT / "config" / "config.yaml")])
    value = dmc.expand(cfg)["basic"][0]
    return value, cost.allowed_sizes(value)


def test_replay_of_steps_trains_what_cost_replays():
    """One policy: replaying emm_step on a step curve trains the sizes diffmem.plan.cost counts."""
    value, allowed = default_value()
    e = value.emm
    for true_emm in cost.outcomes(allowed, k=16):
        r = emm_cost.replay(
            emm_cost.step_curve(true_emm),
            allowed,
            e["lo"],
            e["hi"],
            threshold=e["threshold"],
            tolerance=e["tolerance"],
            per_round=e["per_round"],
            max_rounds=e["max_rounds"],
        )
        assert r["sizes"] == cost.search_sizes(value, allowed, true_emm)
        assert sorted(s for rnd in r["rounds"] for s in rnd) == r["sizes"]
        assert all(len(rnd) <= e["per_round"] for rnd in r["rounds"])


def test_log_grid_is_the_fewest_sizes_at_the_tolerance():
    allowed = list(range(10, 81, 10))
    assert emm_cost.log_grid(allowed, 10, 80, 0.5) == [10, 20, 30, 40, 60, 80]
    assert emm_cost.log_grid(allowed, 10, 80, 0.01) == allowed  # sparser than the tolerance: every size
    sizes = list(range(500, 20001, 10))
    grid = emm_cost.log_grid(sizes, 500, 20000, 0.1)
    assert grid[0] == 500 and grid[-1] == 20000
    assert all(b / a <= 1.1 for a, b in zip(grid, grid[1:], strict=False))
    # greedy is minimal: any two neighbours' gap could not have been stretched further
    assert all(c / a > 1.1 for a, c in zip(grid, grid[2:], strict=False))
    with pytest.raises(ValueError):
        emm_cost.log_grid(allowed, 81, 90, 0.5)


def test_compare_on_steps_and_noise():
    allowed = list(range(10, 81, 10))
    kw = dict(threshold=0.9, tolerance=0.5, per_round=3, max_rounds=4)
    steps = emm_cost.synthetic_curves("step", allowed, 10, 80, 0.9, k=12)
    c = emm_cost.compare(steps, allowed, 10, 80, **kw)
    assert c["grid_sizes"] == [10, 20, 30, 40, 60, 80] and c["curves"] == 14
    assert c["search"]["holds"] == c["grid"]["holds"] == 1.0 and c["search"]["resolved"] == 1.0
    assert c["grid"]["runs_mean"] == 6 and c["grid"]["images_mean"] == sum(c["grid_sizes"])  # images_of: |D|
    assert c["search"]["runs_max"] <= 3 * 4 and c["search"]["rounds_max"] <= 4
    # EMM below lo: round 0 (lo, hi and one between) settles it
    r = emm_cost.replay(emm_cost.step_curve(5), allowed, 10, 80, **kw)
    assert r["rounds"] == [[10, 30, 80]] and r["result"]["status"] == "below_lo"
    # the same seed measures the same noise; another does not
    a = emm_cost.synthetic_curves("noisy", allowed, 10, 80, 0.9, k=12, n_samples=50, seed=1)
    b = emm_cost.synthetic_curves("noisy", allowed, 10, 80, 0.9, k=12, n_samples=50, seed=1)
    z = emm_cost.synthetic_curves("noisy", allowed, 10, 80, 0.9, k=12, n_samples=50, seed=2)
    assert [m(40) for m, _ in a] == [m(40) for m, _ in b] != [m(40) for m, _ in z]
    assert emm_cost.compare(a, allowed, 10, 80, **kw) == emm_cost.compare(b, allowed, 10, 80, **kw)


def test_logistic_curve_and_truth():
    curve = emm_cost.logistic_curve(45, 0.9)
    assert curve(45) == pytest.approx(0.9) and curve(10) > 0.9 > curve(80)
    assert emm_cost.true_emm(curve, [10, 20, 30, 40, 50], 0.9) == 40
    assert emm_cost.true_emm(emm_cost.step_curve(5), [10, 20], 0.9) is None
    assert emm_cost.holds({"status": "below_lo", "lo": 10}, None)
    found = {"status": "found", "bracket": [20, 30], "lower": 20, "upper": 30}
    assert not emm_cost.holds(found, 30) and emm_cost.holds(found, 30, slack=1.5)
    assert not emm_cost.holds(found, 45, slack=1.5) and emm_cost.holds(found, 14, slack=1.5)


def test_measured_curve_interpolates_in_log_size():
    curve = emm_cost.measured_curve({10: 1.0, 40: 0.5})
    assert curve(10) == 1.0 and curve(40) == 0.5 and curve(5) == 1.0 and curve(80) == 0.5
    assert curve(20) == pytest.approx(0.75)  # halfway in log size
    assert not math.isnan(curve(33))


def test_emm_cost_prints_tables_and_writes_json(tmp_path, capsys, monkeypatch):
    out = tmp_path / "emm_cost.json"
    monkeypatch.chdir(ROOT)  # --configfile defaults to config/config.yaml
    assert main(["emm-cost", "--curves", "6", "--per-round", "2,3", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| step (8) | 3 |" in printed and "| noisy (8) | 2 |" in printed
    report = json.loads(out.read_text())
    assert set(report["synthetic"]) == {"step/2", "step/3", "noisy/2", "noisy/3"}
    assert report["synthetic"]["step/3"]["grid_sizes"] == [10, 20, 30, 40, 60, 80]


def test_emm_cost_replays_a_runs_finished_searches(tmp_path, capsys):
    """--results: each finished search's runs and rounds, and the search replayed on its own scores."""
    search = tmp_path / "emm" / "basic" / "base"
    search.mkdir(parents=True)
    evaluated = [{"size": s, "ratio": 1.0 if s <= 30 else 0.0} for s in (10, 30, 40, 80)]
    write = {"lo": 10, "hi": 80, "tolerance": 0.5, "threshold": 0.9, "status": "found", "bracket": [30, 40],
             "evaluated": evaluated}  # fmt: skip
    (search / "emm.json").write_text(json.dumps(write))
    (search / "round0.json").write_text(json.dumps({"next": [10, 30, 80]}))
    (search / "round1.json").write_text(json.dumps({"next": [40]}))
    (search / "round2.json").write_text(json.dumps({"next": []}))
    args = ["--configfile", str(ROOT / "config" / "config.yaml"), "--curves", "2", "--per-round", "3"]
    assert main(["emm-cost", *args, "--results", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert f"1 finished searches in {tmp_path}" in printed
    assert "| basic/base | found | [30, 40] | 4 | 2 | 6 | 3: " in printed


def test_emm_cost_names_a_missing_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["emm-cost", "--configfile", "no/such.yaml"])
    assert exc.value.code == 2 and "no/such.yaml" in capsys.readouterr().err
