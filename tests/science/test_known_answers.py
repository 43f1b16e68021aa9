"""Known answers, worked out by hand or by an independent implementation, at the places where a small slip
in the code still gives plausible numbers: a strict or a loose inequality, a step counted from 0 or 1, a
factor that doubles or grows by one. Each test names the answer it holds the code to.

(Seeded by hand into the code, each slip below passed the suite before these tests: the d1/d2 comparison at
exactly the threshold, the score's threshold, the Wilson interval's denominator, the linear warm-up's first
step, the EMA ramp's images seen, evenly spaced snapshots, the latest best snapshot, retries that double,
subsets that nest at every size, the EMM search's stop at b/a = 1 + tolerance.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diffmem import data
from diffmem.plan import resources as dmr
from diffmem.plan.expand import expand
from diffmem.plan.load import load_config
from diffmem.plan.records import run_settings
from diffmem.science import memorization as mem
from diffmem.science import schedule as sch

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------- memorization


def test_d1_over_d2_at_exactly_the_threshold_is_not_memorized():
    """memorized: d1 / d2 < threshold, strictly (d1 = 1, d2 = 3 at 1/3 is not; a hair below is)."""
    dist = np.array([[1.0, 3.0], [0.999999, 3.0], [1.000001, 3.0], [0.0, 5.0], [2.0, 6.0], [0.5, 1.0]])
    assert mem.memorized(dist, 1 / 3).tolist() == [False, True, False, True, False, False]
    assert mem.memorized(dist, 0.5).tolist() == [True, True, True, True, True, False]  # 0.5 / 1 is not < 0.5
    assert mem.memorization_ratio(dist, 1 / 3) == pytest.approx(2 / 6)


def test_exact_duplicates_count_by_the_tie_rule():
    """d1 = d2 = 0 (a copy of two identical training images): memorized, unless the released rule (0/0)."""
    dist = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    assert mem.memorized(dist, 1 / 3).tolist() == [True, True, False]
    assert mem.memorized(dist, 1 / 3, "memorized").tolist() == [True, True, False]
    assert mem.memorized(dist, 1 / 3, "released").tolist() == [False, True, False]


def test_score_uses_the_threshold_it_is_given():
    """One sample at d1 = 4, d2 = 10 (ratio 0.4): memorized at threshold 0.5, not at 1/3 or 0.4."""
    train = np.array([[[[0, 0]]], [[[14, 0]]]], dtype=np.uint8)  # two 1x2 images
    sample = np.array([[[[4, 0]]]], dtype=np.uint8)  # 4 from image 0, 10 from image 1
    got = {t: mem.score(sample, train, threshold=t)["n_memorized"] for t in (1 / 3, 0.4, 0.41, 0.5)}
    assert got == {1 / 3: 0, 0.4: 0, 0.41: 1, 0.5: 1}
    out = mem.score(sample, train, threshold=0.5)
    assert out["threshold"] == 0.5 and out["d1"].tolist() == [4.0] and out["d2"].tolist() == [10.0]


@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
@pytest.mark.parametrize("n", [1, 7, 10, 263, 10_000])
def test_wilson_interval_matches_scipy(n, level):
    """scipy's own Wilson score interval (scipy.stats.binomtest), at every k of small n and a spread of k."""
    from scipy.stats import binomtest

    for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
        want = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
        assert mem.binomial_ci(k, n, level) == pytest.approx((want.low, want.high), abs=1e-12), (k, n)


def test_the_best_snapshot_is_the_latest_of_the_highest():
    assert mem.best_snapshot([0.5, 0.7, 0.7, 0.2]) == 2
    assert mem.best_snapshot([0.1, 0.1, 0.1]) == 2
    assert mem.best_snapshot([0.9, 0.1, 0.1]) == 0
    assert mem.best_snapshot(np.array([0.0, 1.0, 1.0, 1.0])) == 3


