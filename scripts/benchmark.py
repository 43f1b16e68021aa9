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
(default ``benchmarks/benchmark-<device>.json``) and prints a Markdown table. Needs torch and numpy
only (no snakemake, no jsonschema)::

    PYTHONPATH=src python3 scripts/benchmark.py --quick --device cpu --threads 1   # < 30 s
    PYTHONPATH=src python3 scripts/benchmark.py --device cpu --threads 2
    PYTHONPATH=src python3 scripts/benchmark.py --device cuda --large              # ~3 min on an H100

Exit status 1 when a case failed (its record says why; the others still run), 2 on bad options.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import re
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
try:
    import diffmem  # noqa: F401
except ImportError:  # run from a checkout without PYTHONPATH=src or an install
    sys.path.insert(0, str(REPO / "src"))

from diffmem.io import write_json  # noqa: E402
from diffmem.science import memorization, nets  # noqa: E402
from diffmem.science import precision as dmprec  # noqa: E402
from diffmem.science import sampler as sample  # noqa: E402
from diffmem.training import loop as dmtrain  # noqa: E402

BENCHES = ("train", "sample", "optimum", "score")

# Net presets: image shape (C, H, W) and the net config overrides.
_DIGITS_NET = {
    "resolution": 8,
    "img_channels": 1,
    "channel_mult": [1, 2],
    "num_blocks": 1,
    "attn_resolutions": [],
    "dropout": 0.0,
}
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"shape": (1, 8, 8), "net": {**_DIGITS_NET, "model_channels": 16}},
    "small": {"shape": (1, 8, 8), "net": {**_DIGITS_NET, "model_channels": 32}},
    "paper": {
        "shape": (3, 32, 32),
        "net": {
            "resolution": 32,
            "img_channels": 3,
            "model_channels": 128,
            "channel_mult": [2, 2, 2],
            "num_blocks": 2,
            "attn_resolutions": [16],
            "dropout": 0.13,
        },
    },
}

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
MIB = 2**20


# ----------------------------------------------------------------------------------------------------
# Measuring.


