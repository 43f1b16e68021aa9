"""The sample step: every snapshot of a run (or the closed-form optimum) sampled with one sampler setting."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from diffmem.io import read_json, read_npz, torch_load, write_npz
from diffmem.plan import layout

_log = logging.getLogger("diffmem")


class SamplingPaused(RuntimeError):
    """Sampling stopped between snapshots before its job's walltime; the next attempt goes on."""


def net_images(settings: dict, subset: dict):
    """The training images as the run's net sees them: at ``model.resolution`` (pixel repetition of the
    data when the net is larger, :func:`diffmem.data.images.to_net_resolution`)."""
    from diffmem.data.images import to_net_resolution

    return to_net_resolution(subset["images"], settings["model"]["resolution"])


def load_denoiser(settings: dict, train_dir: Path | None, snapshot: dict | None, subset: dict, device: str):
    """The denoiser D(x; sigma, labels) of one snapshot (or the closed-form optimum of the subset)."""
    from diffmem.science import diffusion, nets
    from diffmem.science import sampler as dms

    if settings["model"]["arch"] == "optimum":
        return dms.OptimalDenoiser(net_images(settings, subset), device=device)
    net = nets.build_net(settings["model"])
    state = torch_load(Path(train_dir) / snapshot["file"], map_location="cpu")
    net.load_state_dict(state)
    net.to(device).eval()
    return diffusion.make_precond(net, settings["diffusion"]).to(device).eval()


def _snapshot_list(train_summary: Path) -> list[dict]:
    snaps = read_json(train_summary)["snapshots"]
    if not snaps:
        raise RuntimeError(f"{train_summary} lists no snapshots")
    return snaps


def _sample_snapshot(settings: dict, subset: dict, train_dir: Path | None, snap: dict, device: str):
    """The uint8 samples and their class labels of one snapshot, as ``settings["sample"]`` asks."""
    import torch

    from diffmem.science import precision as dmprec
    from diffmem.science import sampler as dms

    sp = settings["sample"]
    denoise = load_denoiser(settings, train_dir, snap, subset, device)
    prec = dmprec.check(sp.get("precision"), "sample.precision")
    if prec == "bf16" and settings["model"]["arch"] != "optimum":  # the net in bfloat16, its output in float32
        denoise = dmprec.AutocastDenoiser(denoise, device)  # keeps the net's sigma range for the sampler
    with torch.no_grad(), dmprec.backend_flags(device, prec):
        return dms.generate(
            denoise,
            n=sp["n"],
            shape=tuple(net_images(settings, subset).shape[1:]),
            seed=sp["seed"],
            batch_size=sp["batch"],
            label_dim=int(settings["model"].get("label_dim") or 0),
            device=device,
            num_steps=sp["num_steps"],
            sigma_min=sp["sigma_min"],
            sigma_max=sp["sigma_max"],
            rho=sp["rho"],
        )


def sample_run(
    settings: dict,
    subset: dict,
    train_summary: str | Path | None,
    samples_path: str | Path,
    grid_path: str | Path,
    device: str | None = None,
    time_budget_s: float | None = None,
    log: logging.Logger = _log,
) -> dict:
    """Sample every snapshot of a run (listed in its ``train.json``; the optimum has one, no training);
    write uint8 samples (S, N, C, H, W) and a PNG grid of the last snapshot.

    Resumable: each snapshot's samples are kept in ``<samples>.parts/`` until all are done, so a job
    stopped by its walltime loses at most one snapshot. With ``time_budget_s`` the job stops before a
    snapshot that would not end within that many seconds and raises :class:`SamplingPaused`."""
    import shutil

    from diffmem.science import sampler as dms
    from diffmem.training.data_parallel import default_device

    t_call = time.time()
    device = default_device(device)
    n = settings["sample"]["n"]
    optimum = settings["model"]["arch"] == "optimum"
    snaps = [{"k": 0, "step": 0, "images_seen": 0, "epochs": 0.0}] if optimum else _snapshot_list(Path(train_summary))
    train_dir = None if optimum else Path(train_summary).parent
    parts = Path(layout.sample_parts(samples_path))
    parts.mkdir(parents=True, exist_ok=True)
    per_snapshot = 0.0
    for snap in snaps:
        part = parts / f"snapshot-{snap['k']:03d}.npz"
        if part.exists():
            continue
        if time_budget_s is not None and time.time() - t_call + 1.5 * per_snapshot > time_budget_s:
            raise SamplingPaused(f"stopped before snapshot {snap['k']} to end before the job's walltime; "
                                 f"{parts} keeps the snapshots done, the next attempt goes on")  # fmt: skip
        t0 = time.time()
        images, labels = _sample_snapshot(settings, subset, train_dir, snap, device)
        write_npz(part, images=np.asarray(images, dtype=np.uint8), cond_labels=np.asarray(labels))
        per_snapshot = max(per_snapshot, time.time() - t0)
        log.info("snapshot %s (step %s): %d samples in %.1f s (%.0f samples/s)", snap["k"], snap["step"], n,
                 time.time() - t0, n / max(time.time() - t0, 1e-9))  # fmt: skip
    loaded = [read_npz(parts / f"snapshot-{snap['k']:03d}.npz") for snap in snaps]
    samples = np.stack([z["images"] for z in loaded])
    labels = loaded[-1]["cond_labels"]
    meta = [{k: s[k] for k in ("k", "step", "images_seen", "epochs") if k in s} for s in snaps]
    write_npz(samples_path, samples=samples, cond_labels=labels, snapshots=json.dumps(meta))
    dms.save_grid(samples[-1][:100], grid_path)
    shutil.rmtree(parts)
    return {"snapshots": meta, "shape": list(samples.shape)}
