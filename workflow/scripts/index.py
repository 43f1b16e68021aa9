"""results/<name>/index.csv and the by-experiment/ links to the run folders (diffmem.results.index)."""

from pathlib import Path

from diffmem.results import index
from diffmem.steps.job_env import script_logging

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
results = Path(sm.output[0]).parent  # results/<name>/, where index.csv lies
rows = index.index_rows(sm.params.values, results)
index.update_links(rows, results)
index.write_index(rows, sm.output[0])
log.info("%d runs listed, links under %s", len(rows), results / index.LINKS)
