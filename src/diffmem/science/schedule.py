"""The training schedule of a run, in one place: its length in steps, its snapshot steps, the learning
rate and the EMA weight of every step.

Both the workflow (which plans snapshots and job budgets while it builds the DAG) and the training loop
call these functions, so the plan and the run cannot disagree. Imports nothing heavy (no torch, no numpy).

Units: ``{unit: steps|epochs|images, value}``; an epoch is ``|D|`` images; a step trains on ``batch``
images. A run of ``duration`` takes ``ceil(images / batch)`` steps. ``n`` below is the number of images
trained on *before* a step (``step * batch``, step 0-based).

Learning rate (``train.warmup.mode``):

- ``linear``: ``lr * min(1, (n + batch) / W)``, W the warm-up in images (the first step already moves);
- ``official`` (the paper's released code): ``lr * min(1, n / W')`` with W' = W rounded down to whole
  thousands of images (its ``int(|D|/5)`` kimg; ``train.truncate_kimg: false`` keeps W), so the first
  step has lr 0.

EMA of the weights (``train.ema.mode``), ``beta`` = weight of the old EMA in a step's update:

- ``decay``: per-step ``decay``, i.e. half-life ``batch ln 0.5 / ln decay`` images, capped at
  ``rampup * n`` when ``rampup`` is set (EDM's ramp-up, so the first EMA equals the raw weights);
- ``official`` (the released code's ``--ema_mode=mode2``): ``beta = 0.5 ** (512 / (h * 50000/|D|))`` with
  ``h = min(H, rampup * n)`` and ``H = 0.5 Mimg * |D|/50000`` rounded down to whole kimg (its
  ``int(0.5 * |D| / 50)`` kimg): a half-life of ``min(H, rampup n) * 50000/|D|`` images at batch 512, so the
  ramp ends after 200 epochs of |D| and |D| < 100 has no EMA at all (``truncate_kimg: false`` keeps H);
  the 512 is literal in that code, so at another batch the half-life in images scales with ``batch/512``;
- ``official_final`` (its ``mode4``, the EMA-sweep experiment with ``--final-ema = decay``):
  ``beta = decay / 0.5 ** (batch / 500000) * 0.5 ** (batch / (h * 50000/|D|))``, so beta ends at ``decay``.

``ema_halflife_images`` reports ``batch ln 0.5 / ln beta`` (0 when beta is 0), what the beta of a step
amounts to.

Snapshots every so many images (``train.snapshots: {every: {unit, value}, timing}``):

- ``images`` (absent = this): one every ``round(every / batch)`` steps, plus the last step;
- ``official`` (the released loop): the loop ends a *tick* at the first step whose image count reaches the
  tick's start + 50 kimg (its ``--tick``), so a tick is ``ceil(50000 / batch)`` steps; the very first tick is
  the first step alone. It saves a snapshot every ``every / 50 kimg`` ticks (its ``--snap``, 50 = 2.5M images)
  and at the last step, named by the kimg seen (a later one of the same name replaces an earlier one), and its
  scoring tool skips the first file (the tick-0 snapshot, one step in). So the snapshots scored are the steps
  ``1 + m * ticks * ceil(50000 / batch)`` (m >= 1) and the last: at batch 512 the first is step 4,901, not
  4,883, and at |D| = 1,000 (40M images) there are 16 at batch 128, 512 and 896, where ``images`` has 17, 16, 17.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

__all__ = [
    "EMA_MODES",
    "SNAPSHOT_TIMINGS",
    "WARMUP_MODES",
    "ema_beta",
    "ema_halflife_images",
    "images_of",
    "lr_at",
    "official_snapshot_steps",
    "rate_plan",
    "schedule_rows",
    "snapshot_steps",
    "training_plan",
]

EMA_MODES = ("decay", "official", "official_final")
WARMUP_MODES = ("linear", "official")
SNAPSHOT_TIMINGS = ("images", "official")  # the first is what an absent train.snapshots.timing means

# Constants of the paper's released code (sail-sg/DiffMemorize train.py / training/training_loop.py),
# facts of the official schedule, not defaults of a setting:
OFFICIAL_EMA_MIMG = 0.5  # --ema (Mimg at the reference size); the scripts never change it
OFFICIAL_REFERENCE_IMAGES = 50_000  # data_ratio = 50000 / |D|
OFFICIAL_MODE2_BATCH = 512  # mode2's exponent has a literal 512, whatever the batch
KIMG = 1000
OFFICIAL_TICK_IMAGES = 50 * KIMG  # --tick (kimg per tick); the scripts never change it, nor --snap (50 ticks)


def images_of(spec: Mapping[str, Any], n_images: int, batch: int, what: str) -> float:
    """Images of a ``{unit, value}`` spec on a subset of ``n_images`` (``what`` names the key in errors)."""
    unit, value = spec["unit"], float(spec["value"])
    if unit == "steps":
        return value * batch
    if unit == "epochs":
        return value * n_images
    if unit == "images":
        return value
    raise ValueError(f"train.{what}.unit: expected steps, epochs or images, got {unit!r}")


def snapshot_steps(spec: int | Sequence[int], total_steps: int) -> list[int]:
    """Steps after which a snapshot is taken.

    An int ``n`` gives ``n`` evenly spaced steps ending at the last step (fewer when the run has fewer
    than ``n`` steps); a list gives those step numbers (each in 1..total_steps).
    """
    if isinstance(spec, bool):
        raise ValueError(f"train.snapshots: expected an int or a list of steps, got {spec!r}")
    if isinstance(spec, Integral):
        n = int(spec)
        if n < 1:
            raise ValueError(f"train.snapshots: needs at least 1, got {n}")
        return sorted({max(1, total_steps * (k + 1) // n) for k in range(n)})
    steps = sorted({int(s) for s in spec})
    if not steps:
        raise ValueError("train.snapshots: the list of snapshot steps is empty")
    bad = [s for s in steps if not 1 <= s <= total_steps]
    if bad:
        raise ValueError(f"train.snapshots: steps {bad} are outside the run's 1..{total_steps}")
    return steps


def _setting(block: Mapping[str, Any], key: str, where: str, allowed: Sequence[Any] | None = None) -> Any:
    """``block[key]``, refused with an error naming ``where.key`` when missing or not in ``allowed``.

    The default of every key lives in the workflow's schema only; the config fills it in."""
    if key not in block:
        raise ValueError(
            f"{where}.{key} is not set (settings come from the config, with the defaults of "
            "workflow/schemas/config.schema.yaml filled in)"
        )
    value = block[key]
    if allowed is not None and value not in allowed:
        raise ValueError(f"{where}.{key}: expected one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def _whole_kimg(images: float) -> float:
    """Rounded down to whole thousands of images, as the released code's ``int(... kimg)``."""
    return float(math.floor(images / KIMG + 1e-9) * KIMG)


def training_plan(train_cfg: Mapping[str, Any], n_images: int) -> dict[str, Any]:
    """Steps, images and snapshot steps of a run on ``n_images`` training images.

    ``snapshots`` is an int (that many evenly spaced), a list of steps, or ``{every: {unit, value}}``
    (one snapshot every so many steps/epochs/images, rounded to steps, plus the last step).
    """
    batch = int(train_cfg["batch"])
    if batch < 1:
        raise ValueError(f"train.batch: needs at least 1, got {batch}")
    if n_images < 1:
        raise ValueError("the subset has no images")
    steps = max(1, math.ceil(images_of(train_cfg["duration"], n_images, batch, "duration") / batch))
    spec = train_cfg.get("snapshots", 1)
    if isinstance(spec, Mapping):  # {every: {unit, value}[, timing]}: one snapshot every so many, plus the last
        every_images = images_of(spec["every"], n_images, batch, "snapshots.every")
        timing = spec.get("timing") or SNAPSHOT_TIMINGS[0]
        if timing == "official":
            spec = official_snapshot_steps(every_images, batch, steps)
        elif timing == "images":
            every = max(1, round(every_images / batch))
            spec = sorted(set(range(every, steps, every)) | {steps})
        else:
            raise ValueError(f"train.snapshots.timing: expected one of {', '.join(SNAPSHOT_TIMINGS)}, got {timing!r}")
    snaps = snapshot_steps(spec, steps)
    return {
        "steps": steps,
        "batch": batch,
        "images": steps * batch,
        "epochs": steps * batch / n_images,
        "snapshot_steps": snaps,
    }


def official_snapshot_steps(every_images: float, batch: int, total_steps: int) -> list[int]:
    """The steps whose snapshots the released code scores, for a snapshot every ``every_images`` images (a
    whole number of 50-kimg ticks) in a run of ``total_steps`` steps of ``batch`` (see the module's doc)."""
    ticks = every_images / OFFICIAL_TICK_IMAGES
    if ticks < 1 or abs(ticks - round(ticks)) > 1e-9:
        raise ValueError(
            f"train.snapshots.every: the official timing snapshots every so many ticks of {OFFICIAL_TICK_IMAGES:,} "
            f"images; expected a multiple of {OFFICIAL_TICK_IMAGES} images, got {every_images:g}"
        )
    period = round(ticks) * math.ceil(OFFICIAL_TICK_IMAGES / batch)  # steps between snapshots after tick 0
    saved = [1, *range(1 + period, total_steps, period), total_steps]  # tick 0 is the first step alone
    by_name: dict[int, int] = {}
    for step in saved:  # network-snapshot-<kimg>.pkl: the later of two equal names is the file kept
        by_name[step * batch // KIMG] = step
    scored = [by_name[name] for name in sorted(by_name)][1:]  # the scoring tool skips the first file
    if not scored:
        raise ValueError(
            f"train.snapshots.timing: official: a run of {total_steps} steps of {batch} images leaves no snapshot "
            "that the released scoring scores (it skips the first); use timing: images"
        )
    return scored


def rate_plan(train_cfg: Mapping[str, Any], n_images: int) -> dict[str, Any]:
    """What the learning rate and the EMA weight of every step depend on, for a run on ``n_images`` images
    (``train.warmup``, ``train.ema``, ``train.truncate_kimg``, ``train.batch``); :func:`lr_at` and
    :func:`ema_beta` take it."""
    batch = int(train_cfg["batch"])
    if batch < 1:
        raise ValueError(f"train.batch: needs at least 1, got {batch}")
    if n_images < 1:
        raise ValueError("the subset has no images")
    warmup = _setting(train_cfg, "warmup", "train")
    warmup_mode = _setting(warmup, "mode", "train.warmup", WARMUP_MODES)
    warmup_images = images_of(warmup, n_images, batch, "warmup")
    ema = _setting(train_cfg, "ema", "train")
    ema_mode = _setting(ema, "mode", "train.ema", EMA_MODES)
    decay = float(_setting(ema, "decay", "train.ema"))
    rampup = _setting(ema, "rampup", "train.ema")
    official = warmup_mode == "official" or ema_mode != "decay"
    truncate = bool(_setting(train_cfg, "truncate_kimg", "train")) if official else False
    if warmup_mode == "official" and truncate:
        warmup_images = _whole_kimg(warmup_images)
    if ema_mode == "decay":
        ema_halflife = math.inf if decay >= 1 else (0.0 if decay <= 0 else batch * math.log(0.5) / math.log(decay))
    else:  # the released code's H, in images before its 50000/|D| scaling
        ema_halflife = OFFICIAL_EMA_MIMG * 1e6 * n_images / OFFICIAL_REFERENCE_IMAGES
        if truncate:
            ema_halflife = _whole_kimg(ema_halflife)
    return {
        "batch": batch,
        "n_images": n_images,
        "warmup_images": warmup_images,
        "warmup_mode": warmup_mode,
        "ema_mode": ema_mode,
        "ema_decay": decay,
        "ema_rampup": None if rampup is None else float(rampup),
        "ema_halflife": ema_halflife,
    }


def lr_at(plan: Mapping[str, Any], lr: float, step: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based); ``plan`` from :func:`rate_plan`."""
    warmup = plan["warmup_images"]
    if plan["warmup_mode"] == "official":  # images seen before the step: the first step has lr 0
        return lr * min(step * plan["batch"] / max(warmup, 1e-8), 1.0)
    if warmup <= 0:
        return lr
    return lr * min(1.0, (step + 1) * plan["batch"] / warmup)


def ema_beta(plan: Mapping[str, Any], step: int) -> float:
    """Weight of the old EMA in the update after optimizer step ``step`` (0-based; 0 = take the raw weights);
    ``plan`` from :func:`rate_plan`."""
    batch, seen, rampup = plan["batch"], step * plan["batch"], plan["ema_rampup"]
    halflife = plan["ema_halflife"]
    if plan["ema_mode"] == "decay":
        decay = plan["ema_decay"]
        if decay <= 0:
            return 0.0
        if rampup is not None:
            halflife = min(halflife, rampup * seen)
        if math.isinf(halflife):
            return 1.0
        return 0.5 ** (batch / max(halflife, 1e-8))
    if rampup is not None:
        halflife = min(halflife, rampup * seen)
    scaled = max(halflife, 1e-8) * OFFICIAL_REFERENCE_IMAGES / plan["n_images"]
    if plan["ema_mode"] == "official":
        return 0.5 ** (OFFICIAL_MODE2_BATCH / scaled)
    constant = 0.5 ** (batch / (OFFICIAL_EMA_MIMG * 1e6))
    return plan["ema_decay"] / constant * 0.5 ** (batch / scaled)


def ema_halflife_images(beta: float, batch: int) -> float:
    """The half-life in images that a step's EMA weight ``beta`` amounts to (0 for beta 0, inf for 1)."""
    if beta <= 0:
        return 0.0
    if beta >= 1:
        return math.inf
    return batch * math.log(0.5) / math.log(beta)


def schedule_rows(train_cfg: Mapping[str, Any], n_images: int, steps: Sequence[int]) -> list[dict[str, Any]]:
    """``step``, ``images`` (seen before it), ``lr``, ``ema_beta``, ``ema_halflife_images`` of each requested
    optimizer step (0-based), exactly as the training loop computes them."""
    total = training_plan(train_cfg, n_images)["steps"]
    plan = rate_plan(train_cfg, n_images)
    rows = []
    for k in steps:
        k = int(k)
        if not 0 <= k < total:
            raise ValueError(f"step {k} is outside the run's 0..{total - 1} (0-based optimizer steps)")
        beta = ema_beta(plan, k)
        rows.append(
            {
                "step": k,
                "images": k * plan["batch"],
                "lr": lr_at(plan, float(train_cfg["lr"]), k),
                "ema_beta": beta,
                "ema_halflife_images": ema_halflife_images(beta, plan["batch"]),
            }
        )
    return rows
