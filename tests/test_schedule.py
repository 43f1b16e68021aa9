"""The training schedule (diffmem.schedule): steps, snapshots, warm-up and EMA per step."""

from __future__ import annotations

import math

import pytest

from diffmem import schedule as sch

TRAIN = {"batch": 16, "duration": {"unit": "steps", "value": 12}, "snapshots": 3}



def test_plan_units_and_snapshots():
    t = dict(TRAIN)
    t["duration"] = {"unit": "epochs", "value": 10}
    plan = sch.training_plan(t, 50)  # 500 images / batch 16 -> 31.25 -> 32 steps
    assert plan["steps"] == 32 and plan["images"] == 512
    t["duration"] = {"unit": "images", "value": 33}
    assert sch.training_plan(t, 50)["steps"] == 3
    t["warmup"] = {"unit": "epochs", "value": 2}
    assert sch.training_plan(t, 50)["warmup_images"] == 100
    assert sch.snapshot_steps(4, 100) == [25, 50, 75, 100]
    assert sch.snapshot_steps(3, 10) == [3, 6, 10]
    assert sch.snapshot_steps(5, 2) == [1, 2]
    assert sch.snapshot_steps([10, 3], 10) == [3, 10]
    every = {**t, "duration": {"unit": "steps", "value": 10}, "snapshots": {"every": {"unit": "images", "value": 64}}}
    assert sch.training_plan(every, 50)["snapshot_steps"] == [4, 8, 10]
    with pytest.raises(ValueError, match="outside"):
        sch.snapshot_steps([11], 10)
    with pytest.raises(ValueError, match="duration.unit"):
        sch.training_plan({**t, "duration": {"unit": "hours", "value": 1}}, 50)
    assert sch.lr_at(0, 1.0, 16, 64) == 0.25 and sch.lr_at(3, 1.0, 16, 64) == 1.0 and sch.lr_at(0, 1.0, 16, 0) == 1.0


def test_ema_beta():
    # The paper's per-step decay at batch 512 is EDM's 500k-image half-life.
    hl = 512 * math.log(0.5) / math.log(0.99929)
    assert 495_000 < hl < 505_000
    assert sch.ema_beta(0.99929, None, 512, 0) == pytest.approx(0.99929)
    assert sch.ema_beta(0.99929, 0.05, 512, 0) == 0.0  # ramp-up: first EMA = raw weights
    assert sch.ema_beta(0.99929, 0.05, 512, 1e6) == pytest.approx(0.5 ** (512 / 5e4))
    assert sch.ema_beta(0.0, 0.05, 512, 1e9) == 0.0
    assert sch.ema_beta(1.0, None, 512, 1e9) == 1.0


