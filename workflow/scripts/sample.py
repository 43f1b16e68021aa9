"""Sample every snapshot of one run with one sampler setting; save the uint8 samples, a grid of the last
snapshot, and sample.json (the sampler's identity). Resumable per snapshot across attempts; any error but
a walltime pause is recorded in the sample folder's failed.json and the later attempts stop at once."""

from pathlib import Path

from diffmem import data
from diffmem.io import read_json, write_json
from diffmem.plan import config, resources
from diffmem.steps.attempts import failure_record, stop_if_failed
from diffmem.steps.job_env import script_logging, set_threads
from diffmem.steps.sample import SamplingPaused, sample_run
from diffmem.training import gpu_locks as gpus

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
folder = Path(sm.output.samples).parent  # samples/<sample_id>/
stop_if_failed(folder, sm.resources.attempt, log)  # an earlier attempt failed: not retried
gpus.claim_for_job(sm, log)  # a free GPU of this workstation, before CUDA starts (none under Slurm)
set_threads(sm.threads)
with failure_record(folder, sm.resources.attempt, (SamplingPaused,), log):
    settings = read_json(sm.input.settings)
    settings["sample"] = {**sm.params.sample, "batch": config.job_options(sm.config)["sample_batch"]}
    settings["sample"].pop("about", None)
    sample_run(
        settings,
        data.load_subset(sm.input.subset),
        sm.input.trained or None,
        sm.output.samples,
        sm.output.grid,
        time_budget_s=resources.time_budget_s(sm.resources.runtime),
        log=log,
    )
    write_json(sm.output.settings, sm.params.sample)
