"""``python -m diffmem verify results/<name> [--fix]``: check every result file against the manifest.

Every file the library writes under a results folder passes through :func:`diffmem.io.atomic_path`, which
records its size and SHA-256 in a sidecar (:func:`diffmem.io.record_path`). :func:`scan` walks the folder
(declared outputs and undeclared ones alike: subsets, run.json, snapshots, state.pt, train.json, samples,
scores, distances, EMM rounds, tables, figures) and reports:

- ``corrupt``: the bytes differ from the record (or, for a file without a record, it does not parse);
- ``missing``: a record, or a snapshot's ``.json``, names a file that is not there;
- ``unrecorded``: no record (written before manifests existed, or by a job killed between the file's rename
  and its record) but it parses: reported, nothing to fix;
- ``stale``: a leftover temporary file (``.tmp-*``) of a killed job: removed by ``--fix``, harmless otherwise.

Not checked: logs/ and benchmarks/ (Snakemake's, they hold times), files appended as a job goes (a run's
``history.log``, ``train/stats.jsonl``), and the record of ``state.pt`` once its run has finished (the
training deletes the file, not its record).

:func:`fix` removes each bad file and what was made from it inside the results folder (:func:`dependents`),
so the next ``snakemake`` run rebuilds exactly those and, through its modification-time trigger, the
steps that read them (EMM rounds, tables, figures). Logs and benchmarks hold times and are not checked.
Run it while no workflow writes into the folder (a running job's temporary files would count as stale).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from diffmem import io
from diffmem.plan import config as dmc
from diffmem.plan import identity
from diffmem.plan.lock import LOCK_FILE, holding
from diffmem.plan.plan import Plan
from diffmem.results import expected
from diffmem.results.compare import find_config

BAD = ("corrupt", "missing")
NOTED = ("unrecorded", "unbuilt")  # counted in one line each, nothing to fix
PARSED = (".npz", ".json", ".pt")  # parsed even when their bytes are the ones recorded (written damaged)


@dataclass(frozen=True)
class Finding:
    path: Path  # relative to the results folder
    problem: str  # corrupt | missing | unrecorded | stale
    detail: str

    def line(self) -> str:
        return f"{self.problem:10s} {self.path}: {self.detail}"


def _check_structure(path: Path) -> str | None:
    """Why a file without a record is unusable (it does not parse as its kind), or None when it parses."""
    try:
        suffix = path.suffix
        if suffix == ".json":
            io.read_json(path)
        elif suffix == ".jsonl":
            for line in path.read_text().splitlines():
                if line.strip():
                    json.loads(line)
        elif suffix == ".npz":
            io.read_npz(path)
        elif suffix == ".pt":
            io.torch_load(path)
        elif suffix == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.reader(fh))
            if not rows or any(len(r) != len(rows[0]) for r in rows):
                return "not a rectangular CSV table"
        elif suffix == ".png":
            from PIL import Image

            with Image.open(path) as img:
                img.load()
        elif suffix == ".pdf":
            data = path.read_bytes()
            if not data.startswith(b"%PDF-") or b"%%EOF" not in data[-1024:]:
                return "not a complete PDF (no %PDF- header or %%EOF trailer)"
    except io.CorruptFileError as e:
        return str(e).split(" (", 1)[1].split("). ", 1)[0] if " (" in str(e) else str(e)
    except Exception as e:  # noqa: BLE001 - any failure to parse is the finding
        return f"{type(e).__name__}: {e}"
    return None


def _appended(path: Path) -> bool:
    """Files appended line by line as a job goes (a run's history.log, train/stats.jsonl, TensorBoard
    events): they hold times, have no record, and a killed job may leave half a last line."""
    return path.suffix in (".log", ".jsonl") or path.name.startswith("events.out.tfevents")


def _transient_gone(root: Path, rel: Path) -> bool:
    """A file its writer deletes when done (its record stays, harmless): state.pt once the run's train.json
    exists."""
    return rel.name == "state.pt" and (root / rel.parent / "train.json").is_file()


def scan(root: str | os.PathLike, plan: Plan | None = None) -> list[Finding]:
    """Every problem of the files under ``root`` (a ``results/<name>`` folder), sorted by path; with ``plan``
    (whose results folder is ``root``, :func:`load_plan`) also the files it expects that are lost
    (:mod:`diffmem.results.expected`) and, as ``unbuilt``, those not built yet."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; give a results/<name> folder of the workflow")
    if not any((root / m).is_dir() for m in io.RESULTS_MARKERS):
        raise FileNotFoundError(
            f"{root} holds none of {', '.join(io.RESULTS_MARKERS)}: not a results/<name> folder of the workflow"
        )
    found: list[Finding] = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root:
            dirs[:] = [d for d in dirs if d not in io.UNRECORDED_FOLDERS]
        dirs.sort()
        for name in sorted(files):
            path = here / name
            rel = path.relative_to(root)
            if path.is_symlink() or _appended(path) or (here == root and name == LOCK_FILE):
                continue
            if name.startswith(".tmp-"):
                found.append(Finding(rel, "stale", "temporary file of a write that did not finish"))
            elif io.is_record(path):
                target = io.recorded_file(path)
                trel = target.relative_to(root)
                if not target.exists() and not _transient_gone(root, trel):
                    found.append(Finding(trel, "missing", "the manifest records it, the file is gone"))
            else:
                found += _check_file(root, path, rel)
    if plan is not None:
        found += _planned(root, plan, {f.path for f in found if f.problem == "missing"})
    once = {(f.path, f.problem): f for f in reversed(found)}  # a file named twice: the first finding
    return sorted(once.values(), key=lambda f: (str(f.path), f.problem))