def host_peak_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@contextlib.contextmanager
def measured(dev: torch.device, record: dict[str, Any]):
    """Fill ``record`` with peak memory (CUDA: allocated/reserved since entry; host: process peak)."""
    host_before = host_peak_mib()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    try:
        yield
    finally:
        if dev.type == "cuda":
            record["cuda_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated(dev) / MIB, 1)
            record["cuda_peak_reserved_mib"] = round(torch.cuda.max_memory_reserved(dev) / MIB, 1)
        record["host_peak_mib"] = round(host_peak_mib(), 1)
        record["host_peak_growth_mib"] = round(record["host_peak_mib"] - host_before, 1)


def random_u8(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


class StepClock:
    """A ``progress`` hook for train(): the time each step's progress record arrives."""

    def __init__(self) -> None:
        self.times: dict[int, float] = {}

    def __call__(self, record: dict) -> None:
        self.times[int(record["step"])] = time.perf_counter()


# ----------------------------------------------------------------------------------------------------
# The benchmarks. Each returns one record (dict) per case.


def train_settings(
    preset: str,
    batch: int,
    total_steps: int,
    n_images: int,
    precision: str = "fp32",
    compile: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Resolved run settings (the contract's layout) for a speed run of ``total_steps`` steps."""
    shape = PRESETS[preset]["shape"]
    return {
        "data": {
            "source": "synthetic",
            "path": None,
            "verify_md5": False,
            "resolution": shape[1],
            "classes": 1,
            "size": n_images,
            "labels": "none",
            "label_classes": None,
            "blend": None,
            "seed": 0,
        },
        "model": nets.resolve_net_config({**PRESETS[preset]["net"], "label_dim": 0}),
        "diffusion": {"precond": "vp"},
        "train": {
            "optimizer": "adam",
            "lr": 2e-4,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
            "weight_decay": 0.0,
            "batch": batch,
            "duration": {"unit": "steps", "value": total_steps},
            "warmup": {"unit": "steps", "value": 1, "mode": "linear"},
            "ema": {"mode": "decay", "decay": 0.99929, "rampup": 0.05},
            "truncate_kimg": True,
            "order": "reshuffle",
            "snapshots": 1,
            "checkpoint_every": 0,
            "seed": 0,
            "grad_clip": None,
            "precision": precision,
            "compile": compile,
            "channels_last": channels_last,
        },
    }


def bench_train(
    preset: str,
    dev: torch.device,
    batch: int,
    warmup: int,
    steps: int,
    precision: str = "fp32",
    compile: bool = False,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Images/s of train.train between the end of step ``warmup`` and the end of step ``warmup + steps``.

    The run has one step more, whose snapshot and state writes are not timed. ``first_step_s``: from the
    call to the end of step 1 (set-up, and with ``compile`` the compilation).
    """
    total = warmup + steps + 1
    n_images = max(1024, 2 * batch)
    subset = {
        "images": random_u8(n_images, PRESETS[preset]["shape"], 0),
        "cond_labels": np.full(n_images, -1, dtype=np.int64),
        "label_dim": 0,
    }
    settings = train_settings(preset, batch, total, n_images, precision, compile, channels_last)
    rec: dict[str, Any] = {"batch": batch, "warmup_steps": warmup, "steps": steps, "n_images": n_images}
    clock = StepClock()
    with measured(dev, rec), tempfile.TemporaryDirectory(prefix="diffmem-bench-") as tmp:
        t0 = time.perf_counter()
        summary = dmtrain.train(settings, subset, tmp, device=dev, log=lambda line: None, progress=clock, log_every=1)
        rec["wall_s"] = round(time.perf_counter() - t0, 3)
    rec["n_params"] = summary.get("n_params")
    rec["images_per_s_incl_warmup"] = summary.get("images_per_s")
    t = clock.times
    if 1 in t:
        rec["first_step_s"] = t[1] - t0
    if warmup in t and warmup + steps in t:
        durations = [t[k] - t[k - 1] for k in range(warmup + 1, warmup + steps + 1) if k in t and k - 1 in t]
        rec["seconds"] = t[warmup + steps] - t[warmup]
        rec["per_s"] = steps * batch / rec["seconds"]
        rec["step_s_median"] = statistics.median(durations)
        rec["per_s_median_step"] = batch / rec["step_s_median"]
        rec["method"] = "progress-hook timestamps, warm-up steps excluded"
    else:  # no progress records: fall back on train's own speed (includes the warm-up)
        rec["seconds"] = summary["wall_s"]
        rec["per_s"] = summary["images_per_s"]
        rec["method"] = "train.json images_per_s (includes the warm-up steps)"
    rec["unit"] = "img/s"
    # forward + backward ~ 3 forward passes: the training rate in sampler-comparable network evaluations
    rec["forward_equiv_per_s"] = 3 * rec["per_s"]
    return rec


def random_denoiser(preset: str, dev: torch.device):
    from diffmem.science import diffusion

    torch.manual_seed(0)
    net = nets.build_net(PRESETS[preset]["net"])
    return diffusion.make_precond(net, {"precond": "vp"}).to(dev).eval().requires_grad_(False), net


def timed_generate(denoise, n: int, shape, batch: int, dev: torch.device, num_steps: int) -> float:
    """Seconds for generate() of ``n`` samples, after an untimed warm-up batch (2 Heun steps)."""
    sample.generate(denoise, min(n, batch), shape, seed=1, batch_size=batch, device=dev, num_steps=2)
    sync(dev)
    t0 = time.perf_counter()
    images, _ = sample.generate(denoise, n, shape, seed=0, batch_size=batch, device=dev, num_steps=num_steps)
    sync(dev)
    assert images.shape == (n, *shape)
    return time.perf_counter() - t0


def bench_sample(
    preset: str, dev: torch.device, n: int, batch: int, num_steps: int, precision: str = "fp32"
) -> dict[str, Any]:
    shape = PRESETS[preset]["shape"]
    rec: dict[str, Any] = {
        "n": n,
        "batch": batch,
        "num_steps": num_steps,
        "network_evals": 2 * num_steps - 1,
        "n_params": nets.describe_net(PRESETS[preset]["net"])["n_params"],
    }
    with measured(dev, rec), dmprec.backend_flags(dev, precision):  # as diffmem.steps.pipeline.sample_run
        denoise, _ = random_denoiser(preset, dev)
        if precision == "bf16":
            net_call = denoise

            def denoise(*a, **k):
                with dmprec.autocast(dev, "bf16"):
                    return net_call(*a, **k)

        rec["seconds"] = timed_generate(denoise, n, shape, batch, dev, num_steps)
    rec["per_s"] = n / rec["seconds"]
    rec["network_evals_per_s"] = rec["per_s"] * rec["network_evals"]  # compare: train's forward_equiv_per_s
    rec["unit"] = "samples/s"
    return rec


def bench_optimum(shape, size: int, dev: torch.device, n: int, batch: int, num_steps: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"size": size, "n": n, "batch": batch, "num_steps": num_steps}
    with measured(dev, rec):
        train_u8 = random_u8(size, shape, 0)
        t0 = time.perf_counter()
        denoise = sample.OptimalDenoiser(train_u8, device=dev)
        sync(dev)
        rec["setup_s"] = time.perf_counter() - t0
        rec["seconds"] = timed_generate(denoise, n, shape, batch, dev, num_steps)
        del denoise
    rec["per_s"] = n / rec["seconds"]
    rec["unit"] = "samples/s"
    return rec


def bench_score(shape, n_queries: int, n_train: int, dev: torch.device) -> dict[str, Any]:
    rec: dict[str, Any] = {"n": n_queries, "size": n_train}
    with measured(dev, rec):
        queries, train_u8 = random_u8(n_queries, shape, 1), random_u8(n_train, shape, 0)
        memorization.knn_top2(queries[:16], train_u8[:64], device=dev)  # warm-up (kernels, cuBLAS handles)
        sync(dev)
        t0 = time.perf_counter()
        dist, idx = memorization.knn_top2(queries, train_u8, device=dev)
        rec["seconds"] = time.perf_counter() - t0
        # The yardstick: one float32 GEMM of the same shape (queries x training images x pixels), the
        # speed knn_top2's float32 search approaches while staying exact.
        qf = torch.from_numpy(queries.reshape(n_queries, -1)).to(dev, torch.float32)
        tf = torch.from_numpy(train_u8.reshape(n_train, -1)).to(dev, torch.float32)
        sync(dev)
        t0 = time.perf_counter()
        torch.mm(qf, tf.T)
        sync(dev)
        rec["gemm32_s"] = time.perf_counter() - t0
        rec["gemm32_share"] = rec["gemm32_s"] / rec["seconds"]
        del qf, tf
    assert dist.shape == idx.shape == (n_queries, 2)
    rec["per_s"] = n_queries / rec["seconds"]
    rec["unit"] = "queries/s"
    return rec


# ----------------------------------------------------------------------------------------------------
# Environment.


def device_info(dev: torch.device) -> dict[str, Any]:
    if dev.type == "cuda":
        p = torch.cuda.get_device_properties(dev)
        return {
            "type": "cuda",
            "name": torch.cuda.get_device_name(dev),
            "capability": list(torch.cuda.get_device_capability(dev)),
            "total_memory_gib": round(p.total_memory / 2**30, 1),
            "multiprocessors": p.multi_processor_count,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "count": torch.cuda.device_count(),
        }
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return {"type": "cpu", "name": name}


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def environment(dev: torch.device) -> dict[str, Any]:
    try:
        cpus_usable = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus_usable = os.cpu_count()
    return {
        "command": shlex.join(getattr(sys, "orig_argv", [sys.executable, *sys.argv])),
        "argv": sys.argv,
        "env": {
            k: os.environ[k]
            for k in ("PYTHONPATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")
            if k in os.environ
        },
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "diffmem": getattr(sys.modules.get("diffmem"), "__version__", None),
        "diffmem_path": str(Path(sys.modules["diffmem"].__file__).parent),
        "git_commit": git_commit(),
        "device": device_info(dev),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": cpus_usable,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


# ----------------------------------------------------------------------------------------------------
# Running and reporting.


def plan_cases(args: argparse.Namespace) -> list[tuple[str, str, Any]]:
    """(bench, case name, thunk) in run order: smaller cases first within each bench."""
    dev, cases = args.dev, []
    both = {"off": [False], "on": [True], "both": [False, True]}
    # case names: "<preset>[ +tf32| +bf16][ +compile][ +cl]" (diffmem.plan.resources files records by these tags)
    if "train" in args.only:
        for p in args.presets:
            for prec in args.precision:
                for comp in both[args.compile]:
                    for cl in both[args.channels_last]:
                        name = p + ("" if prec == "fp32" else f" +{prec}") + " +compile" * comp + " +cl" * cl
                        cases.append(
                            (
                                "train",
                                name,
                                lambda p=p, prec=prec, comp=comp, cl=cl: bench_train(
                                    p, dev, args.batch, args.warmup, args.steps, prec, comp, cl
                                ),
                            )
                        )
    if "sample" in args.only:
        for p in args.presets:
            for prec in args.precision:
                name = p + ("" if prec == "fp32" else f" +{prec}")
                cases.append(
                    (
                        "sample",
                        name,
                        lambda p=p, prec=prec: bench_sample(
                            p, dev, args.samples, args.sample_batch, args.num_steps, prec
                        ),
                    )
                )
    if "optimum" in args.only:
        for shape, size, n in OPTIMUM_CASES + (OPTIMUM_LARGE if args.large else []):
            n = n or args.optimum_samples
            name = f"{'x'.join(map(str, shape))} D={size}"
            cases.append(
                (
                    "optimum",
                    name,
                    lambda s=shape, m=size, n=n: bench_optimum(s, m, dev, n, min(n, args.sample_batch), args.num_steps),
                )
            )
    if "score" in args.only:
        for shape, nq, nt in SCORE_CASES + (SCORE_MID if not args.quick else []) + (SCORE_LARGE if args.large else []):
            name = f"{'x'.join(map(str, shape))} {nq}x{nt}"
            cases.append(("score", name, lambda s=shape, q=nq, t=nt: bench_score(s, q, t, dev)))
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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
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
