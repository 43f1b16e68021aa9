"""Draw one figure (PDF + PNG) from its table."""

import pandas as pd

from diffmem.results import figures as plotting
from diffmem.steps.job_env import script_logging

log = script_logging(snakemake.log[0])  # noqa: F821
spec = snakemake.params.figure  # noqa: F821
table = pd.read_csv(snakemake.input.table, dtype={"value": str, "display": str})  # noqa: F821
plotting.draw_figure(spec, table, snakemake.output.pdf, snakemake.output.png)  # noqa: F821
log.info("figure %s drawn from %d rows", spec["name"], len(table))