def _planned(root: Path, plan: Plan, known: set[Path]) -> list[Finding]:
    """The plan's files that are lost (missing) or not built yet (unbuilt), less those found missing already."""
    lost, unbuilt = expected.absent(root, expected.steps(plan))
    out = []
    for rel, made in lost:
        if rel not in known:
            gone = next((p for p in reversed(rel.parents) if p != Path(".") and not (root / p).exists()), rel)
            whole = f" (its folder {gone}/ is gone)" if gone != rel else ""
            out.append(Finding(rel, "missing", f"the plan expects it{whole}, and {made}, made from it, is there"))
    return out + [Finding(rel, "unbuilt", "the plan expects it; the next snakemake run builds it") for rel in unbuilt]


def load_plan(root: str | os.PathLike, configfile: list[str] | None = None) -> Plan | None:
    """The plan of the config that made ``root``, with ``root`` as its results folder: ``configfile``, else the
    config/*.yaml whose name is the folder's (as ``compare`` finds it); None when there is none. Raises
    ConfigError for a config that does not load."""
    root = Path(root)
    try:
        paths = [str(p) for p in configfile] if configfile else [str(find_config(root))]
    except FileNotFoundError:
        return None
    cfg = dmc.load_config(paths)
    return Plan.build({**cfg, "results": str(root.parent), "name": root.name}, check_files=False)


def _check_file(root: Path, path: Path, rel: Path) -> list[Finding]:
    out = []
    rec_path = io.record_path(path)
    rec = io.read_record(rec_path) if rec_path.exists() else None
    if rec is not None:
        got = io.file_digest(path)
        if got["size"] != rec["size"]:
            out.append(Finding(rel, "corrupt", f"{got['size']} bytes, the manifest records {rec['size']}"))
        elif got["sha256"] != rec["sha256"]:
            out.append(Finding(rel, "corrupt", f"SHA-256 {got['sha256'][:12]}..., the manifest records "
                                               f"{rec['sha256'][:12]}..."))  # fmt: skip
        elif path.suffix in PARSED and (why := _check_structure(path)) is not None:
            out.append(Finding(rel, "corrupt", f"its bytes are the ones recorded, but it does not read: {why}"))
    else:
        why = _check_structure(path)
        if why is not None:
            out.append(Finding(rel, "corrupt", f"no manifest record, and it does not read: {why}"))
        else:
            out.append(Finding(rel, "unrecorded", "no manifest record (it reads as its kind)"))
    if not any(f.problem == "corrupt" for f in out):
        out += [Finding(rel.parent / name, "missing", f"{path.name} names it, the file is gone")
                for name in _names(path) if not (path.parent / name).exists()]  # fmt: skip
    return out


