"""The workflow steps as library calls: the EMM rounds loop to a bracket, tables read them back, and a run
trained data parallel through torchrun (the multi-GPU path, gloo on CPU) equals one process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from runs import make_settings

from diffmem.data import save_subset
from diffmem.io import read_json, torch_load, write_json
from diffmem.plan import config as dmc
from diffmem.steps.emm import emm_result, emm_round
from diffmem.steps.table import TABLE_COLUMNS, figure_table
from diffmem.steps.train import train_run

EMM = 137  # the synthetic curve memorizes up to here


def fake_score(path, size):
    ratio = 1.0 if size <= EMM else 0.0
    write_json(path, {"size": size, "ratio": ratio, "ci_low": ratio, "ci_high": ratio, "n": 100,
                      "best_snapshot": 0, "snapshots": []})  # fmt: skip


def _optimum_on_digits() -> dict:
    """Settings of the closed-form optimum on 10-class digits (an EMM search's allowed sizes: multiples of 10)."""
    return dmc.resolve_settings(
        {
            "data": {"source": "digits", "resolution": 8, "classes": 10, "labels": "none", "label_classes": None,
                     "blend": None, "seed": 0, "pick": "random", "resize": "area"},
            "model": {"arch": "optimum"},
        }
    )  # fmt: skip


def test_emm_rounds_reach_a_bracket_and_the_table_reads_it(tmp_path):
    settings = _optimum_on_digits()
    search = {"experiment": "e", "value": "v", "display": "v", "run_id": "r", "settings": settings, "lo": 10,
              "hi": 1000, "tolerance": 0.2, "per_round": 3, "threshold": 0.9, "max_rounds": 8}  # fmt: skip
    previous, scores = None, []
    for k in range(9):
        state = emm_round(search, previous, scores, tmp_path / f"round{k}.json")
        assert all(s % 10 == 0 for s in state["next"])  # class-balanced sizes only
        if state["done"]:
            break
        previous = tmp_path / f"round{k}.json"
        scores = []
        for s in state["next"]:
            fake_score(tmp_path / f"m{s}.json", s)
            scores.append(tmp_path / f"m{s}.json")
    assert state["status"] == "found"
    lo, hi = state["bracket"]
    assert lo <= EMM < hi
    assert hi / lo <= 1.2 + 1e-9 or hi - lo == 10  # within tolerance, or no allowed size between
    res = emm_result(search, tmp_path / f"round{k}.json", tmp_path / "emm.json")
    assert res["rounds"] == k + 1
    value = {"experiment": "e", "title": "E", "label": "v", "display": "v", "mode": "emm", "run_id": "r",
             "emm": str(tmp_path / "emm.json"), "scores": {}, "ratio_threshold": 1 / 3,
             "emm_threshold": 0.9}  # fmt: skip
    fig = {"name": "f", "values": [value]}
    table = figure_table(fig)
    assert list(table.columns) == TABLE_COLUMNS
    emm_row = table[table["kind"] == "emm"].iloc[0]
    assert (emm_row["emm_lower"], emm_row["emm_upper"]) == (lo, hi)
    assert (emm_row["search_lo"], emm_row["search_hi"]) == (10, 1000)
    assert (emm_row["ratio_threshold"], emm_row["emm_threshold"]) == (1 / 3, 0.9)
    assert len(table[table["kind"] == "size"]) == len(res["evaluated"])


def test_an_emm_search_with_a_start_grid_measures_it_first(tmp_path):
    """emm.start: round 0 asks for exactly the grid; the next round searches inside the bracket it leaves."""
    settings = _optimum_on_digits()
    search = {"experiment": "e", "value": "v", "display": "v", "run_id": "r", "settings": settings, "lo": 20,
              "hi": 640, "tolerance": 0.1, "per_round": 2, "threshold": 0.9, "max_rounds": 8,
              "start": [20, 80, 320, 640]}  # fmt: skip
    first = emm_round(search, None, [], tmp_path / "round0.json")
    assert first["next"] == [20, 80, 320, 640]
    for s in first["next"]:
        fake_score(tmp_path / f"m{s}.json", s)
    second = emm_round(search, tmp_path / "round0.json", [tmp_path / f"m{s}.json" for s in first["next"]],
                       tmp_path / "round1.json")  # fmt: skip
    assert second["bracket"] == [80, 320] and all(80 < s < 320 for s in second["next"])


def _settings(batch=16):
    """The tests' tiny run (tests/runs.py), 8 steps, one snapshot, without dropout."""
    s = make_settings(8, batch=batch, warmup={"unit": "images", "value": 32, "mode": "linear"}, snapshots=1,
                      checkpoint_every=4)  # fmt: skip
    s["model"]["dropout"] = 0.0
    return s


@pytest.mark.slow
def test_train_run_data_parallel_equals_one_process(tmp_path):
    rng = np.random.default_rng(0)
    subset = {"images": rng.integers(0, 256, (32, 1, 8, 8), dtype=np.uint8), "labels": np.zeros(32, np.int64),
              "cond_labels": np.full(32, -1), "label_dim": 0, "source_index": np.arange(32),
              "source_id": np.zeros(32, np.int64), "settings": {}}  # fmt: skip
    save_subset(tmp_path / "subset.npz", subset)
    write_json(tmp_path / "run.json", _settings())
    one = train_run(tmp_path / "run.json", tmp_path / "subset.npz", tmp_path / "one")
    two = train_run(tmp_path / "run.json", tmp_path / "subset.npz", tmp_path / "two", processes=2,
                    threads=2, log_path=tmp_path / "two.log")  # fmt: skip
    assert read_json(tmp_path / "two" / "train.json")["world_size"] == 2
    a = torch_load(tmp_path / "one" / one["snapshots"][-1]["file"])
    b = torch_load(tmp_path / "two" / two["snapshots"][-1]["file"])
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=5e-4)  # equal up to float rounding (< lr/4)
    # both write train/stats.jsonl, one record per progress line, from the main process only
    from diffmem.training.metrics import read_stats

    s1, s2 = read_stats(tmp_path / "one"), read_stats(tmp_path / "two")
    assert [r["step"] for r in s2] == [r["step"] for r in s1] and s2[-1]["step"] == 8


def test_write_subset_makes_the_configs_subset(tmp_path):
    """The subset step: the config's data at one size, saved where it is told, the same as data.make_subset."""
    from diffmem.data import load_subset, make_subset
    from diffmem.steps.subset import write_subset

    cfg = dmc.load_config([str(Path(__file__).resolve().parents[2] / "config" / "smoke.yaml")])
    value = dmc.expand(cfg)["basic"][0]
    subset = write_subset(cfg, value.data_id, 4, tmp_path / "subset.npz")
    again = load_subset(tmp_path / "subset.npz")
    assert len(again["images"]) == 4 and np.array_equal(again["images"], subset["images"])
    assert np.array_equal(subset["images"], make_subset(dmc.data_spec(cfg, value.data_id, 4))["images"])
