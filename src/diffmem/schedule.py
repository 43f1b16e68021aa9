"""The training schedule of a run, in one place: its length in steps, its snapshot steps, the learning
rate and the EMA weight of every step.

Both the workflow (which plans snapshots and job budgets while it builds the DAG) and the training loop
call these functions, so the plan and the run cannot disagree. Imports nothing heavy (no torch, no numpy).

Units: ``{unit: steps|epochs|images, value}``; an epoch is ``|D|`` images; a step trains on ``batch``
images. A run of ``duration`` takes ``ceil(images / batch)`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Integral
from typing import Any

__all__ = ["ema_beta", "images_of", "lr_at", "snapshot_steps", "training_plan"]


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


def training_plan(train_cfg: Mapping[str, Any], n_images: int) -> dict[str, Any]:
    """Steps, images, warm-up and snapshot steps of a run on ``n_images`` training images.

    ``snapshots`` is an int (that many evenly spaced), a list of steps, or ``{every: {unit, value}}``
    (one snapshot every so many steps/epochs/images, rounded to steps, plus the last step).
    """
    batch = int(train_cfg["batch"])
    if batch < 1:
        raise ValueError(f"train.batch: needs at least 1, got {batch}")
    if n_images < 1:
        raise ValueError("the subset has no images")
    steps = max(1, math.ceil(images_of(train_cfg["duration"], n_images, batch, "duration") / batch))
    warmup = train_cfg.get("warmup") or {"unit": "images", "value": 0}
    warmup_images = images_of(warmup, n_images, batch, "warmup")
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
        "warmup_images": warmup_images,
        "snapshot_steps": snaps,
    }


def lr_at(step: int, lr: float, batch: int, warmup_images: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up over the images seen after it."""
    if warmup_images <= 0:
        return lr
    return lr * min(1.0, (step + 1) * batch / warmup_images)


def ema_beta(decay: float, rampup: float | None, batch: int, images_seen: float) -> float:
    """Weight of the old EMA in this step's update (0 = take the raw weights).

    Half-life ``batch ln 0.5 / ln decay`` images, capped at ``rampup * images_seen`` when ``rampup`` is set
    (EDM's ramp-up, so the first EMA equals the raw weights); ``decay = 0`` keeps the raw weights."""
    if decay <= 0:
        return 0.0
    halflife = math.inf if decay >= 1 else batch * math.log(0.5) / math.log(decay)
    if rampup is not None:
        halflife = min(halflife, rampup * images_seen)
    if math.isinf(halflife):
        return 1.0
    return 0.5 ** (batch / max(halflife, 1e-8))
