"""Sample every snapshot of one run with one sampler setting; save the uint8 samples, a grid of the last
snapshot, and sample.json (the sampler's identity). Resumable per snapshot across attempts."""

from diffmem import data
from diffmem.io import read_json, write_json
from diffmem.plan import config, resources
from diffmem.steps.job_env import script_logging, set_threads
from diffmem.steps.sample import sample_run
from diffmem.training import gpu_locks as gpus

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
gpus.claim_for_job(sm, log)  # a free GPU of this workstation, before CUDA starts (none under Slurm)
set_threads(sm.threads)
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
