"""Train one run; resumes from its last saved state when the folder holds one. With ``gpu: true`` and
``gpus_per_run: N > 1`` in the config the run is trained data parallel through torchrun (N processes)."""

from pathlib import Path

from diffmem import pipeline
from diffmem.runtime import script_logging, set_threads

log = script_logging(snakemake.log[0])  # noqa: F821
set_threads(snakemake.threads)  # noqa: F821
config = snakemake.config  # noqa: F821
processes = int(config.get("gpus_per_run", 1)) if config.get("gpu", False) else 1
pipeline.train_run(
    snakemake.input.settings,  # noqa: F821
    snakemake.input.subset,  # noqa: F821
    Path(snakemake.output.summary).parent,  # noqa: F821
    processes=processes,
    threads=snakemake.threads,  # noqa: F821
    log_path=snakemake.log[0],  # noqa: F821
    log=log,
)
