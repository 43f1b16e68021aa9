"""The subset step: one class-balanced nested subset of a config's data, saved as ``.npz``."""

from __future__ import annotations

import logging
from pathlib import Path

from diffmem import data
from diffmem.plan import config as dmc

_log = logging.getLogger("diffmem")


def write_subset(config: dict, data_id: str, size: int, out_path: str | Path, log: logging.Logger = _log) -> dict:
    """Make the subset ``data_id`` of ``config`` at ``size`` (its files found where the config says) and
    save it to ``out_path``; return it."""
    spec = dmc.data_spec(config, data_id, int(size))
    subset = data.make_subset(spec)
    data.save_subset(out_path, subset)
    log.info("subset %s: %d images of shape %s", spec, len(subset["images"]), subset["images"].shape[1:])
    return subset
