"""What the EMM search costs for a config, against a grid of the same resolution: the tables of
``python -m diffmem emm-cost`` (the measures themselves: :mod:`diffmem.plan.search_cost`).

For the base value of the config's first experiment (its allowed sizes, lo, hi, tolerance, threshold,
max_rounds and images per run), over synthetic curves (monotone steps, and a logistic fall in log |D|
measured with the binomial noise of the config's sample count) and several ``per_round``: runs, images
trained, rounds, and the share of curves whose bracket holds the true EMM. Given a results folder, also
every finished search of that workflow run: what it spent and what the grid would have, and the search
replayed on its own scores (interpolated in log size between the sizes it evaluated) for each ``per_round``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffmem.plan import config as dmc
from diffmem.plan import cost, layout
from diffmem.plan import search_cost as emm_cost
from diffmem.science import schedule

SYNTHETIC_HEAD = (
    "| curves | per_round | search runs mean (max) | search images mean | rounds mean (max) | resolved "
    "| bracket holds EMM (within tolerance) | grid runs | grid images | grid holds EMM (within tolerance) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)
RESULTS_HEAD = (
    "| search | status | bracket | runs | rounds | grid runs | replayed runs by per_round |\n"
    "|---|---|---|---|---|---|---|"
)


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _row(label: str, pr: int, c: dict) -> str:
    """One row of the synthetic table: the search against the grid over one kind of curves."""
    s, g = c["search"], c["grid"]
    return (
        f"| {label} | {pr} | {s['runs_mean']:.2f} ({s['runs_max']}) | {_fmt(s['images_mean'])} | "
        f"{s['rounds_mean']:.2f} ({s['rounds_max']}) | {s['resolved']:.0%} | {s['holds']:.0%} "
        f"({s['holds_within_tolerance']:.0%}) | {g['runs_mean']:.0f} | {_fmt(g['images_mean'])} | {g['holds']:.0%} "
        f"({g['holds_within_tolerance']:.0%}) |"
    )


def synthetic(cfg: dict, per_rounds: list[int], curves: int) -> tuple[list[str], dict[str, Any]]:
    """The search against the grid on ``curves`` synthetic curves per kind, for each of ``per_rounds``:
    the lines printed (a heading line, a blank one, the table) and the report's numbers."""
    e = cfg["emm"]
    first = next(iter(dmc.expand(cfg).values()))[0]
    allowed = cost.allowed_sizes(first)
    train_cfg = dmc.run_settings(first.settings, allowed[0])["train"]

    def images_of(size: int) -> float:
        return float(schedule.training_plan(train_cfg, size)["images"])

    kw = dict(threshold=float(e["threshold"]), tolerance=float(e["tolerance"]), max_rounds=int(e["max_rounds"]),
              images_of=images_of)  # fmt: skip
    lo, hi = int(e["lo"]), int(e["hi"])
    report: dict[str, Any] = {"config": cfg["name"], "emm": e, "allowed": [allowed[0], allowed[-1], len(allowed)],
                              "synthetic": {}, "results": {}}  # fmt: skip
    grid = emm_cost.log_grid(allowed, lo, hi, kw["tolerance"])
    lines = [
        f"config {cfg['name']}: |D| in [{lo}, {hi}], {len(allowed)} allowed sizes, tolerance {kw['tolerance']}, "
        f"threshold {kw['threshold']}, max_rounds {kw['max_rounds']} (per_round {e['per_round']} configured); "
        f"images per run at lo/hi: {images_of(allowed[0]):,.0f}/{images_of(allowed[-1]):,.0f}; "
        f"grid of the same resolution: {grid}\n",
        SYNTHETIC_HEAD,
    ]
    n_samples = int(first.settings["sample"]["n"])
    for kind in ("step", "noisy"):
        kind_curves = emm_cost.synthetic_curves(kind, allowed, lo, hi, kw["threshold"], k=curves, n_samples=n_samples)
        for pr in per_rounds:
            c = emm_cost.compare(kind_curves, allowed, lo, hi, per_round=pr, **kw)
            report["synthetic"][f"{kind}/{pr}"] = c
            lines.append(_row(f"{kind} ({len(kind_curves)})", pr, c))
    return lines, report


def finished_searches(cfg: dict, results: str | Path, per_rounds: list[int]) -> tuple[list[str], dict[str, Any]]:
    """Every finished search under ``results`` (a workflow run's folder): its runs and rounds, the grid's
    runs, and the runs of the search replayed on its own scores for each of ``per_rounds``."""
    plan = dmc.expand(cfg)
    found = sorted(Path(results).glob(str(layout.emm_result("*", "*"))))
    lines, report = [f"\n{len(found)} finished searches in {results}\n", RESULTS_HEAD], {}
    for path in found:
        res = json.loads(path.read_text())
        ev = {int(r["size"]): float(r["ratio"]) for r in res["evaluated"]}
        # training rounds: the round files that asked for sizes (the last one says done)
        rounds = sum(bool(json.loads(r.read_text()).get("next")) for r in path.parent.glob("round*.json"))
        exp, label = path.parent.parent.name, path.parent.name
        values = [v for v in plan.get(exp, []) if v.label == label]
        sizes = cost.allowed_sizes(values[0]) if values else sorted(ev)  # the value's own allowed sizes
        lo, hi, tolerance = int(res["lo"]), int(res["hi"]), float(res["tolerance"])
        g = emm_cost.log_grid(sizes, lo, hi, tolerance)
        curve = emm_cost.measured_curve(ev)
        replayed = {
            pr: len(emm_cost.replay(curve, sizes, lo, hi, threshold=float(res["threshold"]), tolerance=tolerance,
                                    per_round=pr, max_rounds=int(cfg["emm"]["max_rounds"]))["sizes"])
            for pr in per_rounds
        }  # fmt: skip
        name = f"{exp}/{label}"
        report[name] = {"runs": len(ev), "rounds": rounds, "grid_runs": len(g), "replayed": replayed,
                        "bracket": res.get("bracket"), "status": res.get("status")}  # fmt: skip
        lines.append(
            f"| {name} | {res.get('status')} | {res.get('bracket')} | {len(ev)} | {rounds} | {len(g)} | "
            + ", ".join(f"{pr}: {n}" for pr, n in replayed.items())
            + " |"
        )
    return lines, report


def emm_cost_report(
    cfg: dict, per_rounds: list[int], curves: int = 48, results: str | Path | None = None
) -> tuple[str, dict[str, Any]]:
    """The text ``python -m diffmem emm-cost`` prints, and every number of it (its ``--json``)."""
    lines, report = synthetic(cfg, per_rounds, curves)
    if results:
        more, report["results"] = finished_searches(cfg, results, per_rounds)
        lines += more
    return "\n".join(lines), report
