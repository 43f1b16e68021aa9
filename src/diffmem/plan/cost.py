"""What a config will cost before anyone spends it: runs, images to train, samples to draw, GPU-hours.

An EMM search's runs depend on what it finds, so each search is replayed with the search policy itself
(:func:`diffmem.science.emm.emm_step`) against step-shaped outcomes: the model memorizes every size up to a true
EMM and none above, for the EMM below ``lo``, above ``hi`` and at every allowed size in between. The
fewest and most sizes any of those outcomes trains give the range (``max_rounds`` is honoured). Times
come from the throughput model of :mod:`diffmem.plan.resources`; a run shared by several experiments (the base
value of every sweep) is counted once, as the workflow trains it once. Each experiment also shows how its runs
train: GPUs per run and the micro-batch of the per-GPU batch (:func:`diffmem.plan.records.micro_batch`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from diffmem.plan import config as dmc
from diffmem.plan import resources
from diffmem.plan import search_cost as emm_cost
from diffmem.plan.records import micro_batch


@dataclass
class Runs:
    """The sized runs of one outcome, keyed by (run id, size), with their seconds per stage."""

    runs: dict[tuple[str, int], dict] = field(default_factory=dict)

    def add(self, key: tuple[str, int], stages: dict) -> None:
        self.runs.setdefault(key, stages)

    def totals(self, keys: Iterable[tuple[str, int]] | None = None) -> dict:
        items = [self.runs[k] for k in (self.runs if keys is None else keys)]
        return {
            "runs": len(items),
            "images": sum(r["images"] for r in items),
            "samples": sum(r["samples"] for r in items),
            "train_h": sum(r["train_s"] for r in items) / 3600,
            "sample_h": sum(r["sample_s"] for r in items) / 3600,
            "score_h": sum(r["score_s"] for r in items) / 3600,
        }


def allowed_sizes(value: dmc.Value) -> list[int]:
    """Sizes the data can make (without reading any data file: where that would be needed, e.g. a blend
    with an image folder, every multiple of the class count, which is what a complete source allows)."""
    sizes = dmc.allowed_sizes(value.settings, load=False)
    if sizes is None:
        c = int(value.settings["data"]["classes"])
        sizes = list(range(c, int(value.emm.get("hi") or max(value.sizes)) + 1, c))
    return [s for s in sizes if value.emm["lo"] <= s <= value.emm["hi"]] if value.mode == "emm" else value.sizes


def outcomes(allowed: list[int], k: int = 64) -> list[float]:
    """True EMMs to replay a search against: below the range, above it, and ``k`` log-spaced between."""
    lo, hi = allowed[0], allowed[-1]
    inner = [lo * (hi / lo) ** (i / (k - 1)) for i in range(k)] if hi > lo else [lo]
    return [lo - 1, *inner, hi]


def search_sizes(value: dmc.Value, allowed: list[int], true_emm: float) -> list[int]:
    """Sizes the EMM search of ``value`` trains when every size <= ``true_emm`` memorizes, no larger one."""
    e = value.emm
    run = emm_cost.replay(lambda s: 1.0 if s <= true_emm else 0.0, allowed, int(e["lo"]), int(e["hi"]),
                          threshold=float(e["threshold"]), tolerance=float(e["tolerance"]),
                          per_round=int(e["per_round"]), max_rounds=int(e["max_rounds"]),
                          start=e.get("start"))  # fmt: skip
    return run["sizes"]


def _stages(value: dmc.Value, size: int, config: dict, gpus: int) -> dict:
    s = dmc.run_settings(value.settings, size)
    est = resources.describe(s, config, gpus)
    optimum = s["model"]["arch"] == "optimum"
    images = 0 if optimum else resources.schedule.training_plan(s["train"], size)["images"]
    return {
        "images": images,
        "samples": est["snapshots"] * int(s["sample"]["n"]),
        "train_s": est["train_s"] * gpus,  # GPU-seconds
        "sample_s": est["sample_s"],
        "score_s": est["score_s"],
    }


def batching(vals: list[dmc.Value], config: dict, gpus: int) -> dict | None:
    """How an experiment's runs train: GPUs per run and the range of micro-batches and per-GPU batches (None:
    no training, the closed-form optimum)."""
    pairs = []
    for v in vals:
        s = dmc.run_settings(v.settings, max(v.sizes) if v.mode == "sizes" else int(v.emm["hi"]))
        if s["model"]["arch"] != "optimum":
            pairs.append((micro_batch(s, config), int(s["train"]["batch"]) // gpus))
    if not pairs:
        return None
    micro, per_gpu = zip(*pairs, strict=True)
    return {
        "gpus_per_run": gpus,
        "micro_batch": [min(micro), max(micro)],
        "per_gpu_batch": [min(per_gpu), max(per_gpu)],
    }


def estimate(config: dict) -> dict:
    """Per experiment the fewest and most runs/images/samples/hours, and the config's total range."""
    plan = dmc.expand(config)
    gpus = int(config["gpus_per_run"]) if config["gpu"] else 1
    every = Runs()
    per_exp: dict[str, dict] = {}
    low_keys: set[tuple[str, int]] = set()
    high_keys: set[tuple[str, int]] = set()
    for name, vals in plan.items():
        lo_keys: set[tuple[str, int]] = set()
        hi_keys: set[tuple[str, int]] = set()
        for v in vals:
            allowed = allowed_sizes(v)
            if v.mode == "emm":
                options = [search_sizes(v, allowed, t) for t in outcomes(allowed)]
            else:
                options = [list(v.sizes)]
            for sizes in options:
                for size in sizes:
                    every.add((v.run_id, size), _stages(v, size, config, gpus))

            def cost(sizes, v=v):
                return sum(every.runs[(v.run_id, s)]["train_s"] for s in sizes)

            lo_keys |= {(v.run_id, s) for s in min(options, key=lambda o: (len(o), cost(o)))}
            hi_keys |= {(v.run_id, s) for s in max(options, key=lambda o: (len(o), cost(o)))}
        per_exp[name] = {"values": len(vals), "fewest": every.totals(lo_keys), "most": every.totals(hi_keys),
                         "batching": batching(vals, config, gpus)}  # fmt: skip
        low_keys |= lo_keys
        high_keys |= hi_keys
    return {
        "device": resources.device_kind(config),
        "speed": float(config["compute"]["speed"]),
        "gpus_per_run": gpus,
        "experiments": per_exp,
        "total": {"fewest": every.totals(low_keys), "most": every.totals(high_keys)},
    }


