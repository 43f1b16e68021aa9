"""What a training leaves in its folder, and how a later call checks that the folder is its own.

Files of ``out_dir``:

- ``snapshot-KKK.pt``: the EMA network's state dict at snapshot K (K = 0, 1, ...), and
  ``snapshot-KKK.json``: its step, images seen, epochs, running loss and the resolved settings;
- ``state.pt`` (:data:`STATE_FILE`): everything needed to resume (network, EMA, optimizer, noise generator,
  step), written atomically every ``checkpoint_every`` steps and at each snapshot; removed once training is
  complete; ``progress.json`` beside it: step, total and speed (what the next job's budget reads);
- ``train.json`` (:data:`SUMMARY_FILE`): the summary (snapshots, steps, images, wall time, speed, device,
  parameter count).

Every one of them carries the settings' hash (:func:`diffmem.plan.identity.train_digest`) and the subset's
(:func:`subset_fingerprint`). A call whose settings or subset differ is refused with
:class:`SettingsMismatchError` before anything is overwritten.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diffmem.io import read_json, torch_load

__all__ = [
    "HISTORY_FILE", "PROGRESS_FILE", "STATE_FILE", "SUMMARY_FILE", "SettingsMismatchError", "check_folder",
    "check_record", "cpu_state", "finished_summary", "last_saved", "load_state", "snapshot_entry",
    "snapshot_file", "subset_fingerprint",
]  # fmt: skip

STATE_FORMAT = 1
STATE_FILE = "state.pt"
SUMMARY_FILE = "train.json"
HISTORY_FILE = "history.log"  # every attempt's log lines, kept across the links of a chain
PROGRESS_FILE = "progress.json"  # step, total and speed at every state save (the next job's budget)


class SettingsMismatchError(RuntimeError):
    """``out_dir`` holds training output of other settings or another subset; nothing is overwritten."""


def snapshot_file(k: int, ext: str) -> str:
    """The name of snapshot ``k``'s weights (``ext`` "pt") or metadata (``ext`` "json")."""
    return f"snapshot-{int(k):03d}.{ext}"


# ----------------------------------------------------------------------------------------------------
# Identity of a run's inputs (the settings' identity is diffmem.plan.identity.train_digest).


def subset_fingerprint(subset: Mapping[str, Any]) -> str:
    """SHA-256 of what training reads from a subset: images, conditioning labels, label count."""
    h = hashlib.sha256()
    images = np.ascontiguousarray(subset["images"])
    h.update(str((images.shape, str(images.dtype), int(subset.get("label_dim", 0)))).encode())
    h.update(images.tobytes())
    cond = subset.get("cond_labels")
    if cond is not None:
        h.update(np.ascontiguousarray(np.asarray(cond, dtype=np.int64)).tobytes())
    return h.hexdigest()


def check_record(path: Path, what: Mapping[str, Any], shash: str, dhash: str) -> None:
    """Refuse a record (train.json, state.pt) written for other settings or another subset."""
    if what.get("settings_hash") != shash:
        raise SettingsMismatchError(
            f"{path} belongs to a run with other settings (hash {str(what.get('settings_hash'))[:12]}, "
            f"these are {shash[:12]}); refusing to resume or overwrite it. Use another folder or delete it."
        )
    if what.get("subset_hash") != dhash:
        raise SettingsMismatchError(
            f"{path} was trained on another subset (images or labels differ); refusing to resume or "
            "overwrite it. Use another folder or delete it."
        )


def check_folder(out_dir: Path, shash: str, dhash: str) -> None:
    """Refuse a folder whose snapshots come from other settings or another subset."""
    for path in sorted(out_dir.glob("snapshot-*.json")):
        meta = read_json(path)
        if meta.get("settings_hash") != shash or meta.get("subset_hash") != dhash:
            raise SettingsMismatchError(
                f"{path} was written by a run with other settings or another subset; "
                f"train into an empty folder or delete {out_dir} to retrain"
            )


# ----------------------------------------------------------------------------------------------------
# Reading what an earlier call left.


def finished_summary(out_dir: Path, shash: str, dhash: str) -> dict[str, Any] | None:
    """train.json of a finished training of these settings and subset, or None when there is none."""
    path = out_dir / SUMMARY_FILE
    if not path.exists():
        return None
    summary = read_json(path)
    check_record(path, summary, shash, dhash)
    return summary


def load_state(out_dir: Path, shash: str, dhash: str) -> dict[str, Any] | None:
    """state.pt of an unfinished training of these settings and subset, on the CPU; None when there is
    none (and then no snapshot of another run may lie in the folder either)."""
    path = out_dir / STATE_FILE
    if not path.exists():
        check_folder(out_dir, shash, dhash)
        return None
    state = torch_load(path, map_location="cpu")
    check_record(path, state, shash, dhash)
    return state


def snapshot_entry(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A snapshot's entry in train.json's ``snapshots`` list, from its snapshot-KKK.json."""
    keys = ("k", "step", "images_seen", "epochs", "loss_ema", "file")
    return {key: meta[key] for key in keys} | {"json": snapshot_file(meta["k"], "json")}


def last_saved(step: int, every: int, snaps: Sequence[int], start: int) -> int | None:
    """The step of the newest state.pt (None when this process has written none and started fresh)."""
    cands = [s for s in snaps if s <= step]
    if every:
        cands.append(step // every * every)
    best = max([c for c in cands if c > 0] + [start])
    return best if best > 0 else None


# ----------------------------------------------------------------------------------------------------
# Writing.


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the state dict in the contiguous layout (also of a channels-last net)."""
    return {
        k: v.detach().to("cpu", copy=True, memory_format=torch.contiguous_format)
        for k, v in module.state_dict().items()
    }