def _names(path: Path) -> list[str]:
    """The files beside it that a snapshot's .json (its weights) or a train.json (every snapshot) names."""
    is_train = path.name == "train.json" and path.parent.name == "train"
    if not (is_train or re.fullmatch(r"snapshot-\d+\.json", path.name)):
        return []
    try:
        data = io.read_json(path)
        snaps = data.get("snapshots") or [] if is_train else [{"file": data.get("file")}]
        return [n for s in snaps for n in (s.get("file"), s.get("json")) if isinstance(n, str) and n]
    except (io.CorruptFileError, AttributeError):
        return []


def dependents(root: str | os.PathLike, rel: str | os.PathLike) -> list[Path]:
    """What to remove (relative to the results folder) so that a bad file and everything made from it in
    its own branch is rebuilt by the next ``snakemake`` run (see :mod:`diffmem.plan.layout` for the names):

    - a subset: the subset and the ``train/`` and ``samples/`` of every run trained on it (by run.json);
    - run.json, or a file of a training folder (snapshot, its .json, state.pt, train.json, ...): the
      training folder and the run's ``samples/`` (samples, their ``.parts`` and scores come from them);
    - a file of a sampling folder (samples.npz, sample.json, samples.png): that folder (with its scores);
    - a file of a scoring folder (memorization.json, distances.npz, nearest.png): that folder;
    - EMM round k: rounds k, k+1, ... and emm.json of that search;
    - a table: the table and its figure; a figure: its PDF and PNG;
    - anything else (a subset, run.json, emm.json): the file.

    :func:`fix` adds, for every run folder touched, the EMM rounds after the one that asked for it and the
    search's emm.json (:func:`_searches_reading`). Tables and figures then rerun because their inputs are
    missing or newer (Snakemake's mtime trigger), and write the same bytes.
    """
    root = Path(root)
    rel = Path(rel)
    parts = rel.parts
    if parts[0] == "runs" and len(parts) == 4 and parts[3] == "run.json":
        run = Path(*parts[:3])
        return [rel, run / "train", run / "samples"]
    if parts[0] == "subsets" and len(parts) == 3 and (m := re.fullmatch(r"n(\d+)\.npz", rel.name)):
        runs = [Path(*p.relative_to(root).parts[:3]) for p in _runs_on(root, parts[1], int(m.group(1)))]
        return [rel] + [r / sub for r in runs for sub in ("train", "samples")]
    if parts[0] == "runs" and len(parts) >= 5:
        run = Path(*parts[:3])
        if parts[3] == "train":
            return [run / "train", run / "samples"]
        if parts[3] == "samples" and len(parts) >= 6:
            if len(parts) >= 8 and parts[5] == "scores":
                return [Path(*parts[:7])]
            return [Path(*parts[:5])]
    if parts[0] == "emm" and (m := re.fullmatch(r"round(\d+)\.json", rel.name)):
        k = int(m.group(1))
        later = [
            p.relative_to(root)
            for p in sorted((root / rel.parent).glob("round*.json"))
            if re.fullmatch(r"round\d+\.json", p.name) and int(p.name[5:-5]) >= k
        ]
        return list(dict.fromkeys([rel, *later, rel.parent / "emm.json"]))
    if parts[0] == "tables" and rel.suffix == ".csv":
        return [rel, Path("figures") / f"{rel.stem}.pdf", Path("figures") / f"{rel.stem}.png"]
    if parts[0] == "figures" and rel.suffix in (".pdf", ".png"):
        return [rel.with_suffix(".pdf"), rel.with_suffix(".png")]
    return [rel]


def _runs_on(root: Path, data_id: str, size: int) -> list[Path]:
    """The run folders (``runs/<run_id>/n<size>``) trained on subset ``data_id`` of that size, by their
    run.json (which holds the data identity, see diffmem.plan.identity.data_id)."""
    out = []
    for run_json in sorted(root.glob(f"runs/*/n{size}/run.json")):
        try:
            if identity.data_id({"data": io.read_json(run_json)["data"]}) == data_id:
                out.append(run_json.parent)
        except (io.CorruptFileError, KeyError, TypeError, OSError):
            continue  # a damaged run.json is a finding of its own
    return out


def _rounds(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(p.name[5:-5]), p) for p in folder.glob("round*.json") if re.fullmatch(r"round\d+\.json", p.name)]
    return sorted(found)


