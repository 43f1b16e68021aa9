"""The score step: the memorization ratio of every snapshot's samples of a run, and the best snapshot."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from diffmem.data import subset_geometry
from diffmem.io import read_npz, write_json, write_npz
from diffmem.science.convergence import levelled_off

_log = logging.getLogger("diffmem")


def score_run(
    settings: dict,
    subset: dict,
    samples_path: str | Path,
    scores_path: str | Path,
    distances_path: str | Path,
    nearest_path: str | Path,
    run_id: str | None = None,
    device: str | None = None,
    log: logging.Logger = _log,
) -> dict:
    """Memorization ratio of every snapshot's samples against the training subset; max over snapshots.
    ``run_id``: the workflow's id of the run (its folder name), recorded in the result. ``device``: where
    the exact nearest-neighbour search runs (default: CUDA when available)."""
    from diffmem.science import memorization as mem
    from diffmem.science import sampler as dms
    from diffmem.training.data_parallel import default_device

    device = default_device(device)
    z = read_npz(samples_path)  # a damaged file is named, with the way out
    samples, meta = z["samples"], json.loads(str(z["snapshots"]))
    train = subset["images"]
    if samples.shape[-1] != train.shape[-1]:  # a net larger than the data: samples back to the data's side
        from diffmem.data.images import to_data_resolution

        samples = np.stack([to_data_resolution(s, train.shape[-1]) for s in samples])
        log.info("samples of side %d scored at the data's side %d (k x k block means)", z["samples"].shape[-1],
                 train.shape[-1])  # fmt: skip
    threshold = float(settings["score"]["threshold"])
    per_snap, arrays = [], {"d1": [], "d2": [], "nn1": [], "nn2": []}
    for snap, images in zip(meta, samples, strict=True):
        t0 = time.time()
        sc = mem.score(images, train, threshold=threshold, ties=settings["score"].get("ties"), device=device)
        for key in arrays:
            arrays[key].append(np.asarray(sc[key]))
        per_snap.append({**snap, **{k: sc[k] for k in ("ratio", "n_memorized", "n", "ci_low", "ci_high")}})
        log.info("snapshot %s: ratio %.4f [%.4f, %.4f] (%.2f s)", snap["k"], sc["ratio"], sc["ci_low"],
                 sc["ci_high"], time.time() - t0)  # fmt: skip
    best = mem.best_snapshot([s["ratio"] for s in per_snap])
    result = {
        "size": int(settings["data"]["size"]),
        "threshold": threshold,
        **{k: per_snap[best][k] for k in ("ratio", "ci_low", "ci_high", "n")},
        "best_snapshot": best,
        "snapshots": per_snap,
        "run_id": run_id,
        "convergence": levelled_off(per_snap),  # the last two snapshots' ratios
        "geometry": subset_geometry(subset),  # how crowded the training subset is
    }
    write_npz(distances_path, **{k: np.stack(v) for k, v in arrays.items()})
    write_json(scores_path, result)
    dms.nn_grid(samples[best], train, arrays["nn1"][best], nearest_path)
    return result
