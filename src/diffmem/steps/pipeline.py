"""The steps of the workflow as library functions: each reads files, calls the science, writes files.

The Snakemake scripts in ``workflow/scripts/`` are thin wrappers around these, so every step can also be
run and tested from Python without Snakemake.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import diffmem
from diffmem import data
from diffmem.data import subset_geometry
from diffmem.io import atomic_path, read_json, read_npz, torch_load, write_json, write_npz
from diffmem.plan import config as dmc
from diffmem.plan import layout
from diffmem.science import emm
from diffmem.science.convergence import levelled_off
from diffmem.training import metrics

if TYPE_CHECKING:  # pandas costs a job ~0.3 s to import: only the table steps load it
    import pandas as pd

_log = logging.getLogger("diffmem")

TABLE_COLUMNS = [
    "figure", "experiment", "title", "value", "display", "kind", "size", "snapshot", "step",
    "images_seen", "epochs", "ratio", "ci_low", "ci_high", "n", "memorized", "ratio_threshold",
    "emm_threshold", "emm_lower", "emm_upper", "emm_status", "search_lo", "search_hi", "non_monotone", "run_id",
    "group", "seed", "levelled_off", "nn_distance", "pair_distance", "nn_pair_ratio",
]  # fmt: skip
"""Columns of a figure's table. ``ratio_threshold``: score.threshold (a sample is memorized when
d1/d2 < it); ``emm_threshold``: emm.threshold (a size is ``memorized`` when its ratio >= it);
``emm_lower``/``emm_upper``: the EMM bounds of a search (lower <= EMM < upper, :func:`diffmem.science.emm.bounds`);
``search_lo``/``search_hi``: the size range it searched (emm.lo/hi). ``group``: the value a replicate
repeats (its own label without ``replicates``), ``seed``: data.seed. Per size: ``levelled_off`` (yes | no |
unknown, :func:`diffmem.science.convergence.levelled_off`) and the subset's geometry ``nn_distance``,
``pair_distance``, ``nn_pair_ratio`` (:func:`diffmem.data.geometry.data_geometry`); empty for a
memorization.json written before they were recorded."""


# --------------------------------------------------------------------------------------------- sampling
def _snapshot_list(train_summary: Path) -> list[dict]:
    snaps = read_json(train_summary)["snapshots"]
    if not snaps:
        raise RuntimeError(f"{train_summary} lists no snapshots")
    return snaps


def net_images(settings: dict, subset: dict):
    """The training images as the run's net sees them: at ``model.resolution`` (pixel repetition of the
    data when the net is larger, :func:`diffmem.data.images.to_net_resolution`)."""
    from diffmem.data.images import to_net_resolution

    return to_net_resolution(subset["images"], settings["model"]["resolution"])


class SamplingPaused(RuntimeError):
    """Sampling stopped between snapshots before its job's walltime; the next attempt goes on."""


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