# -------------------------------------------------------------------------------------------- schedule
def _rates(batch=100, warmup=1000, mode="linear", ema=None, n=500):
    train = {
        "batch": batch,
        "warmup": {"unit": "images", "value": warmup, "mode": mode},
        "ema": ema or {"mode": "decay", "decay": 0.999, "rampup": 0.05},
        "truncate_kimg": True,
    }
    return sch.rate_plan(train, n)


def test_linear_warm_up_counts_the_images_after_the_step():
    """Warm-up over 1,000 images at batch 100: step k (0-based) has lr x (k + 1) / 10, full from step 9."""
    plan = _rates()
    assert [sch.lr_at(plan, 2.0, k) for k in range(12)] == pytest.approx(
        [0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0, 2.0]
    )
    assert sch.lr_at(_rates(warmup=0), 2.0, 0) == 2.0  # no warm-up: full from the first step


def test_official_warm_up_counts_the_images_before_the_step():
    """The released code: lr x min(1, images seen before the step / warm-up in whole kimg): 0 at step 0;
    a 1,999-image warm-up is 1,000 images (int kimg)."""
    plan = _rates(mode="official")
    assert [sch.lr_at(plan, 2.0, k) for k in range(12)] == pytest.approx(
        [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.0]
    )
    assert sch.lr_at(_rates(warmup=1999, mode="official"), 2.0, 5) == pytest.approx(1.0)


def test_ema_ramp_counts_the_images_seen_before_the_step():
    """decay mode, rampup 0.05: the half-life is min(H, 0.05 x images seen before the step), so after step
    k the EMA keeps 0.5^(1 / (0.05 k)) of itself: 0 at step 0, 0.5 at step 20, 0.5^0.5 at step 40; then the
    decay's own half-life (0.999 per step) caps it."""
    plan = _rates()
    assert sch.ema_beta(plan, 0) == pytest.approx(0.0, abs=1e-12)
    assert sch.ema_beta(plan, 20) == pytest.approx(0.5)
    assert sch.ema_beta(plan, 40) == pytest.approx(0.5**0.5)
    assert sch.ema_beta(plan, 10**6) == pytest.approx(0.999)


@pytest.mark.parametrize(
    ("count", "steps", "want"),
    [(4, 10, [2, 5, 7, 10]), (4, 100, [25, 50, 75, 100]), (3, 7, [2, 4, 7]), (5, 3, [1, 2, 3]), (1, 9, [9])],
)
def test_evenly_spaced_snapshots_end_at_the_last_step(count, steps, want):
    """k-th of n snapshots at floor(steps x k / n), never 0, the last one at the last step."""
    assert sch.snapshot_steps(count, steps) == want


def test_official_snapshots_skip_the_first_tick():
    """A snapshot every 2.5M images at batch 512: ticks of ceil(50000 / 512) = 98 steps, every 50 ticks after
    a first tick of one step; the scoring skips the first file: first at step 4,901, then every 4,900."""
    assert sch.official_snapshot_steps(2_500_000, 512, 20_000) == [4901, 9801, 14701, 19601, 20000]


# ----------------------------------------------------------------------------------- retries of a job
@pytest.mark.parametrize("attempt", [1, 2, 3, 4])
def test_a_retry_doubles_time_and_memory(attempt):
    """Attempt a asks for 2^(a - 1) x the first attempt's time (beyond start-up) and memory."""
    cfg = {"compute": {"max_runtime": 10**6}}
    est = 3600.0
    first = dmr.budget_min(est, cfg, 1) - dmr.STARTUP_MIN
    assert dmr.budget_min(est, cfg, attempt) - dmr.STARTUP_MIN == pytest.approx(first * 2 ** (attempt - 1), abs=1)
    cfg = load_config([str(ROOT / "config" / "smoke.yaml")])
    settings = run_settings(expand(cfg)["basic"][0].settings, 100)
    gpu = {**cfg, "gpu": True, "compute": {**cfg["compute"], "device": "h200"}}
    for mb in (
        lambda a: dmr.train_mem_mb(settings, gpu, a),
        lambda a: dmr.sample_mem_mb(settings, gpu, 4, a),
        lambda a: dmr.score_mem_mb(settings, gpu, 4, a),
    ):
        assert mb(attempt) == pytest.approx(mb(1) * 2 ** (attempt - 1), abs=2 ** (attempt - 1))  # int() of each


