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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

__all__ = [
    "EMA_MODES",
    "WARMUP_MODES",
    "ema_beta",
    "ema_halflife_images",
    "images_of",
    "lr_at",
    "rate_plan",
    "schedule_rows",
    "snapshot_steps",
    "training_plan",
]

EMA_MODES = ("decay", "official", "official_final")
WARMUP_MODES = ("linear", "official")

# Constants of the paper's released code (sail-sg/DiffMemorize train.py / training/training_loop.py),
# facts of the official schedule, not defaults of a setting:
OFFICIAL_EMA_MIMG = 0.5  # --ema (Mimg at the reference size); the scripts never change it
OFFICIAL_REFERENCE_IMAGES = 50_000  # data_ratio = 50000 / |D|
OFFICIAL_MODE2_BATCH = 512  # mode2's exponent has a literal 512, whatever the batch
KIMG = 1000


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
    if isinstance(spec, Mapping):  # {every: {unit, value}}: one snapshot every so many, plus the last step
        every = max(1, round(images_of(spec["every"], n_images, batch, "snapshots.every") / batch))
        spec = sorted(set(range(every, steps, every)) | {steps})
    snaps = snapshot_steps(spec, steps)
    return {
        "steps": steps,
        "batch": batch,
        "images": steps * batch,
        "epochs": steps * batch / n_images,
        "snapshot_steps": snaps,
    }


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
