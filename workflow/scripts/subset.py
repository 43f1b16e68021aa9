"""Make one class-balanced nested subset and save it as .npz."""

from diffmem import data
from diffmem.plan import config
from diffmem.steps.job_env import script_logging

log = script_logging(snakemake.log[0])  # noqa: F821
wc = snakemake.wildcards  # noqa: F821
spec = config.data_spec(snakemake.config, wc.data_id, int(wc.size))  # noqa: F821  (paths from the config)
subset = data.make_subset(spec)
data.save_subset(snakemake.output[0], subset)  # noqa: F821
log.info("subset %s: %d images of shape %s", spec, len(subset["images"]), subset["images"].shape[1:])
