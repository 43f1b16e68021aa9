"""The EMM search policy: which training-set sizes to evaluate next.

The effective model memorization EMM_eps of a training recipe is the largest training-set size
|D| whose memorization ratio is >= 1 - eps (``threshold`` = 0.9 for eps = 0.1). Memorization
falls as |D| grows, so the EMM is found by bracketing: a size that *passes* (ratio >= threshold)
lies at or below the EMM, a size that *fails* lies above it.

The search is a sequence of rounds. Each round trains and scores a few sizes (as many as there
are free slots, ``per_round``), then calls :func:`emm_step` with everything evaluated so far.
:func:`emm_step` is a pure function of its arguments (no files, no state), so the Snakemake
checkpoint of round k only has to read the verdicts of rounds < k and write its return value.

Policy (all positions are in log |D|, restricted to the ``allowed`` sizes, e.g. multiples of the
number of classes, inside [lo, hi], with lo and hi snapped inwards to allowed sizes):

1. Round 0 (nothing evaluated): propose lo, hi and ``per_round - 2`` log-spaced interior sizes
   (always at least lo and hi, so the first round already tells whether the EMM is inside).
2. If lo fails: done, status ``"below_lo"`` (EMM < lo). If hi passes: done, status
   ``"above_hi"`` (EMM >= hi). If lo or hi has not been evaluated yet (a hand-edited state),
   propose what is missing.
3. Otherwise bracket: b = the smallest failing size, a = the largest passing size below b, so
   the EMM lies in [a, b). Passing sizes above b contradict monotonicity: ``non_monotone`` is
   set and a note says which, but they are ignored, so the bracket still shrinks every round and
   the search terminates (each new size inside (a, b) either raises a or lowers b).
4. Stop with status ``"found"`` when b / a <= 1 + ``tolerance`` or no allowed size lies strictly
   between a and b; then ``emm`` = a. Otherwise propose up to ``per_round`` allowed sizes strictly
   inside (a, b), log-spaced, distinct and never evaluated before (k-ary search: the bracket
   shrinks by about a factor per_round + 1 in log size per round).

The returned dict is JSON-serializable:

- ``done`` (bool), ``status``: "searching" | "found" | "below_lo" | "above_hi"
- ``next``: sizes to evaluate in the next round ([] when done)
- ``bracket``: [a, b] (EMM in [a, b)) while searching or when found, else None
- ``lower`` / ``upper``: what is known about the EMM in all cases (EMM >= lower, EMM < upper;
  None where unknown): found -> a, b; below_lo -> None, lo; above_hi -> hi, None
- ``emm``: a when found, else None
- ``non_monotone`` (bool), ``notes`` (list of str)
- ``evaluated``: sorted [[size, ratio, passed], ...]
- ``lo``, ``hi`` (snapped), ``threshold``, ``tolerance``, ``per_round``
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any


def passes(ratio: float, threshold: float) -> bool:
    """The verdict on one training-set size: memorized at the EMM threshold (ratio >= 1 - eps).

    Every reader (the search, tables, figures, summaries) asks this function, so they agree.
    """
    return float(ratio) >= float(threshold)


def bounds(result: Mapping[str, Any]) -> tuple[int | None, int | None]:
    """(lower, upper) of the EMM that a search result states: lower <= EMM < upper, None where unknown.

    ``result``: what :func:`emm_step` returns, or a round / ``emm.json`` file of the workflow built
    from it. found or searching: the bracket; below_lo: (None, lo); above_hi: (hi, None). A result
    without ``lower``/``upper`` (written before they existed) is read from its status and bracket.
    """
    if "lower" in result or "upper" in result:
        lower, upper = result.get("lower"), result.get("upper")
    elif result.get("status") == "below_lo":
        lower, upper = None, result.get("lo")
    elif result.get("status") == "above_hi":
        lower, upper = result.get("hi"), None
    else:
        lower, upper = (result.get("bracket") or [None, None])[:2]
    return (None if lower is None else int(lower)), (None if upper is None else int(upper))


def bracket_text(lower: int | None, upper: int | None) -> str:
    """What is known about an EMM as text: ``[a, b)``, ``< b``, ``>= a`` or ``n/a`` (see :func:`bounds`)."""
    if lower is None and upper is None:
        return "n/a"
    if lower is None:
        return f"< {upper}"
    if upper is None:
        return f">= {lower}"
    return f"[{lower}, {upper})"


def from_ratios(ratios: Mapping[int, float], threshold: float) -> dict[str, Any]:
    """What the evaluated sizes alone say about the EMM (no search): :func:`emm_step` over exactly
    these sizes, with the smallest and largest as lo and hi. Read its :func:`bounds`."""
    sizes = sorted(int(s) for s in ratios)
    if not sizes:
        raise ValueError("emm.from_ratios: no evaluated sizes")
    return emm_step(ratios, sizes, sizes[0], sizes[-1], threshold=threshold, per_round=1)


def _log_spaced(candidates: Sequence[int], a: float, b: float, k: int) -> list[int]:
    """Up to k distinct candidates nearest (in log size) to k points log-evenly spaced in (a, b)."""
    pool = sorted(set(candidates))
    if k <= 0 or not pool:
        return []
    if len(pool) <= k:
        return pool
    la, lb = math.log(a), math.log(b)
    chosen: list[int] = []
    for j in range(1, k + 1):
        target = la + j * (lb - la) / (k + 1)
        best = min((c for c in pool if c not in chosen), key=lambda c: (abs(math.log(c) - target), c))
        chosen.append(best)
    return sorted(chosen)


def _checked(threshold: float, tolerance: float, per_round: int, allowed: Sequence[int], lo: int, hi: int) -> list[int]:
    """The allowed sizes inside [lo, hi] (sorted), after checking the search settings; ValueError naming the key."""
    if not 0 <= threshold <= 1:
        raise ValueError(f"emm.threshold: must lie in [0, 1], got {threshold}")
    if not tolerance > 0:
        raise ValueError(f"emm.tolerance: must be > 0, got {tolerance}")
    if int(per_round) < 1:
        raise ValueError(f"emm.per_round: must be >= 1, got {per_round}")
    sizes = sorted({int(s) for s in allowed})
    if not sizes or sizes[0] < 1:
        raise ValueError("emm: allowed sizes must be a non-empty list of positive integers")
    inside = [s for s in sizes if lo <= s <= hi]
    if not inside:
        raise ValueError(
            f"emm.lo/hi: no allowed size lies in [{lo}, {hi}] (allowed sizes run from {sizes[0]} to {sizes[-1]})"
        )
    return inside


def _ratios(evaluated: Mapping[int, float]) -> dict[int, float]:
    """{size: ratio} with int sizes (JSON keys are strings) and float ratios; ValueError on NaN."""
    ev: dict[int, float] = {}
    for s, r in evaluated.items():
        r = float(r)
        if math.isnan(r):
            raise ValueError(f"emm: ratio of size {s} is NaN")
        ev[int(s)] = r
    return ev


def _endpoints_decide(result: dict[str, Any], ev_in: dict[int, bool], lo_s: int, hi_s: int) -> bool:
    """Endpoint verdicts first: they decide whether the EMM lies inside [lo, hi] at all. Updates ``result``
    (done, below_lo / above_hi) and returns True when they decide the search."""
    threshold, notes = result["threshold"], result["notes"]
    lo_fails = lo_s in ev_in and not ev_in[lo_s]
    hi_passes = hi_s in ev_in and ev_in[hi_s]
    if not (lo_fails or hi_passes):
        return False
    if lo_fails and hi_passes:
        result["non_monotone"] = True
        notes.append(f"non-monotone: lo={lo_s} fails but hi={hi_s} passes; reporting below_lo")
    if lo_fails:
        late = sorted(s for s, p in ev_in.items() if p and s > lo_s)
        if late and not hi_passes:
            result["non_monotone"] = True
            notes.append(f"non-monotone: lo={lo_s} fails but larger sizes pass: {late}")
        result.update(done=True, status="below_lo", upper=lo_s)
        notes.append(f"memorization ratio < {threshold} already at lo={lo_s}: EMM < {lo_s}")
    else:
        result.update(done=True, status="above_hi", lower=hi_s)
        notes.append(f"memorization ratio >= {threshold} still at hi={hi_s}: EMM >= {hi_s}")
    return True


def _bracket(result: dict[str, Any], ev_in: dict[int, bool], interior) -> None:
    """lo passes and hi fails (so lo < hi): the bracket [a, b), and either done (found) or the next sizes."""
    notes = result["notes"]
    b = min(s for s, p in ev_in.items() if not p)
    a = max(s for s, p in ev_in.items() if p and s < b)
    above = sorted(s for s, p in ev_in.items() if p and s > b)
    if above:
        result["non_monotone"] = True
        notes.append(f"non-monotone: sizes {above} pass above the smallest failing size {b}; ignored")
    result.update(bracket=[a, b], lower=a, upper=b)
    between = interior(a, b, result["per_round"])
    if b / a <= 1 + result["tolerance"] or not between:
        close = b / a <= 1 + result["tolerance"]
        why = f"b/a = {b / a:.4g} <= 1 + tolerance" if close else "no allowed size strictly between a and b"
        result.update(done=True, status="found", emm=a)
        notes.append(f"EMM in [{a}, {b}): {why}")
        return
    result["next"] = between


def emm_step(
    evaluated: Mapping[int, float],
    allowed: Sequence[int],
    lo: int,
    hi: int,
    *,
    threshold: float = 0.9,
    tolerance: float = 0.3,
    per_round: int = 3,
    start: Sequence[int] | None = None,
) -> dict[str, Any]:
    """One round of the EMM search: what is known, and which sizes to evaluate next.

    ``evaluated``: {size: memorization ratio} of the sizes trained and scored so far (keys may be
    strings of ints, as after a JSON round trip). ``allowed``: the sizes that can be made.
    ``lo``, ``hi``: the search range (snapped inwards to allowed sizes; ValueError when no allowed
    size lies in [lo, hi]). ``threshold``: a size passes when its ratio >= threshold.
    ``tolerance``: stop when b / a <= 1 + tolerance. ``per_round``: sizes proposed per round.
    ``start``: the sizes of the first round instead of lo, hi and log-spaced ones between (a search that
    refines a fixed grid: the grid's sizes are measured first, then the bracket they leave is searched);
    each must be an allowed size in [lo, hi], and lo and hi must be among them.
    See the module docstring for the policy and the returned dict.
    """
    inside = _checked(threshold, tolerance, per_round, allowed, lo, hi)
    sizes = sorted({int(s) for s in allowed})
    lo_s, hi_s = inside[0], inside[-1]
    ev = _ratios(evaluated)
    passed = {s: passes(r, threshold) for s, r in ev.items()}
    notes: list[str] = []
    outside = sorted(s for s in ev if not lo_s <= s <= hi_s)
    if outside:
        notes.append(f"sizes outside [{lo_s}, {hi_s}] ignored: {outside}")
    ev_in = {s: passed[s] for s in ev if lo_s <= s <= hi_s}
    result: dict[str, Any] = {
        "done": False,
        "status": "searching",
        "next": [],
        "bracket": None,
        "lower": None,
        "upper": None,
        "emm": None,
        "non_monotone": False,
        "notes": notes,
        "evaluated": [[s, ev[s], passed[s]] for s in sorted(ev)],
        "lo": lo_s,
        "hi": hi_s,
        "threshold": float(threshold),
        "tolerance": float(tolerance),
        "per_round": int(per_round),
    }

    def interior(a: int, b: int, k: int) -> list[int]:
        i, j = bisect.bisect_right(sizes, a), bisect.bisect_left(sizes, b)
        return _log_spaced([s for s in sizes[i:j] if s not in ev], a, b, k)

    if _endpoints_decide(result, ev_in, lo_s, hi_s):
        return result
    first = _start_sizes(start, inside, lo_s, hi_s)
    missing = sorted({s for s in (first or [lo_s, hi_s]) if s not in ev_in})
    if missing:
        extra = [] if first else [s for s in interior(lo_s, hi_s, int(per_round) - len(missing)) if s not in missing]
        result["next"] = sorted(missing + extra)
        if lo_s == hi_s:
            notes.append(f"only one allowed size in range: {lo_s}")
        return result
    _bracket(result, ev_in, interior)
    return result


def _start_sizes(start: Sequence[int] | None, inside: list[int], lo_s: int, hi_s: int) -> list[int] | None:
    """The first round's sizes when ``start`` is given (checked: allowed, inside [lo, hi], holding both ends)."""
    if start is None:
        return None
    first = sorted({int(s) for s in start})
    bad = [s for s in first if s not in inside]
    if bad:
        raise ValueError(f"emm.start: sizes {bad} are not allowed sizes in [{lo_s}, {hi_s}]")
    if lo_s not in first or hi_s not in first:
        raise ValueError(f"emm.start: must hold the bracket's ends lo={lo_s} and hi={hi_s}, got {first}")
    return first
