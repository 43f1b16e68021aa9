#!/usr/bin/env python3
"""The EMM search's cost against a fixed log-spaced grid of the same resolution (diffmem.plan.search_cost).

For the base value of a config's first experiment (its allowed sizes, lo, hi, tolerance, threshold,
max_rounds and images per run), over synthetic curves (monotone steps, and a logistic fall in log |D|
measured with the binomial noise of the config's sample count) and ``--per-round`` values: runs,
images trained, rounds, and the share of curves whose bracket holds the true EMM. With ``--results``,
also every finished search of that workflow run: what it spent and what the grid would have, and the
search replayed on its own scores (interpolated in log size between the sizes it evaluated) for each
``--per-round``::

    PYTHONPATH=src python3 scripts/emm_cost.py                                  # default config, < 10 s
    PYTHONPATH=src python3 scripts/emm_cost.py --configfile config/paper.yaml
    PYTHONPATH=src python3 scripts/emm_cost.py --results results/default
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:
    import diffmem  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH=src or an install
    sys.path.insert(0, str(REPO / "src"))

from diffmem.plan import config as dmc  # noqa: E402
from diffmem.plan import cost  # noqa: E402
from diffmem.plan import search_cost as emm_cost  # noqa: E402
from diffmem.science import schedule  # noqa: E402


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _row(label: str, pr: int, c: dict) -> str:
    s, g = c["search"], c["grid"]
    return (
        f"| {label} | {pr} | {s['runs_mean']:.2f} ({s['runs_max']}) | {_fmt(s['images_mean'])} | "
        f"{s['rounds_mean']:.2f} ({s['rounds_max']}) | {s['resolved']:.0%} | {s['holds']:.0%} "
        f"({s['holds_within_tolerance']:.0%}) | {g['runs_mean']:.0f} | {_fmt(g['images_mean'])} | {g['holds']:.0%} "
        f"({g['holds_within_tolerance']:.0%}) |"
    )


HEAD = (
    "| curves | per_round | search runs mean (max) | search images mean | rounds mean (max) | resolved "
    "| bracket holds EMM (within tolerance) | grid runs | grid images | grid holds EMM (within tolerance) |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configfile", nargs="+", default=[str(REPO / "config" / "config.yaml")])
    ap.add_argument("--per-round", default="1,2,3,4,6", help="comma-separated per_round values to compare")
    ap.add_argument("--curves", type=int, default=48, help="synthetic curves per kind (true EMMs over [lo, hi])")
    ap.add_argument("--results", default=None, help="a workflow run folder (results/<name>) with emm/*/*/emm.json")
    ap.add_argument("--json", default=None, help="also write every number to this JSON file")
    args = ap.parse_args(argv)

    cfg = dmc.load_config(args.configfile)
    e = cfg["emm"]
    plan = dmc.expand(cfg)
    first = next(iter(plan.values()))[0]
    allowed = cost.allowed_sizes(first)
    train_cfg = dmc.run_settings(first.settings, allowed[0])["train"]

    def images_of(size: int) -> float:
        return float(schedule.training_plan(train_cfg, size)["images"])

    kw = dict(
        threshold=float(e["threshold"]),
        tolerance=float(e["tolerance"]),
        max_rounds=int(e["max_rounds"]),
        images_of=images_of,
    )
    lo, hi = int(e["lo"]), int(e["hi"])
    n_samples = int(first.settings["sample"]["n"])
    per_rounds = [int(p) for p in args.per_round.split(",") if p.strip()]
    report: dict = {
        "config": cfg["name"],
        "emm": e,
        "allowed": [allowed[0], allowed[-1], len(allowed)],
        "synthetic": {},
        "results": {},
    }
    grid = emm_cost.log_grid(allowed, lo, hi, kw["tolerance"])
    print(
        f"config {cfg['name']}: |D| in [{lo}, {hi}], {len(allowed)} allowed sizes, tolerance {kw['tolerance']}, "
        f"threshold {kw['threshold']}, max_rounds {kw['max_rounds']} (per_round {e['per_round']} configured); "
        f"images per run at lo/hi: {images_of(allowed[0]):,.0f}/{images_of(allowed[-1]):,.0f}; "
        f"grid of the same resolution: {grid}\n"
    )
    print(HEAD)
    for kind in ("step", "noisy"):
        curves = emm_cost.synthetic_curves(kind, allowed, lo, hi, kw["threshold"], k=args.curves, n_samples=n_samples)
        for pr in per_rounds:
            c = emm_cost.compare(curves, allowed, lo, hi, per_round=pr, **kw)
            report["synthetic"][f"{kind}/{pr}"] = c
            print(_row(f"{kind} ({len(curves)})", pr, c))

    if args.results:
        found = sorted(Path(args.results).glob("emm/*/*/emm.json"))
        print(f"\n{len(found)} finished searches in {args.results}\n")
        print(
            "| search | status | bracket | runs | rounds | grid runs | replayed runs by per_round |\n"
            "|---|---|---|---|---|---|---|"
        )
        for path in found:
            res = json.loads(path.read_text())
            ev = {int(r["size"]): float(r["ratio"]) for r in res["evaluated"]}
            # training rounds: the round files that asked for sizes (the last one says done)
            rounds = sum(bool(json.loads(r.read_text()).get("next")) for r in path.parent.glob("round*.json"))
            exp, label = path.parent.parent.name, path.parent.name
            values = [v for v in plan.get(exp, []) if v.label == label]
            sizes = cost.allowed_sizes(values[0]) if values else sorted(ev)  # the value's own allowed sizes
            g = emm_cost.log_grid(sizes, int(res["lo"]), int(res["hi"]), float(res["tolerance"]))
            curve = emm_cost.measured_curve(ev)
            replayed = {
                pr: len(
                    emm_cost.replay(
                        curve,
                        sizes,
                        int(res["lo"]),
                        int(res["hi"]),
                        threshold=float(res["threshold"]),
                        tolerance=float(res["tolerance"]),
                        per_round=pr,
                        max_rounds=kw["max_rounds"],
                    )["sizes"]
                )
                for pr in per_rounds
            }
            name = f"{path.parent.parent.name}/{path.parent.name}"
            report["results"][name] = {
                "runs": len(ev),
                "rounds": rounds,
                "grid_runs": len(g),
                "replayed": replayed,
                "bracket": res.get("bracket"),
                "status": res.get("status"),
            }
            print(
                f"| {name} | {res.get('status')} | {res.get('bracket')} | {len(ev)} | {rounds} | {len(g)} | "
                + ", ".join(f"{pr}: {n}" for pr, n in replayed.items())
                + " |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
