"""A Markdown summary of a finished (or partly finished) run of the workflow: EMM per experiment value.

``python -m diffmem summarize results/default`` reads ``emm/<experiment>/<value>/emm.json`` and the
tables, so it needs no Snakemake and never changes a file.
"""

from __future__ import annotations

from pathlib import Path

from diffmem.io import read_json
from diffmem.science import emm


def _bracket(res: dict) -> str:
    """The EMM bounds of a search (:func:`diffmem.science.emm.bounds`) as text: [a, b), < b, >= a or n/a."""
    return emm.bracket_text(*emm.bounds(res))


def emm_rows(results: str | Path) -> list[dict]:
    """One row per EMM search: experiment, value, status, bracket, and the ratio at each evaluated size."""
    rows = []
    for path in sorted(Path(results).glob("emm/*/*/emm.json")):
        res = read_json(path)
        rows.append(
            {
                "experiment": res["experiment"],
                "value": res.get("display", res["value"]),
                "status": res["status"],
                "emm": _bracket(res),
                "non_monotone": bool(res.get("non_monotone")),
                "rounds": res.get("rounds", res.get("round", 0) + 1),
                "ratios": {int(e["size"]): float(e["ratio"]) for e in res["evaluated"]},
            }
        )
    return rows


def summarize(results: str | Path) -> str:
    """Markdown table of every EMM search under ``results`` (a ``results/<name>`` folder)."""
    rows = emm_rows(results)
    if not rows:
        raise FileNotFoundError(f"no emm/*/*/emm.json under {results}: has the workflow run?")
    lines = [
        "| experiment | value | EMM (images) | status | rounds | ratio at evaluated sizes |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratios = ", ".join(f"{s}: {x:.2f}" for s, x in sorted(r["ratios"].items()))
        flag = " (non-monotone)" if r["non_monotone"] else ""
        lines.append(
            f"| {r['experiment']} | {r['value']} | {r['emm']} | {r['status']}{flag} | {r['rounds']} | {ratios} |"
        )
    return "\n".join(lines)
