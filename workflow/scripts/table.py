"""One figure's table: a row per experiment value and size (ratio, CI, verdict) and EMM bracket rows."""

from diffmem.steps.job_env import script_logging
from diffmem.steps.table import figure_table, write_csv

log = script_logging(snakemake.log[0])  # noqa: F821
table = figure_table(snakemake.params.figure)  # noqa: F821
write_csv(table, snakemake.output[0])  # noqa: F821
log.info("%d rows", len(table))
