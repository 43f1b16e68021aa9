"""The files a results folder should hold by its config's plan, and which of the absent ones are lost.

Records lie beside the files they describe (:mod:`diffmem.io`), so a folder removed whole (``rm -rf
runs/<run_id>/n<size>/train``) takes its records along; and the next ``snakemake`` run does not notice
either: Snakemake looks for the missing outputs of a job only when a job downstream of it has to run (Snakemake
9's ``DAG.update_needrun`` checks missing outputs of the target jobs alone), so once the jobs that read a file
are done, its absence is no reason to run anything. That holds for every file that is not a final target:
a training folder, the scores of the sizes an EMM search evaluated, its rounds.

The plan (:class:`diffmem.plan.plan.Plan`) knows each step's outputs and inputs. :func:`steps` lists them for
the folder as it lies (an EMM search's rounds and sizes read from its round files and ``emm.json``), and
:func:`absent` sorts every output that is not there:

- *lost*: a file made from it is there (another output of its job, or an output of any step downstream): the
  next run would not rebuild it by itself. ``python -m diffmem verify --fix`` removes what was made from it,
  so that the next run rebuilds both;
- *not built yet*: nothing made from it is there; the next ``snakemake`` run builds it.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from diffmem.io import CorruptFileError, read_json
from diffmem.plan import layout
from diffmem.plan.expand import Value
from diffmem.plan.plan import Plan, UnfinishedSearch

_UNREADABLE = (OSError, CorruptFileError, KeyError, TypeError, AttributeError, UnfinishedSearch)


@dataclass(frozen=True)
class Step:
    """One job of the workflow: its outputs and inputs, relative to the results folder."""

    rule: str
    outputs: tuple[Path, ...]
    inputs: tuple[Path, ...] = ()

    def __post_init__(self):  # layout's pure paths and the plan's as one kind, to compare and hash
        object.__setattr__(self, "outputs", tuple(map(Path, self.outputs)))
        object.__setattr__(self, "inputs", tuple(map(Path, self.inputs)))


def _flat(inputs) -> list:
    """A rule's inputs (a path, a list, a dict of paths or lists) as one list."""
    if isinstance(inputs, dict):
        return [p for v in inputs.values() for p in _flat(v)]
    return [p for v in inputs for p in _flat(v)] if isinstance(inputs, list | tuple) else [inputs]


def _read(path: Path) -> dict | None:
    try:
        state = read_json(path)
    except _UNREADABLE:
        return None  # absent or damaged: a finding of its own
    return state if isinstance(state, dict) else None


@dataclass
class _Search:
    """An EMM search as its files say: rounds 0..last, the readable ones, its result, the sizes it ran."""

    rounds: dict[int, dict]
    last: int
    result: dict | None

    def sizes(self) -> list[int]:
        states = [*self.rounds.values(), *([self.result] if self.result else [])]
        asked = {int(s) for st in states for s in st.get("next") or []}
        return sorted(asked | {int(e["size"]) for st in states for e in st.get("evaluated") or []})

    def final(self) -> int:
        """The round emm.json is made from: the one it names, else the first that says done, else the last."""
        if self.result is not None and isinstance(self.result.get("round"), int):
            return self.result["round"]
        return next((k for k, st in sorted(self.rounds.items()) if st.get("done")), self.last)


def _search(plan: Plan, value: Value) -> _Search:
    folder = plan.path(layout.emm_round(value.experiment, value.label, 0)).parent
    ks = [int(m.group(1)) for p in folder.glob("round*.json") if (m := re.fullmatch(r"round(\d+)\.json", p.name))]
    result = _read(plan.emm_result_path(value))
    last = max([0, *ks, *([result["round"]] if result and isinstance(result.get("round"), int) else [])])
    rounds = {k: st for k in range(last + 1) if (st := _read(folder / f"round{k}.json")) is not None}
    return _Search(rounds, last, result)


