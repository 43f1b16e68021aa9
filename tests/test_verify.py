"""python -m diffmem verify: every result file checked against the manifest written with it; --fix removes
bad files and what was made from them, and the next snakemake run restores the same bytes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffmem import io
from diffmem.__main__ import main
from diffmem.results import verify

ROOT = Path(__file__).resolve().parents[1]
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
        text = '{"file": "snapshot-000.pt"}' if rel.name == "snapshot-000.json" else f"content of {rel}"
        io.write_text(res / rel, text)
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


@pytest.mark.slow
def test_faults_in_a_finished_smoke_run_are_found_fixed_and_rebuilt_byte_identical(tmp_path):
    for name in ("Snakefile", "workflow", "config", "envs", "src", "benchmarks"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    proc = snakemake(tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    inject_fix_rebuild(tmp_path)
