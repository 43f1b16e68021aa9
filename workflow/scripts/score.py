"""Score memorization of every snapshot's samples of one run and keep the max over snapshots."""

from diffmem import data
from diffmem.steps.job_env import script_logging, set_threads
from diffmem.steps.score import score_run
from diffmem.training import gpu_locks as gpus

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
gpus.claim_for_job(sm, log)  # a free GPU of this workstation, before CUDA starts (none under Slurm)
set_threads(sm.threads)
out = sm.output
score_run(
    {"score": sm.params.score, "data": {"size": int(sm.wildcards.size)}},
    data.load_subset(sm.input.subset),
    sm.input.samples,
    out.scores,
    out.distances,
    out.nearest,
    run_id=sm.wildcards.run_id,
    log=log,
)