# ---------------------------------------------------------------------------------------------- subsets
SPEC = {"source": "digits", "resolution": 8, "labels": "none", "seed": 0, "pick": "random", "resize": "area"}
NESTED = [
    {"source": "digits", "classes": 3, "seed": 0},
    {"source": "digits", "classes": 2, "seed": 7, "pick": "first"},
    {"source": "digits", "classes": 2, "seed": 1, "labels": "random", "label_classes": 3},
    {"source": "digits", "classes": 1, "blend": {"source": "fonts", "alpha": 0.3, "class": 4}},
    {"source": "digits", "classes": 1, "blend": {"source": "fonts", "alpha": 0.8, "class": 4, "rounding": "official"}},
]


@pytest.mark.parametrize("spec", NESTED, ids=lambda s: "-".join(f"{k}{v}" for k, v in s.items() if k != "blend"))
def test_every_subset_is_the_prefix_of_every_larger_one(spec):
    """The subset of size n is the first n images of the subset of size m > n (class-balanced sizes),
    image for image, with the same labels and the same source: nested at every size, not only at two."""
    spec = {**SPEC, **spec}
    sizes = data.allowed_sizes(spec)[:12]
    big = data.make_subset({**spec, "size": sizes[-1]})
    for n in sizes[:-1]:
        small = data.make_subset({**spec, "size": n})
        for key in ("images", "labels", "cond_labels", "source_index", "source_id"):
            assert np.array_equal(small[key], big[key][:n]), (n, key)


def test_a_subset_does_not_depend_on_its_size_but_on_its_seed():
    spec = {**SPEC, "classes": 2}
    a = data.make_subset({**spec, "size": 8})["source_index"]
    b = data.make_subset({**spec, "size": 16})["source_index"][:8]
    c = data.make_subset({**spec, "size": 8, "seed": 1})["source_index"]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_the_score_step_scores_at_the_configs_threshold(tmp_path):
    """score.threshold reaches the score step: samples at d1/d2 of 0, 1/9, 1/4, 3/7 and 2/3 from two flat
    training images (0 and 10): 3 of 5 memorized at 1/3, 4 at 0.5, all 5 at 0.7."""
    from diffmem.io import write_npz
    from diffmem.steps.score import score_run

    train = np.stack([np.full((1, 4, 4), v, np.uint8) for v in (0, 10)])
    samples = np.stack([np.full((1, 4, 4), v, np.uint8) for v in (0, 1, 2, 3, 4)])[None]  # one snapshot
    write_npz(tmp_path / "s.npz", samples=samples, snapshots=json.dumps([{"k": 0, "step": 1}]))
    got = {}
    for t in (1 / 3, 0.5, 0.7):
        settings = {"data": {"size": 2}, "score": {"threshold": t}}
        res = score_run(settings, {"images": train}, tmp_path / "s.npz", tmp_path / "m.json", tmp_path / "d.npz",
                        tmp_path / "nn.png", device="cpu")  # fmt: skip
        got[t] = (res["ratio"], res["threshold"], json.loads((tmp_path / "m.json").read_text())["threshold"])
    assert got == {1 / 3: (3 / 5, 1 / 3, 1 / 3), 0.5: (4 / 5, 0.5, 0.5), 0.7: (1.0, 0.7, 0.7)}


def test_an_emm_bracket_at_exactly_one_plus_tolerance_is_found():
    """[100, 125) at tolerance 0.25: found, by the tolerance (sizes 105..120 lie between), EMM 100."""
    from diffmem.science.emm import emm_step

    st = emm_step({100: 0.95, 125: 0.5}, list(range(100, 126, 5)), 100, 125, tolerance=0.25)
    assert st["status"] == "found" and st["emm"] == 100 and st["next"] == []
    assert st["notes"][-1] == "EMM in [100, 125): b/a = 1.25 <= 1 + tolerance"
