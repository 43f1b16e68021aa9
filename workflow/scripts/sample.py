"""Sample every snapshot of one run; save the uint8 samples and a grid of the last snapshot."""

from pathlib import Path

from diffmem import data, pipeline
from diffmem.io import read_json
from diffmem.runtime import script_logging, set_threads

log = script_logging(snakemake.log[0])  # noqa: F821
set_threads(snakemake.threads)  # noqa: F821
out = snakemake.output  # noqa: F821
settings = read_json(snakemake.input.settings)  # noqa: F821
subset = data.load_subset(snakemake.input.subset)  # noqa: F821
run = Path(snakemake.input.settings).parent  # noqa: F821
pipeline.sample_run(settings, subset, run / "train", out.samples, out.grid, log=log)
