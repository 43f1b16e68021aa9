"""What the EMM search spends against a fixed grid that reaches the same resolution.

The k-ary search (:func:`diffmem.science.emm.emm_step`) trains a few sizes per round and stops when its bracket
[a, b) has b / a <= 1 + tolerance (or no allowed size lies between a and b). A grid gets the same
resolution without rounds: every allowed size in [lo, hi] on a log-spaced ladder whose neighbours are at
most a factor 1 + tolerance apart (:func:`log_grid`), all trained at once. The search costs rounds
(latency: each waits for the previous one), the grid costs runs and images.

:func:`replay` runs the search policy itself against a memorization curve ``ratio_of(size)`` (synthetic or
measured); :func:`grid_outcome` reads the grid's verdicts with :func:`diffmem.science.emm.from_ratios`, so both
bracket by the same rule. :func:`compare` summarises both over many curves: runs, sum of |D| (the images
trained are proportional to it under the paper's fixed-epoch protocol), rounds, and how often the stated
bracket holds the curve's true EMM (the largest size whose ratio, before noise, passes).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

from diffmem.science import emm

Curve = Callable[[int], float]  # size -> memorization ratio


def replay(
    ratio_of: Curve,
    allowed: Sequence[int],
    lo: int,
    hi: int,
    *,
    threshold: float,
    tolerance: float,
    per_round: int,
    max_rounds: int,
    start: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The EMM search against ``ratio_of``: its rounds (sizes per round) and final :func:`emm.emm_step`.

    Each size is evaluated once (``ratio_of`` is called once per size). At most ``max_rounds`` rounds are
    trained, as in the workflow."""
    ratios: dict[int, float] = {}
    rounds: list[list[int]] = []
    while True:
        step = emm.emm_step(
            ratios, allowed, lo, hi, threshold=threshold, tolerance=tolerance, per_round=per_round, start=start
        )
        if step["done"] or not step["next"] or len(rounds) >= max_rounds:
            return {"rounds": rounds, "sizes": sorted(ratios), "result": step}
        rounds.append(list(step["next"]))
        ratios.update({s: float(ratio_of(s)) for s in step["next"]})


def log_grid(allowed: Sequence[int], lo: int, hi: int, tolerance: float) -> list[int]:
    """The fewest allowed sizes from lo to hi (both snapped inwards) with neighbours at most a factor
    1 + ``tolerance`` apart (where the allowed sizes are sparser, the next allowed size): the grid whose
    bracket is as fine as the search's stopping rule."""
    sizes = sorted({int(s) for s in allowed if lo <= s <= hi})
    if not sizes:
        raise ValueError(f"log_grid: no allowed size in [{lo}, {hi}]")
    grid = [sizes[0]]
    while grid[-1] < sizes[-1]:
        cur = grid[-1]
        reach = [s for s in sizes if cur < s <= cur * (1 + tolerance)]
        grid.append(reach[-1] if reach else next(s for s in sizes if s > cur))
    return grid


def grid_outcome(ratio_of: Curve, grid: Sequence[int], threshold: float) -> dict[str, Any]:
    """Every grid size evaluated at once; what the verdicts say (:func:`emm.from_ratios`)."""
    return emm.from_ratios({s: float(ratio_of(s)) for s in grid}, threshold)


def holds(result: dict[str, Any], true_emm: int | None, slack: float = 1.0) -> bool:
    """Whether the bounds a result states hold ``true_emm`` (None: every size fails); ``slack`` > 1
    widens them by that factor on each side (a miss by less than that counts as held)."""
    lower, upper = emm.bounds(result)
    if true_emm is None:
        return lower is None or lower / slack < 1
    return (lower is None or lower / slack <= true_emm) and (upper is None or true_emm < upper * slack)


# ----------------------------------------------------------------------------------------------------
# Synthetic curves: memorization falls with log |D| and crosses ``threshold`` at a chosen size.


def step_curve(emm_size: float) -> Curve:
    """Ratio 1 up to ``emm_size``, 0 above (the outcomes :mod:`diffmem.plan.cost` replays)."""
    return lambda s: 1.0 if s <= emm_size else 0.0


def logistic_curve(emm_size: float, threshold: float, width: float = 0.3) -> Curve:
    """A smooth monotone fall in log size, equal to ``threshold`` at ``emm_size``; ``width``: its scale
    in log size (0.3: from ~0.97 to ~0.5 over a factor ~2.4 in |D| for threshold 0.9)."""
    logit = math.log(threshold / (1 - threshold))

    def curve(s: int) -> float:
        z = logit - (math.log(s) - math.log(emm_size)) / width
        return 1 / (1 + math.exp(-z))

    return curve


def noisy(curve: Curve, n: int, seed: int) -> Curve:
    """``curve`` measured on ``n`` samples: binomial(n, p) / n, one fixed draw per size (seeded by size)."""

    import numpy as np

    def measured(s: int) -> float:
        rng = np.random.default_rng([int(seed), int(s)])
        return float(rng.binomial(int(n), min(1.0, max(0.0, curve(s))))) / n

    return measured


