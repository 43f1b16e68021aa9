"""Train one run, or one link of a chain: the run resumes from its saved state, and stops (resumably)
before the job's walltime, which ends the job with an error so that Snakemake's retry goes on. Any other
error is recorded in train/failed.json and the later attempts stop at once (diffmem.steps.attempts). With
``gpu: true`` and ``gpus_per_run: N > 1`` the run trains data parallel through torchrun (N processes); a
per-GPU batch that does not fit ``compute.gpu_memory_gb`` trains in rounds of a micro-batch."""

from pathlib import Path

from diffmem.io import read_json
from diffmem.plan import config, resources
from diffmem.plan.records import micro_batch
from diffmem.steps.attempts import failure_record, stop_if_failed
from diffmem.steps.job_env import script_logging, set_threads
from diffmem.steps.train import TrainingPaused, train_run
from diffmem.training import gpu_locks as gpus

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
out = Path(sm.output.summary).parent
stop_if_failed(out, sm.resources.attempt, log)  # an earlier attempt failed: not retried
gpus.claim_for_job(sm, log)  # a free GPU of this workstation, before CUDA starts (none under Slurm)
set_threads(sm.threads)
with failure_record(out, sm.resources.attempt, (TrainingPaused,), log):
    opts = config.job_options(sm.config)
    log.info("job walltime %d min: training stops (resumably) shortly before it", sm.resources.runtime)
    train_run(
        sm.input.settings,
        sm.input.subset,
        out,
        processes=opts["gpus_per_run"] if opts["gpu"] else 1,
        threads=sm.threads,
        log_path=sm.log[0],
        time_budget_s=resources.time_budget_s(sm.resources.runtime),
        checkpoint_every=opts["checkpoint_every"],
        log=log,
        micro_batch=micro_batch(read_json(sm.input.settings), sm.config),  # as the plan computed it
    )
