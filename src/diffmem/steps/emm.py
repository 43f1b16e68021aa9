"""The EMM search's steps: one round (merge the new scores, ask the policy what next) and the result."""

from __future__ import annotations

import logging
from pathlib import Path

from diffmem.io import read_json, write_json
from diffmem.plan import config as dmc
from diffmem.science import emm

_log = logging.getLogger("diffmem")

#: What a round file keeps of the policy's step (:func:`diffmem.science.emm.emm_step`).
STEP_KEYS = ("done", "next", "bracket", "lower", "upper", "status", "emm", "non_monotone", "notes")


def _evaluated(prev: dict | None, score_paths: list[str | Path]) -> dict[int, dict]:
    """The sizes evaluated so far by size: the previous round's, with the new scores merged in."""
    evaluated = {int(e["size"]): e for e in prev["evaluated"]} if prev else {}
    for path in score_paths:
        sc = read_json(path)
        evaluated[int(sc["size"])] = {
            "size": int(sc["size"]),
            **{k: sc[k] for k in ("ratio", "ci_low", "ci_high", "n", "best_snapshot")},
            "memorization": str(path),
        }
    return evaluated


def emm_round(
    search: dict,
    previous: str | Path | None,
    score_paths: list[str | Path],
    out_path: str | Path,
    log: logging.Logger = _log,
) -> dict:
    """Merge the scores of the sizes the previous round asked for and decide the next sizes (or done)."""
    prev = read_json(previous) if previous else None
    k = prev["round"] + 1 if prev else 0
    evaluated = _evaluated(prev, score_paths)
    allowed = dmc.allowed_sizes(search["settings"], load=True)
    step = emm.emm_step(
        {s: e["ratio"] for s, e in evaluated.items()},
        allowed,
        int(search["lo"]),
        int(search["hi"]),
        threshold=float(search["threshold"]),
        tolerance=float(search["tolerance"]),
        per_round=int(search["per_round"]),
        start=search.get("start"),
    )
    for e in evaluated.values():
        e["memorized"] = emm.passes(e["ratio"], search["threshold"])
    state = {
        "round": k,
        **{key: search[key] for key in ("experiment", "value", "display", "run_id")},
        "lo": int(search["lo"]),
        "hi": int(search["hi"]),
        "threshold": float(search["threshold"]),
        "tolerance": float(search["tolerance"]),
        **{key: step.get(key) for key in STEP_KEYS},
        "evaluated": [evaluated[s] for s in sorted(evaluated)],
    }
    if not state["done"] and k >= int(search["max_rounds"]):
        state.update(done=True, next=[], status="max_rounds")
        state["notes"] = list(state.get("notes") or []) + [f"stopped after max_rounds={search['max_rounds']}"]
    log.info("round %d: evaluated %s -> status %s, bracket %s, next %s", k,
             {s: round(e["ratio"], 4) for s, e in sorted(evaluated.items())}, state["status"], state["bracket"],
             state["next"])  # fmt: skip
    write_json(out_path, state)
    return state


def emm_result(search: dict, final_round: str | Path, out_path: str | Path, log: logging.Logger = _log) -> dict:
    """The search's result: the final round, plus the round count and its file."""
    state = read_json(final_round)
    state["rounds"] = state["round"] + 1
    state["final_round"] = str(final_round)
    log.info(
        "EMM %s/%s: status %s, bracket %s", search["experiment"], search["value"], state["status"], state["bracket"]
    )
    write_json(out_path, state)
    return state