def format_table(result: dict) -> str:
    """A plain-text table of :func:`estimate` (hours are device-hours: GPU-hours on a GPU kind)."""
    head = (f"{'experiment':<24} {'values':>6} {'GPUs x micro/per-GPU':>22} {'runs':>11} {'images trained':>21} "
            f"{'samples':>19} {'train h':>17} {'sample h':>15} {'score h':>13} {'total h':>17}")  # fmt: skip
    lines = [
        f"cost on device kind {result['device']} (speed x{result['speed']:g}, {result['gpus_per_run']} GPU(s) per "
        "training run); each column: fewest .. most (EMM searches end after fewer or more rounds)",
        "GPUs x micro/per-GPU: GPUs per training run x images per pass (micro-batch, fitting compute.gpu_memory_gb) "
        "/ per-GPU batch",
        head,
        "-" * len(head),
    ]

    def rng(a, b, fmt):
        return f"{fmt(a)}..{fmt(b)}"

    def row(name, values, lo, hi, batching=None):
        tot_lo = lo["train_h"] + lo["sample_h"] + lo["score_h"]
        tot_hi = hi["train_h"] + hi["sample_h"] + hi["score_h"]
        return (
            f"{name:<24} {values:>6} {_batching(batching):>22} {rng(lo['runs'], hi['runs'], str):>11} "
            f"{rng(lo['images'], hi['images'], _si):>21} {rng(lo['samples'], hi['samples'], _si):>19} "
            f"{rng(lo['train_h'], hi['train_h'], _h):>17} {rng(lo['sample_h'], hi['sample_h'], _h):>15} "
            f"{rng(lo['score_h'], hi['score_h'], _h):>13} {rng(tot_lo, tot_hi, _h):>17}"
        )

    for name, e in result["experiments"].items():
        lines.append(row(name, e["values"], e["fewest"], e["most"], e.get("batching")))
    t = result["total"]
    lines.append("-" * len(head))
    values = sum(e["values"] for e in result["experiments"].values())
    lines.append(row("total (runs shared)", values, t["fewest"], t["most"]))
    return "\n".join(lines)


def _batching(b: dict | None) -> str:
    """``1 x 128/512``: GPUs per run x micro-batch / per-GPU batch (``lo..hi`` where an experiment's runs differ)."""
    if not b:
        return "-"

    def span(pair):
        return f"{pair[0]}" if pair[0] == pair[1] else f"{pair[0]}..{pair[1]}"

    return f"{b['gpus_per_run']} x {span(b['micro_batch'])}/{span(b['per_gpu_batch'])}"


def _si(x: float) -> str:
    for unit, f in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= f:
            return f"{x / f:.3g}{unit}"
    return f"{x:.0f}"


def _h(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"
