"""The paper's directions (:func:`diffmem.results.paper.load_claims`) judged on a run's own results.

A claim is tied to the experiments of a config by the key they vary (``factor``), never by their names, so
a user's own experiment that varies the same key is judged too. Between two experiment values, the one that
*memorizes more* is decided, in this order of evidence:

- their EMM brackets do not overlap (lower <= EMM < upper; below the search's lo is (None, lo), above its
  hi is (hi, None)): the one whose lower bound reaches the other's upper bound;
- at a size both evaluated, their 95% intervals of the ratio do not overlap.

If the EMM and a size (or two sizes) disagree, the pair is *mixed*. Verdicts per claim and experiment:

- ``reproduces``: every decided pair goes the paper's way; ``reversed``: every one goes the other way;
  ``mixed``: some each way;
- ``no effect``: no pair decided (brackets and intervals overlap);
- ``budget-bound``: no pair decided, and the run's budget may be why: both EMM at the same edge of the
  search bracket, the ratios of both at 0% or 100% at every size they share, or a run whose ratio had not
  levelled off (the tables' ``levelled_off`` column);
- ``not run``: the config has no experiment for the claim (or fewer than two of its values have results).

Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from diffmem.results.paper import Claim
from diffmem.science import emm as emm_policy

REPRODUCES, REVERSED, MIXED, NO_EFFECT, BUDGET, NOT_RUN = (
    "reproduces", "reversed", "mixed", "no effect", "budget-bound", "not run")  # fmt: skip
SATURATED = 0.01  # a ratio within this of 0 or 1 is saturated
ALL_MEMORIZED = 0.99  # kind all: every ratio's interval reaches this


@dataclass(frozen=True)
class Ratio:
    """One scored ratio with its 95% interval, and whether its run had levelled off (yes | no | unknown)."""

    ratio: float
    low: float
    high: float
    levelled: str = "unknown"

    def text(self) -> str:
        """The ratio in percent, one decimal."""
        return f"{100 * self.ratio:.1f}%"


@dataclass
class Evidence:
    """What a run's results say about one experiment value: its EMM bounds (``emm``: lower, upper, status,
    or None), its ratio per size, and per size its snapshots in training order (epochs, ratio)."""

    experiment: str
    label: str
    display: str
    settings: dict
    emm: tuple[int | None, int | None, str] | None = None
    sizes: dict[int, Ratio] = field(default_factory=dict)
    snapshots: dict[int, list[tuple[float | None, Ratio]]] = field(default_factory=dict)

    @property
    def has_data(self) -> bool:
        """Whether the tables hold anything for this value."""
        return bool(self.sizes) or bool(self.snapshots) or self.emm is not None


@dataclass(frozen=True)
class Experiment:
    """An experiment of the config: its factor keys and the evidence of each of its values."""

    name: str
    keys: tuple[str, ...]
    values: list[Evidence]


@dataclass(frozen=True)
class Item:
    """One thing to order: ``key`` its place in the claim's order, ``group`` what it may be compared with."""

    name: str
    key: Any
    emm: tuple[int | None, int | None, str] | None
    points: dict[Any, Ratio]
    group: Any = None


def setting(settings: dict, dotted: str) -> Any:
    """``settings['a']['b']`` for ``a.b``; None where a level is missing or not a mapping."""
    cur: Any = settings
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _same(a: Any, b: Any) -> bool:
    """Config values equal; YAML's unquoted ``true`` for ``data.labels`` is the label kind "true"."""
    return (str(a).lower() if isinstance(a, bool) else a) == (str(b).lower() if isinstance(b, bool) else b)


def selected(claim: Claim, settings: dict) -> bool:
    """The value's settings have every ``where`` setting of the claim and none of its ``unless`` ones."""
    return all(_same(setting(settings, k), v) for k, v in claim.where.items()) and not any(
        _same(setting(settings, k), v) for k, v in claim.unless.items()
    )


def _bracket(emm: tuple | None) -> str:
    if emm is None:
        return "n/a"
    lower, upper, _ = emm
    return emm_policy.bracket_text(lower, upper)


def _emm_sign(a: Item, b: Item) -> int:
    """+1: a's EMM lies above b's; -1 below; 0 the brackets overlap or one is missing."""
    if a.emm is None or b.emm is None:
        return 0
    (al, au, _), (bl, bu, _) = a.emm, b.emm
    if al is not None and bu is not None and al >= bu:
        return 1
    if bl is not None and au is not None and bl >= au:
        return -1
    return 0


