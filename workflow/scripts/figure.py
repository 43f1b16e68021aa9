"""Draw one figure (PDF + PNG) from its table."""

from diffmem.steps.figure import draw_figure_file
from diffmem.steps.job_env import script_logging

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
draw_figure_file(sm.params.figure, sm.input.table, sm.output.pdf, sm.output.png, log=log)
