"""The training schedule (diffmem.science.schedule): steps, snapshots, warm-up and EMA per step."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from diffmem.science import schedule as sch

TRAIN = {
    "batch": 16,
    "duration": {"unit": "steps", "value": 12},
    "snapshots": 3,
    "lr": 1.0,
    "warmup": {"unit": "images", "value": 64, "mode": "linear"},
    "ema": {"mode": "decay", "decay": 0.99929, "rampup": 0.05},
    "truncate_kimg": True,
}


def test_plan_units_and_snapshots():
    t = dict(TRAIN)
    t["duration"] = {"unit": "epochs", "value": 10}
    plan = sch.training_plan(t, 50)  # 500 images / batch 16 -> 31.25 -> 32 steps
    assert plan["steps"] == 32 and plan["images"] == 512
    t["duration"] = {"unit": "images", "value": 33}
    assert sch.training_plan(t, 50)["steps"] == 3
    t["warmup"] = {"unit": "epochs", "value": 2, "mode": "linear"}
    assert sch.rate_plan(t, 50)["warmup_images"] == 100
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
    plan = sch.rate_plan(TRAIN, 50)
    assert sch.lr_at(plan, 1.0, 0) == 0.25 and sch.lr_at(plan, 1.0, 3) == 1.0
    no_warmup = sch.rate_plan({**TRAIN, "warmup": {"unit": "images", "value": 0, "mode": "linear"}}, 50)
    assert sch.lr_at(no_warmup, 1.0, 0) == 1.0


def _decay_plan(decay, rampup, batch=512):
    t = {**TRAIN, "batch": batch, "ema": {"mode": "decay", "decay": decay, "rampup": rampup}}
    return sch.rate_plan(t, 1000)


def test_ema_beta():
    # The paper's per-step decay at batch 512 is EDM's 500k-image half-life.
    hl = 512 * math.log(0.5) / math.log(0.99929)
    assert 495_000 < hl < 505_000
    assert sch.ema_beta(_decay_plan(0.99929, None), 0) == pytest.approx(0.99929)
    assert sch.ema_beta(_decay_plan(0.99929, 0.05), 0) == 0.0  # ramp-up: first EMA = raw weights
    assert sch.ema_beta(_decay_plan(0.99929, 0.05), 1_000_000 // 512) == pytest.approx(0.5 ** (512 / 5e4), rel=1e-3)
    assert sch.ema_beta(_decay_plan(0.99929, 0.05), 1953) == pytest.approx(0.5 ** (512 / (0.05 * 1953 * 512)))
    assert sch.ema_beta(_decay_plan(0.0, 0.05), 10**6) == 0.0
    assert sch.ema_beta(_decay_plan(1.0, None), 10**6) == 1.0
    assert sch.ema_halflife_images(0.5, 512) == pytest.approx(512)
    assert sch.ema_halflife_images(0.0, 512) == 0.0 and sch.ema_halflife_images(1.0, 512) == math.inf


# ---------------------------------------------------------------------------------------------------
# The paper's released code (sail-sg/DiffMemorize), its formulas written out independently of diffmem:
# train.py sets ema_halflife_kimg = int(0.5 * N / 50), lr_rampup_kimg = int(N / 5), data_ratio = 50000 / N;
# training_loop.py, with cur_nimg the images seen before the step:
#   lr = lr0 * min(cur_nimg / max(lr_rampup_kimg * 1000, 1e-8), 1)
#   h = min(ema_halflife_kimg * 1000, cur_nimg * 0.05)
#   mode2: beta = 0.5 ** (512 / max(h, 1e-8) / data_ratio)
#   mode4: beta = final_ema / 0.5 ** (batch / 500 / 1000) * 0.5 ** (batch / max(h, 1e-8) / data_ratio)


def official_lr(k, n_data, batch, lr0=2e-4):
    cur_nimg = k * batch
    return lr0 * min(cur_nimg / max(int(n_data / 5) * 1000, 1e-8), 1)


def official_beta(k, n_data, batch, mode="mode2", final_ema=0.99929):
    cur_nimg = k * batch
    h = min(int(0.5 * n_data / 50) * 1000, cur_nimg * 0.05)
    ratio = 50000 / n_data
    if mode == "mode2":
        return 0.5 ** (512 / max(h, 1e-8) / ratio)
    return final_ema / 0.5 ** (batch / 500 / 1000) * 0.5 ** (batch / max(h, 1e-8) / ratio)


def paper_train(batch=512, ema_mode="official", decay=0.99929, truncate=True, warmup_mode="official"):
    """The train block of config/paper.yaml's basic setup (the EMA sweep sets mode official_final)."""
    return {
        "batch": batch,
        "lr": 2e-4,
        "duration": {"unit": "epochs", "value": 40000},
        "warmup": {"unit": "epochs", "value": 200, "mode": warmup_mode},
        "ema": {"mode": ema_mode, "decay": decay, "rampup": 0.05},
        "truncate_kimg": truncate,
        "snapshots": {"every": {"unit": "images", "value": 2_500_000}},
    }


STEPS = [0, 1, 2, 7, 97, 390, 391, 392, 1000, 4882, 10**4, 78_124]


@pytest.mark.parametrize("n_data", [10, 90, 100, 150, 1000, 1234, 5000, 50_000])
@pytest.mark.parametrize("batch", [128, 512, 896])
def test_official_schedule_equals_the_released_codes_formulas(n_data, batch):
    rows = sch.schedule_rows(paper_train(batch), n_data, [k for k in STEPS if k * batch < 40000 * n_data])
    for row in rows:
        k = row["step"]
        assert row["images"] == k * batch
        assert row["lr"] == pytest.approx(official_lr(k, n_data, batch), rel=1e-12, abs=1e-300)
        assert row["ema_beta"] == pytest.approx(official_beta(k, n_data, batch), rel=1e-12, abs=1e-300)
    final = sch.schedule_rows(paper_train(batch, "official_final", 0.5), n_data, [k for k in STEPS if k < 40])
    for row in final:
        assert row["ema_beta"] == pytest.approx(official_beta(row["step"], n_data, batch, "mode4", 0.5), abs=1e-15)


