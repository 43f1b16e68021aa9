"""Score memorization of every snapshot of one run and keep the max over snapshots."""

from diffmem import data, pipeline
from diffmem.io import read_json
from diffmem.runtime import script_logging

log = script_logging(snakemake.log[0])  # noqa: F821
out = snakemake.output  # noqa: F821
settings = read_json(snakemake.input.settings)  # noqa: F821
subset = data.load_subset(snakemake.input.subset)  # noqa: F821
pipeline.score_run(
    settings,
    subset,
    snakemake.input.samples,  # noqa: F821
    out.scores,
    out.distances,
    out.nearest,
    run_id=snakemake.wildcards.run_id,  # noqa: F821
    log=log,
)
