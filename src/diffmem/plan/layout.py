"""Where every result of a workflow run lies, relative to ``results/<name>/`` (one place for file names).

Each function takes ids and sizes as strings or ints; the workflow passes Snakemake wildcards such as
``"{run_id}"`` to get its output patterns, and the library passes real values to find files::

    subsets/<data_id>/n<size>.npz                                   the class-balanced nested subset
    runs/<run_id>/n<size>/run.json                                  what the training run is (its settings)
    runs/<run_id>/n<size>/train/train.json                          training summary (+ snapshot-KKK.pt/.json,
                                                                    state.pt while unfinished)
    runs/<run_id>/n<size>/samples/<sample_id>/samples.npz           uint8 samples of every snapshot
    runs/<run_id>/n<size>/samples/<sample_id>/scores/<score_id>/memorization.json
    emm/<experiment>/<value>/round<k>.json, emm.json                 the EMM search, round by round
    tables/<figure>.csv, figures/<figure>.pdf/.png                  each figure's table and drawing
    index.csv                                                       a map of the results (+ by-experiment/)
    report/tables/<figure>.html, report/emm/<experiment>/<value>.png  the report's items besides the figures
    logs/<step>/..., benchmarks/<step>/...                          every job's log and benchmark

``run_id`` is the training identity, ``sample_id`` the sampler's and ``score_id`` the scorer's
(:mod:`diffmem.plan.identity`): a new sampler setting adds a folder under ``samples/`` next to the old one.
"""

from __future__ import annotations

from pathlib import PurePosixPath as P

FAILURE_FILE = "failed.json"  # a job's failure record (diffmem.steps.attempts), in train/ or samples/<sample_id>/


def subset(data_id, size) -> P:
    return P("subsets") / str(data_id) / f"n{size}.npz"


def run_dir(run_id, size) -> P:
    return P("runs") / str(run_id) / f"n{size}"


def run_json(run_id, size) -> P:
    return run_dir(run_id, size) / "run.json"


def train_dir(run_id, size) -> P:
    return run_dir(run_id, size) / "train"


def train_summary(run_id, size) -> P:
    return train_dir(run_id, size) / "train.json"


def train_progress(run_id, size) -> P:
    """Written with every resumable state: step, total steps, measured speed (the next link's budget)."""
    return train_dir(run_id, size) / "progress.json"


def sample_dir(run_id, size, sample_id) -> P:
    return run_dir(run_id, size) / "samples" / str(sample_id)


def sample_files(run_id, size, sample_id) -> dict[str, P]:
    d = sample_dir(run_id, size, sample_id)
    return {"settings": d / "sample.json", "samples": d / "samples.npz", "grid": d / "samples.png"}


def score_dir(run_id, size, sample_id, score_id) -> P:
    return sample_dir(run_id, size, sample_id) / "scores" / str(score_id)


def score_files(run_id, size, sample_id, score_id) -> dict[str, P]:
    d = score_dir(run_id, size, sample_id, score_id)
    return {"scores": d / "memorization.json", "distances": d / "distances.npz", "nearest": d / "nearest.png"}


def memorization(run_id, size, sample_id, score_id) -> P:
    return score_files(run_id, size, sample_id, score_id)["scores"]


def emm_round(experiment, value, k) -> P:
    """Round ``k`` of one experiment value's EMM search (a checkpoint: sizes so far, verdicts, next sizes)."""
    return P("emm") / str(experiment) / str(value) / f"round{k}.json"


def emm_result(experiment, value) -> P:
    """The EMM search's result (its final round, with the bracket)."""
    return P("emm") / str(experiment) / str(value) / "emm.json"


def job_tag(run_id, size, sample_id=None, score_id=None) -> str:
    """A flat name for one job's log and benchmark files."""
    return "-".join(str(x) for x in (run_id, f"n{size}", sample_id, score_id) if x is not None)


def sample_parts(samples_path) -> P:
    """Where a sampling job keeps each finished snapshot until all are done (resumable across jobs)."""
    return P(f"{samples_path}.parts")


def table(figure) -> P:
    """A figure's table: one row per experiment value and size (and EMM rows)."""
    return P("tables") / f"{figure}.csv"


def figure_files(figure) -> dict[str, P]:
    """A figure's drawing, as PDF and PNG."""
    return {"pdf": P("figures") / f"{figure}.pdf", "png": P("figures") / f"{figure}.png"}


def index() -> P:
    """The map of the results folder (one row per experiment value and size)."""
    return P("index.csv")


def report_table(figure) -> P:
    """A figure's table rendered as HTML for the report."""
    return P("report") / "tables" / f"{figure}.html"


def report_emm(experiment, value) -> P:
    """The grids of the two runs that bracket one EMM search's EMM, for the report."""
    return P("report") / "emm" / str(experiment) / f"{value}.png"


def log(step, *name) -> P:
    """A job's log: ``logs/<step>/<name...>.log`` (``log("index")`` is ``logs/index.log``)."""
    *folders, last = (step, *name)
    return P("logs", *map(str, folders)) / f"{last}.log"


def benchmark(step, name) -> P:
    """A job's benchmark (Snakemake's time and memory record): ``benchmarks/<step>/<name>.tsv``."""
    return P("benchmarks") / str(step) / f"{name}.tsv"
