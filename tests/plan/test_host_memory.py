"""Host memory of the train, sample and score jobs (diffmem.plan.resources) against measured peaks: the CPU
peaks of benchmarks/memory/host_peaks.json and the host peaks of the H200 benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffmem import BENCHMARKS
from diffmem.plan import config as dmc
from diffmem.plan import memory
from diffmem.plan import resources as dmr

ROOT = Path(__file__).resolve().parents[2]
PEAKS = json.loads((BENCHMARKS / "memory" / "host_peaks.json").read_text())["peaks"]
FACTOR = 2.5  # the most a job may ask for over a measured peak (the job's Snakemake processes included)
CPU = {"compute": {"device": "cpu", "max_mem_gb": 512}, "gpu": False}


def mb(mib: float) -> float:
    return mib * memory.MIB / 1e6


def settings_of(rec: dict) -> dict:
    """A measured case's settings: its net, |D|, training batch, samples and sampling batch."""
    return {
        "model": rec["model"],
        "data": {"size": rec.get("size", 0)},
        "train": {"batch": rec.get("batch", 1)},
        "sample": {"n": rec.get("n", 0), "batch": rec.get("batch", 1)},
    }


def gpu_config(gpus: int = 1) -> dict:
    return {"compute": {"device": "h200", "max_mem_gb": 512}, "gpu": True, "gpus_per_run": gpus}


@pytest.mark.parametrize("rec", [r for r in PEAKS if r["stage"] != "import"], ids=lambda r: r["case"])
def test_the_request_covers_each_measured_peak_within_the_factor(rec):
    """The model of one process is at least the process's measured peak; the job asks for at most 2.5x it."""
    s, peak = settings_of(rec), mb(rec["peak_rss_mib"])
    if rec["stage"] == "train":
        process, job = dmr.train_process_mb(s, CPU), dmr.train_mem_mb(s, CPU)
    elif rec["stage"] == "sample":
        job = dmr.sample_mem_mb(s, CPU, rec["snapshots"])
        process = job - dmr.JOB_MB
    else:
        job = dmr.score_mem_mb(s, CPU, rec["snapshots"])
        process = job - dmr.JOB_MB
    assert peak <= process < job <= FACTOR * peak, (rec["case"], peak, process, job)


def test_state_pt_is_four_copies_of_the_net():
    """state.pt as written: net, EMA and Adam's two moments in fp32 (what a resume reads before it builds)."""
    for rec in (r for r in PEAKS if r["stage"] == "train"):
        want = dmr.STATE_PT_COPIES * 4 * rec["n_params"] / 1e6
        assert rec["n_params"] == memory.n_params(rec["model"])
        assert want <= rec["state_pt_mb"] <= want + 0.5, rec["case"]  # + the counters, streams and hashes


def test_torch_alone_fits_in_the_process_allowance():
    (imp,) = [r for r in PEAKS if r["stage"] == "import"]
    smallest = min((r for r in PEAKS if r["stage"] == "train"), key=lambda r: r["n_params"])
    assert mb(imp["peak_rss_mib"]) < mb(smallest["peak_rss_mib"]) <= dmr.CPU_PROCESS_MB


def test_gpu_requests_cover_the_h200_host_peaks():
    """The H200 benchmarks' host peaks (one process: CUDA, cuDNN and cuBLAS loaded) are within the GPU job's
    request, and no more than 2.5x below it."""
    for name, stage in (("gpu-h200-train-paper.json", "train"), ("gpu-h200-sample-optimum-score.json", "sample")):
        doc = json.loads((BENCHMARKS / name).read_text())
        for rec in doc["results"]:
            if rec.get("bench") != stage or rec.get("status") != "ok":
                continue
            preset = doc["presets"][rec["case"].split()[0]]
            model = {"arch": "ddpmpp", **preset["net"]}
            s = {"model": model, "data": {"size": rec.get("n_images", 0)}, "train": {"batch": rec["batch"]},
                 "sample": {"n": rec["n"] if stage == "sample" else 0, "batch": rec["batch"]}}  # fmt: skip
            if stage == "train":
                job = dmr.train_mem_mb(s, gpu_config())
            else:
                job = dmr.sample_mem_mb(s, gpu_config(), 1)
            assert mb(rec["host_peak_mib"]) <= job - dmr.JOB_MB and job <= FACTOR * mb(rec["host_peak_mib"]), rec


def test_a_training_job_grows_with_the_net_and_its_processes():
    """Issue 22: the width-320 paper net (219M parameters): state.pt (3.5 GB) read on resume while the net and
    its EMA are built (1.75 GB), torch with CUDA besides, in every one of gpus_per_run workers."""
    cfg = dmc.load_config([str(ROOT / "config" / "paper.yaml")])
    v = {x.label: x for x in dmc.expand(cfg)["width"]}
    wide, base = (dmc.run_settings(v[w].settings, 1000) for w in ("320", "128"))
    assert memory.n_params(wide["model"]) == 219_294_723
    one = dmr.train_mem_mb(wide, gpu_config(1))
    assert one >= dmr.JOB_MB + dmr.gpu_process_mb() + 3.5e3 + 1.75e3
    per_param = (dmr.STATE_PT_COPIES + dmr.BUILD_COPIES) * 4 / 1e6
    grew = per_param * (memory.n_params(wide["model"]) - memory.n_params(base["model"]))
    assert one - dmr.train_mem_mb(base, gpu_config(1)) == pytest.approx(grew, abs=1)
    four = dmr.train_mem_mb(wide, gpu_config(4))
    assert four == pytest.approx(4 * one - 3 * dmr.JOB_MB + 2 * dmr.CPU_PROCESS_MB, abs=4)
    assert dmr.train_mem_mb(wide, {**gpu_config(4), "gpu": False}) == one  # gpus_per_run counts with gpu: true


def test_cpu_activations_are_the_counted_bytes_per_image():
    """On the CPU a training batch's activations are memory.activation_bytes per image (not a FLOP proxy),
    once they outgrow the copies a state save writes; a GPU job holds none on the host."""
    rec = next(r for r in PEAKS if r["case"] == "paper_b8 train")
    s = settings_of(rec)
    big = {**s, "train": {"batch": 64}}
    step = (64 - rec["batch"]) * memory.activation_bytes(rec["model"]) / 1e6
    assert dmr.train_mem_mb(big, CPU) - dmr.train_mem_mb(s, CPU) == pytest.approx(step, abs=1)
    assert dmr.train_mem_mb(big, gpu_config()) == dmr.train_mem_mb(s, gpu_config())


def test_attempts_double_the_request_up_to_the_site_maximum():
    s = settings_of(next(r for r in PEAKS if r["case"] == "smoke train"))
    first = dmr.train_mem_mb(s, CPU)
    assert dmr.train_mem_mb(s, CPU, 2) - 2 * first in (0, 1)  # the request is rounded down to whole MB
    assert dmr.train_mem_mb(s, CPU, 30) == 512_000
