"""python -m diffmem verify: every result file checked against the manifest written with it; --fix removes
bad files and what was made from them, and the next snakemake run restores the same bytes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from diffmem import io
from diffmem.__main__ import main
from diffmem.plan.lock import LOCK_FILE
from diffmem.results import expected, verify

ROOT = Path(__file__).resolve().parents[2]
RUN = Path("runs/aaaaaaaaaa/n4")
SAMPLES = RUN / "samples/bbbbbbbbbb"
SCORES = SAMPLES / "scores/cccccccccc"


def make_tree(res: Path) -> list[Path]:
    """A results folder with one file of every kind, written through diffmem.io (so recorded)."""
    files = [
        Path("subsets/dddddddddd/n4.npz"),
        RUN / "run.json",
        RUN / "train/snapshot-000.pt",
        RUN / "train/snapshot-000.json",
        RUN / "train/train.json",
        SAMPLES / "samples.npz",
        SAMPLES / "sample.json",
        SAMPLES / "samples.png",
        SCORES / "memorization.json",
        SCORES / "distances.npz",
        SCORES / "nearest.png",
        Path("emm/basic/base/round0.json"),
        Path("emm/basic/base/round1.json"),
        Path("emm/basic/base/round2.json"),
        Path("emm/basic/base/emm.json"),
        Path("tables/basic.csv"),
        Path("figures/basic.pdf"),
        Path("figures/basic.png"),
    ]
    (res / "runs").mkdir(parents=True)
    for rel in files:
        if rel.suffix == ".npz":
            io.write_npz(res / rel, x=np.arange(4))
        elif rel.suffix == ".pt":
            io.torch_save({"w": torch.zeros(2)}, res / rel)
        elif rel.suffix == ".json":
            io.write_json(
                res / rel, {"file": "snapshot-000.pt"} if rel.name == "snapshot-000.json" else {"of": str(rel)}
            )
        else:
            io.write_text(res / rel, f"content of {rel}")
    (res / "logs").mkdir()
    (res / "logs" / "x.log").write_text("times")  # not a result: never checked
    (res / RUN / "train" / "history.log").write_text("appended")
    return files


def problems(res: Path) -> dict[str, str]:
    return {str(f.path): f.problem for f in verify.scan(res)}


def test_an_intact_tree_is_clean_and_every_file_is_recorded(tmp_path):
    files = make_tree(tmp_path)
    assert problems(tmp_path) == {}
    assert all(io.record_path(tmp_path / f).is_file() for f in files)
    assert main(["verify", str(tmp_path)]) == 0


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
@pytest.mark.parametrize(
    "rel, removed",
    [
        ("subsets/dddddddddd/n4.npz", ["subsets/dddddddddd/n4.npz"]),
        (str(RUN / "run.json"), [str(RUN / "run.json"), str(RUN / "train"), str(RUN / "samples")]),
        (str(RUN / "train/snapshot-000.pt"), [str(RUN / "train"), str(RUN / "samples")]),
        (str(RUN / "train/train.json"), [str(RUN / "train"), str(RUN / "samples")]),
        (str(SAMPLES / "samples.npz"), [str(SAMPLES)]),
        (str(SCORES / "memorization.json"), [str(SCORES)]),
        (str(SCORES / "distances.npz"), [str(SCORES)]),
        ("emm/basic/base/round1.json", ["emm/basic/base/round1.json", "emm/basic/base/round2.json",
                                        "emm/basic/base/emm.json"]),
        ("tables/basic.csv", ["tables/basic.csv", "figures/basic.pdf", "figures/basic.png"]),
        ("figures/basic.png", ["figures/basic.pdf", "figures/basic.png"]),
    ],
)  # fmt: skip
def test_damage_is_found_and_fix_removes_the_file_and_what_was_made_from_it(tmp_path, rel, removed, damage):
    files = make_tree(tmp_path)
    path = tmp_path / rel
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:3] + bytes([data[3] ^ 1]) + data[4:])
    elif damage == "truncate":
        path.write_bytes(data[:-2])
    else:
        path.unlink()
    assert problems(tmp_path) == {rel: "missing" if damage == "delete" else "corrupt"}
    lines: list[str] = []
    assert verify.verify(tmp_path, out=lines.append) == 1
    assert any(rel in line for line in lines) and "--fix" in lines[-1]
    assert main(["verify", str(tmp_path), "--fix"]) == 0
    gone = {str(f) for f in files if not (tmp_path / f).exists()}
    expected = {str(f) for f in files if any(Path(f).is_relative_to(r) for r in removed)}
    assert gone == expected
    assert not any((tmp_path / r).exists() for r in removed)
    assert problems(tmp_path) == {}  # no record left behind for what was removed


def test_fix_reruns_the_emm_search_that_read_a_removed_run(tmp_path):
    files = make_tree(tmp_path)
    search = tmp_path / "emm/basic/base"
    io.write_json(search / "round0.json", {"run_id": "aaaaaaaaaa", "next": [2, 16]})
    io.write_json(search / "round1.json", {"run_id": "aaaaaaaaaa", "next": [4, 8]})
    io.write_json(search / "round2.json", {"run_id": "aaaaaaaaaa", "next": []})
    (tmp_path / SCORES / "distances.npz").write_bytes(b"PK broken")
    assert main(["verify", str(tmp_path), "--fix"]) == 0
    gone = {str(f) for f in files if not (tmp_path / f).exists()}
    # size 4 was asked for by round 1: round 2 read its score, so round 2 and emm.json go; the table, whose
    # input emm.json is now missing, waits for the search to end (no undeclared read of a missing score)
    assert gone == {str(SCORES / n) for n in ("memorization.json", "distances.npz", "nearest.png")} | {
        "emm/basic/base/round2.json",
        "emm/basic/base/emm.json",
    }


def test_a_bad_subset_removes_the_runs_trained_on_it(tmp_path):
    from diffmem.plan import identity

    files = make_tree(tmp_path)
    data = {"source": "digits", "fingerprint": "x", "size": 4}
    io.write_json(tmp_path / RUN / "run.json", {"data": data})
    subset = tmp_path / "subsets" / identity.data_id({"data": data}) / "n4.npz"
    io.write_text(subset, "subset")
    subset.write_text("damaged")
    assert main(["verify", str(tmp_path), "--fix"]) == 0
    gone = {str(f) for f in files if not (tmp_path / f).exists()}
    assert gone == {str(f) for f in files if str(f).startswith((str(RUN / "train"), str(RUN / "samples")))}
    assert not subset.exists() and (tmp_path / RUN / "run.json").exists()


def test_files_without_a_record_are_checked_by_kind(tmp_path):
    make_tree(tmp_path)
    good, bad = tmp_path / "emm/basic/other/round0.json", tmp_path / "emm/basic/other/round1.json"
    good.parent.mkdir()
    good.write_text('{"done": true}')
    bad.write_text('{"done": tr')
    found = {str(f.path): (f.problem, f.detail) for f in verify.scan(tmp_path)}
    assert found["emm/basic/other/round0.json"][0] == "unrecorded"
    assert found["emm/basic/other/round1.json"][0] == "corrupt"
    assert "not valid JSON" in found["emm/basic/other/round1.json"][1]


def test_a_snapshot_named_by_its_json_but_gone_is_missing(tmp_path):
    make_tree(tmp_path)
    snap = tmp_path / RUN / "train/snapshot-000.pt"
    snap.unlink()
    io.record_path(snap).unlink()  # even without its record, the snapshot's .json names it
    assert problems(tmp_path) == {str(RUN / "train/snapshot-000.pt"): "missing"}


def test_leftover_temporary_files_are_stale_and_fix_removes_them(tmp_path):
    make_tree(tmp_path)
    tmp = tmp_path / SAMPLES / ".tmp-samples.npz-0123abcd.npz"
    tmp.write_bytes(b"half")
    assert problems(tmp_path) == {str(tmp.relative_to(tmp_path)): "stale"}
    assert verify.verify(tmp_path) == 0  # harmless
    verify.verify(tmp_path, do_fix=True)
    assert not tmp.exists() and (tmp_path / SAMPLES / "samples.npz").exists()


def test_state_record_of_a_finished_run_is_not_a_finding(tmp_path):
    make_tree(tmp_path)
    state = tmp_path / RUN / "train/state.pt"
    io.write_text(state, "state")
    state.unlink()  # the training deletes state.pt when done, its record stays
    assert problems(tmp_path) == {}
    (tmp_path / RUN / "train/train.json").unlink()
    io.record_path(tmp_path / RUN / "train/train.json").unlink()
    assert problems(tmp_path) == {str(RUN / "train/state.pt"): "missing"}


def test_a_folder_that_is_not_a_results_folder_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["verify", str(tmp_path)])
    assert "not a results/<name> folder" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["subsets/dddddddddd/n4.npz", str(SCORES / "memorization.json"),
                                  str(RUN / "train/snapshot-000.pt")])  # fmt: skip
def test_a_file_whose_recorded_bytes_do_not_read_is_corrupt(tmp_path, name):
    make_tree(tmp_path)
    with io.atomic_path(tmp_path / name) as tmp:  # written damaged: its record matches the damage
        tmp.write_bytes(b"PK\x03\x04 not what it says")
    found = {str(f.path): (f.problem, f.detail) for f in verify.scan(tmp_path)}
    assert found == {name: ("corrupt", found[name][1])}
    assert "the ones recorded, but it does not read" in found[name][1]


def test_an_unrecorded_npz_that_does_not_read_is_corrupt(tmp_path):
    make_tree(tmp_path)
    (tmp_path / SAMPLES / "extra.npz").write_bytes(b"PK\x03\x04 broken")
    (tmp_path / SAMPLES / "fine.npz").write_bytes((tmp_path / SAMPLES / "samples.npz").read_bytes())
    assert problems(tmp_path) == {str(SAMPLES / "extra.npz"): "corrupt", str(SAMPLES / "fine.npz"): "unrecorded"}


def test_snapshots_train_json_names_are_missing_when_gone_with_their_records(tmp_path):
    make_tree(tmp_path)
    train = tmp_path / RUN / "train"
    io.write_json(
        train / "train.json", {"snapshots": [{"k": 0, "file": "snapshot-000.pt", "json": "snapshot-000.json"}]}
    )
    for name in ("snapshot-000.pt", "snapshot-000.json"):
        (train / name).unlink()
        io.record_path(train / name).unlink()
    assert problems(tmp_path) == {str(RUN / "train" / n): "missing" for n in ("snapshot-000.pt", "snapshot-000.json")}


def test_lost_is_what_something_made_from_it_outlives():
    a, b, c, d, e = (Path(n) for n in "abcde")
    jobs = [expected.Step("x", (a,)), expected.Step("y", (b, e), (a,)), expected.Step("z", (c,), (b,)),
            expected.Step("w", (d,), (a,))]  # fmt: skip

    def absent(*there: Path):
        with_files = Path(tempfile.mkdtemp())
        for p in there:
            (with_files / p).write_text("")
        return expected.absent(with_files, jobs)

    assert absent(c) == ([(a, c), (b, c), (e, c)], [d])  # c was made from b, b from a; e is b's sibling
    assert absent(e) == ([(a, e), (b, e)], [c, d])  # an incomplete job: its other output is there
    assert absent() == ([], [a, b, c, d, e])  # nothing built yet
    assert absent(a, b, c, d, e) == ([], [])


SMOKE = [str(ROOT / "config" / "smoke.yaml")]


def planned_tree(res: Path) -> list[expected.Step]:
    """Every file the smoke config's plan expects before its searches have run, written (recorded) under res."""
    (res / "runs").mkdir(parents=True)
    jobs = expected.steps(verify.load_plan(res, SMOKE))
    for job in jobs:
        for out in job.outputs:
            if out.suffix == ".npz":
                io.write_npz(res / out, x=np.arange(2))
            elif out.suffix == ".json":
                io.write_json(res / out, {"done": False, "next": []} if out.name.startswith("round") else {})
            else:
                io.write_text(res / out, "x")
    return jobs


