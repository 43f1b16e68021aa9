# Config validation, the plan of runs, and the input functions shared by the rules.

import json
from pathlib import Path

from snakemake.utils import validate

from diffmem.plan import config as dmc
from diffmem.io import read_json
from diffmem.plan import identity
from diffmem.plan import layout
from diffmem.plan import resources as dmr
from diffmem.results import index as dmi
dmc.retype_overrides(workflow.config_settings.config, config)  # nested --config values
validate(config, schema="../schemas/config.schema.yaml")

try:
    PLAN = dmc.expand(config)
    dmc.check_plan(config, PLAN)
    if not workflow.output_settings.dryrun:  # a dry run lists the runs without the data
        dmc.check_data(PLAN)
except dmc.ConfigError as err:
    raise WorkflowError(f"config error: {err}") from None

RESULTS = Path(config["results"]) / config["name"]
ENV = "../../envs/diffmem.yaml"

# Every value's settings, by run id and by data id (identical settings share one id and one folder).
RUNS = {v.run_id: v.settings for vals in PLAN.values() for v in vals}
DATA = {v.data_id: dmc.data_settings(v.settings) for vals in PLAN.values() for v in vals}
VALUES = {(v.experiment, v.label): v for vals in PLAN.values() for v in vals}
RUN_DATA = {v.run_id: v.data_id for vals in PLAN.values() for v in vals}  # run id -> its subset's data id
SAMPLES = {v.sample_id: v.settings["sample"] for vals in PLAN.values() for v in vals}
SCORES = {v.score_id: v.settings["score"] for vals in PLAN.values() for v in vals}


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


# Output patterns of the rules: one file name, one place (diffmem.plan.layout), here with wildcards.
W = "{run_id}", "{size}"
RUN_JSON = RESULTS / layout.run_json(*W)
TRAIN_JSON = RESULTS / layout.train_summary(*W)
SAMPLE_FILES = {k: RESULTS / p for k, p in layout.sample_files(*W, "{sample_id}").items()}
SCORE_FILES = {k: RESULTS / p for k, p in layout.score_files(*W, "{sample_id}", "{score_id}").items()}
JOB = layout.job_tag(*W)


def subset_path(data_id, size):
    return RESULTS / layout.subset(data_id, size)


def is_optimum(run_id):
    return RUNS[run_id]["model"]["arch"] == "optimum"


def value_of(wildcards):
    return VALUES[(wildcards.experiment, wildcards.value)]


def run_settings_of(wildcards):
    """Everything a run's numbers depend on, at its size (identities only, see diffmem.plan.identity)."""
    return dmc.run_settings(RUNS[wildcards.run_id], int(wildcards.size))


def run_json_of(wildcards):
    """run.json: the training identity of the run, and in words what it is."""
    return identity.canonical(dmc.run_record(run_settings_of(wildcards)))


def sample_settings_of(wildcards):
    return identity.canonical(dmc.sample_record(SAMPLES[wildcards.sample_id]))


def score_settings_of(wildcards):
    return identity.canonical(SCORES[wildcards.score_id])


def get_subset(wildcards):
    return subset_path(RUN_DATA[wildcards.run_id], wildcards.size)


def get_trained(wildcards):
    """The training summary a run's sampling needs (nothing for the closed-form optimum)."""
    if is_optimum(wildcards.run_id):
        return []
    return RESULTS / layout.train_summary(wildcards.run_id, wildcards.size)


def get_samples(wildcards):
    return RESULTS / layout.sample_files(wildcards.run_id, wildcards.size, wildcards.sample_id)["samples"]


def memorization_path(value, size):
    return RESULTS / layout.memorization(value.run_id, size, value.sample_id, value.score_id)


def emm_result_path(value):
    return RESULTS / layout.emm_result(value.experiment, value.label)


def get_emm_round_inputs(wildcards):
    """Round k needs round k-1 (read through its checkpoint) and the scores of the sizes it asked for."""
    k = int(wildcards.k)
    if k == 0:
        return []
    prev = checkpoints.emm_round.get(experiment=wildcards.experiment, value=wildcards.value, k=k - 1)
    state = read_json(prev.output[0])  # a damaged round file is named, with the way out
    value = value_of(wildcards)
    return {"previous": prev.output[0], "scores": [memorization_path(value, s) for s in state["next"]]}


def final_round_of(experiment, label, value):
    """Walk the rounds of one search until one says done; that round is the search's result."""
    for k in range(int(value.emm["max_rounds"]) + 1):
        cp = checkpoints.emm_round.get(experiment=experiment, value=label, k=k)
        if read_json(cp.output[0])["done"]:
            return cp.output[0]
    raise WorkflowError(f"EMM search {experiment}/{label} did not finish")