def _autocast(denoise, device):
    """``denoise`` with its calls under bfloat16 autocast (``sample.precision: bf16``)."""
    from diffmem.science import precision as dmprec

    def call(*args, **kwargs):
        with dmprec.autocast(device, "bf16"):
            return denoise(*args, **kwargs)

    return call


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

    import torch

    from diffmem.science import precision as dmprec
    from diffmem.science import sampler as dms
    from diffmem.training.data_parallel import default_device

    t_call = time.time()
    device = default_device(device)
    sp = settings["sample"]
    shape = tuple(net_images(settings, subset).shape[1:])
    optimum = settings["model"]["arch"] == "optimum"
    snaps = [{"k": 0, "step": 0, "images_seen": 0, "epochs": 0.0}] if optimum else _snapshot_list(Path(train_summary))
    train_dir = None if optimum else Path(train_summary).parent
    label_dim = int(settings["model"].get("label_dim") or 0)
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
        denoise = load_denoiser(settings, train_dir, snap, subset, device)
        prec = dmprec.check(sp.get("precision"), "sample.precision")
        if prec == "bf16" and not optimum:  # the net in bfloat16, its output (and the sampler) in float32
            denoise = _autocast(denoise, device)
        with torch.no_grad(), dmprec.backend_flags(device, prec):
            images, labels = dms.generate(
                denoise,
                n=sp["n"],
                shape=shape,
                seed=sp["seed"],
                batch_size=sp["batch"],
                label_dim=label_dim,
                device=device,
                num_steps=sp["num_steps"],
                sigma_min=sp["sigma_min"],
                sigma_max=sp["sigma_max"],
                rho=sp["rho"],
            )
        write_npz(part, images=np.asarray(images, dtype=np.uint8), cond_labels=np.asarray(labels))
        per_snapshot = max(per_snapshot, time.time() - t0)
        log.info("snapshot %s (step %s): %d samples in %.1f s (%.0f samples/s)", snap["k"], snap["step"], sp["n"],
                 time.time() - t0, sp["n"] / max(time.time() - t0, 1e-9))  # fmt: skip
    loaded = [read_npz(parts / f"snapshot-{snap['k']:03d}.npz") for snap in snaps]
    samples = np.stack([z["images"] for z in loaded])
    labels = loaded[-1]["cond_labels"]
    meta = [{k: s[k] for k in ("k", "step", "images_seen", "epochs") if k in s} for s in snaps]
    write_npz(samples_path, samples=samples, cond_labels=labels, snapshots=json.dumps(meta))
    dms.save_grid(samples[-1][:100], grid_path)
    shutil.rmtree(parts)
    return {"snapshots": meta, "shape": list(samples.shape)}


