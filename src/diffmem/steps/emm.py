"""The EMM search's steps: one round (merge the new scores, ask the policy what next) and the result.

Paths they store (a size's ``memorization`` file, emm.json's ``final_round``) are relative to the results
folder (``runs/...``, ``emm/...``), whatever the working directory or the spelling of ``results:``; files
written before stored them as given (absolute, or relative to the working directory): :func:`stored_path`
reads both.
"""

from __future__ import annotations

import logging
from pathlib import Path

from diffmem.io import read_json, results_root, write_json
from diffmem.plan import config as dmc
from diffmem.plan import layout
from diffmem.science import emm

_log = logging.getLogger("diffmem")

_RUNS = layout.run_dir("r", 0).parts[0]  # the results folder's runs/

#: What a round file keeps of the policy's step (:func:`diffmem.science.emm.emm_step`).
STEP_KEYS = ("done", "next", "bracket", "lower", "upper", "status", "emm", "non_monotone", "notes")


def results_folder(search_file: str | Path) -> Path:
    """The results folder of a round or emm.json (``emm/<experiment>/<value>/<file>`` under it); for a search
    file outside any (a test's), its own folder."""
    return results_root(search_file) or Path(search_file).absolute().parent


def _stored(search_file: str | Path, path: str | Path) -> str:
    """``path`` as a search file stores it: relative to its results folder, in ``/`` form (as given when it
    lies elsewhere, which no path the workflow gives does)."""
    root = results_folder(search_file).absolute()
    path = Path(path).absolute()
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def stored_path(search_file: str | Path, stored: str) -> Path:
    """A path a round or emm.json stores, to open: under the file's results folder; for one written by an
    older version (absolute, or relative to the working directory), that path if it is there, else its part
    from ``runs/`` on under the file's results folder (a folder moved since)."""
    root, path = results_folder(search_file), Path(stored)
    if (root / path).exists() or (not path.exists() and _RUNS not in path.parts):
        return root / path  # (an absolute path stays itself)
    if path.exists():
        return path
    return root.joinpath(*path.parts[len(path.parts) - 1 - path.parts[::-1].index(_RUNS) :])


def _evaluated(prev: dict | None, previous: str | Path | None, score_paths: list, out_path: str | Path) -> dict:
    """The sizes evaluated so far by size: the previous round's (their paths as this version stores them),
    with the new scores merged in."""
    evaluated = {int(e["size"]): e for e in prev["evaluated"]} if prev else {}
    for e in evaluated.values():
        e["memorization"] = _stored(out_path, stored_path(previous, e["memorization"]))
    for path in score_paths:
        sc = read_json(path)
        evaluated[int(sc["size"])] = {
            "size": int(sc["size"]),
            **{k: sc[k] for k in ("ratio", "ci_low", "ci_high", "n", "best_snapshot")},
            "memorization": _stored(out_path, path),
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
    evaluated = _evaluated(prev, previous, score_paths, out_path)
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
    state["final_round"] = _stored(out_path, final_round)
    log.info(
        "EMM %s/%s: status %s, bracket %s", search["experiment"], search["value"], state["status"], state["bracket"]
    )
    write_json(out_path, state)
    return state