def get_emm_final_round(wildcards):
    return final_round_of(wildcards.experiment, wildcards.value, value_of(wildcards))


def get_table_inputs(wildcards):
    """A figure's table reads each value's EMM result and the scores of every size its search evaluated
    (emm mode), or its runs' scores (sizes mode)."""
    fig = config["figures"][wildcards.figure]
    inputs = []
    for exp in fig["experiments"]:
        for value in PLAN[exp]:
            if value.mode == "emm":
                inputs.append(emm_result_path(value))
                final = read_json(final_round_of(value.experiment, value.label, value))
                inputs += [memorization_path(value, e["size"]) for e in final["evaluated"]]
            else:
                inputs += [memorization_path(value, s) for s in value.sizes]
    return inputs


def get_figure_inputs(wildcards):
    fig = config["figures"][wildcards.figure]
    inputs = {"table": RESULTS / "tables" / f"{wildcards.figure}.csv"}
    if fig["kind"] == "optimum":  # the grids the figure shows, as its spec lists them
        spec = get_figure_spec(wildcards)
        inputs["grids"] = [p for v in spec["values"] for pair in v["grids"].values() for p in pair]
    return inputs


def get_final_outputs():
    outs = []
    for fig in config["figures"]:
        outs += [RESULTS / "figures" / f"{fig}.pdf", RESULTS / "figures" / f"{fig}.png"]
        outs.append(RESULTS / "tables" / f"{fig}.csv")
    for vals in PLAN.values():
        for value in vals:
            if value.mode == "emm":
                outs.append(emm_result_path(value))
            else:
                outs += [memorization_path(value, s) for s in value.sizes]
    outs += index_outputs()  # results/<name>/index.csv and the report's items (workflow/rules/index.smk)
    return list(dict.fromkeys(outs))


# Resources of the heavy jobs come from the throughput model of diffmem.plan.resources, capped by the site
# maximum (compute.max_runtime); a training longer than that runs as a chain of jobs: every attempt works
# until shortly before its walltime, saves its state and stops, and Snakemake's retry resumes it.
def capped(minutes):
    """A light job's run time, never above the site maximum."""
    return min(int(minutes), dmr.max_runtime(config))


def train_gpus(wildcards):
    """GPUs of a training job (all of them go to one data-parallel run)."""
    return int(config["gpus_per_run"]) if config["gpu"] else 0


def job_gpus(wildcards):
    """GPUs of a sampling or scoring job."""
    return 1 if config["gpu"] else 0


def train_threads(wildcards):
    return dmr.job_threads(config, train_gpus(wildcards))


def job_threads(wildcards):
    return dmr.job_threads(config, job_gpus(wildcards))


def train_runtime(wildcards, attempt):
    """Minutes for a training job: what is left of the run (by its measured speed once a link of the
    chain has run), x safety, doubled per retry, at most the site maximum."""
    s = run_settings_of(wildcards)
    left = dmr.train_estimate_s(s, config, max(1, train_gpus(wildcards)))
    done = RESULTS / layout.train_progress(wildcards.run_id, wildcards.size)
    if done.exists():
        left = dmr.remaining_s(json.loads(done.read_text()), left)
        attempt = 1  # a chain link, not a failure: ask for what is left
    return dmr.budget_min(left, config, attempt)


def train_mem_mb(wildcards, attempt):
    return dmr.train_mem_mb(run_settings_of(wildcards), config, attempt)


def _sized(wildcards):
    """A sample or score job's settings (its own sampler's) and the snapshots it handles."""
    s = run_settings_of(wildcards)
    s["sample"] = {**s["sample"], **SAMPLES[wildcards.sample_id]}
    return s, dmr.snapshot_count(s)


def sample_runtime(wildcards, attempt):
    """Minutes for a sampling job (a chain link too: it goes on from the snapshots already sampled)."""
    s, snaps = _sized(wildcards)
    samples = RESULTS / layout.sample_files(wildcards.run_id, wildcards.size, wildcards.sample_id)["samples"]
    done = len(list(Path(layout.sample_parts(samples)).glob("*.npz")))
    if done:
        attempt = 1  # a chain link: ask for what is left
    return dmr.budget_min(dmr.sample_estimate_s(s, config, max(1, snaps - done)), config, attempt)


def sample_mem_mb(wildcards, attempt):
    s, snaps = _sized(wildcards)
    return dmr.sample_mem_mb(s, config, snaps, attempt)


def score_runtime(wildcards, attempt):
    s, snaps = _sized(wildcards)
    return dmr.budget_min(dmr.score_estimate_s(s, config, snaps), config, attempt)


def score_mem_mb(wildcards, attempt):
    s, snaps = _sized(wildcards)
    return dmr.score_mem_mb(s, config, snaps, attempt)


