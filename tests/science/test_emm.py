"""The EMM search policy on synthetic memorization curves."""

import json
import math

import pytest

from diffmem.science import emm
from diffmem.science.emm import emm_step

ALLOWED = list(range(10, 1800, 10))  # multiples of 10 from 10 to 1790


def run_search(curve, allowed=ALLOWED, lo=10, hi=1790, max_rounds=20, json_round_trip=True, **kw):
    """Drive emm_step like the workflow does; returns (final result, rounds, all proposals)."""
    evaluated: dict = {}
    proposals = []
    for rounds in range(max_rounds):
        step = emm_step(evaluated, allowed, lo, hi, **kw)
        json.dumps(step)
        if json_round_trip:  # the workflow stores rounds as JSON: keys become strings
            evaluated = json.loads(json.dumps(evaluated))
        if step["done"]:
            assert step["next"] == []
            return step, rounds, proposals
        assert step["next"], "a search that is not done must propose sizes"
        for s in step["next"]:
            assert s in allowed and lo <= s <= hi
            assert s not in {int(k) for k in evaluated}, f"re-proposed evaluated size {s}"
            assert s not in proposals
        proposals.extend(step["next"])
        evaluated = {int(k): v for k, v in evaluated.items()}
        evaluated.update({s: curve(s) for s in step["next"]})
    raise AssertionError(f"no termination in {max_rounds} rounds")


def step_curve(emm):
    return lambda s: 1.0 if s <= emm else 0.0


def test_round0_proposes_lo_hi_and_interior():
    step = emm_step({}, ALLOWED, 10, 1790)
    assert step["status"] == "searching" and not step["done"]
    assert step["next"] == [10, 130, 1790]  # sqrt(10 * 1790) ~ 134 -> 130
    assert emm_step({}, ALLOWED, 10, 1790, per_round=1)["next"] == [10, 1790]
    assert len(emm_step({}, ALLOWED, 10, 1790, per_round=6)["next"]) == 6


def test_finds_step_at_137():
    final, rounds, props = run_search(step_curve(137))
    assert final["status"] == "found" and not final["non_monotone"]
    a, b = final["bracket"]
    assert a < 137 <= b and b / a <= 1.25
    assert final["emm"] == a == 130
    assert rounds <= 5
    assert len(props) <= 15
    assert final["evaluated"][0][:1] == [10]


@pytest.mark.parametrize("emm", [10, 14, 55, 137, 999, 1780])
@pytest.mark.parametrize("per_round", [1, 2, 3, 5])
def test_brackets_many_curves(emm, per_round):
    def curve(s):  # smooth decreasing ratio crossing 0.9 at emm
        return 1 / (1 + math.exp(8 * (math.log(s) - math.log(emm)))) * 0.9 / 0.5

    final, rounds, _ = run_search(curve, per_round=per_round, threshold=0.9, tolerance=0.1)
    allowed_emm = max([s for s in ALLOWED if curve(s) >= 0.9], default=None)
    if allowed_emm is None:
        assert final["status"] == "below_lo"
        return
    assert final["status"] == "found", final
    a, b = final["bracket"]
    assert a <= allowed_emm < b and curve(a) >= 0.9 > curve(b)
    assert b / a <= 1.1 or not [s for s in ALLOWED if a < s < b]
    assert rounds <= 12


def test_below_lo_and_above_hi():
    final, rounds, _ = run_search(step_curve(5))
    assert final["status"] == "below_lo" and final["done"] and final["emm"] is None
    assert final["bracket"] is None and final["upper"] == 10 and final["lower"] is None
    assert rounds == 1
    final, rounds, _ = run_search(step_curve(5000))
    assert final["status"] == "above_hi" and final["lower"] == 1790 and final["upper"] is None
    assert final["emm"] is None and rounds == 1


def test_non_monotone_is_flagged_and_terminates():
    # passes up to 137, fails 138..400, passes again 401..900, fails above.
    def curve(s):
        return 1.0 if s <= 137 or 400 < s <= 900 else 0.0

    final, _, _ = run_search(curve, per_round=3)
    # The first interior points may land in the second passing band; whether they do, the
    # search must end with a valid bracket of a passing and a failing size.
    a, b = final["bracket"]
    assert final["status"] == "found" and curve(a) == 1.0 and curve(b) == 0.0
    # Force the contradiction to be visible: an evaluated passing size above the smallest failure.
    step = emm_step({10: 1.0, 200: 0.0, 500: 0.95, 1790: 0.0}, ALLOWED, 10, 1790)
    assert step["non_monotone"] and any("non-monotone" in n for n in step["notes"])
    assert step["bracket"] == [10, 200] and not step["done"]
    assert all(10 < s < 200 for s in step["next"])
    final, _, _ = run_search(lambda s: 1.0 if s <= 137 or s == 500 else 0.0)
    assert final["status"] == "found"
    # lo fails but a larger size passes.
    step = emm_step({10: 0.2, 130: 0.95, 1790: 0.0}, ALLOWED, 10, 1790)
    assert step["status"] == "below_lo" and step["non_monotone"]


