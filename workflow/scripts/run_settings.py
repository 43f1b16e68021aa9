"""Write a run's run.json: its training identity, and in words what the run is."""

from diffmem.io import write_json

write_json(snakemake.output[0], snakemake.params.settings)  # noqa: F821