def _searches_reading(root: Path, run_id: str, size: int) -> list[Path]:
    """What to remove of the EMM searches that read run ``run_id`` at ``size``: the rounds after the one
    that asked for the size, and emm.json. (The table reads the scores an emm.json lists without declaring
    them, so the search must rerun and ask for the rebuilt scores before its table; with emm.json gone,
    Snakemake cannot run the table early.)"""
    out: list[Path] = []
    for folder in sorted(p.parent for p in root.glob("emm/*/*/round0.json")):
        rounds = _rounds(folder)
        try:
            states = [(k, p, io.read_json(p)) for k, p in rounds]
        except io.CorruptFileError:
            continue  # a damaged round is a finding of its own (and removes what follows it)
        if not states or states[0][2].get("run_id") != run_id:
            continue
        asked = [k for k, _, st in states if size in (st.get("next") or [])]
        if asked:
            out += [p.relative_to(root) for k, p, _ in states if k > asked[0]]
            out.append((folder / "emm.json").relative_to(root))
    return out


def _remove(path: Path) -> bool:
    """Remove a file with its record, or a folder; True when something was there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return True
    there = path.exists() or path.is_symlink()
    if there:
        path.unlink()
    record = io.record_path(path)
    if record.exists():
        record.unlink()
        there = True
    return there


def fix(root: str | os.PathLike, findings: list[Finding]) -> list[Path]:
    """Remove the bad files of ``findings`` and their dependents, stale records and temporary files; return
    what was removed (relative to ``root``), outermost folders first."""
    root = Path(root)
    targets: list[Path] = []
    for f in findings:
        if f.problem in BAD:
            targets += dependents(root, f.path)
        elif f.problem == "stale":
            targets.append(f.path)
    runs = {t.parts[1:3] for t in targets if t.parts[0] == "runs" and len(t.parts) >= 4}
    for run_id, n in sorted(runs):
        targets += _searches_reading(root, run_id, int(n[1:]))
    removed: list[Path] = []
    gone: list[Path] = []  # folders removed whole
    for rel in sorted(dict.fromkeys(targets), key=lambda p: (len(p.parts), str(p))):
        if any(rel.is_relative_to(d) for d in gone):
            continue
        is_dir = (root / rel).is_dir()
        if _remove(root / rel):
            removed.append(rel)
            if is_dir:
                gone.append(rel)
    return removed


def verify(root: str | os.PathLike, do_fix: bool = False, out=print, configfile: list[str] | None = None) -> int:
    """The command: print the findings (and with ``do_fix`` what was removed, holding the folder's lock:
    :mod:`diffmem.plan.lock`); exit status 0 when nothing is missing or corrupt (or it was fixed), 1
    otherwise. ``configfile``: the config that made the folder (default: the one named like it, see
    :func:`load_plan`), whose plan says which files are lost (:mod:`diffmem.results.expected`)."""
    root = Path(root)
    plan = load_plan(root, configfile)
    findings = scan(root, plan)
    if plan is None:
        out(f"note       no config/*.yaml is named {root.name!r}: files lost with their folder are not looked for "
            "(pass --configfile)")  # fmt: skip
    bad = [f for f in findings if f.problem in BAD]
    for f in findings:
        if f.problem not in NOTED:
            out(f.line())
    for kind, what in zip(NOTED, ("without a manifest record read as their kind", "the plan expects are not "
                                  "built yet: the next snakemake run builds them"), strict=True):  # fmt: skip
        if some := [f for f in findings if f.problem == kind]:
            out(f"{kind:10s} {len(some)} file(s) {what} (first: {some[0].path}); nothing to fix")
    if not do_fix:
        if bad:
            out(
                f"{len(bad)} file(s) missing or corrupt under {root}. Remove them and what was made from them "
                f"with: python -m diffmem verify {root} --fix; then run snakemake again to rebuild them"
            )
            return 1
        stale = any(f.problem == "stale" for f in findings)
        out(f"{root}: every recorded file is intact" + (" (stale files: --fix removes them)" if stale else ""))
        return 0
    with holding(root):  # not while a workflow writes into it
        removed = fix(root, findings)
    for rel in removed:
        out(f"removed    {rel}")
    if bad:
        out(
            f"{len(bad)} bad file(s) removed with what depends on them: run snakemake again (same command and "
            "config as before) to rebuild exactly those"
        )
    else:
        out(f"{root}: every recorded file is intact")
    return 0
