"""One EMM search round: merge the new scores into the previous round and ask the policy what next."""

from diffmem import pipeline
from diffmem.runtime import script_logging

log = script_logging(snakemake.log[0])  # noqa: F821
inp = snakemake.input  # noqa: F821
previous = inp.previous if hasattr(inp, "previous") else None
scores = list(inp.scores) if hasattr(inp, "scores") else []
pipeline.emm_round(snakemake.params.search, previous, scores, snakemake.output[0], log=log)  # noqa: F821