# Retries of `train` and `sample` cover the longest chain of jobs the plan can need (+1 for a failure).
# Only the main Snakemake process retries: the Snakemake inside a cluster job must not restart a paused
# link within the same walltime (a rule's `retries` would win over the `--retries 0` it is given).
TRAIN_RETRIES = dmr.chain_retries(PLAN, config, "train") if workflow.is_main_process else 0
SAMPLE_RETRIES = dmr.chain_retries(PLAN, config, "sample") if workflow.is_main_process else 0


def get_subset_spec(wildcards):
    """The subset's identity (where the files lie is not part of it: the job looks that up in the config)."""
    return identity.canonical({**identity.data_identity(DATA[wildcards.data_id]), "size": int(wildcards.size)})


def get_emm_search(wildcards):
    """What an EMM round needs besides files: the search settings, and the subset's data id (the round
    looks up which sizes the data can make; where its files lie is not part of the params)."""
    value = value_of(wildcards)
    search = {"experiment": value.experiment, "value": value.label, "display": value.display}
    return identity.canonical({**search, "run_id": value.run_id, "data_id": value.data_id, **value.emm})


def get_figure_spec(wildcards):
    """A figure's config entry plus, per experiment value, where its results live (diffmem.plan.config)."""
    return identity.canonical(dmc.figure_spec(config, PLAN, wildcards.figure, RESULTS))


# results/<name>/index.csv and the report's items besides the figures (workflow/rules/index.smk).
INDEX_CSV = RESULTS / "index.csv"


def index_outputs():
    """The outputs of workflow/rules/index.smk that the final target asks for: the index, each table as HTML,
    each EMM search's bracket grids."""
    outs = [INDEX_CSV] + [RESULTS / "report" / "tables" / f"{fig}.html" for fig in config["figures"]]
    for vals in PLAN.values():
        outs += [RESULTS / "report" / "emm" / v.experiment / f"{v.label}.png" for v in vals if v.mode == "emm"]
    return outs


def index_values():
    """Per experiment value, what diffmem.results.index needs to list its runs (sorted: the index is a map, and
    its params must not change when a config only lists its experiments in another order)."""
    values = [
        {
            "experiment": v.experiment,
            "value": v.label,
            "display": v.display,
            "run_id": v.run_id,
            "sample_id": v.sample_id,
            "score_id": v.score_id,
            "emm": str(emm_result_path(v)) if v.mode == "emm" else None,
            "sizes": list(v.sizes),
            "emm_threshold": v.emm.get("threshold", config["emm"]["threshold"]),
        }
        for vals in PLAN.values()
        for v in vals
    ]
    return sorted(values, key=lambda v: (v["experiment"], v["value"]))


def get_index_inputs(wildcards):
    """After the tables (so that the index is rewritten whenever a search or a score changes)."""
    outs = [RESULTS / "tables" / f"{fig}.csv" for fig in config["figures"]]
    for vals in PLAN.values():
        for v in vals:
            outs += [emm_result_path(v)] if v.mode == "emm" else [memorization_path(v, s) for s in v.sizes]
    return list(dict.fromkeys(outs))


def get_emm_grid_inputs(wildcards):
    """The EMM result and the sample and nearest-neighbour grids of the sizes at its bracket's ends (known
    once the search is done: read from its final round)."""
    from diffmem.science import emm
    value = value_of(wildcards)
    final = read_json(get_emm_final_round(wildcards))
    ends = [s for s in emm.bounds(final) if s is not None] if final["evaluated"] else []
    grids = {}
    for size in ends:
        grids[f"samples_{size}"] = RESULTS / layout.sample_files(value.run_id, size, value.sample_id)["grid"]
        grids[f"nearest_{size}"] = (
            RESULTS / layout.score_files(value.run_id, size, value.sample_id, value.score_id)["nearest"]
        )
        grids[f"scores_{size}"] = memorization_path(value, size)
    return {"emm": emm_result_path(value), **grids}


def get_emm_grid_about(wildcards):
    """What the caption says: the experiment value and its run's settings (all but |D|)."""
    value = value_of(wildcards)
    exp = config["experiments"][value.experiment]
    return identity.canonical(
        {
            "experiment": value.experiment,
            "title": exp.get("title", value.experiment),
            "factor": exp.get("factor"),
            "value": value.label,
            "display": value.display,
            "run_id": value.run_id,
            # what the run computes (diffmem.plan.identity), not where its files lie or how it is batched
            "settings": dmi.flat_settings(
                {
                    **dmc.run_record(value.settings),
                    "sample": identity.sample_identity(value.settings),
                    "score": identity.score_identity(value.settings),
                }
            ),
        }
    )
