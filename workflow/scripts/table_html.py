"""One figure's table rendered as HTML for the report (the CSV stays the table)."""

from diffmem.results import report_items as report
from diffmem.steps.job_env import script_logging

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
report.table_html(sm.input[0], sm.output[0], title=sm.params.figure.get("title", sm.wildcards.figure))