def test_the_plan_finds_a_folder_lost_with_its_records_and_fix_clears_its_branch(tmp_path):
    res = tmp_path / "results" / "smoke"
    jobs = planned_tree(res)
    lines: list[str] = []
    assert verify.verify(res, out=lines.append, configfile=SMOKE) == 0, lines
    assert not [line for line in lines if line.startswith(("missing", "unbuilt"))]
    train = next(p for job in jobs if job.rule == "train" for p in job.outputs).parent
    scores = next(p for job in jobs if job.rule == "score" and not job.outputs[0].is_relative_to(train.parent)
                  for p in job.outputs).parent  # fmt: skip
    shutil.rmtree(res / train)  # records and all
    shutil.rmtree(res / scores)
    found = {f.path: (f.problem, f.detail) for f in verify.scan(res, verify.load_plan(res, SMOKE))}
    assert (
        found[train / "train.json"][0] == "missing" and f"its folder {train}/ is gone" in found[train / "train.json"][1]
    )
    assert found[scores / "memorization.json"][0] == "missing"
    assert verify.scan(res) == []  # without the plan the records alone see nothing
    assert main(["verify", str(res), "--configfile", *SMOKE]) == 1
    assert main(["verify", str(res), "--configfile", *SMOKE, "--fix"]) == 0
    assert not (res / train.parent / "samples").exists()  # what was made from the lost training
    shutil.rmtree(res / "tables"), shutil.rmtree(res / "figures"), shutil.rmtree(res / "report")
    for path in (res / "index.csv", io.record_path(res / "index.csv")):
        path.unlink()
    left = {f.path: f.problem for f in verify.scan(res, verify.load_plan(res, SMOKE))}
    assert set(left.values()) == {"unbuilt"} and train / "train.json" in left  # the next run builds them


