"""The sample and nearest-neighbour grids of the two runs that bracket one EMM search's result."""

from diffmem.results import report_items as report
from diffmem.steps.job_env import script_logging

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
report.emm_grids(sm.input.emm, dict(sm.input.items()), sm.output[0], sm.params.about)
