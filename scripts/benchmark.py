#!/usr/bin/env python3
"""Speed and peak memory of diffmem's steps: training, sampling, the optimal denoiser, kNN scoring.

A thin command line over the library: every number comes from diffmem's own functions on synthetic
data of the right shape (random uint8 images; speed does not depend on their content):

- ``train``: :func:`diffmem.training.loop.train` on a random subset, images/s over ``--steps`` optimizer steps
  after ``--warmup`` steps (timed from train's per-step progress lines, so start-up, cuDNN autotuning
  and the final snapshot write are left out), for the net presets ``tiny`` (digits 1x8x8, 16 channels,
  [1, 2], 1 block), ``small`` (32 channels) and ``paper`` (DDPM++ 3x32x32, 128 channels, [2, 2, 2],
  2 blocks, attention at 16, dropout 0.13); VP preconditioning, Adam, EMA as in the paper;
- ``sample``: samples/s of :func:`diffmem.science.sampler.generate` (EDM Heun, 18 steps = 35 network
  evaluations) with randomly initialised nets of the same presets, after a short warm-up call; the
  JSON also gives ``network_evals_per_s``, to compare with train's ``forward_equiv_per_s`` (3 x img/s);
- ``optimum``: the same sampler on :class:`diffmem.science.sampler.OptimalDenoiser` at |D| = 256 and 1024
  (1x8x8) and, with ``--large``, |D| = 50000 (3x32x32);
- ``score``: :func:`diffmem.science.memorization.knn_top2` for 1000 queries x 1024 training images (1x8x8),
  without ``--quick`` 1024 x 20000 (3x32x32) and, with ``--large``, 10000 x 50000 (3x32x32); the JSON
  also gives ``gemm32_s``, one float32 GEMM of the same shape, and ``gemm32_share`` = gemm32_s / seconds.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` per case (reset before each); on the host the
process's peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``) after each case. The host peak
only grows, so cases run smallest first and ``host_peak_growth_mib`` says how much a case raised it.

Writes one JSON (command line, versions, device, threads, options, one record per case) to ``--out``
(default ``benchmarks/benchmark-<device>.json``) and prints a Markdown table. The benches themselves are
in ``scripts/bench_cases.py``. Needs diffmem's checkout with torch, numpy and pyyaml (the schema's
defaults fill the run settings), no snakemake, no jsonschema::

    PYTHONPATH=src python3 scripts/benchmark.py --quick --device cpu --threads 1   # < 30 s
    PYTHONPATH=src python3 scripts/benchmark.py --device cpu --threads 2
    PYTHONPATH=src python3 scripts/benchmark.py --device cuda --large              # ~3 min on an H100

Exit status 1 when a case failed (its record says why; the others still run), 2 on bad options.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import traceback
from functools import partial
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import diffmem  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH=src or an install
    sys.path.insert(0, str(REPO / "src"))
if str(Path(__file__).resolve().parent) not in sys.path:  # bench_cases beside this file (also under runpy)
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cases import (  # noqa: E402
    PRESETS,
    bench_optimum,
    bench_sample,
    bench_score,
    bench_train,
    environment,
    host_peak_mib,
)

from diffmem.io import write_json  # noqa: E402
from diffmem.science import nets  # noqa: E402
from diffmem.science import precision as dmprec  # noqa: E402

BENCHES = ("train", "sample", "optimum", "score")

# Defaults per mode (each overridable on the command line).
MODES: dict[str, dict[str, Any]] = {
    "quick": {
        "presets": ["tiny"],
        "warmup": 2,
        "steps": 10,
        "batch": 32,
        "samples": 32,
        "sample_batch": 32,
        "optimum_samples": 64,
    },
    "cpu": {
        "presets": ["tiny", "small"],
        "warmup": 3,
        "steps": 20,
        "batch": 32,
        "samples": 64,
        "sample_batch": 64,
        "optimum_samples": 256,
    },
    "cuda": {
        "presets": ["tiny", "small", "paper"],
        "warmup": 5,
        "steps": 20,
        "batch": 512,
        "samples": 1000,
        "sample_batch": 1000,
        "optimum_samples": 1000,
    },
    "large": {
        "presets": ["tiny", "small", "paper"],
        "warmup": 5,
        "steps": 50,
        "batch": 512,
        "samples": 1000,
        "sample_batch": 1000,
        "optimum_samples": 1000,
    },
}
OPTIMUM_CASES = [((1, 8, 8), 256, None), ((1, 8, 8), 1024, None)]  # (shape, |D|, samples or None = default)
OPTIMUM_LARGE = [((3, 32, 32), 50000, 100)]
SCORE_CASES = [((1, 8, 8), 1000, 1024)]  # (shape, queries, training images)
SCORE_MID = [((3, 32, 32), 1024, 20000)]  # not with --quick (issue 13's case)
SCORE_LARGE = [((3, 32, 32), 10000, 50000)]


# ----------------------------------------------------------------------------------------------------
# Running and reporting.


def _train_cases(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """The train bench's cases, named "<preset>[ +tf32| +bf16][ +compile][ +cl]" (diffmem.plan.resources
    files records by these tags)."""
    both = {"off": [False], "on": [True], "both": [False, True]}
    cases = []
    for p in args.presets:
        for prec in args.precision:
            for comp in both[args.compile]:
                for cl in both[args.channels_last]:
                    name = p + ("" if prec == "fp32" else f" +{prec}") + " +compile" * comp + " +cl" * cl
                    run = partial(bench_train, p, args.dev, args.batch, args.warmup, args.steps, prec, comp, cl)
                    cases.append(("train", name, run))
    return cases


def plan_cases(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """(bench, case name, thunk) in run order: smaller cases first within each bench."""
    dev, cases = args.dev, []
    if "train" in args.only:
        cases += _train_cases(args)
    if "sample" in args.only:
        for p in args.presets:
            for prec in args.precision:
                name = p + ("" if prec == "fp32" else f" +{prec}")
                run = partial(bench_sample, p, dev, args.samples, args.sample_batch, args.num_steps, prec)
                cases.append(("sample", name, run))
    if "optimum" in args.only:
        for shape, size, n in OPTIMUM_CASES + (OPTIMUM_LARGE if args.large else []):
            n = n or args.optimum_samples
            name = f"{'x'.join(map(str, shape))} D={size}"
            run = partial(bench_optimum, shape, size, dev, n, min(n, args.sample_batch), args.num_steps)
            cases.append(("optimum", name, run))
    if "score" in args.only:
        for shape, nq, nt in SCORE_CASES + (SCORE_MID if not args.quick else []) + (SCORE_LARGE if args.large else []):
            name = f"{'x'.join(map(str, shape))} {nq}x{nt}"
            cases.append(("score", name, partial(bench_score, shape, nq, nt, dev)))
    return cases


def _round(x: Any) -> Any:
    """Floats to 5 significant digits (timings are not more precise than that)."""
    return float(f"{x:.5g}") if isinstance(x, float) else x


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or x == "":
        return ""
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 10**digits else f"{x:,.0f}"
    return str(x)


def markdown_table(report: dict[str, Any]) -> str:
    env = report["environment"]
    cuda = env["device"]["type"] == "cuda"
    head = ["bench", "case", "batch", "speed", "unit", "seconds"]
    head += ["GPU peak MiB"] if cuda else []
    head += ["host peak MiB", "status"]
    lines = [
        f"diffmem benchmark on {env['device']['name']} ({env['threads']} threads), torch {env['torch']}, "
        f"{env['started']}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in report["results"]:
        row = [
            r["bench"],
            r["case"],
            _fmt(r.get("batch")),
            _fmt(r.get("per_s")),
            r.get("unit", ""),
            _fmt(r.get("seconds")),
        ]
        row += [_fmt(r.get("cuda_peak_allocated_mib"), 4)] if cuda else []
        row += [_fmt(r.get("host_peak_mib"), 4), r["status"] if r["status"] == "ok" else r.get("error", "")[:60]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (auto: cuda when available)"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="tiny preset, a few steps: < 30 s on one CPU core")
    ap.add_argument(
        "--large",
        action="store_true",
        help="GPU sizes: paper net 50 steps at batch 512, 1000 samples, optimum |D|=50000, kNN 10000 x 50000 (3x32x32)",
    )
    ap.add_argument("--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}")
    ap.add_argument(
        "--presets",
        default=None,
        help=f"comma-separated nets from {','.join(PRESETS)} "
        "(default: tiny,small on CPU, +paper on CUDA; tiny with --quick)",
    )
    ap.add_argument("--batch", type=int, default=None, help="training batch (default: 32 CPU, 512 CUDA)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps (default: 20; 50 with --large)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed training steps first (>= 1)")
    ap.add_argument("--samples", type=int, default=None, help="samples per net in the sample bench")
    ap.add_argument("--sample-batch", type=int, default=None, help="sampling batch size")
    ap.add_argument("--optimum-samples", type=int, default=None, help="samples per optimum case (small |D|)")
    ap.add_argument("--num-steps", type=int, default=18, help="Heun steps of the sampler (EDM: 18)")
    ap.add_argument(
        "--precision",
        default=None,
        help="comma-separated train/sample precisions from fp32,tf32,bf16 (diffmem.science.precision; default fp32)",
    )
    ap.add_argument(
        "--tf32",
        default="off",
        choices=["off", "on", "both"],
        help="shorthand for --precision tf32 (on) or fp32,tf32 (both)",
    )
    ap.add_argument(
        "--compile",
        default="off",
        choices=["off", "on", "both"],
        help="train with train.compile (torch.compile of the net)",
    )
    ap.add_argument(
        "--channels-last",
        default="off",
        choices=["off", "on", "both"],
        help="train with train.channels_last (NHWC weights and activations)",
    )
    ap.add_argument("--out", default=None, help="JSON path (default: benchmarks/benchmark-<device>.json)")
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    return ap


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, checked, with the defaults of their mode (``quick``, ``cpu``, ``cuda`` or ``large``)
    filled in; ``args.dev`` the torch device. Bad options end the script with status 2."""
    ap = _parser()
    args = ap.parse_args(argv)

    if args.quick and args.large:
        ap.error("--quick and --large exclude each other")
    if args.precision is None:
        args.precision = {"off": "fp32", "on": "tf32", "both": "fp32,tf32"}[args.tf32]
    elif args.tf32 != "off":
        ap.error("--tf32 and --precision exclude each other")
    args.precision = [x.strip() for x in args.precision.split(",") if x.strip()]
    if not args.precision or set(args.precision) - set(dmprec.PRECISIONS):
        ap.error(f"--precision: expected names from {','.join(dmprec.PRECISIONS)}")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: torch sees no CUDA device")
    args.dev = torch.device(args.device)
    mode = "quick" if args.quick else "large" if args.large else args.device
    args.mode = mode
    for key, value in MODES[mode].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if isinstance(args.presets, str):
        args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    args.only = [b.strip() for b in args.only.split(",") if b.strip()]
    bad = [p for p in args.presets if p not in PRESETS] + [b for b in args.only if b not in BENCHES]
    if bad:
        ap.error(f"unknown preset or bench {bad}; presets: {list(PRESETS)}, benches: {list(BENCHES)}")
    for key in ("batch", "steps", "warmup", "samples", "sample_batch", "optimum_samples", "num_steps"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    return args


def default_out(dev: torch.device) -> Path:
    name = "cpu"
    if dev.type == "cuda":
        name = "cuda-" + re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name(dev).lower()).strip("-")
    return REPO / "benchmarks" / f"benchmark-{name}.json"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = args.dev
    report: dict[str, Any] = {
        "environment": environment(dev),
        "mode": args.mode,
        "options": {k: v for k, v in vars(args).items() if k not in ("dev", "mode")},
        "presets": {
            p: {
                "shape": list(PRESETS[p]["shape"]),
                "net": PRESETS[p]["net"],
                "n_params": nets.describe_net(PRESETS[p]["net"])["n_params"],
            }
            for p in args.presets
        },
        "results": [],
    }
    t_start = time.perf_counter()
    for bench, case, thunk in plan_cases(args):
        print(f"[benchmark] {bench} {case} ...", file=sys.stderr, flush=True)
        rec: dict[str, Any] = {"bench": bench, "case": case}
        try:
            rec.update(thunk())
            rec["status"] = "ok"
        except Exception as e:  # one failed case (e.g. out of memory) must not lose the others
            traceback.print_exc(file=sys.stderr)
            rec.update(status="error", error=f"{type(e).__name__}: {e}", host_peak_mib=round(host_peak_mib(), 1))
            if dev.type == "cuda":
                torch.cuda.empty_cache()
        if "per_s" in rec:
            print(f"[benchmark] {bench} {case}: {rec['per_s']:.4g} {rec['unit']}", file=sys.stderr, flush=True)
        report["results"].append(rec)
    report["results"] = [{k: _round(v) for k, v in r.items()} for r in report["results"]]
    report["wall_s"] = round(time.perf_counter() - t_start, 2)
    report["host_peak_mib"] = round(host_peak_mib(), 1)

    out = Path(args.out) if args.out else default_out(dev)
    write_json(out, report)
    table = markdown_table(report)
    print(table)
    print(f"\nJSON: {out}  ({report['wall_s']:.1f} s)")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table + "\n")
    return 1 if any(r["status"] != "ok" for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