def _run_steps(plan: Plan, value: Value, size: int) -> list[Step]:
    """The jobs of one run at one size: subset, run.json, training, sampling, scoring."""
    rid, sid = value.run_id, value.sample_id
    subset, run_json = layout.subset(value.data_id, size), layout.run_json(rid, size)
    trained = [] if plan.is_optimum(rid) else [layout.train_summary(rid, size)]
    samples = layout.sample_files(rid, size, sid)
    return [
        Step("subset", (subset,)),
        Step("run_settings", (run_json,)),
        *[Step("train", (t,), (run_json, subset)) for t in trained],
        Step("sample", tuple(samples.values()), (run_json, subset, *trained)),
        Step("score", tuple(layout.score_files(rid, size, sid, value.score_id).values()), (samples["samples"], subset)),
    ]


def _search_steps(plan: Plan, value: Value, search: _Search) -> list[Step]:
    """An EMM search's rounds (each reads the one before and the scores it asked for) and its result."""
    exp, label = value.experiment, value.label
    out = []
    for k in range(search.last + 1):
        asked = search.rounds.get(k - 1, {}).get("next") or []
        inputs = [layout.emm_round(exp, label, k - 1)] if k else []
        inputs += [layout.memorization(value.run_id, s, value.sample_id, value.score_id) for s in asked]
        out.append(Step("emm_round", (layout.emm_round(exp, label, k),), tuple(inputs)))
    final = layout.emm_round(exp, label, search.final())
    return [*out, Step("emm_result", (layout.emm_result(exp, label),), (final,))]


def steps(plan: Plan) -> list[Step]:
    """Every job of the plan, for the results folder as it lies (see the module's docstring)."""
    rel = lambda p: Path(p).relative_to(plan.results)  # noqa: E731
    found: list[Step] = []
    sizes: dict[tuple[str, str], list[int]] = {}
    for value in plan.every_value():
        search = _search(plan, value) if value.mode == "emm" else None
        sizes[(value.experiment, value.label)] = search.sizes() if search else list(value.sizes)
        for size in sizes[(value.experiment, value.label)]:
            found += _run_steps(plan, value, size)
        found += _search_steps(plan, value, search) if search else []
        if search:
            try:
                grids = [rel(p) for p in _flat(plan.emm_grid_inputs(value.experiment, value.label))]
            except _UNREADABLE:
                grids = [layout.emm_result(value.experiment, value.label)]
            found.append(Step("emm_grids", (layout.report_emm(value.experiment, value.label),), tuple(grids)))
    for fig in plan.figures():
        table = layout.table(fig)
        reads = []
        for exp in plan.config["figures"][fig]["experiments"]:
            for v in plan.values[exp]:
                reads += [layout.emm_result(v.experiment, v.label)] if v.mode == "emm" else []
                reads += [rel(plan.scores_path(v, s)) for s in sizes[(v.experiment, v.label)]]
        found.append(Step("table", (table,), tuple(reads)))
        drawn = tuple(map(rel, _flat(plan.figure_inputs(fig))))
        found.append(Step("figure", tuple(layout.figure_files(fig).values()), drawn))
        found.append(Step("table_html", (layout.report_table(fig),), (table,)))
    found.append(Step("index", (layout.index(),), tuple(rel(p) for p in plan.index_inputs())))
    return list({(s.rule, s.outputs): s for s in found}.values())  # runs shared by several values: once


def absent(root: Path, jobs: list[Step]) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """The absent outputs of ``jobs`` under ``root``: the lost ones, each with a file made from it that is
    there, and the ones not built yet (see the module's docstring); each list sorted."""
    there = functools.cache(lambda p: (root / p).exists())
    readers: dict[Path, list[Step]] = defaultdict(list)
    for job in jobs:
        for p in job.inputs:
            readers[Path(p)].append(job)

    @functools.cache
    def made(job: Step) -> Path | None:
        """An output of ``job``, or of a job downstream of it, that is there."""
        for p in job.outputs:
            if there(p):
                return p
        return next((m for p in job.outputs for r in readers[p] if (m := made(r)) is not None), None)

    lost, unbuilt = {}, set()
    for job in jobs:
        for p in job.outputs:
            if there(p):
                continue
            evidence = made(job)  # an output of its job or made from one: the job ran, its outputs come together
            if evidence is None:
                unbuilt.add(p)
            else:
                lost[p] = evidence
    return sorted(lost.items()), sorted(unbuilt)
