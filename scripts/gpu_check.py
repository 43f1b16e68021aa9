"""The one prepared GPU check: what the first lent GPU must settle, in one command, in a few minutes.

    PYTHONPATH=src python3 scripts/gpu_check.py --out OUT          # on the GPU machine (about 3-5 min on an H200)
    PYTHONPATH=src python3 scripts/gpu_check.py --quick --device cpu --out /tmp/x   # the same code paths, tiny, CPU

It runs the workflow's own steps (``diffmem.steps``), not a copy of them:

1. **Training at the planned micro-batch** (``plan.memory.micro_batch`` for the GPU's memory): a few optimizer
   steps of the paper's base net (fp32, tf32, bf16) and of the preset's deepest net (12 blocks, fp32), each
   with its GPU peak against the memory model's estimate, and images/s (the cost model's speeds).
2. **Sampling speed** of the base net under each precision (EDM Heun, 18 steps).
3. **fp32 vs bf16 memorization on a near-EMM case**: the default config's basic run at |D| = 30 (its EMM lies
   in [20, 30) on the CPU), trained once, sampled and scored under fp32 and under bf16 with the same seeds; the
   two ratios must agree within their 95% intervals.

Writes ``gpu-check.json`` and ``gpu-check.md`` to ``--out`` and exits 1 when a check fails (peak above the
model's estimate by more than 10%, ratios that disagree, a step that raised).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from diffmem.io import write_json
from diffmem.plan import config as dmc
from diffmem.plan import memory
from diffmem.plan.settings_factory import run_settings
from diffmem.science.memorization import binomial_ci
from diffmem.science.netconfig import PAPER_NET
from diffmem.steps.sample import sample_run
from diffmem.steps.score import score_run
from diffmem.steps.train import train_run

PEAK_TOLERANCE = 1.10  # a measured peak may exceed the model's estimate by this factor before the check fails


def _peak_mib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None


def _reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _synthetic_subset(n: int, side: int, seed: int = 0) -> dict:
    """Random uint8 images of the paper's shape, in the subset format the steps read."""
    rng = np.random.default_rng(seed)
    return {"images": rng.integers(0, 256, (n, 3, side, side), dtype=np.uint8), "labels": np.zeros(n, np.int64),
            "cond_labels": np.full(n, -1, np.int64), "label_dim": 0, "source_index": np.arange(n),
            "source_id": np.zeros(n, np.int64), "settings": {"source": "synthetic", "size": n}}  # fmt: skip


def train_case(name: str, net: dict, precision: str, args, work: Path, gpu_gb: float | None) -> dict:
    """A few optimizer steps of ``net`` at the paper's batch, in rounds of the planned micro-batch."""
    from diffmem.data.subsets import save_subset

    batch = args.batch
    micro = memory.micro_batch(net, batch, gpu_gb)
    settings = run_settings(
        data={"source": "synthetic", "size": args.images, "resolution": net["resolution"], "labels": "none"},
        model=net,
        diffusion={"precond": "vp"},
        train={
            "batch": batch,
            "lr": 2e-4,
            "duration": {"unit": "steps", "value": args.steps},
            "snapshots": 1,
            "precision": precision,
            "checkpoint_every": 10**9,
        },  # fmt: skip
    )
    out = work / f"{name}-{precision}"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run.json", settings)
    save_subset(out / "subset.npz", _synthetic_subset(args.images, net["resolution"]))
    _reset(args.device)
    t0 = time.time()
    summary = train_run(out / "run.json", out / "subset.npz", out / "train", micro_batch=micro)
    wall = time.time() - t0
    peak, model = _peak_mib(args.device), memory.train_peak_mib(net, micro)
    return {"case": name, "precision": precision, "batch": batch, "micro_batch": micro, "steps": args.steps,
            "images_per_s": batch * args.steps / wall, "wall_s": wall, "peak_mib": peak, "model_mib": model,
            "peak_ok": peak is None or peak <= PEAK_TOLERANCE * model, "train_dir": str(out / "train"),
            "complete": summary.get("complete", True)}  # fmt: skip


def sample_case(trained: dict, precision: str, args) -> dict:
    """Samples/s of a trained run under one precision."""
    train_dir = Path(trained["train_dir"])
    settings = json.loads((train_dir.parent / "run.json").read_text())
    settings["sample"] = {**settings["sample"], "n": args.samples, "batch": args.samples, "precision": precision}
    if args.quick:
        settings["sample"]["num_steps"] = 4
    from diffmem.data.subsets import load_subset

    subset = load_subset(train_dir.parent / "subset.npz")
    out = train_dir.parent / f"samples-{precision}"
    out.mkdir(exist_ok=True)
    t0 = time.time()
    sample_run(settings, subset, train_dir / "train.json", out / "samples.npz", out / "samples.png", device=args.device)
    wall = time.time() - t0
    return {"precision": precision, "samples": args.samples, "samples_per_s": args.samples / wall, "wall_s": wall}


