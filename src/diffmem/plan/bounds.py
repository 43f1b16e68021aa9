"""Limits of a config, checked before any job (every number finite is
:func:`diffmem.plan.load.check_finite`): no job that could never run (:func:`check_bounds`).

A setting whose cost explodes (``sample.n``, ``train.batch``, ``train.duration``, the sizes) would
otherwise be submitted and fail inside its job, or be retried over and over. :func:`check_bounds` times and
sizes every value's jobs at its largest size with the estimates of :mod:`diffmem.plan.resources` and
refuses, naming the key, the number it implies and the limit, a job that needs more than a job can ever
get:

- host memory above ``compute.max_mem_gb`` (training, sample and score jobs; one training batch in
  float32);
- a training or a sampling longer than ``compute.max_chain`` jobs of ``compute.max_runtime`` minutes
  (:func:`diffmem.plan.resources.chain_links`), a scoring longer than one such job;
- more than :data:`MAX_SNAPSHOTS` snapshots per run (each is a file and a sampling pass).

Imports nothing heavy: the workflow runs these while it builds the DAG.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from diffmem.errors import ConfigError
from diffmem.plan import resources as dmr
from diffmem.plan.records import run_settings
from diffmem.science import schedule

if TYPE_CHECKING:
    from diffmem.plan.expand import Value

MAX_SNAPSHOTS = 10_000  # per run (config/paper.yaml: at most 320)
GB = 1e9  # bytes; resources' MB are 1e6 bytes


def check_bounds(config: dict, plan: dict[str, list[Value]]) -> None:
    """Every value's jobs, at its largest size, fit what a job can get (see the module). Raises ConfigError."""
    seen = set()
    for vals in plan.values():
        for v in vals:
            size = max(v.sizes) if v.mode == "sizes" else int(v.emm["hi"])
            if (v.run_id, v.sample_id, size) in seen:
                continue
            seen.add((v.run_id, v.sample_id, size))
            try:
                _check_run(run_settings(v.settings, size), config, run_where(v, size))
            except dmr.UnknownDevice as e:
                raise ConfigError(f"compute.device: {e}") from None


def run_where(v: Value, size: int) -> str:
    """How an error names one value's run at one size (and the key that sets the size)."""
    return f"experiments.{v.experiment} value {v.display!r} at |D|={size:,} ({_size_key(v)})"


def _size_key(v: Value) -> str:
    return f"experiments.{v.experiment}.sizes" if v.mode == "sizes" else "emm.hi"


def _limits(config: dict) -> tuple[float, int, int]:
    """(host memory in MB, minutes per job, jobs per chain) that a job can get at the site."""
    c = config["compute"]
    return float(c["max_mem_gb"]) * GB / 1e6, int(c["max_runtime"]), int(c["max_chain"])


def _check_run(s: dict, config: dict, where: str) -> None:
    """One run's jobs (``s``: its settings at its size) against the limits, the cheap checks first, so that
    nothing is built whose size a setting blows up (a list of 10^20 snapshot steps)."""
    mem_mb, _, _ = _limits(config)
    m = s["model"]
    image = f"{m['img_channels']}x{m['resolution']}x{m['resolution']}"
    px = m["resolution"] ** 2 * m["img_channels"]
    if m["arch"] != "optimum":
        batch = int(s["train"]["batch"])
        if batch * px * 4 / 1e6 > mem_mb:
            raise ConfigError(
                f"{where}: train.batch={batch:,} images of {image} are {batch * px * 4 / GB:,.0f} GB in float32; "
                f"limit compute.max_mem_gb={_gb(mem_mb)} GB"
            )
        need = dmr.train_mem_mb(s, config)
        if need > mem_mb:
            acts = (
                f" and, on the cpu, the activations of train.batch={batch:,}"
                if dmr.device_kind(config) == "cpu"
                else ""
            )
            raise ConfigError(
                f"{where}: a training job needs {_gb(need)} GB of host memory (|D| images of {image}{acts}); "
                f"limit compute.max_mem_gb={_gb(mem_mb)} GB"
            )
        _check_training(s, config, where)
        check_snapshots(s, where)
    _check_sampling(s, config, where, image)


