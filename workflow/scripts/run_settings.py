"""Write a run's resolved settings (run.json), the person-readable identity of its folder."""

from diffmem.io import write_json

write_json(snakemake.output[0], snakemake.params.settings)  # noqa: F821