def _budget(a: Item, b: Item, common: list) -> str | None:
    """Why an undecided pair may be the budget's doing, or None."""
    if a.emm and b.emm and a.emm[2] == b.emm[2] and a.emm[2] in ("below_lo", "above_hi"):
        return f"both EMM {a.emm[2].replace('_', ' ')}"
    pairs = [(a.points[s].ratio, b.points[s].ratio) for s in common]
    if pairs and all(max(p) <= SATURATED or min(p) >= 1 - SATURATED for p in pairs):
        return "ratios saturated (0% or 100%) at every shared size"
    if any(p.levelled == "no" for p in (*a.points.values(), *b.points.values())):
        return "not levelled off"
    return None


def compare_items(a: Item, b: Item) -> tuple[int | None, str, str | None]:
    """(sign, why, budget): sign +1 when ``a`` memorizes more than ``b``, -1 when less, 0 undecided, None
    mixed; ``why`` the evidence in words; ``budget`` why an undecided pair may be budget-bound."""
    signs, why = set(), []
    s = _emm_sign(a, b)
    if s:
        signs.add(s)
        why.append(f"EMM {_bracket(a.emm)} vs {_bracket(b.emm)}")
    common = sorted(set(a.points) & set(b.points), key=str)
    for size in common:
        pa, pb = a.points[size], b.points[size]
        s = 1 if pa.low > pb.high else -1 if pb.low > pa.high else 0
        if s:
            signs.add(s)
            at = f"at |D| = {size}: " if size != "" else ""
            why.append(f"{at}{pa.text()} vs {pb.text()}")
    if len(signs) > 1:
        return None, "; ".join(why), None
    if signs:
        return signs.pop(), "; ".join(why[:2]), None
    return 0, "", _budget(a, b, common)


def judge_items(items: list[Item], direction: str) -> tuple[str, str]:
    """Verdict and evidence over every pair of items of one group with different keys. Undecided pairs are
    budget-bound when each has a budget reason, else the verdict is no effect."""
    agree, against, mixed, free, bounds, lines = 0, 0, 0, 0, set(), []
    for i, a in enumerate(items):
        for b in items[i + 1 :]:
            if a.group != b.group or a.key == b.key:
                continue
            lo, hi = (a, b) if a.key < b.key else (b, a)
            sign, why, bound = compare_items(hi, lo)  # does the item higher in the order memorize more?
            if sign is None:
                mixed += 1
                lines.append(f"{hi.name} vs {lo.name}: mixed ({why})")
            elif sign == 0:
                free += bound is None
                bounds.update([bound] if bound else [])
            else:
                agree, against = (agree + 1, against) if (sign > 0) == (direction == "up") else (agree, against + 1)
                win, lose = (hi, lo) if sign > 0 else (lo, hi)
                lines.append(f"{win.name} > {lose.name} ({compare_items(win, lose)[1]})")
    if agree + against + mixed == 0:
        if bounds and not free:
            return BUDGET, "; ".join(sorted(bounds))
        return NO_EFFECT, "no pair apart" + (f" (some pairs: {'; '.join(sorted(bounds))})" if bounds else "")
    verdict = MIXED if mixed or (agree and against) else REPRODUCES if agree else REVERSED
    more = f"; {len(lines) - 3} more" if len(lines) > 3 else ""
    return verdict, "; ".join(lines[:3]) + more