def test_official_known_answers():
    rows = {r["step"]: r for r in sch.schedule_rows(paper_train(), 1000, [0, 1, 195, 390, 391, 4882, 78_124])}
    assert rows[0]["lr"] == 0.0 and rows[0]["ema_beta"] == 0.0  # the first step: lr 0, EMA = raw weights
    assert rows[1]["lr"] == pytest.approx(2e-4 * 512 / 200_000)  # warm-up: int(1000/5) = 200 kimg
    # half-life min(10 kimg, 0.05 n) x 50: 0.05 x 195 x 512 x 50 images after 195 steps, 500k after the ramp
    assert rows[195]["ema_halflife_images"] == pytest.approx(0.05 * 195 * 512 * 50)
    assert rows[390]["ema_halflife_images"] == pytest.approx(0.05 * 390 * 512 * 50)  # 199,680 images seen
    assert rows[391]["ema_halflife_images"] == pytest.approx(500_000)  # ramp over after 200 epochs of |D|
    assert rows[4882]["ema_halflife_images"] == pytest.approx(500_000) and rows[4882]["lr"] == 2e-4
    # int() truncates H to whole kimg: |D| = 150 -> 1 kimg x 50000/150 = 333,333 images; |D| < 100: no EMA
    assert sch.schedule_rows(paper_train(), 150, [10_000])[0]["ema_halflife_images"] == pytest.approx(1e8 / 300)
    assert {r["ema_beta"] for r in sch.schedule_rows(paper_train(), 90, [0, 1, 100, 7000])} == {0.0}
    exact = sch.schedule_rows(paper_train(truncate=False), 90, [7000])[0]
    assert exact["ema_halflife_images"] == pytest.approx(500_000)
    assert sch.rate_plan(paper_train(), 1234)["warmup_images"] == 246_000  # int(246.8) kimg
    assert sch.rate_plan(paper_train(truncate=False), 1234)["warmup_images"] == pytest.approx(246_800)
    # mode2's literal 512: at batch 128 a step's beta is the batch-512 one, a quarter of the half-life in images
    assert sch.schedule_rows(paper_train(128), 1000, [10**5])[0]["ema_halflife_images"] == pytest.approx(125_000)
    # mode4 ends at the final EMA
    assert sch.schedule_rows(paper_train(ema_mode="official_final", decay=0.5), 1000, [10**4])[0][
        "ema_beta"
    ] == pytest.approx(0.5)
    assert sch.schedule_rows(paper_train(ema_mode="official_final", decay=0.0), 1000, [10**4])[0]["ema_beta"] == 0


def mean_ema_age(train_cfg, n_data, upto_images):
    """Mean age (images) of the weights the EMA averages, after ``upto_images`` images."""
    plan = sch.rate_plan(train_cfg, n_data)
    age = 0.0
    for k in range(math.ceil(upto_images / plan["batch"])):
        age = sch.ema_beta(plan, k) * (age + plan["batch"])
    return age


def test_official_and_our_ema_differ_early_at_1000_images():
    # the numbers: at |D| = 1,000 after 2.5M images, mean EMA age 698k (official) vs 168k (ours)
    official = mean_ema_age(paper_train(), 1000, 2_500_000)
    ours = mean_ema_age(paper_train(ema_mode="decay", warmup_mode="linear"), 1000, 2_500_000)
    assert official == pytest.approx(698_000, rel=2e-3) and ours == pytest.approx(168_000, rel=2e-3)


def test_schedule_needs_its_settings():
    t = paper_train()
    with pytest.raises(ValueError, match=r"train\.ema\.mode is not set"):
        sch.rate_plan({**t, "ema": {"decay": 0.9, "rampup": 0.05}}, 100)
    with pytest.raises(ValueError, match=r"train\.warmup\.mode: expected one of linear, official"):
        sch.rate_plan({**t, "warmup": {"unit": "epochs", "value": 1, "mode": "cosine"}}, 100)
    with pytest.raises(ValueError, match="outside the run"):
        sch.schedule_rows(t, 10, [400_000])


PAPER = str(Path(__file__).resolve().parents[2] / "config" / "paper.yaml")


def test_schedule_command_prints_the_loops_schedule(capsys):
    import json

    from diffmem.__main__ import main

    assert (
        main(["schedule", "--configfile", PAPER, "--experiment", "basic", "--size", "1000", "--steps", "0,1,391"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in rows] == [0, 1, 391] and [r["images"] for r in rows] == [0, 512, 391 * 512]
    for r in rows:
        assert r["lr"] == pytest.approx(official_lr(r["step"], 1000, 512), abs=1e-300)
        assert r["ema_beta"] == pytest.approx(official_beta(r["step"], 1000, 512), abs=1e-300)
    assert rows[2]["ema_halflife_images"] == pytest.approx(500_000)
    assert (
        main(
            [
                "schedule",
                "--configfile",
                PAPER,
                "--experiment",
                "ema",
                "--value",
                "0.5",
                "--size",
                "1000",
                "--steps",
                "10000",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["ema_beta"] == pytest.approx(0.5)
    with pytest.raises(SystemExit):
        main(["schedule", "--configfile", PAPER, "--experiment", "ema", "--size", "1000", "--steps", "0"])
    assert "has values 0.99929" in capsys.readouterr().err