# ---------------------------------------------------------------------------------------------- scoring
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
    from diffmem.training.data_parallel import default_device

    device = default_device(device)
    from diffmem.science import memorization as mem
    from diffmem.science import sampler as dms

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
        sc = mem.score(images, train, threshold=threshold, device=device)
        for key in arrays:
            arrays[key].append(np.asarray(sc[key]))
        per_snap.append({**snap, **{k: sc[k] for k in ("ratio", "n_memorized", "n", "ci_low", "ci_high")}})
        log.info(
            "snapshot %s: ratio %.4f [%.4f, %.4f] (%.2f s)",
            snap["k"],
            sc["ratio"],
            sc["ci_low"],
            sc["ci_high"],
            time.time() - t0,
        )
    best = mem.best_snapshot([s["ratio"] for s in per_snap])

    result = {
        "size": int(settings["data"]["size"]),
        "threshold": threshold,
        "ratio": per_snap[best]["ratio"],
        "ci_low": per_snap[best]["ci_low"],
        "ci_high": per_snap[best]["ci_high"],
        "n": per_snap[best]["n"],
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


# -------------------------------------------------------------------------------------------- EMM search
def emm_round(
    search: dict,
    previous: str | Path | None,
    score_paths: list[str | Path],
    out_path: str | Path,
    log: logging.Logger = _log,
) -> dict:
    """Merge the scores of the sizes the previous round asked for and decide the next sizes (or done)."""
    prev = read_json(previous) if previous else None
    k = prev["round"] + 1 if prev else 0
    evaluated = {int(e["size"]): e for e in prev["evaluated"]} if prev else {}
    for path in score_paths:
        sc = read_json(path)
        evaluated[int(sc["size"])] = {
            "size": int(sc["size"]),
            "ratio": sc["ratio"],
            "ci_low": sc["ci_low"],
            "ci_high": sc["ci_high"],
            "n": sc["n"],
            "best_snapshot": sc["best_snapshot"],
            "memorization": str(path),
        }
    allowed = dmc.allowed_sizes(search["settings"], load=True)
    step = emm.emm_step(
        {s: e["ratio"] for s, e in evaluated.items()},
        allowed,
        int(search["lo"]),
        int(search["hi"]),
        threshold=float(search["threshold"]),
        tolerance=float(search["tolerance"]),
        per_round=int(search["per_round"]),
    )
    for e in evaluated.values():
        e["memorized"] = emm.passes(e["ratio"], search["threshold"])
    state = {
        "round": k,
        "experiment": search["experiment"],
        "value": search["value"],
        "display": search["display"],
        "run_id": search["run_id"],
        "lo": int(search["lo"]),
        "hi": int(search["hi"]),
        "threshold": float(search["threshold"]),
        "tolerance": float(search["tolerance"]),
        **{
            key: step.get(key)
            for key in ("done", "next", "bracket", "lower", "upper", "status", "emm", "non_monotone", "notes")
        },
        "evaluated": [evaluated[s] for s in sorted(evaluated)],
    }
    if not state["done"] and k >= int(search["max_rounds"]):
        state.update(done=True, next=[], status="max_rounds")
        state["notes"] = list(state.get("notes") or []) + [f"stopped after max_rounds={search['max_rounds']}"]
    log.info(
        "round %d: evaluated %s -> status %s, bracket %s, next %s",
        k,
        {s: round(e["ratio"], 4) for s, e in sorted(evaluated.items())},
        state["status"],
        state["bracket"],
        state["next"],
    )
    write_json(out_path, state)
    return state


def emm_result(search: dict, final_round: str | Path, out_path: str | Path, log: logging.Logger = _log) -> dict:
    """The search's result: the final round, plus the round count and its file."""
    state = read_json(final_round)
    state["rounds"] = state["round"] + 1
    state["final_round"] = str(final_round)
    log.info(
        "EMM %s/%s: status %s, bracket %s", search["experiment"], search["value"], state["status"], state["bracket"]
    )
    write_json(out_path, state)
    return state


# ---------------------------------------------------------------------------------------------- tables
def figure_table(fig: dict) -> pd.DataFrame:
    """Rows for one figure: per value and size its ratio (``kind=size``), per snapshot (``kind=snapshot``)
    and per EMM search its bounds (``kind=emm``, from :func:`diffmem.science.emm.bounds`)."""
    rows: list[dict[str, Any]] = []
    for v in fig["values"]:
        common = {
            "figure": fig["name"],
            "experiment": v["experiment"],
            "title": v["title"],
            "value": v["label"],
            "display": v["display"],
            "run_id": v["run_id"],
            "ratio_threshold": v["ratio_threshold"],
            "emm_threshold": v["emm_threshold"],
            "group": v.get("group", v["label"]),
            "seed": v.get("seed"),
        }
        if v["mode"] == "emm":
            res = read_json(v["emm"])
            for e in res["evaluated"]:
                rows.append({**common, "kind": "size", **_size_cols(e), "memorized": e["memorized"],
                             **_beside_cols(read_json(e["memorization"]))})  # fmt: skip
            lo, hi = emm.bounds(res)
            rows.append(
                {
                    **common,
                    "kind": "emm",
                    "emm_lower": lo,
                    "emm_upper": hi,
                    "emm_status": res["status"],
                    "search_lo": res["lo"],
                    "search_hi": res["hi"],
                    "non_monotone": res["non_monotone"],
                }
            )
            continue
        for size, scores_path in v["scores"].items():
            sc = read_json(scores_path)
            rows.append(
                {
                    **common,
                    "kind": "size",
                    "size": int(size),
                    **_size_cols(sc),
                    "memorized": emm.passes(sc["ratio"], v["emm_threshold"]),
                    **_beside_cols(sc),
                }
            )
            for snap in sc["snapshots"]:
                rows.append(
                    {
                        **common,
                        "kind": "snapshot",
                        "size": int(size),
                        "snapshot": snap["k"],
                        "step": snap["step"],
                        "images_seen": snap["images_seen"],
                        "epochs": snap["epochs"],
                        **{k: snap[k] for k in ("ratio", "ci_low", "ci_high", "n")},
                        "memorized": emm.passes(snap["ratio"], v["emm_threshold"]),
                    }
                )
    import pandas as pd

    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _size_cols(e: dict) -> dict:
    return {"size": int(e["size"]), **{k: e[k] for k in ("ratio", "ci_low", "ci_high", "n")}}


def _beside_cols(sc: dict) -> dict:
    """What a memorization.json says beside its ratio: convergence and the subset's geometry."""
    geo = sc.get("geometry") or {}
    return {
        "levelled_off": (sc.get("convergence") or {}).get("levelled_off"),
        **{k: geo.get(k) for k in ("nn_distance", "pair_distance", "nn_pair_ratio")},
    }


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


# --------------------------------------------------------------------------------------------- training
class TrainingPaused(RuntimeError):
    """A training stopped before its job's walltime with its state saved; the next attempt resumes."""


def train_run(
    settings_path: str | Path,
    subset_path: str | Path,
    out_dir: str | Path,
    processes: int = 1,
    threads: int = 1,
    log_path: str | Path | None = None,
    time_budget_s: float | None = None,
    checkpoint_every: int | None = None,
    log: logging.Logger = _log,
) -> dict:
    """Train one run: in this process, or data parallel over ``processes`` GPUs (or CPU processes with
    gloo) through ``torchrun -m diffmem.training.loop``; the result is the same training up to rounding.

    With ``time_budget_s`` the training stops (resumably) before that many seconds have passed; then
    :class:`TrainingPaused` is raised, so that the workflow's next attempt of the job resumes it."""
    from diffmem.training import loop as train

    settings = read_json(settings_path)
    # The job's log is replaced on every attempt; the run's own history.log keeps every link of a chain.
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    history = logging.FileHandler(Path(out_dir) / train.HISTORY_FILE)
    history.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(history)
    try:
        if processes <= 1:
            with metrics.recorder(out_dir, log) as record:  # train/stats.jsonl (+ TensorBoard), every link
                result = train.train(
                    settings, data.load_subset(subset_path), out_dir, log=log,
                    time_budget_s=time_budget_s, checkpoint_every=checkpoint_every, progress=record,
                )  # fmt: skip
        else:
            result = _torchrun(settings_path, subset_path, out_dir, processes, threads, log_path,
                               time_budget_s, checkpoint_every, log)  # fmt: skip
    finally:
        log.removeHandler(history)
        history.close()
    if not result.get("complete", True):
        raise TrainingPaused(
            f"training paused at step {result['steps']}/{result['total_steps']} to end before the job's "
            f"walltime; {Path(out_dir) / train.STATE_FILE} keeps it and the next attempt resumes from there"
        )
    return result


def _torchrun(settings_path, subset_path, out_dir, processes, threads, log_path, time_budget_s, ckpt, log) -> dict:
    import socket
    import subprocess
    import sys

    from diffmem.training import loop as train

    with socket.socket() as sock:  # a free loopback port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
        "--master_addr=127.0.0.1", f"--master_port={port}",
        "-m", "diffmem.training.loop", "--settings", str(settings_path), "--subset", str(subset_path),
        "--out", str(out_dir), "--threads", str(max(1, threads // processes)),
    ]  # fmt: skip
    if time_budget_s is not None:
        cmd += ["--time-budget", str(time_budget_s)]
    if ckpt is not None:
        cmd += ["--checkpoint-every", str(ckpt)]
    log.info("data parallel over %d processes: %s", processes, " ".join(cmd))
    # the workers import the diffmem this process runs (a conda job strips PYTHONPATH; see the Snakefile)
    import os

    src = str(Path(diffmem.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    with open(log_path, "a") if log_path else contextlib.nullcontext() as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT if fh else None, check=False, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with {proc.returncode}; see {log_path or 'stderr'}")
    summary = Path(out_dir) / train.SUMMARY_FILE
    if summary.exists():
        return read_json(summary)
    progress = read_json(Path(out_dir) / train.PROGRESS_FILE)
    return {"complete": False, "steps": progress["step"], "total_steps": progress["total_steps"]}
