"""Train one run; resumes from its last saved state when the folder holds one."""

from pathlib import Path

from diffmem import data, train
from diffmem.io import read_json
from diffmem.runtime import script_logging, set_threads

log = script_logging(snakemake.log[0])  # noqa: F821
set_threads(snakemake.threads)  # noqa: F821
settings = read_json(snakemake.input.settings)  # noqa: F821
subset = data.load_subset(snakemake.input.subset)  # noqa: F821
out_dir = Path(snakemake.output.summary).parent  # noqa: F821
train.train(settings, subset, out_dir, log=log)