# ----------------------------------------------------------------------------- the smoke workflow, faulted

SNAKEMAKE = Path(sys.executable).with_name("snakemake")
# Files that hold times and so differ between two runs of the same config (everything else is compared):
# train.json (wall_s, images_per_s), progress.json (steps_per_s); logs/, benchmarks/, history.log and
# stats.jsonl are neither recorded nor compared (see diffmem.results.verify).
TIMED = ("train.json", "progress.json")


def snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SNAKEMAKE), "--configfile", "config/smoke.yaml", "--cores", "2", *args],
        cwd=work, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip


def hashes(res: Path) -> dict[str, str]:
    out = {}
    for folder, dirs, files in os.walk(res):
        if Path(folder) == res:
            dirs[:] = [d for d in dirs if d not in io.UNRECORDED_FOLDERS]
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or name in TIMED or io.is_record(path) or verify._appended(path):
                continue
            if Path(folder) == res and name == LOCK_FILE:  # who holds the lock: a pid and a time
                continue
            out[str(path.relative_to(res))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def inject_fix_rebuild(work: Path) -> dict[Path, str]:
    """Fault a finished smoke run in ``work`` (one fault of each kind, in different branches of the DAG),
    check verify finds exactly those, --fix, rerun snakemake, check every file is byte-identical to before;
    return the faults. (Also callable on a finished run outside pytest.)"""
    res = work / "results" / "smoke"
    clean = verify.scan(res)
    assert [f for f in clean if f.problem != "unrecorded"] == []
    assert [f for f in clean if f.problem == "unrecorded"] == [], "every result goes through diffmem.io"
    before = hashes(res)

    runs = sorted(p.parent for p in res.glob("runs/*/*/train/train.json"))
    scored = sorted(p.parent for p in res.glob("runs/*/*/samples/*/scores/*/memorization.json"))
    run_a, run_b, run_c = runs[0], runs[1], runs[2]
    faults = {
        sorted(res.glob("subsets/*/n2.npz"))[-1]: "truncate",
        run_a.parent / "run.json": "flip",
        run_a / "snapshot-000.pt": "truncate",
        run_b / "snapshot-000.json": "flip",
        run_c / "train.json": "delete",
        sorted(res.glob(f"{runs[3].parent.relative_to(res)}/samples/*/samples.npz"))[0]: "flip",
        scored[-1] / "memorization.json": "truncate",
        scored[-2] / "distances.npz": "delete",
        sorted(res.glob("emm/*/*/round1.json"))[0]: "flip",
        sorted(res.glob("emm/*/*/emm.json"))[-1]: "truncate",
        sorted(res.glob("tables/*.csv"))[0]: "flip",
        sorted(res.glob("figures/*.png"))[-1]: "truncate",
        sorted(res.glob("figures/*.pdf"))[0]: "flip",
    }
    for path, damage in faults.items():
        data = path.read_bytes()
        mid = len(data) // 2
        if damage == "flip":
            path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
        elif damage == "truncate":
            path.write_bytes(data[:mid])
        else:
            path.unlink()
    found = {f.path: f.problem for f in verify.scan(res)}
    expected = {p.relative_to(res): "missing" if d == "delete" else "corrupt" for p, d in faults.items()}
    if io.record_path(run_c / "state.pt").exists():  # without train.json, its state.pt should be there too
        expected[(run_c / "state.pt").relative_to(res)] = "missing"
    assert found == expected

    assert main(["verify", str(res), "--fix"]) == 0
    proc = snakemake(work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert verify.scan(res) == []
    after = hashes(res)
    assert sorted(after) == sorted(before)
    differ = sorted(k for k in before if before[k] != after[k])
    assert differ == [], f"not byte-identical after the rebuild: {differ}"
    assert "Nothing to be done" in snakemake(work, "-n").stdout
    return faults


def lose_fix_rebuild(work: Path) -> list[Path]:
    """Remove a training folder and the score folder of a size an EMM search alone evaluated from a finished
    smoke run in ``work`` (records and all): Snakemake does not notice, verify does (by the plan); --fix, rerun,
    every file byte-identical to before. Returns the files found missing."""
    res = work / "results" / "smoke"
    plan = verify.load_plan(res)  # config/smoke.yaml, found by the folder's name
    assert verify.scan(res, plan) == []  # every file the plan expects is there
    for path in res.glob("emm/*/*/*.json"):  # what a search stores, relative to the results folder
        state = json.loads(path.read_text())
        assert all(e["memorization"].startswith("runs/") for e in state["evaluated"])
        assert state.get("final_round", "emm/").startswith("emm/")
    before = hashes(res)
    targets = {str(p.relative_to(res)) for p in plan.final_targets()}
    searched = {e["memorization"] for p in res.glob("emm/*/*/emm.json") for e in json.loads(p.read_text())["evaluated"]}
    scores = res / sorted(searched - targets)[0]  # a score no target names: only its search's rounds read it
    train = next(p for p in sorted(res.glob("runs/*/*/train")) if not scores.is_relative_to(p.parent))
    shutil.rmtree(train)
    shutil.rmtree(scores.parent)
    assert "Nothing to be done" in snakemake(work, "-n").stdout  # Snakemake alone does not see what is gone
    lost = [(train / "train.json").relative_to(res)]
    lost += [(scores.parent / n).relative_to(res) for n in ("distances.npz", "memorization.json", "nearest.png")]
    assert {f.path: f.problem for f in verify.scan(res, plan)} == dict.fromkeys(lost, "missing")
    assert main(["verify", str(res)]) == 1
    assert main(["verify", str(res), "--fix"]) == 0
    proc = snakemake(work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert verify.scan(res, plan) == []
    after = hashes(res)
    assert sorted(after) == sorted(before)
    differ = sorted(k for k in before if before[k] != after[k])
    assert differ == [], f"not byte-identical after the rebuild: {differ}"
    assert "Nothing to be done" in snakemake(work, "-n").stdout
    return lost


@pytest.fixture(scope="module")
def smoke_work(tmp_path_factory) -> Path:
    """A finished smoke run in a copy of the project (the faults of the tests below are undone by each)."""
    work = tmp_path_factory.mktemp("smoke")
    for name in ("Snakefile", "workflow", "config", "envs", "src", "benchmarks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    proc = snakemake(work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return work


@pytest.mark.slow
def test_faults_in_a_finished_smoke_run_are_found_fixed_and_rebuilt_byte_identical(smoke_work):
    inject_fix_rebuild(smoke_work)


@pytest.mark.slow
def test_a_lost_training_folder_and_search_score_are_found_fixed_and_rebuilt_byte_identical(smoke_work):
    lose_fix_rebuild(smoke_work)