def test_stops_when_no_allowed_size_between():
    allowed = [10, 20, 40, 80, 160]
    step = emm_step({10: 1.0, 40: 1.0, 80: 0.0, 160: 0.0}, allowed, 10, 160, tolerance=0.01)
    assert step["status"] == "found" and step["bracket"] == [40, 80] and step["emm"] == 40
    assert any("no allowed size" in n for n in step["notes"])


def test_lo_hi_snapping_and_errors():
    step = emm_step({}, ALLOWED, 15, 1000)
    assert step["lo"] == 20 and step["hi"] == 1000 and step["next"][0] == 20 and step["next"][-1] == 1000
    with pytest.raises(ValueError, match="no allowed size"):
        emm_step({}, ALLOWED, 11, 19)
    with pytest.raises(ValueError, match="threshold"):
        emm_step({}, ALLOWED, 10, 100, threshold=1.5)
    with pytest.raises(ValueError, match="per_round"):
        emm_step({}, ALLOWED, 10, 100, per_round=0)
    # A single allowed size in range.
    assert emm_step({}, ALLOWED, 11, 29)["next"] == [20]
    assert emm_step({20: 1.0}, ALLOWED, 11, 29)["status"] == "above_hi"
    assert emm_step({20: 0.0}, ALLOWED, 11, 29)["status"] == "below_lo"


def test_missing_endpoint_is_proposed_and_outside_sizes_noted():
    step = emm_step({10: 1.0, 5000: 0.0}, ALLOWED, 10, 1790)
    assert 1790 in step["next"] and 10 not in step["next"] and not step["done"]
    assert any("outside" in n for n in step["notes"])
    assert [10, 1.0, True] in step["evaluated"]


def test_passes_is_the_one_verdict():
    assert emm.passes(0.9, 0.9) and emm.passes(1.0, 0.9) and not emm.passes(0.8999, 0.9)
    step = emm_step({10: 0.9, 20: 0.89}, [10, 20], 10, 20, threshold=0.9)
    assert [p for _, _, p in step["evaluated"]] == [emm.passes(0.9, 0.9), emm.passes(0.89, 0.9)] == [True, False]


def test_bounds_of_every_status():
    found = emm_step({10: 1.0, 20: 1.0, 30: 0.1}, [10, 20, 30], 10, 30)
    assert found["status"] == "found" and emm.bounds(found) == (20, 30)
    below = emm_step({10: 0.5, 30: 0.1}, [10, 20, 30], 10, 30)
    assert below["status"] == "below_lo" and emm.bounds(below) == (None, 10)
    above = emm_step({10: 1.0, 30: 0.95}, [10, 20, 30], 10, 30)
    assert above["status"] == "above_hi" and emm.bounds(above) == (30, None)
    searching = emm_step({10: 1.0, 1000: 0.0}, list(range(10, 1001, 10)), 10, 1000)
    assert searching["status"] == "searching" and emm.bounds(searching) == (10, 1000)
    assert emm.bounds(emm_step({}, [10, 20], 10, 20)) == (None, None)
    # a file written before lower/upper existed: read from status, lo/hi and bracket
    assert emm.bounds({"status": "below_lo", "lo": 10, "bracket": None}) == (None, 10)
    assert emm.bounds({"status": "above_hi", "hi": 40, "bracket": None}) == (40, None)
    assert emm.bounds({"status": "found", "bracket": [20, 30]}) == (20, 30)


def test_from_ratios_reads_listed_sizes_like_the_search():
    assert emm.bounds(emm.from_ratios({10: 1.0, 20: 0.95, 40: 0.5, 80: 0.1}, 0.9)) == (20, 40)
    assert emm.bounds(emm.from_ratios({"10": 0.5, "20": 0.1}, 0.9)) == (None, 10)
    res = emm.from_ratios({10: 1.0, 20: 0.5, 40: 0.95, 80: 0.1}, 0.9)
    assert emm.bounds(res) == (10, 20) and res["non_monotone"]
    with pytest.raises(ValueError, match="emm.from_ratios: no evaluated sizes"):
        emm.from_ratios({}, 0.9)