def true_emm(curve: Curve, allowed: Sequence[int], threshold: float) -> int | None:
    """The largest allowed size whose (noise-free) ratio passes, None when none does (curves fall)."""
    passing = [s for s in sorted(allowed) if emm.passes(curve(s), threshold)]
    return passing[-1] if passing else None


def compare(
    curves: Sequence[tuple[Curve, Curve]],
    allowed: Sequence[int],
    lo: int,
    hi: int,
    *,
    threshold: float,
    tolerance: float,
    per_round: int,
    max_rounds: int,
    images_of: Callable[[int], float] = float,
) -> dict[str, Any]:
    """Search vs grid over ``curves``: pairs (measured curve, noise-free curve that defines the truth).

    Returns per method (``search``, ``grid``): mean and max runs, mean images (``images_of(size)`` summed
    over the sizes trained; default |D| itself), mean and max rounds, and the share of curves whose
    stated bracket holds the true EMM (``holds``; ``holds_within_tolerance``: missed by less than a factor
    1 + tolerance), and the share that reached the resolution (the search's last step
    says done: not cut short by ``max_rounds``; the grid always does); and the grid's sizes (``grid_sizes``)."""
    sizes_in = [s for s in allowed if lo <= s <= hi]
    grid = log_grid(sizes_in, lo, hi, tolerance)
    grid_images = sum(images_of(s) for s in grid)
    rows: dict[str, list[tuple[int, float, int, bool, bool, bool]]] = {"search": [], "grid": []}
    slack = 1 + tolerance
    for measured, truth in curves:
        t = true_emm(truth, sizes_in, threshold)
        r = replay(
            measured,
            sizes_in,
            lo,
            hi,
            threshold=threshold,
            tolerance=tolerance,
            per_round=per_round,
            max_rounds=max_rounds,
        )
        g = grid_outcome(measured, grid, threshold)
        rows["search"].append(
            (
                len(r["sizes"]),
                sum(images_of(s) for s in r["sizes"]),
                len(r["rounds"]),
                holds(r["result"], t),
                bool(r["result"]["done"]),
                holds(r["result"], t, slack),
            )
        )
        rows["grid"].append((len(grid), grid_images, 1, holds(g, t), True, holds(g, t, slack)))
    out: dict[str, Any] = {"grid_sizes": grid, "curves": len(curves)}
    for name, rs in rows.items():
        out[name] = {
            "runs_mean": statistics.fmean(r[0] for r in rs),
            "runs_max": max(r[0] for r in rs),
            "images_mean": statistics.fmean(r[1] for r in rs),
            "rounds_mean": statistics.fmean(r[2] for r in rs),
            "rounds_max": max(r[2] for r in rs),
            "holds": statistics.fmean(float(r[3]) for r in rs),
            "resolved": statistics.fmean(float(r[4]) for r in rs),
            "holds_within_tolerance": statistics.fmean(float(r[5]) for r in rs),
        }
    return out


def synthetic_curves(
    kind: str,
    allowed: Sequence[int],
    lo: int,
    hi: int,
    threshold: float,
    k: int = 48,
    n_samples: int = 500,
    seed: int = 0,
) -> list[tuple[Curve, Curve]]:
    """``k`` curves whose true EMM is log-spaced over [lo, hi], plus one below lo and one above hi.
    ``kind``: "step" (monotone, ratio 0/1), "smooth" (monotone logistic: the search sees the same
    verdicts as for "step"), "noisy" (the logistic measured on ``n_samples`` samples, binomial noise)."""
    emms = [lo * 0.9, *(lo * (hi / lo) ** ((i + 0.5) / k) for i in range(k)), hi * 1.1]
    out: list[tuple[Curve, Curve]] = []
    for i, e in enumerate(emms):
        if kind == "step":
            c = step_curve(e)
            out.append((c, c))
        elif kind == "smooth":
            c = logistic_curve(e, threshold)
            out.append((c, c))
        elif kind == "noisy":
            c = logistic_curve(e, threshold)
            out.append((noisy(c, n_samples, seed * 100003 + i), c))
        else:
            raise ValueError(f"synthetic_curves: kind must be step, smooth or noisy, got {kind!r}")
    return out


def measured_curve(evaluated: dict[int, float]) -> Curve:
    """A run's own scores as a curve: the measured ratio at evaluated sizes, elsewhere interpolated
    linearly in log size between the nearest evaluated neighbours (held flat beyond the ends)."""
    import numpy as np

    xs = sorted(evaluated)
    if not xs:
        raise ValueError("measured_curve: no evaluated sizes")
    logs = [math.log(x) for x in xs]
    ys = [float(evaluated[x]) for x in xs]
    return lambda s: float(np.interp(math.log(s), logs, ys))
