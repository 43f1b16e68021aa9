"""One EMM search round: merge the new scores into the previous round and ask the policy what next."""

from diffmem.plan import config
from diffmem.steps.emm import emm_round
from diffmem.steps.job_env import script_logging

sm = snakemake  # noqa: F821
log = script_logging(sm.log[0])
inp = sm.input
previous = inp.previous if hasattr(inp, "previous") else None
scores = list(inp.scores) if hasattr(inp, "scores") else []
search = {**sm.params.search, "settings": {"data": config.data_spec(sm.config, sm.params.search["data_id"], 0)}}
emm_round(search, previous, scores, sm.output[0], log=log)
