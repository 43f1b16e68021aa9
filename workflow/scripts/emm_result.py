"""The EMM of one experiment value: the final round's bracket and every size evaluated."""

from diffmem.steps.emm import emm_result
from diffmem.steps.job_env import script_logging

log = script_logging(snakemake.log[0])  # noqa: F821
emm_result(snakemake.params.search, snakemake.input[0], snakemake.output[0], log=log)  # noqa: F821
