"""The table step: one figure's rows (per value and size its ratio, per snapshot, per EMM search its bounds)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffmem.io import atomic_path, read_json
from diffmem.science import emm
from diffmem.steps.emm import stored_path

if TYPE_CHECKING:  # pandas costs a job ~0.3 s to import: only the table steps load it
    import pandas as pd

TABLE_COLUMNS = [
    "figure", "experiment", "title", "value", "display", "kind", "size", "snapshot", "step",
    "images_seen", "epochs", "ratio", "ci_low", "ci_high", "n", "memorized", "ratio_threshold",
    "emm_threshold", "emm_lower", "emm_upper", "emm_status", "search_lo", "search_hi", "non_monotone", "run_id",
    "group", "seed", "levelled_off", "nn_distance", "pair_distance", "nn_pair_ratio",
]  # fmt: skip
"""Columns of a figure's table. ``ratio_threshold``: score.threshold (a sample is memorized when
d1/d2 < it); ``emm_threshold``: emm.threshold (a size is ``memorized`` when its ratio >= it);
``emm_lower``/``emm_upper``: the EMM bounds of a search (lower <= EMM < upper, :func:`diffmem.science.emm.bounds`);
``search_lo``/``search_hi``: the size range it searched (emm.lo/hi). ``group``: the value a replicate
repeats (its own label without ``replicates``), ``seed``: data.seed. Per size: ``levelled_off`` (yes | no |
unknown, :func:`diffmem.science.convergence.levelled_off`) and the subset's geometry ``nn_distance``,
``pair_distance``, ``nn_pair_ratio`` (:func:`diffmem.data.geometry.data_geometry`); empty for a
memorization.json written before they were recorded."""


def figure_table(fig: dict) -> pd.DataFrame:
    """Rows for one figure: per value and size its ratio (``kind=size``), per snapshot (``kind=snapshot``)
    and per EMM search its bounds (``kind=emm``, from :func:`diffmem.science.emm.bounds`)."""
    rows: list[dict[str, Any]] = []
    for v in fig["values"]:
        common = {
            "figure": fig["name"],
            "experiment": v["experiment"],
            "title": v["title"],
            "value": v["label"],
            "display": v["display"],
            "run_id": v["run_id"],
            "ratio_threshold": v["ratio_threshold"],
            "emm_threshold": v["emm_threshold"],
            "group": v.get("group", v["label"]),
            "seed": v.get("seed"),
        }
        rows += _search_rows(v, common) if v["mode"] == "emm" else _fixed_size_rows(v, common)
    import pandas as pd

    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _search_rows(v: dict, common: dict) -> list[dict[str, Any]]:
    """An EMM search's rows: one per size it evaluated, then its bounds."""
    res = read_json(v["emm"])
    rows = [{**common, "kind": "size", **_size_cols(e), "memorized": e["memorized"],
             **_beside_cols(read_json(stored_path(v["emm"], e["memorization"])))}
            for e in res["evaluated"]]  # fmt: skip
    lo, hi = emm.bounds(res)
    rows.append({**common, "kind": "emm", "emm_lower": lo, "emm_upper": hi, "emm_status": res["status"],
                 "search_lo": res["lo"], "search_hi": res["hi"], "non_monotone": res["non_monotone"]})  # fmt: skip
    return rows


def _fixed_size_rows(v: dict, common: dict) -> list[dict[str, Any]]:
    """A value measured at fixed sizes: per size its row, then one per snapshot."""
    rows: list[dict[str, Any]] = []
    for size, scores_path in v["scores"].items():
        sc = read_json(scores_path)
        rows.append({**common, "kind": "size", "size": int(size), **_size_cols(sc),
                     "memorized": emm.passes(sc["ratio"], v["emm_threshold"]), **_beside_cols(sc)})  # fmt: skip
        for snap in sc["snapshots"]:
            rows.append({**common, "kind": "snapshot", "size": int(size), "snapshot": snap["k"],
                         **{k: snap[k] for k in ("step", "images_seen", "epochs", "ratio", "ci_low", "ci_high", "n")},
                         "memorized": emm.passes(snap["ratio"], v["emm_threshold"])})  # fmt: skip
    return rows


def _size_cols(e: dict) -> dict:
    return {"size": int(e["size"]), **{k: e[k] for k in ("ratio", "ci_low", "ci_high", "n")}}


def _beside_cols(sc: dict) -> dict:
    """What a memorization.json says beside its ratio: convergence and the subset's geometry."""
    geo = sc.get("geometry") or {}
    return {
        "levelled_off": (sc.get("convergence") or {}).get("levelled_off"),
        **{k: geo.get(k) for k in ("nn_distance", "pair_distance", "nn_pair_ratio")},
    }


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """Write a figure's table as CSV, atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