def _check_training(s: dict, config: dict, where: str) -> None:
    """The training's time (its snapshots aside) fits ``compute.max_chain`` jobs of ``compute.max_runtime``."""
    _, max_runtime, max_chain = _limits(config)
    gpus = int(config["gpus_per_run"]) if config["gpu"] else 1
    train = s["train"]
    est = dmr.train_estimate_s({**s, "train": {**train, "snapshots": 1}}, config, gpus)
    links = dmr.chain_links(est, config)
    if links > max_chain:
        batch, dur, size = int(train["batch"]), train["duration"], int(s["data"]["size"])
        steps = _steps(train, size)
        per = {"steps": f" x train.batch={batch:,}", "epochs": f" x |D|={size:,}"}.get(dur["unit"], "")
        raise ConfigError(
            f"{where}: training {_n(steps * batch)} images (train.duration {dur['value']:g} {dur['unit']}{per}) takes "
            f"about {_n(est / 3600)} h on {gpus} {dmr.device_kind(config)} device(s) (compute.speed="
            f"{config['compute']['speed']}): {_n(links)} jobs of compute.max_runtime={max_runtime} min; "
            f"limit compute.max_chain={max_chain} jobs"
        )


def _steps(train: dict, size: int) -> int:
    batch = int(train["batch"])
    return max(1, math.ceil(schedule.images_of(train["duration"], size, batch, "duration") / batch))


def check_snapshots(s: dict, where: str) -> None:
    """At most :data:`MAX_SNAPSHOTS` snapshots, counted without listing them (an upper bound for ``every``)."""
    train, size = s["train"], int(s["data"]["size"])
    steps, spec = _steps(train, size), train.get("snapshots", 1)
    if isinstance(spec, dict):
        every = schedule.images_of(spec["every"], size, int(train["batch"]), "snapshots.every")
        count = steps // max(1, math.floor(every / int(train["batch"]))) + 2
    else:  # an int (that many evenly spaced, each computed) or a list of steps
        count = len(spec) if isinstance(spec, list) else int(spec)
    if count > MAX_SNAPSHOTS:
        raise ConfigError(
            f"{where}: train.snapshots={spec} gives about {_n(count)} snapshots in {_n(steps)} steps; "
            f"limit {MAX_SNAPSHOTS:,} per run (diffmem.plan.bounds.MAX_SNAPSHOTS)"
        )


def _check_sampling(s: dict, config: dict, where: str, image: str) -> None:
    """The sample and score jobs of every snapshot: host memory, and time (sampling chains, scoring not)."""
    mem_mb, max_runtime, max_chain = _limits(config)
    snaps, n, size = dmr.snapshot_count(s), int(s["sample"]["n"]), int(s["data"]["size"])
    what = f"sample.n={_n(n)} x {snaps} snapshot(s) of {image}"
    for job, need in (
        ("sample", dmr.sample_mem_mb(s, config, snaps)),
        ("score", dmr.score_mem_mb(s, config, snaps)),
    ):
        if need > mem_mb:
            raise ConfigError(
                f"{where}: {what} need {_gb(need)} GB of host memory in a {job} job; "
                f"limit compute.max_mem_gb={_gb(mem_mb)} GB"
            )
    est = dmr.sample_estimate_s(s, config, snaps)
    if dmr.chain_links(est, config) > max_chain:
        raise ConfigError(
            f"{where}: {what} take about {_n(est / 3600)} h to sample ({s['sample']['num_steps']} steps each): "
            f"{_n(dmr.chain_links(est, config))} jobs of compute.max_runtime={max_runtime} min; "
            f"limit compute.max_chain={max_chain} jobs"
        )
    est = dmr.score_estimate_s(s, config, snaps)
    if est > max_runtime * 60:
        raise ConfigError(
            f"{where}: {what} take about {est / 3600:,.1f} h to score against |D|={size:,} in one job; "
            f"limit compute.max_runtime={max_runtime} min"
        )


def _gb(mb: float) -> str:
    return f"{mb * 1e6 / GB:,.0f}" if mb * 1e6 >= 10 * GB else f"{mb * 1e6 / GB:,.1f}"


def _n(x: float) -> str:
    """A count or an amount for people: 1,234,567 up to 10^9, else 1.23e+12."""
    return f"{x:,.0f}" if x < 1e9 else f"{x:.3g}"
