# Config validation, the plan of runs, and the input functions shared by the rules.

import json
from pathlib import Path

from snakemake.utils import validate

from diffmem import config as dmc
from diffmem.io import read_json

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


wildcard_constraints:
    size=r"\d+",
    k=r"\d+",
    run_id=r"[0-9a-f]{10}",
    data_id=r"[0-9a-f]{10}",
    experiment=r"[A-Za-z0-9_.-]+",
    value=r"[A-Za-z0-9_.+-]+",
    figure=r"[A-Za-z0-9_.-]+",


def subset_path(data_id, size):
    return RESULTS / "subsets" / data_id / f"n{size}.npz"


def run_dir(run_id, size):
    return RESULTS / "runs" / run_id / f"n{size}"


def is_optimum(run_id):
    return RUNS[run_id]["model"]["arch"] == "optimum"


def value_of(wildcards):
    return VALUES[(wildcards.experiment, wildcards.value)]


def run_settings_of(wildcards):
    return dmc.run_settings(RUNS[wildcards.run_id], int(wildcards.size))


def get_subset(wildcards):
    return subset_path(RUN_DATA[wildcards.run_id], wildcards.size)


def get_trained(wildcards):
    """The training summary a run's sampling needs (nothing for the closed-form optimum)."""
    if is_optimum(wildcards.run_id):
        return []
    return run_dir(wildcards.run_id, wildcards.size) / "train" / "train.json"


def memorization_path(value, size):
    return run_dir(value.run_id, size) / "memorization.json"


def emm_dir(value):
    return RESULTS / "emm" / value.experiment / value.label


def get_emm_round_inputs(wildcards):
    """Round k needs round k-1 (read through its checkpoint) and the scores of the sizes it asked for."""
    k = int(wildcards.k)
    if k == 0:
        return []
    prev = checkpoints.emm_round.get(experiment=wildcards.experiment, value=wildcards.value, k=k - 1)
    state = read_json(prev.output[0])  # a damaged round file is named, with the way out
    value = value_of(wildcards)
    return {"previous": prev.output[0], "scores": [memorization_path(value, s) for s in state["next"]]}


def get_emm_final_round(wildcards):
    """Walk the rounds of one search until one says done; that round is the search's result."""
    value = value_of(wildcards)
    for k in range(int(value.emm["max_rounds"]) + 1):
        cp = checkpoints.emm_round.get(experiment=wildcards.experiment, value=wildcards.value, k=k)
        if read_json(cp.output[0])["done"]:
            return cp.output[0]
    raise WorkflowError(f"EMM search {wildcards.experiment}/{wildcards.value} did not finish")


def get_table_inputs(wildcards):
    """A figure's table reads each value's EMM result (emm mode) or its runs' scores (sizes mode)."""
    fig = config["figures"][wildcards.figure]
    inputs = []
    for exp in fig["experiments"]:
        for value in PLAN[exp]:
            if value.mode == "emm":
                inputs.append(emm_dir(value) / "emm.json")
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
                outs.append(emm_dir(value) / "emm.json")
            else:
                outs += [memorization_path(value, s) for s in value.sizes]
    return list(dict.fromkeys(outs))


# Resources that scale with the run: images seen and net size decide time and memory.
def train_runtime(wildcards, attempt):
    """Minutes for a training job: a rough budget from the images it will see, doubled per retry."""
    s = run_settings_of(wildcards)
    images = dmc.images_to_see(s)
    px = s["model"]["resolution"] ** 2 * s["model"]["img_channels"] * s["model"]["model_channels"] ** 2
    return int(10 + attempt * images * px / 2.0e10)


def train_mem_mb(wildcards, attempt):
    s = run_settings_of(wildcards)
    px = s["model"]["resolution"] ** 2 * s["train"]["batch"] * s["model"]["model_channels"]
    return int(2000 + attempt * px / 1.0e4)


def uses_gpu(wildcards):
    """GPUs a sampling job asks the executor for."""
    return 1 if config["gpu"] else 0


def train_gpus(wildcards):
    """GPUs a training job asks the executor for (all of them go to one data-parallel run)."""
    return int(config["gpus_per_run"]) if config["gpu"] else 0


def get_subset_spec(wildcards):
    return {**DATA[wildcards.data_id], "size": int(wildcards.size)}


def get_emm_search(wildcards):
    """What an EMM round needs besides files: the search settings and the sizes the data can make."""
    value = value_of(wildcards)
    return {
        "experiment": value.experiment,
        "value": value.label,
        "display": value.display,
        "run_id": value.run_id,
        "settings": value.settings,
        **value.emm,
    }


def get_figure_spec(wildcards):
    """A figure's config entry plus, per experiment value, where its results live."""
    fig = dict(config["figures"][wildcards.figure])
    fig["name"] = wildcards.figure
    fig["values"] = [
        {
            "experiment": exp,
            "title": config["experiments"][exp].get("title", exp),
            "factor": config["experiments"][exp].get("factor"),
            "label": value.label,
            "display": value.display,
            "mode": value.mode,
            "run_id": value.run_id,
            "emm": str(emm_dir(value) / "emm.json") if value.mode == "emm" else None,
            "runs": {str(s): str(run_dir(value.run_id, s)) for s in value.sizes},
            # (samples grid, nearest-neighbour grid) per size, drawn by kind optimum
            "grids": {
                str(s): [str(run_dir(value.run_id, s) / "samples.png"), str(run_dir(value.run_id, s) / "nearest.png")]
                for s in value.sizes
            },
            "ratio_threshold": value.settings["score"]["threshold"],
            "emm_threshold": value.emm.get("threshold", config["emm"]["threshold"]),
        }
        for exp in fig["experiments"]
        for value in PLAN[exp]
    ]
    ratio_thr = {v["ratio_threshold"] for v in fig["values"]}
    emm_thr = {v["emm_threshold"] for v in fig["values"]}
    fig["caption"] = dmc.figure_caption(
        wildcards.figure,
        fig,
        config["experiments"],
        ratio_threshold=ratio_thr.pop() if len(ratio_thr) == 1 else None,
        emm_threshold=emm_thr.pop() if len(emm_thr) == 1 else None,
    )
    return fig
