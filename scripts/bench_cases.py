"""The benchmarks of ``scripts/benchmark.py``: one function per bench, each measuring one case through
diffmem's own functions on synthetic data of the right shape, and what they measure with (peak memory,
the device, the environment). Imported by ``benchmark.py`` (which puts ``src/`` on the path first).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import resource
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diffmem.plan.settings_factory import run_settings
from diffmem.science import memorization, nets
from diffmem.science import precision as dmprec
from diffmem.science import sampler as sample
from diffmem.training import loop as dmtrain

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20

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
    """Complete run settings (:func:`diffmem.plan.settings_factory.run_settings`) for a speed run of
    ``total_steps`` steps of the net ``preset``: VP preconditioning, Adam at lr 2e-4 with one warm-up step,
    the paper's EMA decay, one snapshot, no checkpoints between."""
    shape = PRESETS[preset]["shape"]
    return run_settings(
        data={"source": "synthetic", "verify_md5": False, "resolution": shape[1], "classes": 1, "size": n_images},
        model=nets.resolve_net_config({**PRESETS[preset]["net"], "label_dim": 0}),
        diffusion={"precond": "vp"},
        train={
            "lr": 2e-4,
            "batch": batch,
            "duration": {"unit": "steps", "value": total_steps},
            "warmup": {"unit": "steps", "value": 1, "mode": "linear"},
            "ema": {"mode": "decay", "decay": 0.99929, "rampup": 0.05},
            "snapshots": 1,
            "checkpoint_every": 0,
            "precision": precision,
            "compile": compile,
            "channels_last": channels_last,
        },
    )


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
    with measured(dev, rec), dmprec.backend_flags(dev, precision):  # as diffmem.steps.sample.sample_run
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
