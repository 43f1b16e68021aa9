"""The tie rule (score.ties): a sample at distance 0 from two exact duplicates in the training set has
d1 = d2 = 0. ``memorized`` (absent) counts it as memorized; ``released`` does not, as the paper's released
scoring, whose d1 / d2 < 1/3 is 0/0 = NaN there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from diffmem.plan import config as dmc
from diffmem.plan import identity
from diffmem.science import memorization as mem

ROOT = Path(__file__).resolve().parents[2]


def images(*values: int) -> np.ndarray:
    """One 2x2 RGB uint8 image per value, every pixel that value."""
    return np.stack([np.full((3, 2, 2), v, dtype=np.uint8) for v in values])


# training set: 10 twice (an exact duplicate), 100 and 200 once
TRAIN = images(10, 10, 100, 200)
# samples: a copy of the duplicated image, a copy of a unique one, one near it, one between two images
SAMPLES = images(10, 100, 101, 150)


def test_known_answers_with_exact_duplicates():
    base = mem.score(SAMPLES, TRAIN)
    released = mem.score(SAMPLES, TRAIN, ties="released")
    assert base["d1"].tolist() == [0, 0, np.sqrt(12), np.sqrt(12 * 50**2)]
    assert base["d2"][0] == 0  # the duplicate: d1 = d2 = 0
    # d1/d2: 0/0, 0/(90 sqrt 12), 1/91, 50/50
    assert base["memorized"].tolist() == [True, True, True, False]
    assert released["memorized"].tolist() == [False, True, True, False]
    assert (base["n_memorized"], released["n_memorized"]) == (3, 2)
    assert (base["ratio"], released["ratio"]) == (0.75, 0.5)
    assert mem.score(SAMPLES, TRAIN, ties="memorized")["ratio"] == 0.75  # spelled out = absent


def test_ties_on_distances():
    dist = np.array([[0.0, 0.0], [0.0, 5.0], [1.0, 3.0], [0.9, 3.0], [2.0, 2.0]])
    assert mem.memorized(dist).tolist() == [True, True, False, True, False]
    assert mem.memorized(dist, ties="released").tolist() == [False, True, False, True, False]
    assert mem.memorization_ratio(dist, ties="released") == pytest.approx(2 / 5)
    assert mem.memorization_ratio(dist) == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="score.ties"):
        mem.memorized(dist, ties="nan")


def test_ties_are_in_the_score_id_only_when_released():
    ids = {t: identity.score_id({"score": {"threshold": 1 / 3, **({"ties": t} if t else {})}}) for t in
           (None, "memorized", "released")}  # fmt: skip
    assert ids[None] == ids["memorized"] != ids["released"]
    assert identity.score_identity({"score": {"threshold": 0.5, "ties": "memorized"}}) == {"threshold": 0.5}


def test_paper_preset_scores_as_the_released_code():
    cfg = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    assert cfg["base"]["score"]["ties"] == "released"
    plan = dmc.expand(dmc.load_config([str(ROOT / "config" / "paper.yaml")]))
    assert {v.settings["score"].get("ties") for values in plan.values() for v in values} == {"released"}
    for name in ("config.yaml", "smoke.yaml", "extended.yaml", "rehearsal.yaml"):
        assert "ties" not in (ROOT / "config" / name).read_text(), name  # the CPU configs keep ours


def test_the_defaults_agree():
    """The value each new key's absence means is the one identity leaves out of ids."""
    from diffmem.science import schedule

    assert identity.DEFAULT_OMITTED["score"] == {("ties",): mem.TIE_RULES[0]}
    assert identity.DEFAULT_OMITTED["train"] == {("snapshots", "timing"): schedule.SNAPSHOT_TIMINGS[0]}
