"""What a job asks the cluster for: run time and memory from a throughput model seeded by measurements.

The model times a job as ``images x seconds per image`` (training), ``samples x seconds per sample``
(sampling) and ``queries x |D| x pixels / rate`` (scoring, the closed-form optimum), per device *kind*.
Seconds per image of a net are ``a + b * work``, where ``work`` is a FLOP proxy of the net (per pixel
of every level: channels^2 x convolutions) and ``a``, ``b`` are fitted to the project's own benchmark
files in ``benchmarks/*.json`` (``scripts/benchmark.py`` writes them: one fact, one place). A kind
measured on one net only gets ``a = 0``.

Budgets: ``safety x estimate x 2^(attempt-1)`` plus a start-up allowance, never above the site maximum
``compute.max_runtime`` (minutes, in the config or a profile's ``config:``). A job whose work does not fit that maximum
(training of a large |D|) stops itself before its walltime (:func:`time_budget_s`), keeps its state,
and the next attempt resumes: the rule's ``retries`` are the chain's links x :data:`MARGIN`, at most
``compute.max_chain`` (:func:`chain_retries`). Retries are for pauses: a job that fails for any other
reason records it, and the attempts after it stop at once (:mod:`diffmem.steps.attempts`): such an attempt
asks for :data:`STOP_MIN` and :data:`STOP_MB` (:func:`earlier_failure`). Memory grows per attempt up to
``compute.max_mem_gb`` (:func:`grown_mb`); the Plan counts a link of a chain as attempt 1 for time and memory.

Host memory (``train_mem_mb``, ``sample_mem_mb``, ``score_mem_mb``): torch's own footprint per process (with
CUDA on a GPU), the net's fp32 copies (:func:`diffmem.plan.memory.n_params`: weights, EMA, Adam's moments, the
state.pt read or written), the images, on the CPU the activations (:func:`diffmem.plan.memory.activation_bytes`),
once per process of a data-parallel training; held to the CPU peaks of ``benchmarks/memory/host_peaks.json``.

Imports nothing heavy: the workflow evaluates these while it schedules jobs.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from typing import Any

from diffmem import BENCHMARKS
from diffmem.io import CorruptFileError, read_json
from diffmem.plan import memory
from diffmem.plan.records import run_settings
from diffmem.science import schedule

STARTUP_MIN = 3.0  # job start-up: Snakemake parses the workflow, Python imports torch, data loads
SAFETY = 1.5  # budget / estimate before doubling per retry
DEFAULT_MAX_CHAIN = 100  # the schema's compute.max_chain, for configs that were not validated
MARGIN = 2  # retries / links of the longest chain: a device may be slower than the model says


class UnknownDevice(ValueError):
    pass


# ------------------------------------------------------------------------------------------ net work
def net_work(model: dict) -> float:
    """A FLOP proxy of one forward pass on one image: sum over levels of pixels x channels^2 x convs.

    Level ``l`` has side ``resolution / 2^l`` and ``model_channels * channel_mult[l]`` channels; the
    encoder runs ``num_blocks`` residual blocks and the decoder ``num_blocks + 1`` there (2 convolutions
    each, the decoder's first on twice the channels). Constant factors cancel in the fit."""
    if model.get("arch") == "optimum":
        return 0.0
    r, mc, nb = int(model["resolution"]), int(model["model_channels"]), int(model["num_blocks"])
    work = 0.0
    for level, mult in enumerate(model["channel_mult"]):
        side = r / 2**level
        c = mc * int(mult)
        work += side * side * c * c * (2 * nb + 3 * (nb + 1))
    return work


def _bench_net(preset: dict) -> dict:
    shape = preset["shape"]
    return {**preset["net"], "resolution": shape[-1], "img_channels": shape[0]}


@lru_cache(maxsize=1)
def measurements() -> dict[str, dict[str, list]]:
    """``{kind: {bench: [records]}}`` from the benchmark files: kind ``cpu`` or the GPU's short name
    (``h200``), bench ``train``, ``train_tf32``, ``sample``, ``optimum``, ``score``."""
    out: dict[str, dict[str, list]] = {}
    for path in sorted(BENCHMARKS.glob("*.json")):
        doc = json.loads(path.read_text())
        dev = doc["environment"]["device"]
        kind = "cpu" if dev["type"] == "cpu" else dev["name"].split()[-1].lower()
        threads = int(doc["environment"].get("threads") or 1)
        for rec in doc["results"]:
            if rec.get("status") != "ok":
                continue
            # "paper +bf16 +compile" -> train_bf16_compile: a record counts only for the settings it ran with
            bench = rec["bench"] + "".join("_" + tag[1:] for tag in rec.get("case", "").split() if tag[:1] == "+")
            preset = doc.get("presets", {}).get(rec["case"].split()[0])
            item = {**rec, "threads": threads, "file": path.name}
            if preset:
                item["work"] = net_work(_bench_net(preset))
            out.setdefault(kind, {}).setdefault(bench, []).append(item)
    return out


def kinds() -> list[str]:
    return sorted(measurements())


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares ``seconds = a + b * work`` with a, b >= 0 (a = 0 for a single point)."""
    if len(points) == 1:
        w, t = points[0]
        return 0.0, t / w
    n = len(points)
    mw = sum(w for w, _ in points) / n
    mt = sum(t for _, t in points) / n
    var = sum((w - mw) ** 2 for w, _ in points)
    b = sum((w - mw) * (t - mt) for w, t in points) / var if var else mt / mw
    b = max(b, 0.0)
    a = max(mt - b * mw, 0.0)
    return a, b


def _records(kind: str, bench: str) -> list[dict]:
    table = measurements()
    if kind not in table:
        raise UnknownDevice(f"no benchmark of device kind {kind!r}; measured kinds: {', '.join(kinds())}")
    recs = table[kind].get(bench)
    if not recs:
        raise UnknownDevice(f"device kind {kind!r} has no {bench!r} benchmark in {BENCHMARKS}")
    return recs


def seconds_per_image(model: dict, kind: str, tf32: bool = False, precision: str | None = None) -> float:
    """Training seconds per image (forward + backward + optimizer and EMA update) of ``model`` at
    ``precision`` (``tf32=True`` is ``precision="tf32"``); a precision without a measurement of its own on
    this kind is timed as fp32 (on the CPU bf16 measured ~7x slower than fp32 for the tiny net: README)."""
    precision = "tf32" if tf32 else (precision or "fp32")
    measured = measurements().get(kind, {})
    bench = f"train_{precision}" if precision != "fp32" and f"train_{precision}" in measured else "train"
    recs = _records(kind, "train") if kind == "cpu" else _records(kind, bench)
    a, b = _fit([(r["work"], 1.0 / r["per_s"]) for r in recs if "work" in r])
    return a + b * net_work(model)


def seconds_per_sample(model: dict, kind: str, num_steps: int, size: int) -> float:
    """Sampling seconds per image with ``2 num_steps - 1`` net evaluations (the optimum: over |D|)."""
    evals = 2 * num_steps - 1
    if model.get("arch") == "optimum":
        recs = _records(kind, "optimum")
        px = model["resolution"] ** 2 * model["img_channels"]
        rate = max(r["per_s"] * (2 * r["num_steps"] - 1) * r["size"] * _pixels(r["case"]) for r in recs)
        return evals * size * px / rate
    recs = _records(kind, "sample")
    a, b = _fit([(r["work"], 1.0 / r["per_s"] / r["network_evals"]) for r in recs if "work" in r])
    return evals * (a + b * net_work(model))


def _pixels(case: str) -> int:
    c, h, w = (int(x) for x in case.split()[0].split("x"))
    return c * h * w


def score_seconds(queries: int, size: int, pixels: int, kind: str) -> float:
    """Exact 2-nearest-neighbour search of ``queries`` samples among ``size`` training images."""
    recs = _records(kind, "score")
    rate = max(r["per_s"] * r["size"] * _pixels(r["case"]) for r in recs)
    return queries * size * pixels / rate


# ------------------------------------------------------------------------------------------ per job
def device_kind(config: dict) -> str:
    """The kind the model times jobs on: ``compute.device`` of the config, else h200 for ``gpu: true``
    (the measured GPU) and cpu otherwise."""
    kind = config["compute"]["device"]
    if kind:
        return kind
    return "h200" if config.get("gpu") else "cpu"


def _speed(config: dict) -> float:
    return float(config["compute"]["speed"])


def max_runtime(config: dict) -> int:
    return int(config["compute"]["max_runtime"])


def train_estimate_s(settings: dict, config: dict, gpus: int = 1) -> float:
    """Seconds to train one run (``settings`` at its size) on ``gpus`` devices of the config's kind."""
    if settings["model"].get("arch") == "optimum":
        return 0.0
    plan = schedule.training_plan(settings["train"], int(settings["data"]["size"]))
    spi = seconds_per_image(settings["model"], device_kind(config), precision=settings["train"].get("precision"))
    return plan["images"] * spi / max(1, gpus) / _speed(config)


def sample_estimate_s(settings: dict, config: dict, snapshots: int) -> float:
    s, m = settings["sample"], settings["model"]
    size = int(settings["data"]["size"])
    return snapshots * s["n"] * seconds_per_sample(m, device_kind(config), int(s["num_steps"]), size) / _speed(config)


def score_estimate_s(settings: dict, config: dict, snapshots: int) -> float:
    m = settings["model"]
    px = m["resolution"] ** 2 * m["img_channels"]
    n = snapshots * int(settings["sample"]["n"])
    return score_seconds(n, int(settings["data"]["size"]), px, device_kind(config)) / _speed(config)


def snapshot_count(settings: dict) -> int:
    if settings["model"].get("arch") == "optimum":
        return 1
    return len(schedule.training_plan(settings["train"], int(settings["data"]["size"]))["snapshot_steps"])


def budget_min(estimate_s: float, config: dict, attempt: int = 1) -> int:
    """Minutes to ask for: safety x estimate x 2^(attempt-1) + start-up, capped at the site maximum."""
    want = STARTUP_MIN + SAFETY * estimate_s / 60.0 * 2 ** (max(1, attempt) - 1)
    return int(min(max_runtime(config), math.ceil(want)))


def time_budget_s(runtime_min: float) -> float:
    """Seconds a job may work inside a walltime of ``runtime_min`` minutes before it must save and stop:
    the walltime less a margin for start-up and the final save (2 min + 2%, at most half of it)."""
    total = float(runtime_min) * 60.0
    return total - min(0.5 * total, 120.0 + 0.02 * total)


def chain_links(estimate_s: float, config: dict) -> int:
    """Jobs a training of ``estimate_s`` seconds takes when each may work ``time_budget_s`` of the site
    maximum (1 when it fits one job)."""
    return max(1, math.ceil(SAFETY * estimate_s / time_budget_s(max_runtime(config))))


def grown_mb(mb: float, config: dict, attempt: int = 1) -> int:
    """``mb`` doubled per retry, the growth stopping at the site's ``compute.max_mem_gb`` (a chain of 100
    attempts asking for 2^99 x its memory would never be scheduled); attempt 1 gets ``mb`` itself."""
    cap = float(config["compute"].get("max_mem_gb") or math.inf) * 1e3  # GB -> MB (1e6 bytes)
    return int(min(mb * 2 ** (max(1, attempt) - 1), max(mb, cap)))


def earlier_failure(record, attempt: int) -> dict | None:
    """The failure record ``record`` (:data:`diffmem.plan.layout.FAILURE_FILE`, written by
    :mod:`diffmem.steps.attempts`) when it stops attempt ``attempt``: an earlier attempt of this run of the
    workflow failed. None to go on: no record, one not of ours, or one of an earlier run of the workflow (its
    attempt is the current one's or later: a new run counts from 1 again)."""
    try:
        failed = read_json(record)
        at = int(failed["attempt"])
    except (FileNotFoundError, CorruptFileError, KeyError, TypeError, ValueError):
        return None
    return failed if at < attempt else None


# ------------------------------------------------------------------------------------------ host memory
# A job's host memory: its Snakemake processes, then per process torch's own footprint, the images, and the
# net's fp32 copies (4 bytes a parameter each, memory.n_params). Measured on the CPU in
# benchmarks/memory/host_peaks.json (tests/plan/test_host_memory.py holds the model to those peaks).
JOB_MB = 300  # the job's two Snakemake processes (a dry run of the smoke config: 100 MB) and its preamble
CPU_PROCESS_MB = 1000  # torch, numpy, TensorBoard, diffmem: the smoke net's training peaks at 862 MB on the CPU
BUILD_COPIES = 2  # the net and its EMA copy, built on the host before they move to a GPU
STATE_PT_COPIES = 4  # state.pt: net, EMA, Adam's two moments (read in full before the net is built, on resume)
SAVE_COPIES = 2  # the CPU copies of net and EMA that a state save writes (the moments are written as they lie)
SAMPLE_COPIES = 2  # the net built, its snapshot read
INFER_SHARE = 0.2  # of a training image's saved activations, what a sampling forward holds (0.16 measured)
STOP_MIN = 1  # an attempt that a failure record stops ends within a second of its start
STOP_MB = JOB_MB + 100  # its Snakemake processes and a script that stops before torch (34 MB peak measured)


@lru_cache(maxsize=1)
def gpu_process_mb() -> float:
    """Torch with CUDA, cuDNN and cuBLAS in a process of a GPU job (MB): the host peak of the H200 training
    benchmark (:data:`diffmem.plan.memory.PEAK_BENCH`) less the net and EMA it built on the host."""
    doc = json.loads(memory.PEAK_BENCH.read_text())
    peak = max(float(r["host_peak_mib"]) for r in doc["results"] if r.get("status") == "ok" and "host_peak_mib" in r)
    return peak * memory.MIB / 1e6 - BUILD_COPIES * 4 * int(doc["presets"]["paper"]["n_params"]) / 1e6


def process_mb(config: dict) -> float:
    """Torch's own footprint in one process of a job on the config's device kind (MB)."""
    return CPU_PROCESS_MB if device_kind(config) == "cpu" else gpu_process_mb()


def params_mb(model: dict, copies: float) -> float:
    """``copies`` fp32 copies of the net's parameters (MB); none for the closed-form optimum."""
    return 0.0 if model.get("arch") == "optimum" else copies * 4 * memory.n_params(model) / 1e6


def train_process_mb(settings: dict, config: dict) -> float:
    """Host memory of one training process (MB): torch, 3 copies of the subset's images, and the net's states.
    With a GPU: state.pt read on resume while the net and its EMA are built on the host. On the CPU: the live
    states (memory.STATE_COPIES) plus the larger of the copies a save writes and the activations of the batch
    (memory.activation_bytes; the micro-batch is a GPU's)."""
    m, size = settings["model"], int(settings["data"]["size"])
    mb = process_mb(config) + 3 * size * m["resolution"] ** 2 * m["img_channels"] / 1e6
    if device_kind(config) != "cpu":
        return mb + params_mb(m, STATE_PT_COPIES + BUILD_COPIES)
    acts = int(settings["train"]["batch"]) * memory.activation_bytes(m) / 1e6
    return mb + params_mb(m, memory.STATE_COPIES) + max(params_mb(m, SAVE_COPIES), acts)


def train_mem_mb(settings: dict, config: dict, attempt: int = 1) -> int:
    """Host memory of a training job: one process per GPU of ``gpus_per_run`` (torchrun's workers, each with its
    own copy of everything), plus, with several, the job's script and torchrun's launcher, which import torch."""
    procs = int(config.get("gpus_per_run") or 1) if config.get("gpu") else 1
    mb = JOB_MB + procs * train_process_mb(settings, config) + (2 * CPU_PROCESS_MB if procs > 1 else 0)
    return grown_mb(mb, config, attempt)


def sample_mem_mb(settings: dict, config: dict, snapshots: int, attempt: int = 1) -> int:
    """Host memory of a sampling job: torch, the net (built and its snapshot read), the samples of every
    snapshot twice and the subset thrice (uint8), and on the CPU a batch's activations of the forward pass."""
    m, size = settings["model"], int(settings["data"]["size"])
    px = m["resolution"] ** 2 * m["img_channels"]
    mb = JOB_MB + process_mb(config) + params_mb(m, SAMPLE_COPIES)
    mb += (2 * snapshots * settings["sample"]["n"] + 3 * size) * px / 1e6
    if device_kind(config) == "cpu" and m.get("arch") != "optimum":
        batch = int(settings["sample"].get("batch") or settings["sample"]["n"])
        mb += INFER_SHARE * batch * memory.activation_bytes(m) / 1e6
    return grown_mb(mb, config, attempt)


def score_mem_mb(settings: dict, config: dict, snapshots: int, attempt: int = 1) -> int:
    """Host memory of a scoring job: torch, the samples twice and the subset thrice (uint8), 40 bytes of
    distances and indices a sample, and on the CPU one snapshot's samples in float32."""
    m, size = settings["model"], int(settings["data"]["size"])
    px = m["resolution"] ** 2 * m["img_channels"]
    n = snapshots * settings["sample"]["n"]
    mb = JOB_MB + process_mb(config) + (2 * n + 3 * size) * px / 1e6 + n * 40 / 1e6
    if device_kind(config) == "cpu":
        mb += 4 * settings["sample"]["n"] * px / 1e6
    return grown_mb(mb, config, attempt)


def job_threads(config: dict, gpus: int = 0) -> int:
    """CPU threads of a job: ``compute.cpus_per_gpu`` per GPU (data loading, torchrun workers), else 1."""
    per_gpu = int(config["compute"]["cpus_per_gpu"])
    return max(1, gpus * per_gpu) if gpus else 1


def describe(settings: dict, config: dict, gpus: int = 1) -> dict[str, Any]:
    """Everything the model says about one run (for ``diffmem cost`` and the logs)."""
    snaps = snapshot_count(settings)
    return {
        "train_s": train_estimate_s(settings, config, gpus),
        "sample_s": sample_estimate_s(settings, config, snaps),
        "score_s": score_estimate_s(settings, config, snaps),
        "snapshots": snaps,
    }


def remaining_s(progress: dict, estimate_s: float) -> float:
    """Seconds left of a training that has run a while: its measured speed over the steps left (the
    model's ``estimate_s`` for the whole run scaled by the share left when no speed was measured)."""
    left_steps = max(0, int(progress["total_steps"]) - int(progress["step"]))
    if progress.get("steps_per_s"):
        return left_steps / float(progress["steps_per_s"])
    return estimate_s * left_steps / max(1, int(progress["total_steps"]))


def chain_retries(plan: dict, config: dict, stage: str) -> int:
    """Retries of the ``train`` or ``sample`` rule: :data:`MARGIN` x the links of the longest chain any run of
    the plan can need (at its largest size: the EMM bracket's ``hi`` or the largest listed size), at most
    ``compute.max_chain`` (so however absurd a setting, a job is tried a bounded number of times); 1 when
    every run fits one job (a job that pauses anyway, the model being off, resumes once).

    Retries resume pauses; a job that fails otherwise stops its later attempts at once
    (:mod:`diffmem.steps.attempts`)."""
    gpus = int(config["gpus_per_run"]) if config["gpu"] else 1
    cap = max_chain(config)
    links = 1
    for vals in plan.values():
        for v in vals:
            s = run_settings(v.settings, max(v.sizes) if v.sizes else int(v.emm["hi"]))
            if stage == "train":
                est = train_estimate_s(s, config, gpus)
            else:
                est = sample_estimate_s(s, config, snapshot_count(s))
            links = max(links, chain_links(est, config))
            if links >= cap:
                return cap
    return min(cap, MARGIN * links) if links > 1 else 1


def max_chain(config: dict) -> int:
    """The most jobs a chain may take (``compute.max_chain``): the cap of the retries."""
    return int(config["compute"].get("max_chain", DEFAULT_MAX_CHAIN))
