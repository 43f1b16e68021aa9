"""One results tree, one writer, plain paths: the results folder's lock (diffmem.plan.lock) refuses a second
workflow whatever its working directory; EMM rounds and emm.json store paths relative to the results folder
(and older absolute ones still read); a write that fails for the folder's sake names the file in one line."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from diffmem import io
from diffmem.plan import config as dmc
from diffmem.plan import layout
from diffmem.plan import lock as rlock
from diffmem.steps.emm import emm_result, emm_round, stored_path
from diffmem.steps.table import figure_table

ROOT = Path(__file__).resolve().parents[2]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


# ----------------------------------------------------------------------------- the lock


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds the lock of ``tmp_path/res`` until it is told to go (stdin closed)."""
    procs = []

    def start(res: Path) -> subprocess.Popen:
        code = "import sys; from diffmem.plan import lock; lock.hold(sys.argv[1]); print('held', flush=True); "
        code += "sys.stdin.read()"
        proc = subprocess.Popen([sys.executable, "-c", code, str(res)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_second_process_is_refused_naming_the_holder_until_it_ends(tmp_path, holder):
    res = tmp_path / "res"
    proc = holder(res)
    with pytest.raises(rlock.ResultsLockError, match=rf"in use by another process \(pid {proc.pid} on .*since"):
        rlock.hold(res)
    proc.stdin.close()
    proc.wait(timeout=30)
    try:
        assert rlock.hold(res) == res / rlock.LOCK_FILE
        assert rlock.hold(res) == res / rlock.LOCK_FILE  # a second call in the same process: a no-op
        assert f"pid {os.getpid()} " in (res / rlock.LOCK_FILE).read_text()
        assert not list(res.glob(".tmp-*"))  # the write probes leave nothing
    finally:
        rlock.release(res)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path, holder):
    res = tmp_path / "res"
    holder(res).kill()
    for _ in range(100):  # the kernel drops an flock with its process
        try:
            with rlock.holding(res):
                break
        except rlock.ResultsLockError:
            time.sleep(0.1)
    else:
        pytest.fail("the lock of a killed process was not dropped")


def test_verify_fix_waits_for_no_workflow(tmp_path, holder):
    from diffmem.__main__ import main

    res = tmp_path / "res"
    (res / "runs").mkdir(parents=True)
    (res / "runs" / ".tmp-x-0000").write_text("half")  # something to fix
    holder(res)
    with pytest.raises(SystemExit):
        main(["verify", str(res), "--fix"])
    assert (res / "runs" / ".tmp-x-0000").exists()  # touched nothing
    assert main(["verify", str(res)]) == 0  # reading needs no lock


def workflow(work: Path, results: Path, *args: str) -> subprocess.CompletedProcess:
    """The smoke config's workflow from another working directory, with ``results:`` at ``results``."""
    work.mkdir(exist_ok=True)
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "-d", str(work), "--configfile",
           str(ROOT / "config" / "smoke.yaml"), "--config", f"results={results}", "--cores", "1", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def test_a_second_workflow_on_one_results_tree_is_refused_before_it_touches_anything(tmp_path, holder):
    res = tmp_path / "shared" / "smoke"  # results/<name>/ of the smoke config
    proc = holder(res)
    ran = workflow(tmp_path / "elsewhere", tmp_path / "shared", "--allowed-rules", "subset")  # (short if it ran)
    assert ran.returncode != 0
    said = ran.stdout + ran.stderr
    assert "is in use by another process" in said and f"pid {proc.pid}" in said, said[-3000:]
    assert "Traceback" not in said
    assert sorted(p.name for p in res.iterdir()) == [rlock.LOCK_FILE]  # nothing written, nothing removed
    dry = workflow(tmp_path / "elsewhere", tmp_path / "shared", "-n")  # a dry run neither takes nor waits
    assert dry.returncode == 0, dry.stderr[-3000:]


def chattr(path: Path, flag: str) -> bool:
    try:
        return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


@pytest.fixture
def immutable(tmp_path):
    """Make a folder immutable (chattr +i: root on a file system that has the flag), undone at the end."""
    flagged = []

    def make(path: Path) -> None:
        if not chattr(path, "+i"):
            pytest.skip("chattr +i is not possible here (needs root and ext4/xfs/btrfs)")
        flagged.append(path)

    yield make
    for path in flagged:
        chattr(path, "-i")


def test_an_immutable_results_tree_is_named_when_the_workflow_starts(tmp_path, immutable):
    res = tmp_path / "shared" / "smoke"
    (res / "runs").mkdir(parents=True)
    immutable(res / "runs")
    ran = workflow(tmp_path / "elsewhere", tmp_path / "shared")
    said = ran.stdout + ran.stderr
    assert ran.returncode != 0 and "Traceback" not in said, said[-3000:]
    assert f"cannot write {res / 'runs'}" in said and "immutable" in said and "chattr -i" in said, said[-3000:]


# ----------------------------------------------------------------------------- write errors


def test_a_failed_rename_names_the_file_not_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "res" / "tables" / "basic.csv"

    def refuse(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(io.ResultWriteError) as info:
        io.write_text(target, "a,b\n")
    said = str(info.value)
    assert said.startswith(f"cannot write {target}: Operation not permitted") and ".tmp-" not in said
    assert f"lsattr -d {target.parent}" in said
    assert isinstance(info.value, OSError) and info.value.errno == errno.EPERM
    assert not list(target.parent.iterdir())  # no temporary left


def test_an_error_about_another_file_passes_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError), io.atomic_path(tmp_path / "out" / "a.json"):
        (tmp_path / "elsewhere" / "input.json").read_text()


def test_a_workflow_script_says_a_write_error_in_one_line(tmp_path):
    log = tmp_path / "logs" / "job.log"
    code = textwrap.dedent(f"""
        import errno, os
        from diffmem import io
        from diffmem.steps.job_env import script_logging
        script_logging({str(log)!r})
        def refuse(src, dst):
            raise PermissionError(errno.EPERM, "Operation not permitted", str(src), None, str(dst))
        os.replace = refuse
        io.write_json({str(tmp_path / "emm.json")!r}, {{}})
    """)
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 1
    for said in (ran.stderr, log.read_text()):
        assert f"error: cannot write {tmp_path / 'emm.json'}: Operation not permitted" in said
        assert "Traceback" not in said


def test_a_log_that_cannot_be_opened_is_named(tmp_path, immutable):
    (tmp_path / "logs").mkdir()
    immutable(tmp_path / "logs")
    code = f"from diffmem.steps.job_env import script_logging; script_logging({str(tmp_path / 'logs' / 'a.log')!r})"
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 1 and "Traceback" not in ran.stderr
    assert f"cannot write {tmp_path / 'logs' / 'a.log'}: Operation not permitted" in ran.stderr


# ----------------------------------------------------------------------------- relative paths in EMM files


def search_in(res: Path) -> tuple[dict, list[Path]]:
    """A search of the optimum over digits, and its scores at 10 and 20 under ``res`` (the layout's places)."""
    settings = dmc.resolve_settings(
        {
            "data": {"source": "digits", "resolution": 8, "classes": 10, "labels": "none", "label_classes": None,
                     "blend": None, "seed": 0, "pick": "random", "resize": "area"},
            "model": {"arch": "optimum"},
        }
    )  # fmt: skip
    search = {"experiment": "e", "value": "v", "display": "v", "run_id": "r" * 10, "settings": settings,
              "lo": 10, "hi": 20, "tolerance": 0.5, "per_round": 2, "threshold": 0.9, "max_rounds": 3,
              "start": [10, 20]}  # fmt: skip
    scores = []
    for size in (10, 20):
        path = res / layout.memorization("r" * 10, size, "s" * 10, "c" * 10)
        io.write_json(path, {"size": size, "ratio": 1.0 if size == 10 else 0.0, "ci_low": 0.0, "ci_high": 1.0,
                             "n": 8, "best_snapshot": 0, "snapshots": []})  # fmt: skip
        scores.append(path)
    return search, scores


def run_search(res: Path, search: dict, scores: list[Path]) -> tuple[dict, dict]:
    rounds = [res / layout.emm_round("e", "v", k) for k in (0, 1)]
    emm_round(search, None, [], rounds[0])
    last = emm_round(search, rounds[0], scores, rounds[1])
    return last, emm_result(search, rounds[1], res / layout.emm_result("e", "v"))


@pytest.mark.parametrize("spelling", ["relative", "absolute"])
def test_round_files_store_paths_relative_to_the_results_folder(tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    res = Path("results/smoke") if spelling == "relative" else tmp_path / "results" / "smoke"
    search, scores = search_in(res)
    last, result = run_search(res, search, scores)
    assert [e["memorization"] for e in last["evaluated"]] == [
        f"runs/{'r' * 10}/n{s}/samples/{'s' * 10}/scores/{'c' * 10}/memorization.json" for s in (10, 20)
    ]
    assert result["final_round"] == "emm/e/v/round1.json"
    texts = {p.name: p.read_bytes() for p in (tmp_path / "results" / "smoke" / "emm" / "e" / "v").glob("*.json")}
    assert str(tmp_path).encode() not in b"".join(texts.values())
    other = tmp_path / "other"  # the same search from another working directory, results spelled otherwise
    other.mkdir()
    monkeypatch.chdir(other)
    run_search(Path("."), *search_in(Path(".")))
    assert {p.name: p.read_bytes() for p in (other / "emm" / "e" / "v").glob("*.json")} == texts


def test_older_round_files_with_absolute_or_working_directory_paths_still_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = tmp_path / "results" / "smoke"
    search, scores = search_in(res)
    rounds = [res / layout.emm_round("e", "v", k) for k in (0, 1)]
    emm_round(search, None, [], rounds[0])
    old = json.loads(rounds[0].read_text())
    old["evaluated"] = [{"size": 10, "ratio": 1.0, "ci_low": 0.0, "ci_high": 1.0, "n": 8, "best_snapshot": 0,
                         "memorized": True, "memorization": str(scores[0])}]  # absolute, as written before  # fmt: skip
    io.write_json(rounds[0], old)
    assert stored_path(rounds[0], str(scores[0])) == scores[0]
    assert stored_path(rounds[0], str(scores[0].relative_to(tmp_path))) == scores[0].relative_to(tmp_path)
    moved = "/gone/elsewhere/results/smoke/" + str(scores[1].relative_to(res))  # a folder moved since
    assert stored_path(rounds[0], moved) == scores[1]
    last = emm_round(search, rounds[0], scores[1:], rounds[1])  # the old entry is stored as this version does
    assert last["evaluated"][0]["memorization"] == str(scores[0].relative_to(res))
    result = emm_result(search, rounds[1], res / layout.emm_result("e", "v"))
    value = {"experiment": "e", "title": "E", "label": "v", "display": "v", "mode": "emm", "run_id": "r" * 10,
             "emm": str(res / layout.emm_result("e", "v")), "scores": {}, "ratio_threshold": 1 / 3,
             "emm_threshold": 0.9}  # fmt: skip
    table = figure_table({"name": "f", "values": [value]})
    assert len(table[table["kind"] == "size"]) == len(result["evaluated"]) == 2
