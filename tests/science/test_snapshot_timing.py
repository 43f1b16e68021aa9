"""Snapshot timing (train.snapshots.timing): ``official`` takes the snapshots the paper's released training
loop takes and its scoring tool scores; ``images`` (absent) keeps ours. The known answers come from a
step-by-step replay of the released loop's tick rule written here, and from numbers worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from diffmem.plan import config as dmc
from diffmem.plan import identity
from diffmem.science import schedule as sch

ROOT = Path(__file__).resolve().parents[2]
EVERY = {"unit": "images", "value": 2_500_000}


def released_scored_steps(batch: int, total_images: int, kimg_per_tick: int = 50, snapshot_ticks: int = 50):
    """Replay of the released loop, one step at a time: a tick ends once the images seen reach the tick's
    start + kimg_per_tick (the very first tick ends after one step) or training is done; a snapshot is saved
    at every snapshot_ticks-th tick (tick 0 included) and at the end, named by the kimg seen (a name saved
    twice keeps the later file); the scoring tool sorts the names and skips the first."""
    nimg, tick, tick_start, step, files = 0, 0, 0, 0, {}
    while True:
        step += 1
        nimg += batch
        done = nimg >= total_images
        if not done and tick != 0 and nimg < tick_start + kimg_per_tick * 1000:
            continue
        if done or tick % snapshot_ticks == 0:
            files[f"network-snapshot-{nimg // 1000:06d}.pkl"] = step
        tick += 1
        tick_start = nimg
        if done:
            return [files[name] for name in sorted(files)][1:]


def train_cfg(batch: int, timing: str | None = "official", every=EVERY, epochs: float = 40_000) -> dict:
    snapshots = {"every": every} if timing is None else {"every": every, "timing": timing}
    return {"batch": batch, "duration": {"unit": "epochs", "value": epochs}, "snapshots": snapshots}


@pytest.mark.parametrize("n_data", [500, 1000, 1234])
@pytest.mark.parametrize("batch", [128, 512, 896])
def test_official_timing_is_the_released_loops(batch, n_data):
    plan = sch.training_plan(train_cfg(batch), n_data)
    assert plan["steps"] == math.ceil(40_000 * n_data / batch)  # the loop runs until 40k epochs are reached
    assert plan["snapshot_steps"] == released_scored_steps(batch, 40_000 * n_data)


@pytest.mark.parametrize("batch", [100, 128, 512, 896])
def test_official_timing_at_other_intervals_and_ends(batch):
    """Two ticks per snapshot, and runs ending just after a snapshot (same kimg name: the end replaces it)."""
    for total in (50_500, 100_100, 250_000, 300_050, 1_000_000):
        t = {"batch": batch, "duration": {"unit": "images", "value": total}}
        for ticks in (1, 2, 3):
            t["snapshots"] = {"every": {"unit": "images", "value": ticks * 50_000}, "timing": "official"}
            want = released_scored_steps(batch, total, snapshot_ticks=ticks)
            assert sch.training_plan(t, 1000)["snapshot_steps"] == want, (batch, total, ticks)


def test_official_timing_known_answers():
    """Worked by hand: a tick is ceil(50000 / batch) steps after a first tick of one step, so the k-th snapshot
    scored is step 1 + 50 k ceil(50000 / batch); at |D| = 1,000 the run is ceil(4e7 / batch) steps."""
    steps = sch.training_plan(train_cfg(512), 1000)["snapshot_steps"]  # 98 steps a tick
    assert steps[:3] == [4_901, 9_801, 14_701] and steps[-2:] == [73_501, 78_125] and len(steps) == 16
    steps = sch.training_plan(train_cfg(128), 1000)["snapshot_steps"]  # 391 steps a tick
    assert steps[:2] == [19_551, 39_101] and steps[-2:] == [293_251, 312_500] and len(steps) == 16
    steps = sch.training_plan(train_cfg(896), 1000)["snapshot_steps"]  # 56 steps a tick
    assert steps[:2] == [2_801, 5_601] and steps[-2:] == [42_001, 44_643] and len(steps) == 16
    # ours (images, also when timing is absent): round(2.5M / batch) steps apart, 17 snapshots at 128 and 896
    ours = {b: sch.training_plan(train_cfg(b, None), 1000)["snapshot_steps"] for b in (128, 512, 896)}
    assert {b: len(s) for b, s in ours.items()} == {128: 17, 512: 16, 896: 17}
    assert ours[512][:2] == [4_883, 9_766] and ours[128][-2:] == [312_496, 312_500]
    assert sch.training_plan(train_cfg(512, "images"), 1000)["snapshot_steps"] == ours[512]
    # the end and the last tick snapshot share a kimg name: the released code keeps only the end's file
    short = {"batch": 100, "duration": {"unit": "images", "value": 50_500}}
    short["snapshots"] = {"every": {"unit": "images", "value": 50_000}, "timing": "official"}
    assert sch.training_plan(short, 1000)["snapshot_steps"] == [505]


def test_official_timing_refuses_what_the_released_loop_cannot_do():
    with pytest.raises(ValueError, match="multiple of 50000 images"):
        sch.training_plan(train_cfg(512, every={"unit": "images", "value": 2_520_000}), 1000)
    with pytest.raises(ValueError, match="no snapshot"):  # one step: only the tick-0 snapshot, never scored
        sch.training_plan({**train_cfg(512), "duration": {"unit": "steps", "value": 1}}, 1000)
    with pytest.raises(ValueError, match="train.snapshots.timing"):
        sch.training_plan(train_cfg(512, "ticks"), 1000)


def test_timing_is_in_the_run_id_only_when_official():
    base = dmc.expand(dmc.load_config([str(ROOT / "config" / "smoke.yaml")]))["basic"][0].settings
    runs = {}
    for timing in (None, "images", "official"):
        s = dmc.run_settings(base, 20)
        s["train"]["snapshots"] = {"every": {"unit": "images", "value": 100_000}}
        if timing:
            s["train"]["snapshots"]["timing"] = timing
        runs[timing] = (identity.train_id(s), identity.train_digest(s), identity.train_identity(s))
    assert runs[None][:2] == runs["images"][:2]  # spelled out, the old behaviour names the same folder
    assert "timing" not in runs["images"][2]["train"]["snapshots"]
    assert runs["official"][0] != runs[None][0]
    assert runs["official"][2]["train"]["snapshots"]["timing"] == "official"  # run.json says so
    assert identity.train_identity(runs["official"][2]) == runs["official"][2]  # identities map to themselves


def test_paper_preset_uses_the_official_timing():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    assert cfg["base"]["train"]["snapshots"] == {"every": EVERY, "timing": "official"}
    plan = dmc.expand(dmc.load_config([str(ROOT / "config" / "paper.yaml")]))
    s = dmc.run_settings(plan["basic"][0].settings, 1000)
    assert sch.training_plan(s["train"], 1000)["snapshot_steps"][0] == 4_901
    for name in ("config.yaml", "smoke.yaml", "extended.yaml", "rehearsal.yaml"):
        text = (ROOT / "config" / name).read_text()
        assert "timing" not in text, name  # the CPU configs keep ours