def near_emm_case(args, work: Path) -> dict:
    """The default config's basic run at |D| = 30: trained once, sampled and scored under fp32 and bf16."""
    from diffmem.data.subsets import load_subset, make_subset, save_subset

    cfg = dmc.load_config([str(Path(__file__).resolve().parents[1] / "config" / "config.yaml")])
    value = dmc.expand(cfg)["basic"][0]
    size = args.near_emm_size
    settings = dmc.run_settings(value.settings, size)
    if args.quick:  # the same path, a few steps
        settings["train"] = {**settings["train"], "duration": {"unit": "steps", "value": 10}, "snapshots": 1}
    out = work / "near-emm"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "run.json", settings)
    save_subset(out / "subset.npz", make_subset(dmc.data_spec(cfg, value.data_id, size)))
    train_run(out / "run.json", out / "subset.npz", out / "train")
    subset = load_subset(out / "subset.npz")
    ratios = {}
    for precision in ("fp32", "bf16"):
        s = {**settings, "sample": {**settings["sample"], "n": args.scored_samples, "precision": precision}}
        if args.quick:
            s["sample"]["num_steps"] = 4
        d = out / precision
        d.mkdir(exist_ok=True)
        sample_run(s, subset, out / "train" / "train.json", d / "samples.npz", d / "samples.png", device=args.device)
        res = score_run(s, subset, d / "samples.npz", d / "memorization.json", d / "distances.npz", d / "nearest.png",
                        device=args.device)  # fmt: skip
        n = int(res["n"])
        k = round(res["ratio"] * n)
        ratios[precision] = {"ratio": res["ratio"], "n": n, "ci": list(binomial_ci(k, n))}
    a, b = ratios["fp32"], ratios["bf16"]
    agree = a["ci"][0] <= b["ratio"] <= a["ci"][1] and b["ci"][0] <= a["ratio"] <= b["ci"][1]
    return {"size": size, "ratios": ratios, "agree": agree}


def environment(device: str) -> dict:
    env = {"torch": torch.__version__, "device": device, "python": sys.version.split()[0]}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(name=props.name, capability=list(torch.cuda.get_device_capability(0)), cuda=torch.version.cuda,
                   memory_gb=props.total_memory / 1e9, arch_list=torch.cuda.get_arch_list())  # fmt: skip
    return env


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--quick", action="store_true", help="tiny nets and counts (the CPU test of this script)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = {**PAPER_NET}
    deep = {**PAPER_NET, "num_blocks": 12}
    if args.quick:  # the same paths on nets and counts a CPU runs in seconds
        base = {**base, "model_channels": 8, "resolution": 8, "attn_resolutions": [4]}
        deep = {**base, "num_blocks": 3}
    args.batch, args.steps, args.images = (16, 2, 32) if args.quick else (512, 8, 1024)
    args.samples, args.scored_samples = (16, 64) if args.quick else (1000, 2000)
    args.near_emm_size = 30
    env = environment(args.device)
    gpu_gb = env.get("memory_gb")
    if args.quick:  # declare a GPU that holds the tiny deep net's step at half the batch: it trains in two rounds
        gpu_gb = memory.RESERVE_GB + memory.train_peak_mib(deep, args.batch // 2) * 2**20 / 1e9 * 1.01
    report = {"environment": env, "train": [], "sample": [], "near_emm": None, "errors": []}
    work = out / "work"

    def attempt(what, fn, *a):
        try:
            return fn(*a)
        except Exception as err:  # every failure is recorded and the other checks still run
            report["errors"].append({"check": what, "error": f"{type(err).__name__}: {err}",
                                     "traceback": traceback.format_exc()[-3000:]})  # fmt: skip
            return None

    for name, net, precisions in (("base", base, ("fp32", "tf32", "bf16")), ("depth12", deep, ("fp32",))):
        for precision in precisions:
            rec = attempt(f"train {name} {precision}", train_case, name, net, precision, args, work, gpu_gb)
            if rec:
                report["train"].append(rec)
                print(json.dumps(rec), flush=True)
    trained = next((r for r in report["train"] if r["case"] == "base" and r["precision"] == "fp32"), None)
    for precision in ("fp32", "tf32", "bf16") if trained else ():
        rec = attempt(f"sample {precision}", sample_case, trained, precision, args)
        if rec:
            report["sample"].append(rec)
            print(json.dumps(rec), flush=True)
    report["near_emm"] = attempt("near-EMM fp32 vs bf16", near_emm_case, args, work)
    print(json.dumps(report["near_emm"]), flush=True)
    ok = not report["errors"] and all(r["peak_ok"] for r in report["train"]) and (report["near_emm"] or {}).get("agree")
    report["ok"] = bool(ok)
    write_json(out / "gpu-check.json", report)
    (out / "gpu-check.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if ok else 1


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# GPU check: {env.get('name', env['device'])}, torch {env['torch']}", "",
             "| train | precision | batch | micro-batch | img/s | peak MiB | model MiB | peak ok |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in report["train"]:
        peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:,.0f}"
        lines.append(f"| {r['case']} | {r['precision']} | {r['batch']} | {r['micro_batch']} | {r['images_per_s']:,.1f} "
                     f"| {peak} | {r['model_mib']:,.0f} | {r['peak_ok']} |")  # fmt: skip
    lines += ["", "| sample | samples/s |", "|---|---|"]
    lines += [f"| {r['precision']} | {r['samples_per_s']:,.1f} |" for r in report["sample"]]
    ne = report["near_emm"]
    if ne:
        lines += ["", f"near-EMM (|D| = {ne['size']}): " + ", ".join(
            f"{p} {v['ratio']:.3f} [{v['ci'][0]:.3f}, {v['ci'][1]:.3f}]" for p, v in ne["ratios"].items())
            + f"; agree: {ne['agree']}"]  # fmt: skip
    lines += ["", f"errors: {len(report['errors'])}"] + [f"- {e['check']}: {e['error']}" for e in report["errors"]]
    lines += ["", f"ok: {report.get('ok')}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
