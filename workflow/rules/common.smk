# Config validation, the plan (diffmem.plan.plan.Plan answers every question the rules ask), and the
# one-line wrappers that hand a job's wildcards to it. File names: diffmem.plan.layout, under RESULTS.

from snakemake.utils import validate

from diffmem.errors import ConfigError
from diffmem.io import read_json
from diffmem.plan import layout
from diffmem.plan.load import retype_overrides
from diffmem.plan.lock import ResultsLockError
from diffmem.plan.lock import hold as hold_results
from diffmem.plan.plan import Plan

retype_overrides(workflow.config_settings.config, config)  # nested --config values
validate(config, schema="../schemas/config.schema.yaml")


def read_round(experiment, value, k):
    """Round k of an EMM search, read through its checkpoint (a damaged file is named, with the way out)."""
    return read_json(checkpoints.emm_round.get(experiment=experiment, value=value, k=k).output[0])


# the data are checked once, before the first job: not in a dry run (it lists the runs without the data), nor
# in a cluster job's own reading of the workflow (checked before it was submitted)
try:
    PLAN = Plan.build(config, read_round, check_files=workflow.is_main_process and not workflow.output_settings.dryrun)
except ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None

RESULTS = PLAN.results  # results/<name>/

# One workflow per results tree, whatever its working directory (diffmem.plan.lock): the main process takes the
# lock before any job and holds it until it exits; a dry run and the Snakemake inside each cluster job do not.
if workflow.is_main_process and not workflow.output_settings.dryrun:
    try:
        hold_results(RESULTS)
    except ResultsLockError as err:
        raise WorkflowError(str(err)) from None

ENV = "../../envs/diffmem.yaml"


wildcard_constraints:
    size=r"\d+",
    k=r"\d+",
    run_id=r"[0-9a-f]{10}",
    data_id=r"[0-9a-f]{10}",
    sample_id=r"[0-9a-f]{10}",
    score_id=r"[0-9a-f]{10}",
    experiment=r"[A-Za-z0-9_.-]+",
    value=r"[A-Za-z0-9_.+-]+",
    figure=r"[A-Za-z0-9_.-]+",


# Output patterns of the run folders (diffmem.plan.layout with wildcards), shared by several rule files.
W = "{run_id}", "{size}"
RUN_JSON = RESULTS / layout.run_json(*W)
TRAIN_JSON = RESULTS / layout.train_summary(*W)
SAMPLE_FILES = {k: RESULTS / p for k, p in layout.sample_files(*W, "{sample_id}").items()}
SCORE_FILES = {k: RESULTS / p for k, p in layout.score_files(*W, "{sample_id}", "{score_id}").items()}
JOB = layout.job_tag(*W)

# Inputs (the EMM ones read rounds through their checkpoint: read_round above).
get_subset = lambda w: PLAN.subset_input(w.run_id, w.size)
get_trained = lambda w: PLAN.trained_input(w.run_id, w.size)
get_samples = lambda w: PLAN.samples_input(w.run_id, w.size, w.sample_id)
get_emm_round_inputs = lambda w: PLAN.emm_round_inputs(w.experiment, w.value, w.k)
get_emm_final_round = lambda w: PLAN.final_round(w.experiment, w.value)[0]
get_table_inputs = lambda w: PLAN.table_inputs(w.figure)
get_figure_inputs = lambda w: PLAN.figure_inputs(w.figure)
get_index_inputs = lambda w: PLAN.index_inputs()
get_emm_grid_inputs = lambda w: PLAN.emm_grid_inputs(w.experiment, w.value)

# Params (canonical JSON: a config that only lists its keys in another order reruns nothing).
get_subset_spec = lambda w: PLAN.subset_spec(w.data_id, w.size)
run_json_of = lambda w: PLAN.run_json(w.run_id, w.size)
sample_settings_of = lambda w: PLAN.sample_params(w.sample_id)
score_settings_of = lambda w: PLAN.score_params(w.score_id)
get_emm_search = lambda w: PLAN.emm_search(w.experiment, w.value)
get_figure_spec = lambda w: PLAN.figure_spec(w.figure)
get_emm_grid_about = lambda w: PLAN.emm_grid_about(w.experiment, w.value)

# Resources of the heavy jobs (diffmem.plan.resources, through the Plan); light jobs: capped(minutes).
capped = PLAN.capped
train_runtime = lambda w, attempt: PLAN.train_runtime(w.run_id, w.size, attempt)
train_mem_mb = lambda w, attempt: PLAN.train_mem_mb(w.run_id, w.size, attempt)
sample_runtime = lambda w, attempt: PLAN.sample_runtime(w.run_id, w.size, w.sample_id, attempt)
sample_mem_mb = lambda w, attempt: PLAN.sample_mem_mb(w.run_id, w.size, w.sample_id, attempt)
score_runtime = lambda w, attempt: PLAN.score_runtime(w.run_id, w.size, w.sample_id, attempt)
score_mem_mb = lambda w, attempt: PLAN.score_mem_mb(w.run_id, w.size, w.sample_id, attempt)

# Retries of `train` and `sample` resume the longest chain of jobs the plan can need (x2, at most compute.max_chain);
# a job that fails for another reason stops its later attempts at once (diffmem.steps.attempts).
# Only the main Snakemake process retries: the Snakemake inside a cluster job must not restart a paused
# link within the same walltime (a rule's `retries` would win over the `--retries 0` it is given).
TRAIN_RETRIES = PLAN.chain_retries("train") if workflow.is_main_process else 0
SAMPLE_RETRIES = PLAN.chain_retries("sample") if workflow.is_main_process else 0
