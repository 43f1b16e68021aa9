"""Has a run's memorization ratio levelled off? Reported beside every ratio, so a reader can tell a result
that measures the model from one that measures the training budget.

A run is scored at each of its snapshots (``train.snapshots``). Its ratio has *levelled off* when the last
two snapshots' ratios lie inside each other's 95% Wilson intervals (:func:`diffmem.science.memorization.binomial_ci`,
as every ratio's interval): more training would not move it by more than the sampling noise shows. It has
*not* when either lies outside the other's interval (the ratio was still rising, or falling); with one
snapshot it is *unknown*.

Imports nothing heavy.
"""

from __future__ import annotations

#: The verdicts, as written to ``memorization.json`` and the tables.
LEVELLED, NOT_LEVELLED, UNKNOWN = "yes", "no", "unknown"


def _interval(snap: dict) -> tuple[float, float]:
    if "ci_low" in snap and "ci_high" in snap:
        return float(snap["ci_low"]), float(snap["ci_high"])
    from diffmem.science.memorization import binomial_ci

    return binomial_ci(int(snap["n_memorized"]), int(snap["n"]))


def levelled_off(snapshots: list[dict]) -> dict:
    """Convergence of a run from its scored snapshots (in training order; each with ``ratio`` and its
    ``ci_low``/``ci_high``, or ``n_memorized`` and ``n``).

    Returns ``{"levelled_off": "yes" | "no" | "unknown", "change": last ratio - previous ratio (None with
    one snapshot), "over": the two snapshot indices ``k`` compared (or [])}``."""
    if len(snapshots) < 2:
        return {"levelled_off": UNKNOWN, "change": None, "over": []}
    a, b = snapshots[-2], snapshots[-1]
    (a_lo, a_hi), (b_lo, b_hi) = _interval(a), _interval(b)
    ra, rb = float(a["ratio"]), float(b["ratio"])
    inside = a_lo <= rb <= a_hi and b_lo <= ra <= b_hi
    return {
        "levelled_off": LEVELLED if inside else NOT_LEVELLED,
        "change": rb - ra,
        "over": [a.get("k", len(snapshots) - 2), b.get("k", len(snapshots) - 1)],
    }
