"""The plan of a workflow run: every question the Snakemake rules ask, answered from the validated config
and the results folder, without Snakemake.

:class:`Plan` is built once (:meth:`Plan.build`: expand the experiments, check them, and the data unless
it is a dry run). It answers, with paths from :mod:`diffmem.plan.layout` under ``results/<name>/``:

- the final targets (:meth:`~Plan.final_targets`) and the inputs of every step (subset, train, sample,
  score, EMM round and result, table, figure, index, the report's items);
- the params each rule passes its script, in canonical form (:func:`diffmem.plan.identity.canonical`);
- the resources of the heavy jobs (run time, memory, threads, GPUs, retries: :mod:`diffmem.plan.resources`).

The answers that depend on an EMM search's rounds read them through ``read_round(experiment, value, k)``:
the workflow passes one that goes through the ``emm_round`` checkpoint (so Snakemake waits for the round),
a test one that reads a JSON file. Wildcards come in as strings (``size="8"``) or ints.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from diffmem import PAPER_CONFIG, PAPER_POINTS
from diffmem.io import read_json
from diffmem.plan import identity, layout
from diffmem.plan import resources as dmr
from diffmem.plan.bounds import check_bounds
from diffmem.plan.checks import check_data, check_plan
from diffmem.plan.expand import Value, expand
from diffmem.plan.figure_specs import figure_spec
from diffmem.plan.load import check_finite
from diffmem.plan.records import data_settings, flat_settings, micro_batch, run_record, run_settings, sample_record
from diffmem.science import emm

ReadRound = Callable[[str, str, int], dict]  # (experiment, value label, k) -> the round's content


class UnfinishedSearch(RuntimeError):
    """An EMM search whose every round up to ``max_rounds`` says it is not done."""


class Plan:
    """The runs, files and jobs of one config (see the module's docstring)."""

    def __init__(self, config: dict, values: dict[str, list[Value]], read_round: ReadRound | None = None):
        self.config = config
        self.results = Path(config["results"]) / config["name"]  # results/<name>/
        self.values = values  # experiment -> its values, as diffmem.plan.expand.expand gives them
        self.read_round = read_round or self._read_round_file
        every = [v for vals in values.values() for v in vals]
        # by id (identical settings share one id and one folder) and by (experiment, label)
        self._runs = {v.run_id: v.settings for v in every}
        self._data = {v.data_id: data_settings(v.settings) for v in every}
        self._run_data = {v.run_id: v.data_id for v in every}  # run id -> its subset's data id
        self._samples = {v.sample_id: v.settings["sample"] for v in every}
        self._scores = {v.score_id: v.settings["score"] for v in every}
        self._by_label = {(v.experiment, v.label): v for v in every}

    @classmethod
    def build(cls, config: dict, read_round: ReadRound | None = None, check_files: bool = True) -> Plan:
        """Expand and check ``config`` (a validated one, defaults filled in), and its data files unless
        ``check_files`` is false (a dry run lists the runs without the data), those first: the ids hash the
        files' bytes. Raises ConfigError."""
        check_finite(config)  # NaN/inf pass every schema range
        if check_files:
            check_data(config)
        values = expand(config)
        check_plan(config, values)
        check_bounds(config, values)  # no job that could never run (memory, chain of jobs)
        plan = cls(config, values, read_round)
        plan.check_micro_batches()
        return plan

    # ------------------------------------------------------------------------------------ basics
    def path(self, rel) -> Path:
        """A path of :mod:`diffmem.plan.layout` under ``results/<name>/``."""
        return self.results / rel

    def every_value(self) -> list[Value]:
        return [v for vals in self.values.values() for v in vals]

    def value(self, experiment: str, label: str) -> Value:
        return self._by_label[(experiment, label)]

    def figures(self) -> list[str]:
        """The figures of the config, in its order (each has a table of the same name)."""
        return list(self.config["figures"])

    def run_settings(self, run_id: str, size) -> dict:
        """Everything a run's numbers depend on, at its size (identities only, see diffmem.plan.identity)."""
        return run_settings(self._runs[run_id], int(size))

    def is_optimum(self, run_id: str) -> bool:
        return self._runs[run_id]["model"]["arch"] == "optimum"

    def scores_path(self, value: Value, size) -> Path:
        """memorization.json of one value at one size."""
        return self.path(layout.memorization(value.run_id, size, value.sample_id, value.score_id))

    def emm_result_path(self, value: Value) -> Path:
        return self.path(layout.emm_result(value.experiment, value.label))

    def _results_of(self, value: Value) -> list[Path]:
        """What a value's experiment produces: its EMM result (mode emm) or its scores at each size."""
        if value.mode == "emm":
            return [self.emm_result_path(value)]
        return [self.scores_path(value, s) for s in value.sizes]

    # ------------------------------------------------------------------------------------ targets
    def final_targets(self) -> list[Path]:
        """What ``rule all`` asks for: every figure (PDF, PNG) and table, every value's results, the index
        and the report's items."""
        outs = []
        for fig in self.figures():
            files = layout.figure_files(fig)
            outs += [self.path(files["pdf"]), self.path(files["png"]), self.path(layout.table(fig))]
        for v in self.every_value():
            outs += self._results_of(v)
        outs += self.report_items()
        return list(dict.fromkeys(outs))

    def report_items(self) -> list[Path]:
        """The outputs of the index rules that the final target asks for: the index, each table as HTML,
        each EMM search's bracket grids."""
        outs = [self.path(layout.index())] + [self.path(layout.report_table(fig)) for fig in self.figures()]
        for v in self.every_value():
            outs += [self.path(layout.report_emm(v.experiment, v.label))] if v.mode == "emm" else []
        return outs

    # ------------------------------------------------------------------------------------ inputs
    def subset_input(self, run_id: str, size) -> Path:
        """The subset a run trains on (and its samples are scored against)."""
        return self.path(layout.subset(self._run_data[run_id], size))

    def trained_input(self, run_id: str, size) -> Path | list:
        """The training summary a run's sampling needs (nothing for the closed-form optimum)."""
        return [] if self.is_optimum(run_id) else self.path(layout.train_summary(run_id, size))

    def samples_input(self, run_id: str, size, sample_id: str) -> Path:
        return self.path(layout.sample_files(run_id, size, sample_id)["samples"])

    def emm_round_inputs(self, experiment: str, label: str, k) -> list | dict:
        """Round k needs round k-1 (read through ``read_round``) and the scores of the sizes it asked for."""
        k = int(k)
        if k == 0:
            return []
        state = self.read_round(experiment, label, k - 1)
        value = self.value(experiment, label)
        previous = self.path(layout.emm_round(experiment, label, k - 1))
        return {"previous": previous, "scores": [self.scores_path(value, s) for s in state["next"]]}

    def final_round(self, experiment: str, label: str) -> tuple[Path, dict]:
        """Walk the rounds of one search until one says done; that round (path, content) is its result."""
        value = self.value(experiment, label)
        for k in range(int(value.emm["max_rounds"]) + 1):
            state = self.read_round(experiment, label, k)
            if state["done"]:
                return self.path(layout.emm_round(experiment, label, k)), state
        raise UnfinishedSearch(f"EMM search {experiment}/{label} did not finish")

    def table_inputs(self, figure: str) -> list[Path]:
        """A figure's table reads each value's EMM result and the scores of every size its search evaluated
        (emm mode), or its runs' scores (sizes mode)."""
        inputs = []
        for exp in self.config["figures"][figure]["experiments"]:
            for value in self.values[exp]:
                inputs += self._results_of(value)
                if value.mode == "emm":
                    _, final = self.final_round(value.experiment, value.label)
                    inputs += [self.scores_path(value, e["size"]) for e in final["evaluated"]]
        return inputs

    def figure_inputs(self, figure: str) -> dict:
        """A figure's table, for kind optimum the grids it shows (as its spec lists them), and for a figure that
        draws the paper's points the files they come from (so that a corrected point redraws it)."""
        inputs: dict = {"table": self.path(layout.table(figure))}
        if self.config["figures"][figure]["kind"] == "optimum":
            spec = self.figure_spec(figure)
            inputs["grids"] = [p for v in spec["values"] for pair in v["grids"].values() for p in pair]
        if self.config["figures"][figure].get("paper_points"):
            inputs["paper"] = [PAPER_POINTS, PAPER_CONFIG]
        return inputs

    def index_inputs(self) -> list[Path]:
        """After the tables (so that the index is rewritten whenever a search or a score changes)."""
        outs = [self.path(layout.table(fig)) for fig in self.figures()]
        for v in self.every_value():
            outs += self._results_of(v)
        return list(dict.fromkeys(outs))

    def emm_grid_inputs(self, experiment: str, label: str) -> dict:
        """The EMM result and the sample and nearest-neighbour grids of the sizes at its bracket's ends (known
        once the search is done: read from its final round)."""
        value = self.value(experiment, label)
        _, final = self.final_round(experiment, label)
        ends = [s for s in emm.bounds(final) if s is not None] if final["evaluated"] else []
        grids = {}
        for size in ends:
            grids[f"samples_{size}"] = self.path(layout.sample_files(value.run_id, size, value.sample_id)["grid"])
            score_files = layout.score_files(value.run_id, size, value.sample_id, value.score_id)
            grids[f"nearest_{size}"] = self.path(score_files["nearest"])
            grids[f"scores_{size}"] = self.scores_path(value, size)
        return {"emm": self.emm_result_path(value), **grids}

    # ------------------------------------------------------------------------------------ params
    def subset_spec(self, data_id: str, size) -> dict:
        """The subset's identity (where the files lie is not part of it: the job looks that up in the config)."""
        return identity.canonical({**identity.data_identity(self._data[data_id]), "size": int(size)})

    def run_json(self, run_id: str, size) -> dict:
        """run.json: the training identity of the run, and in words what it is."""
        return identity.canonical(run_record(self.run_settings(run_id, size)))

    def sample_params(self, sample_id: str) -> dict:
        return identity.canonical(sample_record(self._samples[sample_id]))

    def score_params(self, score_id: str) -> dict:
        return identity.canonical(self._scores[score_id])

    def emm_search(self, experiment: str, label: str) -> dict:
        """What an EMM round needs besides files: the search settings, and the subset's data id (the round
        looks up which sizes the data can make; where its files lie is not part of the params)."""
        value = self.value(experiment, label)
        search = {"experiment": value.experiment, "value": value.label, "display": value.display}
        return identity.canonical({**search, "run_id": value.run_id, "data_id": value.data_id, **value.emm})

    def figure_spec(self, figure: str) -> dict:
        """A figure's config entry plus, per experiment value, where its results live (diffmem.plan.figure_specs)."""
        return identity.canonical(figure_spec(self.config, self.values, figure, self.results))

    def index_values(self) -> list[dict]:
        """Per experiment value, what diffmem.results.index needs to list its runs (sorted: the index is a map,
        and its params must not change when a config only lists its experiments in another order)."""
        values = [
            {
                "experiment": v.experiment,
                "value": v.label,
                "display": v.display,
                "run_id": v.run_id,
                "sample_id": v.sample_id,
                "score_id": v.score_id,
                "emm": str(self.emm_result_path(v)) if v.mode == "emm" else None,
                "sizes": list(v.sizes),
                "emm_threshold": v.emm.get("threshold", self.config["emm"]["threshold"]),
            }
            for v in self.every_value()
        ]
        return sorted(values, key=lambda v: (v["experiment"], v["value"]))

    def emm_grid_about(self, experiment: str, label: str) -> dict:
        """What the caption says: the experiment value and its run's settings (all but |D|)."""
        value = self.value(experiment, label)
        exp = self.config["experiments"][value.experiment]
        # what the run computes (diffmem.plan.identity), not where its files lie or how it is batched
        computes = {
            **run_record(value.settings),
            "sample": identity.sample_identity(value.settings),
            "score": identity.score_identity(value.settings),
        }
        about = {
            "experiment": value.experiment,
            "title": exp.get("title", value.experiment),
            "factor": exp.get("factor"),
            "value": value.label,
            "display": value.display,
            "run_id": value.run_id,
            "settings": flat_settings(computes),
        }
        return identity.canonical(about)

    # ------------------------------------------------------------------------------------ resources
    # Resources of the heavy jobs come from the throughput model of diffmem.plan.resources, capped by the site
    # maximum (compute.max_runtime); a training longer than that runs as a chain of jobs: every attempt works
    # until shortly before its walltime, saves its state and stops, and Snakemake's retry resumes it.
    def capped(self, minutes) -> int:
        """A light job's run time, never above the site maximum."""
        return min(int(minutes), dmr.max_runtime(self.config))

    def train_gpus(self) -> int:
        """GPUs of a training job (all of them go to one data-parallel run)."""
        return int(self.config["gpus_per_run"]) if self.config["gpu"] else 0

    def job_gpus(self) -> int:
        """GPUs of a sampling or scoring job."""
        return 1 if self.config["gpu"] else 0

    def train_micro_batch(self, run_id: str, size, where: str = "train") -> int:
        """Images per pass of a run's training on each GPU (:func:`diffmem.plan.records.micro_batch`; the train
        job computes the same from its run.json and the config, so a new ``compute.gpu_memory_gb`` reruns nothing)."""
        return micro_batch(self.run_settings(run_id, size), self.config, where)

    def check_micro_batches(self) -> None:
        """Every training fits ``compute.gpu_memory_gb``, in micro-batches if need be (ConfigError naming the
        value of which one image per GPU does not fit)."""
        for v in self.every_value():
            if not self.is_optimum(v.run_id):
                size = max(v.sizes) if v.mode == "sizes" else int(v.emm["hi"])
                self.train_micro_batch(v.run_id, size, f"experiments.{v.experiment} value {v.display!r}")

    def train_threads(self) -> int:
        return dmr.job_threads(self.config, self.train_gpus())

    def job_threads(self) -> int:
        return dmr.job_threads(self.config, self.job_gpus())

    def link_attempt(self, folder: Path, attempt: int, resumed: bool) -> int | None:
        """The attempt a heavy job's time and memory grow by: None when the failure record in its ``folder``
        stops it (:func:`diffmem.plan.resources.earlier_failure`: it asks for the least), 1 for a link of a chain
        (``resumed``: it goes on from a saved state, a pause and not a failure), else ``attempt``."""
        if dmr.earlier_failure(folder / layout.FAILURE_FILE, attempt):
            return None
        return 1 if resumed else attempt

    def _train_link(self, run_id: str, size, attempt: int) -> tuple[dict | None, int | None]:
        """A training's progress (None before its first saved state) and its :meth:`link_attempt`."""
        done = self.path(layout.train_progress(run_id, size))
        progress = json.loads(done.read_text()) if done.exists() else None
        return progress, self.link_attempt(self.path(layout.train_dir(run_id, size)), attempt, progress is not None)

    def train_runtime(self, run_id: str, size, attempt: int) -> int:
        """Minutes for a training job: what is left of the run (by its measured speed once a link of the
        chain has run), x safety, doubled per retry, at most the site maximum; a minute for a stopped one."""
        progress, k = self._train_link(run_id, size, attempt)
        if k is None:
            return dmr.STOP_MIN
        left = dmr.train_estimate_s(self.run_settings(run_id, size), self.config, max(1, self.train_gpus()))
        if progress is not None:
            left = dmr.remaining_s(progress, left)
        return dmr.budget_min(left, self.config, k)

    def train_mem_mb(self, run_id: str, size, attempt: int) -> int:
        """Host memory of a training job, doubled per retry (not per link of a chain); the least for a stopped one."""
        _, k = self._train_link(run_id, size, attempt)
        return dmr.STOP_MB if k is None else dmr.train_mem_mb(self.run_settings(run_id, size), self.config, k)

    def _sized(self, run_id: str, size, sample_id: str) -> tuple[dict, int]:
        """A sample or score job's settings (its own sampler's) and the snapshots it handles."""
        s = self.run_settings(run_id, size)
        s["sample"] = {**s["sample"], **self._samples[sample_id]}
        return s, dmr.snapshot_count(s)

    def _sample_link(self, run_id: str, size, sample_id: str, attempt: int) -> tuple[int, int | None]:
        """Snapshots a sampling job has sampled already (its parts) and its :meth:`link_attempt`."""
        samples = Path(self.samples_input(run_id, size, sample_id))
        done = len(list(Path(layout.sample_parts(samples)).glob("*.npz")))
        return done, self.link_attempt(samples.parent, attempt, done > 0)

    def sample_runtime(self, run_id: str, size, sample_id: str, attempt: int) -> int:
        """Minutes for a sampling job (a chain link too: it goes on from the snapshots already sampled)."""
        done, k = self._sample_link(run_id, size, sample_id, attempt)
        if k is None:
            return dmr.STOP_MIN
        s, snaps = self._sized(run_id, size, sample_id)
        return dmr.budget_min(dmr.sample_estimate_s(s, self.config, max(1, snaps - done)), self.config, k)

    def sample_mem_mb(self, run_id: str, size, sample_id: str, attempt: int) -> int:
        """Host memory of a sampling job, doubled per retry (not per link); the least for a stopped one."""
        _, k = self._sample_link(run_id, size, sample_id, attempt)
        if k is None:
            return dmr.STOP_MB
        s, snaps = self._sized(run_id, size, sample_id)
        return dmr.sample_mem_mb(s, self.config, snaps, k)

    def score_runtime(self, run_id: str, size, sample_id: str, attempt: int) -> int:
        s, snaps = self._sized(run_id, size, sample_id)
        return dmr.budget_min(dmr.score_estimate_s(s, self.config, snaps), self.config, attempt)

    def score_mem_mb(self, run_id: str, size, sample_id: str, attempt: int) -> int:
        s, snaps = self._sized(run_id, size, sample_id)
        return dmr.score_mem_mb(s, self.config, snaps, attempt)

    def chain_retries(self, stage: str) -> int:
        """Retries of ``train`` or ``sample``: the longest chain of jobs the plan can need (+1 for a failure)."""
        return dmr.chain_retries(self.values, self.config, stage)

    def _read_round_file(self, experiment: str, label: str, k: int) -> dict:
        """Without a workflow: round k as it lies in the results folder."""
        return read_json(self.path(layout.emm_round(experiment, label, k)))
