"""Make one class-balanced nested subset and save it as .npz."""

from diffmem.steps.job_env import script_logging
from diffmem.steps.subset import write_subset

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
write_subset(sm.config, sm.wildcards.data_id, int(sm.wildcards.size), sm.output[0], log=log)