def test_start_measures_the_fixed_grid_first_then_refines_its_bracket():
    """``start``: round 0 is exactly the grid (the paper's panel sizes); later rounds search only inside the
    bracket the grid leaves, and end at the same EMM as a search without it."""
    allowed = list(range(100, 20001, 100))
    grid = [500, 1000, 2000, 4000, 8000]

    def ratio(s):
        return 1.0 if s <= 1700 else 0.2

    ev: dict[int, float] = {}
    rounds = []
    while True:
        st = emm_step(ev, allowed, 500, 8000, threshold=0.9, tolerance=0.1, per_round=3, start=grid)
        if st["done"]:
            break
        rounds.append(st["next"])
        ev.update({s: ratio(s) for s in st["next"]})
    assert rounds[0] == grid
    assert all(1000 < s < 2000 for r in rounds[1:] for s in r)  # inside the grid's bracket [1000, 2000)
    assert st["status"] == "found" and st["emm"] == 1700 and st["bracket"] == [1700, 1800]
    plain = {}
    while not (p := emm_step(plain, allowed, 500, 8000, threshold=0.9, tolerance=0.1, per_round=3))["done"]:
        plain.update({s: ratio(s) for s in p["next"]})
    assert p["emm"] == st["emm"]


def test_start_that_decides_at_an_end_stops_at_once():
    grid = [10, 20, 40]
    st = emm_step({10: 0.5, 20: 0.1, 40: 0.0}, [10, 20, 30, 40], 10, 40, start=grid)
    assert st["done"] and st["status"] == "below_lo"
    st = emm_step({10: 1.0, 20: 1.0}, [10, 20, 30, 40], 10, 40, start=grid)
    assert not st["done"] and st["next"] == [40]  # the grid's missing size, nothing else


def test_start_refuses_sizes_outside_or_without_the_ends():
    with pytest.raises(ValueError, match=r"emm.start: sizes \[50\]"):
        emm_step({}, [10, 20, 40], 10, 40, start=[10, 40, 50])
    with pytest.raises(ValueError, match="must hold the bracket's ends"):
        emm_step({}, [10, 20, 40], 10, 40, start=[10, 20])


# ------------------------------------------------------------------- the edges of a verdict and a stop
def test_a_ratio_at_exactly_the_threshold_passes():
    """ratio >= threshold passes: a size memorized at exactly 0.9 lies at or below the EMM."""
    assert emm.passes(0.9, 0.9) and not emm.passes(math.nextafter(0.9, 0), 0.9)
    st = emm_step({10: 0.9, 100: 0.9}, [10, 50, 100], 10, 100)
    assert st["done"] and st["status"] == "above_hi" and emm.bounds(st) == (100, None)
    st = emm_step({10: math.nextafter(0.9, 0), 100: 0.0}, [10, 50, 100], 10, 100)
    assert st["status"] == "below_lo" and emm.bounds(st) == (None, 10)


def test_the_search_stops_when_b_over_a_is_exactly_one_plus_tolerance():
    """b / a <= 1 + tolerance stops, equality included, though allowed sizes lie between: [20, 30) at
    tolerance 0.5 is found; at 0.49 the search goes on inside it."""
    every = list(range(1, 101))
    ev = {10: 1.0, 20: 1.0, 30: 0.0, 100: 0.0}
    st = emm_step(ev, every, 10, 100, tolerance=0.5)
    assert st["done"] and st["status"] == "found" and st["bracket"] == [20, 30] and st["emm"] == 20
    st = emm_step(ev, every, 10, 100, tolerance=0.49)
    assert not st["done"] and st["next"] and all(20 < s < 30 for s in st["next"])


def test_the_bracket_is_the_largest_pass_below_the_smallest_fail():
    """[a, b): b the smallest failing size, a the largest passing size below it (not the smallest)."""
    st = emm_step({10: 1.0, 40: 1.0, 60: 1.0, 80: 0.0, 90: 0.0, 100: 0.0}, list(range(10, 101, 10)), 10, 100,
                  tolerance=0.1)  # fmt: skip
    assert st["bracket"] == [60, 80] and st["next"] == [70]
    assert emm.bounds(st) == (60, 80)