def skip_level(mask: list[int], num_blocks: int) -> tuple[int, float]:
    """(number of skips kept, mean resolution level of the kept ones: 0 = the highest resolution)."""
    per_level = int(num_blocks) + 1
    kept = [i // per_level for i, on in enumerate(mask) if on]
    return len(kept), (sum(kept) / len(kept) if kept else 0.0)


def _order_items(claim: Claim, exp: Experiment, with_data: bool = True) -> list[Item]:
    """kind order / versus: one item per value the claim selects (with results, unless ``with_data`` is
    False), keyed by its place in the claim's order."""
    items = []
    for v in exp.values:
        if (with_data and not v.has_data) or not selected(claim, v.settings):
            continue
        group = None
        if claim.kind == "versus":
            here = setting(v.settings, claim.factor)
            key = 1 if _same(here, claim.more) else 0 if _same(here, claim.less) else None
        elif claim.order == "skip_level":
            mask = setting(v.settings, "model.skip")
            group, key = skip_level(mask, setting(v.settings, "model.num_blocks")) if mask else (None, None)
        else:
            key = setting(v.settings, claim.order or claim.factor)
        if key is not None:
            items.append(Item(v.display, key, v.emm, dict(v.sizes), group))
    return items


def _size_items(claim: Claim, exp: Experiment) -> list[Item]:
    """kind size: per value, one item per evaluated size."""
    return [
        Item(f"|D| = {size}", size, None, {"": r}, v.label)
        for v in exp.values
        if selected(claim, v.settings)
        for size, r in sorted(v.sizes.items())
    ]


def _training_items(claim: Claim, exp: Experiment) -> list[Item]:
    """kind training: per value and size, one item per snapshot (in training order)."""
    return [
        Item(
            f"|D| = {size} snapshot {k}" + (f" ({ep:g} epochs)" if ep is not None else ""),
            k,
            None,
            {"": r},
            (v.label, size),
        )
        for v in exp.values
        if selected(claim, v.settings)
        for size, snaps in sorted(v.snapshots.items())
        if len(snaps) > 1
        for k, (ep, r) in enumerate(snaps)
    ]


def _judge_all(claim: Claim, exp: Experiment) -> tuple[str, str, list[str]] | None:
    """kind all: every size of every selected value memorized (its interval reaching ALL_MEMORIZED)."""
    vals = [v for v in exp.values if v.sizes and selected(claim, v.settings)]
    if not vals:
        return None
    ratios = {(v.display, s): r for v in vals for s, r in sorted(v.sizes.items())}
    short = [f"{name} |D| = {s}: {r.text()}" for (name, s), r in ratios.items() if r.high < ALL_MEMORIZED]
    text = ", ".join(f"|D| = {s}: {r.text()}" for (_, s), r in ratios.items())
    verdict = REVERSED if short else REPRODUCES
    return verdict, ("below all: " + "; ".join(short) if short else text), [v.display for v in vals]


def _matches(claim: Claim, exp: Experiment) -> bool:
    if claim.kind in ("order", "versus"):
        return claim.factor in exp.keys
    if claim.kind == "size":
        return not exp.keys
    return True


def judge_claim(claim: Claim, experiments: list[Experiment]) -> list[dict[str, str]]:
    """One row per experiment the claim applies to (claim, paper, experiment, values, verdict, evidence);
    one ``not run`` row when none does."""
    rows, unselected = [], []
    for exp in experiments:
        if not _matches(claim, exp):
            continue
        if claim.kind in ("order", "versus") and not any(selected(claim, v.settings) for v in exp.values):
            unselected.append(exp.name)
            continue
        if claim.kind == "all":
            judged = _judge_all(claim, exp)
            if judged is None:
                continue
            verdict, why, names = judged
        else:
            make = {"size": _size_items, "training": _training_items}.get(claim.kind, _order_items)
            items = make(claim, exp)
            if claim.kind == "training" and not items:
                continue
            names = list(dict.fromkeys(i.name for i in items)) if claim.kind in ("order", "versus") else []
            names = names or list(dict.fromkeys(v.display for v in exp.values if selected(claim, v.settings)))
            keys = {(i.group, i.key) for i in items}
            if len(keys) < 2:
                planned = claim.kind in ("order", "versus") and _order_items(claim, exp, with_data=False)
                if planned and len({(i.group, i.key) for i in planned}) >= 2:
                    rows.append(
                        _row(claim, exp.name, names, NOT_RUN, "fewer than two of its values have results in the tables")
                    )
                continue
            verdict, why = judge_items(items, "down" if claim.kind == "size" else claim.direction)
        rows.append(_row(claim, exp.name, names, verdict, why))
    return rows or [_row(claim, "-", [], NOT_RUN, _not_run_reason(claim, unselected))]


def _not_run_reason(claim: Claim, unselected: list[str]) -> str:
    if unselected:
        wanted = [f"{k} = {v}" for k, v in claim.where.items()] + [f"{k} != {v}" for k, v in claim.unless.items()]
        return (f"{', '.join(unselected)} {'varies' if len(unselected) == 1 else 'vary'} {claim.factor or 'it'}, "
                f"but no value has {' and '.join(wanted)} (what the claim is about)")  # fmt: skip
    if claim.kind in ("order", "versus"):
        return f"no experiment varies {claim.factor} over two values the claim compares"
    return {"size": "no experiment without a factor has two sizes",
            "training": "no run was scored at two snapshots or more",
            "all": "no experiment has the values the claim selects"}[claim.kind]  # fmt: skip


def _row(claim: Claim, experiment: str, names: list[str], verdict: str, evidence: str) -> dict[str, str]:
    return {"claim": claim.claim, "paper": claim.paper, "experiment": experiment, "values": ", ".join(names),
            "verdict": verdict, "evidence": evidence}  # fmt: skip
